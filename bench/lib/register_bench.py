"""bench/register: REGISTER-with-digest-auth capacity of pbx against Kamailio, on one core each.

Owns the command line, the sweep over rising rates, the per-target summary (highest passing
rate, server CPU seconds per 1,000 registrations, pbx's reactor loop-lag p99) and the pbx /
Kamailio ratios. A step passes with < 1 % failed registrations, the 99th-percentile registration
time <= 500 ms (T1, RFC 3261 17.1.1.1) and >= 95 % of the target rate actually offered.
Stdlib only; must not import pbx (it runs as a separate process) or anything under ../shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import loop_lag
from .proc_stats import free_udp_ports, set_autogroup_nice, tree_cpu_seconds
from .reg_targets import (
    BENCH_DIR,
    KamailioTarget,
    PbxTarget,
    Target,
    make_users,
    write_injection_csv,
)
from .sipp_step import SippLoad, StepResult, judge, run_step

log = logging.getLogger(__name__)

TARGETS = ("pbx", "kamailio", "kamailio-sqlite")
DEFAULT_RATES = "100,200,400,700,1000,1500,2000,3000,4000,5000,6000,7000,8000,10000,12000"
QUICK_RATES = "50,200"
SCENARIO = BENCH_DIR / "scenarios" / "register_digest.xml"
SHARED_PASSWORD = "bench-shared-secret"


@dataclass(slots=True)
class TargetRun:
    """All steps of one target and the best one."""

    name: str
    steps: list[StepResult] = field(default_factory=list)
    error: str | None = None
    idle_cpu_pct: float | None = None  # the server's own CPU use with no load

    @property
    def best(self) -> StepResult | None:
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.rate) if passed else None

    def at_rate(self, rate: int) -> StepResult | None:
        return next((s for s in self.steps if s.rate == rate), None)

    def passed_at(self, rate: int) -> bool:
        step = self.at_rate(rate)
        return step is not None and step.passed

    def cpu_at(self, rate: int) -> float | None:
        step = self.at_rate(rate)
        return None if step is None else step.cpu_s_per_1k


def default_python() -> str:
    """$PBX_PYTHON, else the checkout's .venv interpreter, else the one running this script."""
    venv = BENCH_DIR.parent / ".venv" / "bin" / "python"
    return os.environ.get("PBX_PYTHON") or (str(venv) if venv.exists() else sys.executable)


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/register",
        description="SIPp REGISTER (401 + digest) load against pbx and Kamailio, rising rates.",
    )
    ap.add_argument("--rates", help=f"comma-separated registrations/s (default {DEFAULT_RATES})")
    ap.add_argument("--duration", type=float, help="seconds per step (default 30)")
    ap.add_argument("--users", type=int, help="registering users (default 100; --quick: 10)")
    ap.add_argument("--only", choices=TARGETS, action="append", help="measure only this target")
    ap.add_argument("--quick", action="store_true", help=f"5 s steps at {QUICK_RATES}/s (smoke)")
    ap.add_argument(
        "--python",
        default=default_python(),
        help="interpreter that runs pbx (default $PBX_PYTHON, else .venv/bin/python, else this one)",
    )
    ap.add_argument("--server-cpu", type=int, default=0, help="core of the server under test")
    ap.add_argument("--gen-cpu", type=int, default=1, help="core of SIPp")
    ap.add_argument(
        "--kamailio-children",
        type=int,
        help="Kamailio SIP worker processes (default 1: the best on one core)",
    )
    ap.add_argument(
        "--nice",
        type=int,
        default=0,
        help="run the server and SIPp (and this session's autogroup) at this niceness, "
        "e.g. -10 on a busy machine (needs root)",
    )
    ap.add_argument("--pause", type=float, help="seconds between steps (default 3)")
    ap.add_argument("--keep-going", action="store_true", help="run every rate even after a fail")
    ap.add_argument(
        "--retries",
        type=int,
        default=1,
        help="re-run a failed step this many times before the sweep stops (default 1)",
    )
    ap.add_argument("--max-fail-pct", type=float, default=1.0)
    ap.add_argument("--max-p99-ms", type=float, default=500.0)
    ap.add_argument("--min-achieved", type=float, default=0.95)
    ap.add_argument(
        "--workdir",
        type=Path,
        help="scratch dir for logs and both servers' SQLite files (default: a new dir in /dev/shm)",
    )
    ap.add_argument("--out", type=Path, help="also write all results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.rates = [
        int(r) for r in (args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)).split(",")
    ]
    args.duration = args.duration or (5.0 if args.quick else 30.0)
    args.users = args.users or (10 if args.quick else 100)
    args.pause = args.pause if args.pause is not None else (1.0 if args.quick else 3.0)
    args.only = args.only or list(TARGETS)
    return args


def build_target(name: str, workdir: Path, args: argparse.Namespace) -> Target:
    if name == "pbx":
        return PbxTarget(workdir, make_users(args.users), args.server_cpu, args.python, args.nice)
    if name == "kamailio":
        users = make_users(args.users, SHARED_PASSWORD)
        return KamailioTarget(
            name,
            workdir,
            users,
            args.server_cpu,
            sqlite=False,
            children=args.kamailio_children,
            nice=args.nice,
        )
    users = make_users(args.users)
    return KamailioTarget(
        name,
        workdir,
        users,
        args.server_cpu,
        sqlite=True,
        children=args.kamailio_children,
        nice=args.nice,
    )


def _fmt(value: object, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.{digits}f}"
    return str(value)


STEP_COLUMNS = (
    ("rate", 7),
    ("achieved", 9),
    ("ok", 8),
    ("fail%", 7),
    ("retrans", 8),
    ("p99", 8),
    ("avg_ms", 8),
    ("srv_cpu%", 9),
    ("cpu_s/1k", 9),
    ("lag_p99", 8),
    ("other%", 7),
    ("gen%", 6),
    ("drops", 13),
    ("pass", 5),
)


def step_row(s: StepResult) -> str:
    lag = "-" if s.lag_p99_ms is None else (">=" if s.lag_open_ended else "") + _fmt(s.lag_p99_ms)
    cells = (
        s.rate,
        _fmt(s.achieved_rate),
        s.ok,
        _fmt(s.fail_pct, 2),
        s.retransmissions,
        s.p99_bucket + "ms",
        _fmt(s.rtd_avg_ms, 2),
        _fmt(s.server_cpu_pct),
        _fmt(s.cpu_s_per_1k, 3),
        lag,
        _fmt(s.other_load_pct),
        _fmt(s.gen_cpu_pct),
        f"{s.server_drops}/{s.sipp_drops}",
        "yes" if s.passed else "NO",
    )
    return " ".join(str(c).rjust(w) for c, (_, w) in zip(cells, STEP_COLUMNS, strict=True))


def measure_step(load: SippLoad, target: Target, rate: int, args: argparse.Namespace) -> StepResult:
    """One step, with pbx's loop lag over it when the target publishes status.json."""
    before = loop_lag.read_snapshot(target.status_file) if target.status_file else None
    step = run_step(load, rate, args.duration, target.pid)
    if target.status_file and before is not None:
        after = loop_lag.fresh_snapshot(target.status_file, after=time.time())
        if after is not None:
            lag = loop_lag.summarize(before, after)
            step.lag_p99_ms, step.lag_open_ended = lag.p99_ms, lag.open_ended
    step.passed = judge(step, args.max_fail_pct, args.max_p99_ms, args.min_achieved)
    return step


def smoke_check(load: SippLoad, target: Target) -> None:
    """A few registrations before the sweep: fail early, with SIPp's reason, if auth is broken."""
    step = run_step(load, 10, 0.5, target.pid)
    if step.ok == 0:
        errors = load.workdir / f"{load.label}_r10.errors"
        reason = errors.read_text(errors="replace")[-1500:] if errors.exists() else "(no SIPp log)"
        raise RuntimeError(
            f"{target.name}: no registration succeeded in the smoke check:\n{reason}"
        )


def idle_cpu_pct(pid: int, seconds: float) -> float:
    """CPU the server uses on its own (timers, housekeeping), in % of one core."""
    before = tree_cpu_seconds(pid)
    time.sleep(seconds)
    return round(100 * (tree_cpu_seconds(pid) - before) / seconds, 1)


