"""SIPp driver for interop tests and benchmarks.

Owns: building a bounded SIPp command line (always -timeout, -nostdin, an explicit control port,
an explicit media port, 127.0.0.x only), running it blocking or in the background in its own
work directory, stopping it by pid, and parsing its final statistics (stat CSV + per-message
counts CSV + the screen dump) into :class:`SippResult`. Also writes injection CSV files.

SIPp writes its trace files next to the scenario, so each run copies its scenario into a fresh
work directory and runs there. Scenarios live in ``tests/interop/scenarios``.

Exit codes (SIPp 3.6): 0 all calls successful, 1 at least one failed, 97 exit on internal
command, 99 normal exit without calls processed, 255 fatal error or global timeout reached
(-timeout_error is always set), 254 cannot bind a socket.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import csv
import itertools
import logging
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import ports
from .procs import stop_process

log = logging.getLogger(__name__)

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
SIPP_BIN = "sipp"
_seq = itertools.count(1)


class SippError(RuntimeError):
    """SIPp could not start, or did not finish in time; the message holds its log tail."""


def scenario_path(name: str) -> Path:
    """Path of a scenario shipped in tests/interop/scenarios ("reg_auth" or "reg_auth.xml")."""
    path = SCENARIO_DIR / (name if name.endswith(".xml") else f"{name}.xml")
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def write_injection_csv(
    path: Path, rows: Iterable[Sequence[str]], mode: str = "SEQUENTIAL"
) -> Path:
    """Write a SIPp -inf file: first line the read mode, then one ';'-joined row per call."""
    lines = [mode] + [";".join(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def write_users_csv(path: Path, users: Iterable[tuple[str, str]], mode: str = "SEQUENTIAL") -> Path:
    """Users file for the reg_* scenarios: field0 user, field1 password, field2 auth keyword.

    SIPp 3.6 does not expand ``[field0]`` inside ``[authentication ...]`` (checked: it sends
    ``username=`` empty), so the whole keyword is field2 and the scenarios use ``[field2]``.
    """
    rows = [(u, p, f"[authentication username={u} password={p}]") for u, p in users]
    return write_injection_csv(path, rows, mode)


@dataclass
class SippResult:
    """Final (or latest) statistics of one SIPp run."""

    returncode: int | None
    successful: int
    failed: int
    created: int
    stats: dict[str, str] = field(default_factory=dict)  # last row of the stat CSV
    counts: dict[str, int] = field(default_factory=dict)  # e.g. {"5_200_Recv": 1, ...}
    workdir: Path | None = None
    log_tail: str = ""

    @property
    def timed_out(self) -> bool:
        """SIPp hit its global -timeout (it exits with 255 and logs "timed out")."""
        return self.returncode == 255 and "timed out" in self.log_tail

    @property
    def ok(self) -> bool:
        """Every call succeeded and at least one did."""
        return self.returncode == 0 and self.failed == 0 and self.successful > 0

    def count(self, message: str, what: str) -> int:
        """Sum of the counts of message (e.g. "200", "REGISTER") for what (Sent, Recv,
        Retrans, Timeout, Unexp) over every scenario step."""
        total = 0
        for key, value in self.counts.items():
            parts = key.split("_")
            if len(parts) >= 3 and parts[-1] == what and "_".join(parts[1:-1]) == message:
                total += value
        return total


def _last_csv_row(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    with path.open(newline="", encoding="latin-1") as fh:
        rows = list(csv.reader(fh, delimiter=";"))
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {name: value for name, value in zip(header, last, strict=False) if name}


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError:
        return 0


def _tail(path: Path, lines: int = 30) -> str:
    if not path.is_file():
        return ""
    text = path.read_text(encoding="latin-1", errors="replace").splitlines()
    return "\n".join(text[-lines:])


class Sipp:
    """One SIPp process. Construct, then run() (blocking) or start() ... stop()/wait().

    remote is None for a server (UAS) scenario; local_port None reserves a free one (read it
    back from .local_port). Every run is bounded: SIPp exits with status 255 at timeout_s
    (-timeout_error) and wait() kills it 5 s later at the latest.
    """

    def __init__(
        self,
        scenario: str | Path,
        workdir: Path,
        *,
        remote: tuple[str, int] | None = None,
        local_ip: str = "127.0.0.1",
        local_port: int | None = None,
        transport: str = "u1",
        calls: int | None = None,
        rate: float | None = None,
        limit: int | None = None,
        timeout_s: float = 30.0,
        inf: Sequence[Path] = (),
        variables: Mapping[str, str] | None = None,
        service: str | None = None,
        default_behaviors: str = "abortunexp,pingreply",
        trace_msg: bool = True,
        extra_args: Sequence[str] = (),
        name: str | None = None,
    ) -> None:
        if not local_ip.startswith("127."):
            raise ValueError("interop tests use 127.0.0.0/8 only")
        src = Path(scenario) if Path(scenario).is_file() else scenario_path(str(scenario))
        self.name = name or f"{src.stem}-{next(_seq)}"
        self.workdir = Path(workdir) / self.name
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.scenario = Path(shutil.copy(src, self.workdir / src.name))
        self.remote = remote
        self.local_ip = local_ip
        self._ports = ports.Reservation()
        # SIPp's own default is 5060 when free: always give it a reserved port instead
        self.local_port = self._ports.port() if local_port is None else local_port
        self.transport = transport
        self.timeout_s = timeout_s
        self.control_port = self._ports.port()
        self.media_port = self._ports.block(4)[0]
        self._args = self._build_args(
            calls, rate, limit, inf, variables or {}, service, default_behaviors, trace_msg
        )
        self._args += list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None
        self._started_at = 0.0

    def _build_args(
        self,
        calls: int | None,
        rate: float | None,
        limit: int | None,
        inf: Sequence[Path],
        variables: Mapping[str, str],
        service: str | None,
        default_behaviors: str,
        trace_msg: bool,
    ) -> list[str]:
        args = [SIPP_BIN]
        if self.remote is not None:
            host, port = self.remote
            if not host.startswith("127."):
                raise ValueError("interop tests use 127.0.0.0/8 only")
            args.append(f"{host}:{port}")
        args += ["-sf", self.scenario.name, "-i", self.local_ip, "-t", self.transport]
        args += ["-p", str(self.local_port)]
        args += ["-cp", str(self.control_port), "-mi", self.local_ip, "-mp", str(self.media_port)]
        # -timeout_error: exit (status 255, "timed out" in errors.log) at the global timeout
        # even with calls still retransmitting; without it SIPp waits for them (up to 32 s).
        args += ["-nostdin", "-timeout", f"{self.timeout_s:g}s", "-timeout_error"]
        for flag, number in (("-m", calls), ("-r", rate), ("-l", limit)):
            if number is not None:
                args += [flag, f"{number:g}"]
        for path in inf:
            args += ["-inf", str(Path(path).resolve())]
        for key, value in variables.items():
            args += ["-set", key, value]
        if service is not None:
            args += ["-s", service]
        args += ["-default_behaviors", default_behaviors]
        args += ["-trace_stat", "-stf", "stat.csv", "-fd", "1", "-trace_counts"]
        args += ["-trace_screen", "-screen_file", "screen.log"]
        args += ["-trace_err", "-error_file", "errors.log"]
        if trace_msg:
            args += ["-trace_msg", "-message_file", "messages.log"]
        return args

    @property
    def args(self) -> list[str]:
        return list(self._args)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, ready_timeout: float = 5.0) -> Sipp:
        """Start in the background; for a fixed local port, wait until SIPp has bound it."""
        log.info("sipp %s: %s", self.name, " ".join(self._args))
        with (self.workdir / "stdout.log").open("wb") as out:
            self.proc = subprocess.Popen(
                self._args,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._started_at = time.monotonic()
        self._wait_bound(ready_timeout)
        return self

    def _wait_bound(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        kind = socket.SOCK_STREAM if self.transport.startswith("t") else socket.SOCK_DGRAM
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                if self.remote is not None and self.proc.returncode in (0, 1):
                    return  # a short client run may already be over
                raise SippError(f"sipp {self.name} exited at start:\n{self.log_tail()}")
            if self._port_taken(kind):
                return
            time.sleep(0.05)
        raise SippError(f"sipp {self.name} did not bind {self.local_port}:\n{self.log_tail()}")

    def _port_taken(self, kind: int) -> bool:
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind((self.local_ip, self.local_port))
        except OSError:
            return True
        finally:
            s.close()
        return False

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to finish by itself; on timeout stop it and raise SippError."""
        if self.proc is None:
            raise SippError("sipp not started")
        budget = timeout if timeout is not None else self.timeout_s + 5.0
        remaining = budget - (time.monotonic() - self._started_at)
        try:
            self.proc.wait(timeout=max(remaining, 0.1))
        except subprocess.TimeoutExpired:
            self.stop()
            raise SippError(
                f"sipp {self.name} still running after {budget:g}s; stopped:\n{self.log_tail()}"
            ) from None
        return self.result()

    def run(self) -> SippResult:
        """start() then wait(): a blocking, bounded run."""
        return self.start().wait()

    def stop(self, grace: float = 3.0) -> SippResult:
        """SIGTERM (SIPp then writes its final statistics), then SIGKILL; by pid only."""
        stop_process(self.proc, grace)
        self._ports.release()
        return self.result()

    def result(self) -> SippResult:
        """Latest statistics (final once the process has exited; refreshed every second)."""
        stats = _last_csv_row(self.workdir / "stat.csv")
        counts_files = sorted(self.workdir.glob("*_counts.csv"))
        raw = _last_csv_row(counts_files[-1]) if counts_files else {}
        counts = {k: _int(v) for k, v in raw.items() if k not in ("CurrentTime", "ElapsedTime")}
        return SippResult(
            returncode=self.proc.poll() if self.proc else None,
            successful=_int(stats.get("SuccessfulCall(C)")),
            failed=_int(stats.get("FailedCall(C)")),
            created=_int(stats.get("TotalCallCreated")),
            stats=stats,
            counts=counts,
            workdir=self.workdir,
            log_tail=self.log_tail(),
        )

    def log_tail(self, lines: int = 30) -> str:
        """Tail of SIPp's error log and console output, for failure messages."""
        parts = []
        for name in ("errors.log", "stdout.log"):
            tail = _tail(self.workdir / name, lines)
            if tail:
                parts.append(f"--- {name} ---\n{tail}")
        return "\n".join(parts)

    def __enter__(self) -> Sipp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
