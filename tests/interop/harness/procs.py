"""Stopping child processes the harness started: by their own pid, never by name."""

from __future__ import annotations

import os
import signal
import subprocess


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, grace: float = 3.0
) -> None:
    """SIGTERM, wait ``grace`` seconds, then SIGKILL; safe to call twice or on a dead process."""
    if proc is None or proc.poll() is not None:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue
