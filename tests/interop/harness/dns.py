"""The test DNS server (harness/dns_server.py) as a context manager: a zone in, a port out."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import ports
from .procs import stop_process

REPO_ROOT = Path(__file__).resolve().parents[3]


class DnsServer:
    def __init__(self, workdir: Path, zone: dict[str, list[Any]]) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.zone = zone
        self.port = ports.free_port()
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> DnsServer:
        zone_path = self.workdir / "zone.json"
        zone_path.write_text(json.dumps(self.zone), encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.interop.harness.dns_server", str(self.port), str(zone_path)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 10
        line = self.proc.stdout.readline()
        if line.strip() != "ready" or time.monotonic() > deadline:
            stop_process(self.proc)
            raise RuntimeError(f"test DNS server did not start: {line!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        stop_process(self.proc)
        ports.release(self.port)
