"""The registrars bench/register measures: pbx, and Kamailio in two set-ups, each on one core.

Owns starting a target on 127.0.0.1 with its users provisioned, knowing when it answers SIP,
its server pid (for CPU accounting), and stopping it by that pid:
  - "pbx": `python -m pbx user add` per user, then `python -m pbx serve` (status.json for lag);
  - "kamailio": bench/kamailio/registrar-memory.cfg, one shared password, usrloc in memory;
  - "kamailio-sqlite": bench/kamailio/registrar-sqlite.cfg, per-user HA1 in a SQLite
    subscriber table (auth_db) and bindings written through to SQLite (usrloc db_mode 1).
Also writes the SIPp injection file of a target's users. Stdlib only; must not import pbx
(pbx runs as a separate process, through its CLI) or anything under ../shared.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Protocol

from .proc_stats import LOOPBACK, free_udp_ports, pinned, stop_process, wait_until

log = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent.parent
REPO_ROOT = BENCH_DIR.parent
KAMAILIO_CFG_DIR = BENCH_DIR / "kamailio"
KAMAILIO_SQL_DIR = Path("/usr/share/kamailio/db_sqlite")
REALM = "pbx"  # pbx's default realm; the Kamailio configs use the same one
FIRST_EXTENSION = 10000


@dataclasses.dataclass(frozen=True, slots=True)
class User:
    """One SIP account: its extension (= digest username) and password."""

    extension: str
    password: str


def make_users(count: int, shared_password: str | None = None) -> list[User]:
    """``count`` users 10000, 10001, ... with random passwords (or all ``shared_password``)."""
    return [
        User(str(FIRST_EXTENSION + i), shared_password or secrets.token_hex(8))
        for i in range(count)
    ]


def write_injection_csv(path: Path, users: list[User]) -> Path:
    """SIPp -inf file: user;password;[authentication username=... password=...], in order."""
    lines = ["SEQUENTIAL"]
    lines += [
        f"{u.extension};{u.password};[authentication username={u.extension} password={u.password}]"
        for u in users
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def sip_answers(port: int, timeout: float = 0.5) -> bool:
    """True if 127.0.0.1:``port`` answers an OPTIONS over UDP with any response (RFC 3261 11)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        sock.settimeout(timeout)
        local = sock.getsockname()[1]
        tag = secrets.token_hex(4)
        request = (
            f"OPTIONS sip:{LOOPBACK}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {LOOPBACK}:{local};branch=z9hG4bK-bench-{tag};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:bench@{LOOPBACK}>;tag={tag}\r\n"
            f"To: <sip:{LOOPBACK}:{port}>\r\n"
            f"Call-ID: bench-ready-{tag}\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), (LOOPBACK, port))
        try:
            data, _ = sock.recvfrom(65535)
        except OSError:
            return False
        return data.startswith(b"SIP/2.0 ")


class Target(Protocol):
    """A registrar under test, started and stopped by bench/register."""

    name: str
    port: int
    users: list[User]
    status_file: Path | None  # pbx's run/status.json (loop lag); None for Kamailio

    @property
    def pid(self) -> int: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class _Process:
    """A server process we started: log file, readiness wait and stop by pid."""

    name: str
    port: int
    workdir: Path
    _proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        if self._proc is None:
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    @property
    def log_file(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def _spawn(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        log.info("starting %s: %s", self.name, " ".join(argv))
        with self.log_file.open("wb") as out:
            self._proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.workdir, env=env
            )

    def _wait_ready(self, timeout: float, extra: Path | None = None) -> None:
        proc = self._proc
        assert proc is not None

        def ready() -> bool:
            if proc.poll() is not None:
                return True  # exited: stop waiting, reported below
            return (extra is None or extra.exists()) and sip_answers(self.port)

        wait_until(ready, timeout, interval=0.2)
        if proc.poll() is not None or not sip_answers(self.port):
            tail = self.log_file.read_text(errors="replace")[-2000:]
            self.stop()
            raise RuntimeError(f"{self.name} did not come up on port {self.port}:\n{tail}")

    def stop(self) -> None:
        if self._proc is not None:
            stop_process(self._proc)
            self._proc = None


class KamailioTarget(_Process):
    """Kamailio 5.x as an authenticating registrar, in memory or written through to SQLite."""

    def __init__(
        self,
        name: str,
        workdir: Path,
        users: list[User],
        cpu: int,
        sqlite: bool,
        children: int | None = None,
        nice: int = 0,
    ):
        self.name, self.workdir, self.users, self.cpu = name, workdir, users, cpu
        self.sqlite, self.children, self.nice = sqlite, children, nice
        self.port = free_udp_ports(1)[0]
        self.status_file: Path | None = None
        self.db_file = workdir / f"{name}.sqlite"

    def _create_db(self) -> None:
        """Tables from the package's own schema files, one subscriber row per user."""
        self.db_file.unlink(missing_ok=True)
        con = sqlite3.connect(self.db_file)
        try:
            for sql in ("standard-create.sql", "auth_db-create.sql", "usrloc-create.sql"):
                con.executescript((KAMAILIO_SQL_DIR / sql).read_text())
            con.executemany(
                "INSERT INTO subscriber (username, domain, password, ha1, ha1b) VALUES (?,?,?,?,?)",
                [
                    (
                        u.extension,
                        REALM,
                        "",
                        _md5(f"{u.extension}:{REALM}:{u.password}"),
                        _md5(f"{u.extension}@{REALM}:{REALM}:{u.password}"),
                    )
                    for u in self.users
                ],
            )
            con.execute("PRAGMA journal_mode=WAL")
            con.commit()
        finally:
            con.close()

    def start(self) -> None:
        if self.sqlite:
            self._create_db()
            cfg = KAMAILIO_CFG_DIR / "registrar-sqlite.cfg"
            defines = [
                "-A",
                f'DBURL="sqlite:///{self.db_file}"',
                "-A",
                f'DBJOURNAL="{self.db_file}=WAL;"',
            ]
        else:
            passwords = {u.password for u in self.users}
            if len(passwords) != 1:
                raise ValueError("the in-memory Kamailio target needs one shared password")
            cfg = KAMAILIO_CFG_DIR / "registrar-memory.cfg"
            defines = ["-A", f'SHARED_PW="{passwords.pop()}"']
        argv = ["kamailio", "-DD", "-E", "-m", "256", "-M", "16", "-f", str(cfg)]
        if self.children is not None:
            defines += ["-A", f"CHILDREN={self.children}"]
        argv += ["-l", f"udp:{LOOPBACK}:{self.port}", "-w", str(self.workdir), *defines]
        self._spawn(pinned(self.cpu, argv, self.nice))
        self._wait_ready(timeout=15)


class PbxTarget(_Process):
    """pbx itself: users added through its CLI before `pbx serve` starts."""

    name = "pbx"

    def __init__(self, workdir: Path, users: list[User], cpu: int, python: str, nice: int = 0):
        self.workdir, self.users, self.cpu, self.python = workdir, users, cpu, python
        self.nice = nice
        self.data = workdir / "pbx-data"
        self.port, self.tls_port, self.http_port = free_udp_ports(3)
        self.status_file: Path | None = self.data / "run" / "status.json"

    def _pbx(self, *args: str) -> list[str]:
        return [self.python, "-m", "pbx", *args]

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def _check_python(self) -> None:
        """Fail early, with a hint, when ``self.python`` cannot import pbx and its dependencies."""
        probe = "import pbx.cli, pbx.commands, twisted, sqlite_utils"
        done = subprocess.run(
            [self.python, "-c", probe], env=self._env(), capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{self.python} cannot run pbx ({done.stderr.strip().splitlines()[-1:]}); "
                "pass --python with the interpreter of pbx's virtualenv"
            )

    def _auth_fields(self) -> set[str]:
        """Keys pbx's [auth] section accepts (to restrict digest to MD5 when it can)."""
        probe = "import dataclasses, pbx.config as c; print(*[f.name for f in dataclasses.fields(c.AuthConfig)])"
        out = subprocess.run(
            [self.python, "-c", probe], env=self._env(), capture_output=True, text=True, timeout=60
        )
        return set(out.stdout.split()) if out.returncode == 0 else set()

    def _write_site_config(self) -> None:
        """DATA/pbx.toml: the load comes from 127.0.0.1 (never banned) and logging at WARNING,
        like Kamailio's debug=1; MD5 only where pbx allows it, as SIPp 3.6 answers only the
        first challenge and only with MD5."""
        lines = ["[guard]", 'allowlist = ["127.0.0.0/8"]', "", "[log]", 'level = "WARNING"']
        if "algorithms" in self._auth_fields():
            lines += ["", "[auth]", 'algorithms = ["MD5"]']
        (self.data / "pbx.toml").write_text("\n".join(lines) + "\n")

    def _add_users(self) -> None:
        t0 = time.monotonic()
        for user in self.users:
            cmd = self._pbx("user", "add", user.extension, "--password", user.password)
            cmd += ["--data", str(self.data)]
            done = subprocess.run(
                cmd, env=self._env(), cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
            )
            if done.returncode != 0:
                raise RuntimeError(f"pbx user add {user.extension} failed: {done.stderr[-1000:]}")
        log.info("added %d pbx users in %.1f s", len(self.users), time.monotonic() - t0)

    def start(self) -> None:
        self._check_python()
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_site_config()
        self._add_users()
        argv = self._pbx("serve", "--data", str(self.data), "--bind", LOOPBACK)
        argv += ["--sip-port", str(self.port), "--tls-port", str(self.tls_port)]
        argv += ["--http-port", str(self.http_port)]
        self._spawn(pinned(self.cpu, argv, self.nice), env=self._env())
        self._wait_ready(timeout=60, extra=self.status_file)


def _md5(text: str) -> str:
    """Hex MD5 of ``text``: the HA1 form Kamailio's auth_db expects (RFC 2617 3.2.2.2)."""
    return hashlib.md5(text.encode()).hexdigest()