def sweep(name: str, workdir: Path, args: argparse.Namespace) -> TargetRun:
    run = TargetRun(name)
    target = build_target(name, workdir, args)
    csv = write_injection_csv(workdir / f"{name}-users.csv", target.users)
    load = SippLoad(
        SCENARIO,
        csv,
        target.port,
        free_udp_ports(1)[0],
        args.gen_cpu,
        args.server_cpu,
        workdir,
        name,
    )
    print(f"\n== {name}: {len(target.users)} users, {args.duration:g} s per step", flush=True)
    try:
        target.start()
        print(f"   server pid {target.pid} on core {args.server_cpu}, udp 127.0.0.1:{target.port}")
        smoke_check(dataclasses.replace(load, label=f"{name}-smoke"), target)
        run.idle_cpu_pct = idle_cpu_pct(target.pid, 1.0 if args.quick else 5.0)
        print(f"   idle: {run.idle_cpu_pct:.1f} % of a core", flush=True)
        print(" ".join(h.rjust(w) for h, w in STEP_COLUMNS), flush=True)
        for i, rate in enumerate(args.rates):
            if i:
                time.sleep(args.pause)
            step = measure_step(load, target, rate, args)
            for _ in range(args.retries if not step.passed else 0):
                print(step_row(step) + "  (retrying)", flush=True)
                time.sleep(args.pause)
                step = measure_step(load, target, rate, args)
            run.steps.append(step)
            print(step_row(step), flush=True)
            if not step.passed and not args.keep_going:
                break
    except (RuntimeError, OSError, ValueError) as exc:
        run.error = str(exc)
        print(f"   {name} FAILED: {exc}", flush=True)
    finally:
        target.stop()
    return run


def _ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.2f}"


def _target_line(run: TargetRun) -> str:
    b = run.best
    if b is None:
        cells = ["-", "-", "-", "-"]
    else:
        lag = "-" if b.lag_p99_ms is None else _fmt(b.lag_p99_ms) + "ms"
        cells = [str(b.rate), _fmt(b.cpu_s_per_1k, 3), b.p99_bucket + "ms", lag]
    error = f"  ERROR: {run.error.splitlines()[0][:70]}" if run.error else ""
    idle = _fmt(run.idle_cpu_pct)
    return (
        f"{run.name:>16} {cells[0]:>10} {cells[1]:>9} {cells[2]:>8} {cells[3]:>8} {idle:>6}{error}"
    )


def _common_rate(runs: list[TargetRun], rates: list[int]) -> int | None:
    """The highest rate that every target passed (where CPU per registration is compared)."""
    passed = [r for r in rates if runs and all(run.passed_at(r) for run in runs)]
    return max(passed) if passed else None


def summary(runs: list[TargetRun], args: argparse.Namespace) -> str:
    """Per-target table and pbx/Kamailio ratios (max rate; CPU per 1,000 at a common rate)."""
    lines = [
        "",
        f"== summary ({args.duration:g} s steps, {args.users} users; pass: "
        f"< {args.max_fail_pct:g} % failed, p99 <= {args.max_p99_ms:g} ms, "
        f">= {args.min_achieved:.0%} of the rate offered)",
        f"{'target':>16} {'max reg/s':>10} {'cpu_s/1k':>9} {'p99':>8} {'lag_p99':>8} {'idle%':>6}",
        *(_target_line(run) for run in runs),
    ]
    common = _common_rate(runs, args.rates)
    if common is not None:
        cells = ", ".join(f"{run.name} {_fmt(run.cpu_at(common), 3)}" for run in runs)
        lines.append(f"CPU s per 1,000 registrations at {common}/s (passed by all): {cells}")
    by_name = {run.name: run for run in runs}
    pbx = by_name.get("pbx")
    for peer in ("kamailio", "kamailio-sqlite"):
        other = by_name.get(peer)
        if pbx is None or other is None:
            continue
        pb, ob = pbx.best, other.best
        line = f"pbx/{peer}: max rate x{_ratio(pb.rate if pb else None, ob.rate if ob else None)}"
        if common is not None:
            cpu = _ratio(pbx.cpu_at(common), other.cpu_at(common))
            line += f", CPU per registration x{cpu} (at {common}/s)"
        lines.append(line)
    return "\n".join(lines)


def scratch_base() -> str | None:
    """tmpfs when there is one: fsync is then free for both servers' SQLite files, so pbx
    (WAL, synchronous=NORMAL) and Kamailio's db_sqlite (WAL, synchronous=FULL, which 5.6
    cannot change) do the same storage work; on a disk Kamailio would wait on an fsync per
    registration."""
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    workdir = args.workdir or Path(
        tempfile.mkdtemp(prefix="pbx-bench-register-", dir=scratch_base())
    )
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"bench/register: rates {args.rates}, scratch {workdir}", flush=True)
    previous_nice = set_autogroup_nice(args.nice) if args.nice else None
    try:
        runs = [sweep(name, workdir, args) for name in TARGETS if name in args.only]
    finally:
        if previous_nice is not None:
            set_autogroup_nice(previous_nice)
    print(summary(runs, args), flush=True)
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": [asdict(r) for r in runs],
    }
    for path in filter(None, [workdir / "results.json", args.out]):
        path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if any(r.error for r in runs) else 0
