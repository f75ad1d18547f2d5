"""The call servers bench/cps, bench/media and bench/hold measure, and the SIPp callee they call.

Owns starting each server on 127.0.0.1 pinned to one core, knowing when it is up, its pid (for
CPU and memory) and stopping it by that pid:
  - "pbx": users imported with `pbx user import`, the callee extension pointed at the SIPp
    callee (a static contact where `pbx user add --contact` exists, else one SIPp REGISTER),
    `pbx serve` with a private RTP range; media anchored, SDP rewritten, digest auth (MD5);
  - "sippy": sippy's b2bua_simple (pure-Python B2BUA; SDP passed through, no media, no auth);
  - "kamailio": bench/kamailio/proxy.cfg, a tm stateful record-routing proxy (no media, no auth);
  - "rtpengine": rtpengine in userspace mode (--table=-1) on the server core, driven by the
    same Kamailio proxy (-A WITH_RTPENGINE) on the generator core (signalling is light there).
Also :class:`Callee`, the SIPp UAS every call ends at. Stdlib only; must not import pbx (it runs
as a separate process, through its CLI) or anything under ../shared.
"""

from __future__ import annotations

import logging
import os
import resource
import secrets
import socket
import subprocess
from pathlib import Path
from typing import Protocol

from .proc_stats import LOOPBACK, free_udp_port, pinned, stop_process, wait_until
from .reg_targets import BENCH_DIR, REPO_ROOT, PbxTarget, User, _Process

log = logging.getLogger(__name__)

SCENARIOS = BENCH_DIR / "scenarios"
CALLEE_EXTENSION = "20000"
RTP_RANGE = (10000, 29999)  # below the kernel's ephemeral ports, where the bench's SIP ports are
SIPPY_VENV = Path(os.environ.get("SIPPY_VENV", "/tmp/sippyvenv"))


class CallTarget(Protocol):
    """A call server under test."""

    name: str
    port: int
    status_file: Path | None
    auth: bool  # the caller must answer a digest challenge
    users: list[User]  # the callers it authenticates (none for the peers)

    @property
    def pid(self) -> int: ...

    def prepare(self, callee_port: int) -> None: ...

    def start(self) -> None: ...

    def after_start(self) -> None: ...

    def stop(self) -> None: ...


