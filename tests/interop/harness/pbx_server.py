"""The pbx server under test, driven from outside as a subprocess (notes/server-contract.md).

Owns: starting ``python -m pbx serve --data DIR --bind 127.0.0.1 --sip-port N --tls-port M
--http-port H --rtp-ports LOW-HIGH`` on reserved free ports (RTP: a reserved block of
``rtp_block`` ports, default 100) with its output in DIR/pbx.log, optional site config
DIR/pbx.toml (``site_toml``; ``MD5_ONLY_TOML`` for SIPp/baresip peers), readiness (DIR/run/
status.json written by OUR process AND a UDP OPTIONS answered, sent with a plain socket),
``pbx`` CLI calls against the same DIR, and stopping it by pid (SIGTERM, wait, SIGKILL) or
killing it hard (SIGKILL) to test crash recovery. Never kills anything by name.

Must not import anything from ``pbx``: the server is a black box reached over its CLI, its
status file and the network.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from . import ports

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]

#: Site config offering only the MD5 digest challenge. SIPp 3.6.1 ("createAuthHeader:
#: authentication must use MD5 or AKAv1-MD5") and baresip 1.0.0 ("Register: Function not
#: implemented") cannot answer the default SHA-256-then-MD5 challenge pair (RFC 8760 2.4);
#: linphone 5.1 and pyVoIP 1.6.8 can.
MD5_ONLY_TOML = '[auth]\nalgorithms = ["MD5"]\n'


class PbxServerError(RuntimeError):
    """The server did not start / stop in time or a CLI call failed; includes the log tail."""


def sip_options(host: str, port: int, timeout: float = 0.5) -> str | None:
    """Send one OPTIONS over UDP (RFC 3261 11) and return the response status line, or None."""
    if not host.startswith("127."):
        raise ValueError("interop tests use 127.0.0.0/8 only")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, 0))
        lport = sock.getsockname()[1]
        branch = "z9hG4bK" + uuid.uuid4().hex[:16]
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{lport};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@{host}:{lport}>;tag={uuid.uuid4().hex[:8]}\r\n"
            f"To: <sip:{host}:{port}>\r\n"
            f"Call-ID: {uuid.uuid4().hex}@{host}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            f"Contact: <sip:probe@{host}:{lport}>\r\n"
            "Accept: application/sdp\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.settimeout(timeout)
        sock.sendto(msg.encode(), (host, port))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data = sock.recv(65535)
            line = data.split(b"\r\n", 1)[0].decode("latin-1")
            if line.startswith("SIP/2.0 ") and not line.startswith("SIP/2.0 1"):
                return line
        return None
    except (TimeoutError, OSError):
        return None
    finally:
        sock.close()


class PbxServer:
    """One ``pbx serve`` process on reserved 127.0.0.1 ports; a context manager."""

    def __init__(
        self,
        data_dir: Path,
        python: str = sys.executable,
        bind: str = "127.0.0.1",
        env: Mapping[str, str] | None = None,
        *,
        extra_args: Sequence[str] = (),
        rtp_ports: tuple[int, int] | None = None,
        rtp_block: int = 100,
        site_toml: str | None = None,
    ) -> None:
        if not bind.startswith("127."):
            raise ValueError("interop tests use 127.0.0.0/8 only")
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.python = python
        self.bind = bind
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self._ports = ports.Reservation(bind)
        self.sip_port, self.tls_port, self.http_port = self._ports.ports(3)
        if rtp_ports is None and rtp_block > 0:
            rtp_ports = self._ports.block(rtp_block)
        self.rtp_ports = rtp_ports
        self.log_path = self.data_dir / "pbx.log"
        self.status_path = self.data_dir / "run" / "status.json"
        self.proc: subprocess.Popen[bytes] | None = None
        if site_toml is not None:
            self.write_site_config(site_toml)

    # -- helpers -------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env.setdefault("PBX_ADMIN_PASSWORD", "admin-test-password")
        env.update(self.env)
        return env

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "(no pbx.log)"
        return "\n".join(text[-lines:])

    def _fail(self, message: str) -> PbxServerError:
        return PbxServerError(f"{message}\n--- {self.log_path} (tail) ---\n{self.log_tail()}")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def cert_path(self) -> Path:
        """The self-signed certificate the server generates on first start."""
        return self.data_dir / "tls" / "cert.pem"

    def write_site_config(self, text: str) -> Path:
        """Write DIR/pbx.toml (site overrides, e.g. '[auth]\nalgorithms = ["MD5"]');
        takes effect at the next start()."""
        path = self.data_dir / "pbx.toml"
        path.write_text(text, encoding="utf-8")
        return path

    def serve_args(self) -> list[str]:
        args = [self.python, "-m", "pbx", "serve", "--data", str(self.data_dir)]
        args += ["--bind", self.bind, "--sip-port", str(self.sip_port)]
        args += ["--tls-port", str(self.tls_port), "--http-port", str(self.http_port)]
        if self.rtp_ports is not None:
            args += ["--rtp-ports", f"{self.rtp_ports[0]}-{self.rtp_ports[1]}"]
        return args + self.extra_args

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 20.0) -> PbxServer:
        """Start and wait until status.json is ours and an OPTIONS is answered."""
        if self.running:
            raise PbxServerError("already running")
        with self.log_path.open("ab") as out:
            out.write(f"\n=== harness start {time.strftime('%H:%M:%S')} ===\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.serve_args(),
                cwd=REPO_ROOT,
                env=self._env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except PbxServerError:
            self.stop()
            raise
        log.info(
            "pbx up: pid %s sip %d tls %d http %d",
            self.pid,
            self.sip_port,
            self.tls_port,
            self.http_port,
        )
        return self

    def _status_is_ours(self) -> bool:
        try:
            data = json.loads(self.status_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and data.get("pid") == self.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        status_ok = False
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise self._fail(f"pbx serve exited with {self.proc.returncode} during startup")
            status_ok = status_ok or self._status_is_ours()
            if status_ok and sip_options(self.bind, self.sip_port) is not None:
                return
            time.sleep(0.1)
        what = "OPTIONS answered" if status_ok else f"{self.status_path} with our pid"
        raise self._fail(f"pbx serve not ready after {timeout:g}s: no {what}")

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM by pid, wait, then SIGKILL; returns the exit status."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("pbx pid %d ignored SIGTERM for %gs; SIGKILL", proc.pid, timeout)
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(5)
        return proc.returncode

    def kill9(self) -> int | None:
        """SIGKILL by pid (crash simulation); returns the exit status (-9)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
        return proc.returncode

    def restart(self, timeout: float = 20.0) -> PbxServer:
        """stop() then start() on the same ports and data dir."""
        self.stop()
        return self.start(timeout)

    def close(self) -> None:
        """stop() and give the reserved ports back."""
        self.stop()
        self._ports.release()

    def __enter__(self) -> PbxServer:
        return self.start() if not self.running else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- CLI -----------------------------------------------------------------------------
    def cli(
        self, *args: str, check: bool = False, timeout: float = 30.0, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``python -m pbx <args> --data DIR``; text output captured."""
        cmd = [self.python, "-m", "pbx", *args, "--data", str(self.data_dir)]
        try:
            proc = subprocess.run(
                cmd,
                cwd=REPO_ROOT,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=timeout,
                input=input,
            )
        except subprocess.TimeoutExpired:
            raise self._fail(f"`pbx {' '.join(args)}` did not finish in {timeout:g}s") from None
        if check and proc.returncode != 0:
            raise self._fail(
                f"`pbx {' '.join(args)}` exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def status(self) -> dict[str, Any]:
        """``pbx status --json``."""
        proc = self.cli("status", "--json", check=True)
        try:
            data: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            raise self._fail(f"pbx status --json printed no JSON: {proc.stdout!r}") from None
        return data

    def add_user(self, ext: str, password: str, name: str | None = None) -> None:
        """``pbx user add EXT --password PW [--name NAME]``."""
        args = ["user", "add", ext, "--password", password]
        if name:
            args += ["--name", name]
        self.cli(*args, check=True)

    def registrations(self, extension: str | None = None) -> list[dict[str, Any]]:
        """Registrations from ``pbx status --json``, optionally for one extension."""
        regs: list[dict[str, Any]] = list(self.status().get("registrations", []))
        return [r for r in regs if extension is None or str(r.get("extension")) == extension]

    def wait_registered(self, extension: str, timeout: float = 10.0) -> dict[str, Any]:
        """Poll ``pbx status --json`` until extension has a registration."""
        deadline = time.monotonic() + timeout
        while True:
            regs = self.registrations(extension)
            if regs:
                return regs[0]
            if time.monotonic() > deadline:
                raise self._fail(f"{extension} not in pbx status registrations after {timeout:g}s")
            time.sleep(0.2)
