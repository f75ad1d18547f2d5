"""One bounded SIPp load step and what it measured: calls, failures, rate, response time, CPU.

Owns the SIPp command line of a step (always -r, -m, -l and -timeout, so every step stops by
itself), reading SIPp's statistics file (-trace_stat, ';'-separated, cumulative "(C)" columns)
and the server's CPU time around the step. Stdlib only; must not import pbx or twisted.
"""

from __future__ import annotations

import csv
import logging
import math
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .proc_stats import (
    LOOPBACK,
    core_busy_seconds,
    cpu_seconds,
    pinned,
    stop_process,
    tree_cpu_seconds,
    udp_port_drops,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SippLoad:
    """What every step of one sweep shares: scenario, users, addresses, core and scratch dir."""

    scenario: Path
    injection_csv: Path
    server_port: int
    local_port: int
    gen_cpu: int
    server_cpu: int
    workdir: Path
    label: str
    grace: float = 20.0  # seconds SIPp may run after the last call is created (retransmissions)
    nice: int = 0
    limit: int | None = None  # SIPp -l (calls in flight); None: max(100, 2 x rate)
    extra_args: tuple[str, ...] = ()  # more SIPp options (bench/cps: -s, -d, -mp, -trace_rtt)


@dataclass(slots=True)
class StepResult:
    """Figures of one step (one SIPp run at one target rate)."""

    label: str
    rate: int
    duration: float
    calls: int
    created: int
    ok: int
    failed: int
    fail_pct: float
    retransmissions: int
    achieved_rate: float | None
    p99_ms: float | None  # upper edge of the response-time bucket holding the 99th percentile
    p99_bucket: str
    rtd_avg_ms: float | None
    server_cpu_s: float  # from SIPp start to SIPp exit
    server_cpu_pct: float  # while calls were being created
    gen_cpu_pct: float
    other_load_pct: float  # CPU used on the server's core by anything but the server
    server_drops: int  # datagrams the server's socket dropped (full receive buffer)
    sipp_drops: int  # datagrams SIPp's socket dropped
    wall_s: float
    sipp_rc: int | None
    cpu_s_per_1k: float | None = None
    lag_p99_ms: float | None = None
    lag_open_ended: bool = False
    passed: bool = False


def sipp_command(load: SippLoad, rate: int, calls: int, timeout_s: int, stats: Path) -> list[str]:
    """The SIPp argv of one bounded step, pinned to the generator core, loopback only."""
    return pinned(
        load.gen_cpu,
        [
            "sipp",
            f"{LOOPBACK}:{load.server_port}",
            "-sf",
            str(load.scenario),
            "-inf",
            str(load.injection_csv),
            "-i",
            LOOPBACK,
            "-p",
            str(load.local_port),
            "-r",
            str(rate),
            "-m",
            str(calls),
            "-l",
            str(load.limit or max(100, 2 * rate)),  # at most ~1 s of registrations in flight
            "-timeout",
            f"{timeout_s}s",
            "-timeout_error",
            "-nostdin",
            "-default_behaviors",
            "all,-bye",  # a failed registration is not followed by a BYE
            "-trace_stat",
            "-stf",
            str(stats),
            "-fd",
            "1",
            "-trace_err",
            "-error_file",
            str(stats.with_suffix(".errors")),
            "-max_log_size",
            "2000000",
            *load.extra_args,
        ],
        load.nice,
    )


def parse_duration(text: str) -> float | None:
    """SIPp's HH:MM:SS:micro (or :milli) durations, in seconds."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(p.isdigit() for p in parts):
        return None
    hours, minutes, seconds, frac = parts
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(frac) / 10.0 ** len(frac)


def _epoch(stamp: str) -> float | None:
    """SIPp's "date<TAB>time<TAB>epoch" time stamps: the epoch part."""
    try:
        return float(stamp.split("\t")[-1])
    except ValueError:
        return None


def read_stats(path: Path) -> list[dict[str, str]]:
    """Rows of a SIPp -trace_stat file (header row first), as dicts."""
    with path.open(newline="") as f:
        rows = list(csv.reader(f, delimiter=";"))
    if not rows:
        return []
    head = rows[0]
    return [dict(zip(head, r, strict=False)) for r in rows[1:] if len(r) >= len(head) - 1]


def creation_rate(rows: list[dict[str, str]], calls: int) -> float | None:
    """Calls created per second until the ``calls``-th was created (interpolated between rows).

    The last row's CallRate(C) would also count the time spent waiting for the last answers.
    """
    if not rows:
        return None
    start = _epoch(rows[0].get("StartTime", ""))
    prev_t, prev_c = 0.0, 0
    for row in rows:
        now = _epoch(row.get("CurrentTime", ""))
        created = int(row.get("OutgoingCall(C)") or 0)
        if now is None or start is None:
            continue
        t = now - start
        if created >= calls:
            if created == prev_c or t <= 0:
                return None
            t_end = prev_t + (calls - prev_c) / (created - prev_c) * (t - prev_t)
            return calls / t_end if t_end > 0 else None
        prev_t, prev_c = t, created
    return prev_c / prev_t if prev_t > 0 else None


def response_p99(row: dict[str, str]) -> tuple[float | None, str]:
    """(upper edge in ms, bucket label) of the rtd-1 bucket that holds the 99th percentile."""
    buckets = [
        (k.split("_", 1)[1], int(v))
        for k, v in row.items()
        if k.startswith("ResponseTimeRepartition1_") and v.strip().isdigit()
    ]
    total = sum(v for _, v in buckets)
    seen = 0
    for label, count in buckets:
        seen += count
        if total and seen >= 0.99 * total:
            edge = math.inf if label.startswith(">") else float(label.lstrip("<"))
            return edge, label
    return None, "-"


@dataclass(slots=True)
class _SippWatch:
    """What is read from SIPp's process while it lives (its /proc entries go away with it)."""

    drops: int = 0  # highest drop count of its socket seen
    cpu_s: float = 0.0  # its CPU time at the last look

    def follow(self, proc: subprocess.Popen[bytes], port: int, until: float) -> None:
        """Poll until ``until`` (monotonic) or SIPp's exit."""
        while proc.poll() is None and time.monotonic() < until:
            self.drops = max(self.drops, udp_port_drops(port))
            self.cpu_s = max(self.cpu_s, cpu_seconds([proc.pid]))
            time.sleep(0.25)


def run_step(load: SippLoad, rate: int, duration: float, server_pid: int) -> StepResult:
    """Offer ``rate`` registrations/s for ``duration`` s and measure the server (``server_pid``)."""
    calls = max(1, int(rate * duration))
    stats = load.workdir / f"{load.label}_r{rate}.csv"
    stats.unlink(missing_ok=True)
    timeout_s = int(math.ceil(duration + load.grace))
    argv = sipp_command(load, rate, calls, timeout_s, stats)
    with (load.workdir / f"{load.label}_r{rate}.stderr").open("wb") as err:
        cpu0 = tree_cpu_seconds(server_pid)
        core0 = core_busy_seconds(load.server_cpu)
        srv_drops0 = udp_port_drops(load.server_port)
        t0 = time.monotonic()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=err, cwd=load.workdir)
        try:
            sipp = _SippWatch()
            sipp.follow(proc, load.local_port, t0 + duration)
            window = time.monotonic() - t0
            cpu_win = tree_cpu_seconds(server_pid) - cpu0
            core_win = core_busy_seconds(load.server_cpu) - core0
            gen_win = sipp.cpu_s
            sipp.follow(proc, load.local_port, t0 + timeout_s + 30)
        finally:
            rc = stop_process(proc)
        cpu_all = tree_cpu_seconds(server_pid) - cpu0
        srv_drops = udp_port_drops(load.server_port) - srv_drops0
        wall = time.monotonic() - t0
    rows = read_stats(stats) if stats.exists() else []
    last = rows[-1] if rows else {}
    ok = int(last.get("SuccessfulCall(C)") or 0)
    rtd = parse_duration(last.get("ResponseTime1(C)", ""))
    p99, bucket = response_p99(last)
    achieved = creation_rate(rows, calls)
    return StepResult(
        label=load.label,
        rate=rate,
        duration=duration,
        calls=calls,
        created=int(last.get("OutgoingCall(C)") or 0),
        ok=ok,
        failed=int(last.get("FailedCall(C)") or 0),
        fail_pct=round(100.0 * (calls - ok) / calls, 3),
        retransmissions=int(last.get("Retransmissions(C)") or 0),
        achieved_rate=None if achieved is None else round(achieved, 1),
        p99_ms=p99,
        p99_bucket=bucket,
        rtd_avg_ms=None if rtd is None else round(rtd * 1000, 3),
        server_cpu_s=round(cpu_all, 3),
        server_cpu_pct=round(100 * cpu_win / window, 1),
        gen_cpu_pct=round(100 * gen_win / window, 1),
        other_load_pct=round(max(0.0, 100 * (core_win - cpu_win) / window), 1),
        server_drops=srv_drops,
        sipp_drops=sipp.drops,
        wall_s=round(wall, 1),
        sipp_rc=rc,
        cpu_s_per_1k=round(1000 * cpu_all / ok, 4) if ok else None,
    )


def judge(step: StepResult, max_fail_pct: float, max_p99_ms: float, min_achieved: float) -> bool:
    """A step passes with < max_fail_pct % failed, p99 <= max_p99_ms and the rate really offered."""
    return (
        step.fail_pct < max_fail_pct
        and step.p99_ms is not None
        and step.p99_ms <= max_p99_ms
        and step.achieved_rate is not None
        and step.achieved_rate >= min_achieved * step.rate
    )