def raise_open_files(wanted: int = 65536) -> int:
    """Raise this process's RLIMIT_NOFILE (inherited by every server and SIPp it starts) so
    thousands of media sockets fit; root may also raise the hard limit. The new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for limits in ((wanted, max(wanted, hard)), (min(wanted, hard), hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, limits)
            return limits[0]
        except (ValueError, OSError):
            continue
    return soft


def free_port_block(size: int = 4) -> int:
    """A loopback UDP port p with p..p+size-1 all free a moment ago (SIPp's media port and the
    +2 port -rtp_echo also serves)."""
    for _ in range(200):
        base = free_udp_port()
        if base + size > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind((LOOPBACK, port))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no block of free UDP ports")


def udp_bound(port: int) -> bool:
    """True when some socket is bound to 127.0.0.1:``port`` or 0.0.0.0:``port`` (UDP)."""
    wanted = {f"0100007F:{port:04X}", f"00000000:{port:04X}"}
    text = Path("/proc/net/udp").read_text()
    return any(line.split()[1] in wanted for line in text.splitlines()[1:] if line.strip())


class Callee:
    """The SIPp UAS (bench/scenarios/uas_call.xml) on the generator core; exits by -timeout."""

    def __init__(self, workdir: Path, cpu: int, nice: int = 0, rtp_echo: bool = False) -> None:
        self.workdir, self.cpu, self.nice, self.rtp_echo = workdir, cpu, nice, rtp_echo
        self.port = free_udp_port()
        self.media_port = free_port_block()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("the callee is not running")
        return self._proc.pid

    def start(self, seconds: int) -> None:
        argv = ["sipp", "-sf", str(SCENARIOS / "uas_call.xml"), "-i", LOOPBACK]
        argv += ["-p", str(self.port), "-mi", LOOPBACK, "-mp", str(self.media_port)]
        argv += ["-timeout", f"{seconds}s", "-nostdin", "-trace_err"]
        argv += ["-error_file", str(self.workdir / "callee.errors"), "-max_log_size", "2000000"]
        if self.rtp_echo:
            argv.append("-rtp_echo")
        log.info("starting the callee: %s", " ".join(argv))
        with (self.workdir / "callee.stderr").open("wb") as err:
            self._proc = subprocess.Popen(
                pinned(self.cpu, argv, self.nice),
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.workdir,
            )
        if not wait_until(lambda: udp_bound(self.port), 10) or self._proc.poll() is not None:
            raise RuntimeError(f"the SIPp callee did not start: see {self.workdir}/callee.stderr")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


class PbxCallTarget(PbxTarget):
    """pbx with callers 10000.. and the callee extension 20000 pointed at the SIPp callee."""

    auth = True

    def __init__(
        self,
        workdir: Path,
        users: list[User],
        cpu: int,
        python: str,
        nice: int = 0,
        media_timeout: int | None = None,
    ) -> None:
        super().__init__(workdir, users, cpu, python, nice)
        self.callee = User(CALLEE_EXTENSION, secrets.token_hex(8))
        self.media_timeout = media_timeout
        self._callee_port: int | None = None

    def _write_site_config(self) -> None:
        super()._write_site_config()
        if self.media_timeout is not None:  # calls held without RTP must not be cleared
            with (self.data / "pbx.toml").open("a") as f:
                f.write(f"\n[calls]\nmedia_timeout = {self.media_timeout}\n")

    def _run_cli(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*self._pbx(*args), "--data", str(self.data)],
            env=self._env(),
            cwd=REPO_ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pbx {' '.join(args)} failed: {done.stderr[-1000:]}")
        return done

    def _import(self, users: list[User]) -> None:
        """``pbx user import`` of ``users`` (rows extension,password): one process for all."""
        csv_file = self.workdir / "pbx-users.csv"
        csv_file.write_text("".join(f"{u.extension},{u.password}\n" for u in users))
        self._run_cli("user", "import", str(csv_file))

    def _static_contact(self) -> bool:
        """True when this pbx has `user add --contact` (a callee needs no REGISTER)."""
        help_text = subprocess.run(
            self._pbx("user", "add", "--help"),
            env=self._env(),
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return "--contact" in help_text

    def prepare(self, callee_port: int) -> None:
        """Data dir, site config, users; the callee's static contact when pbx supports it."""
        self._check_python()
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_site_config()
        self._callee_port = callee_port
        if self._static_contact():
            self._import(self.users)
            contact = f"sip:{CALLEE_EXTENSION}@{LOOPBACK}:{callee_port}"
            pw = self.callee.password
            self._run_cli("user", "add", CALLEE_EXTENSION, "--password", pw, "--contact", contact)
            self._callee_port = None  # nothing left to do after start
        else:
            self._import([*self.users, self.callee])

    def start(self) -> None:
        argv = self._pbx("serve", "--data", str(self.data), "--bind", LOOPBACK)
        argv += ["--sip-port", str(self.port), "--tls-port", str(self.tls_port)]
        argv += [
            "--http-port",
            str(self.http_port),
            "--rtp-ports",
            f"{RTP_RANGE[0]}-{RTP_RANGE[1]}",
        ]
        self._spawn(pinned(self.cpu, argv, self.nice), env=self._env())
        self._wait_ready(timeout=60, extra=self.status_file)

    def after_start(self) -> None:
        """Register the callee's address (one SIPp REGISTER from its port) when pbx has no
        static contacts; run before the callee SIPp binds that port."""
        if self._callee_port is None:
            return
        inf = self.workdir / "callee-register.csv"
        auth = f"[authentication username={self.callee.extension} password={self.callee.password}]"
        inf.write_text(f"SEQUENTIAL\n{self.callee.extension};{self.callee.password};{auth}\n")
        argv = ["sipp", f"{LOOPBACK}:{self.port}", "-sf", str(SCENARIOS / "register_digest.xml")]
        argv += ["-inf", str(inf), "-i", LOOPBACK, "-p", str(self._callee_port), "-m", "1"]
        argv += ["-timeout", "10s", "-timeout_error", "-nostdin"]
        done = subprocess.run(argv, cwd=self.workdir, capture_output=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"the callee's REGISTER failed (SIPp exit {done.returncode})")


