"""Kamailio as a SIP provider's registrar for the trunk tests, on 127.0.0.1.

:class:`KamailioRegistrar` writes ``tests/interop/peers/kamailio_registrar.cfg`` with its port,
password and minimum expiry into a scratch directory, runs ``kamailio -DD -E`` (one process,
foreground, log on stderr into a file) and stops it by its pid. :meth:`saved` reads the
bindings it logged. Tests skip when Kamailio is not installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

from . import ports
from .procs import stop_process

CONFIG = Path(__file__).resolve().parent.parent / "peers" / "kamailio_registrar.cfg"
MODULES = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"


def available() -> bool:
    return shutil.which("kamailio") is not None and Path(MODULES, "registrar.so").exists()


class KamailioRegistrar:
    def __init__(self, workdir: Path, password: str, min_expires: int = 60) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = ports.free_port()
        self.password = password
        self.min_expires = min_expires
        self.log_path = self.workdir / "kamailio.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> KamailioRegistrar:
        text = CONFIG.read_text(encoding="utf-8")
        for key, value in {
            "PORT": str(self.port), "PASSWORD": self.password,
            "MIN_EXPIRES": str(self.min_expires), "MODULES": MODULES,
        }.items():  # fmt: skip
            text = text.replace(f"@@{key}@@", value)
        config = self.workdir / "kamailio.cfg"
        config.write_text(text, encoding="utf-8")
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                ["kamailio", "-DD", "-E", "-f", str(config), "-w", str(self.workdir),
                 "-Y", str(self.workdir), "-m", "64", "-M", "8"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while "listening on" not in self.log() and time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kamailio exited {self.proc.returncode}:\n{self.log()[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.3)
        return self

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def saved(self) -> list[tuple[str, str, str]]:
        """(AOR, contact, Expires header) of every binding saved, in order."""
        return re.findall(r"SAVED (\S+) contact (\S+) expires (\S+)", self.log())

    def challenges(self) -> int:
        return len(re.findall(r"CHALLENGE ", self.log()))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None
        ports.release(self.port)

    def __enter__(self) -> KamailioRegistrar:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