class SippyTarget(_Process):
    """sippy 2.5 b2bua_simple: every INVITE goes to the callee; SDP passed through unchanged."""

    name = "sippy"
    auth = False
    status_file: Path | None = None

    def __init__(self, workdir: Path, cpu: int, nice: int = 0) -> None:
        self.workdir, self.cpu, self.nice = workdir, cpu, nice
        self.port = free_udp_port()
        self.users: list[User] = []
        self._callee_port = 0

    def prepare(self, callee_port: int) -> None:
        binary = SIPPY_VENV / "bin" / "b2bua_simple"
        if not binary.exists():
            raise RuntimeError(
                f"{binary} missing: python3 -m venv {SIPPY_VENV} && "
                f"{SIPPY_VENV}/bin/pip install sippy==2.5.0 (or set $SIPPY_VENV)"
            )
        self._callee_port = callee_port

    def start(self) -> None:
        argv = [
            str(SIPPY_VENV / "bin" / "b2bua_simple"),
            "-f",
            "-l",
            LOOPBACK,
            "-p",
            str(self.port),
        ]
        argv += ["-n", f"{LOOPBACK}:{self._callee_port}", "-L", str(self.workdir / "sippy.siplog")]
        env = dict(os.environ, SIPLOG_LVL="WARN")  # it logs every message at INFO otherwise
        self._spawn(pinned(self.cpu, argv, self.nice), env=env)
        proc = self._proc
        assert proc is not None
        wait_until(lambda: proc.poll() is not None or udp_bound(self.port), 15)
        if proc.poll() is not None:
            raise RuntimeError(f"sippy did not start: {self.log_file.read_text()[-1500:]}")

    def after_start(self) -> None:
        return None


class KamailioProxyTarget(_Process):
    """Kamailio 5.6 as a tm stateful proxy towards the callee (bench/kamailio/proxy.cfg)."""

    name = "kamailio"
    auth = False
    status_file: Path | None = None

    def __init__(self, workdir: Path, cpu: int, nice: int = 0, children: int = 1) -> None:
        self.workdir, self.cpu, self.nice, self.children = workdir, cpu, nice, children
        self.port = free_udp_port()
        self.users: list[User] = []
        self.defines: list[str] = []
        self._callee_port = 0

    def prepare(self, callee_port: int) -> None:
        self._callee_port = callee_port

    def start(self) -> None:
        cfg = BENCH_DIR / "kamailio" / "proxy.cfg"
        argv = ["kamailio", "-DD", "-E", "-m", "512", "-M", "16", "-f", str(cfg)]
        argv += ["-l", f"udp:{LOOPBACK}:{self.port}", "-w", str(self.workdir)]
        argv += ["-A", f"CHILDREN={self.children}"]
        argv += ["-A", f'UAS="sip:{LOOPBACK}:{self._callee_port}"', *self.defines]
        self._spawn(pinned(self.cpu, argv, self.nice))
        self._wait_ready(timeout=15)

    def after_start(self) -> None:
        return None


class RtpengineTarget:
    """rtpengine 10.x in userspace mode on the server core; Kamailio (WITH_RTPENGINE) on the
    generator core sends it the offers and answers. ``pid`` is rtpengine's: it is measured."""

    name = "rtpengine"
    auth = False
    status_file: Path | None = None

    def __init__(self, workdir: Path, cpu: int, gen_cpu: int, nice: int = 0) -> None:
        self.workdir, self.cpu, self.nice = workdir, cpu, nice
        self.ng_port = free_udp_port()
        self.proxy = KamailioProxyTarget(workdir, gen_cpu, nice)
        self.proxy.name = "kamailio-rtpengine"
        self.proxy.defines = [
            "-A",
            "WITH_RTPENGINE",
            "-A",
            f'RTPENGINE_SOCK="udp:{LOOPBACK}:{self.ng_port}"',
        ]
        self.port = self.proxy.port
        self.users: list[User] = []
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError("rtpengine is not running")
        return self._proc.pid

    def prepare(self, callee_port: int) -> None:
        self.proxy.prepare(callee_port)

    def start(self) -> None:
        argv = ["rtpengine", "--foreground", "--log-stderr", "--log-level=4", "--table=-1"]
        argv += [f"--interface={LOOPBACK}", f"--listen-ng={LOOPBACK}:{self.ng_port}"]
        argv += [f"--port-min={RTP_RANGE[0]}", f"--port-max={RTP_RANGE[1]}"]
        argv += ["--num-threads=2", "--timeout=120"]
        log.info("starting rtpengine: %s", " ".join(argv))
        with (self.workdir / "rtpengine.log").open("wb") as out:
            self._proc = subprocess.Popen(
                pinned(self.cpu, argv, self.nice), stdout=out, stderr=subprocess.STDOUT
            )
        proc = self._proc
        wait_until(lambda: proc.poll() is not None or udp_bound(self.ng_port), 15)
        if proc.poll() is not None:
            log_text = (self.workdir / "rtpengine.log").read_text(errors="replace")
            raise RuntimeError(f"rtpengine did not start: {log_text[-1500:]}")
        self.proxy.start()

    def after_start(self) -> None:
        return None

    def stop(self) -> None:
        self.proxy.stop()
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


def rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` (VmRSS of /proc/PID/status), kB; 0 when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def open_fds(pid: int) -> int:
    """Open file descriptors of ``pid`` (sockets included)."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0
