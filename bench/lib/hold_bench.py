"""bench/hold: many calls held at once by pbx and by sippy's B2BUA; memory per held call.

Owns the command line, the run per target and the summary. SIPp's caller (uac_call(_auth).xml,
no RTP) sets up --calls calls at --cps calls/s and holds every one until all are up and the
measuring window is over; the server's resident memory (VmRSS) before the ramp and while all
calls are held gives the memory per call, with its open descriptors and CPU while holding.
pbx allocates an RTP/RTCP port pair per side (4 sockets per call) for each: its memory per call
includes its media ports; sippy's b2bua_simple passes SDP through and holds no media. pbx's
media timeout is raised for the run (the held calls send no RTP). Stdlib only; must not import
pbx or anything under ../shared.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .call_targets import (
    CALLEE_EXTENSION,
    RTP_RANGE,
    SCENARIOS,
    Callee,
    CallTarget,
    PbxCallTarget,
    SippyTarget,
    free_port_block,
    open_fds,
    raise_open_files,
    rss_kb,
)
from .proc_stats import (
    LOOPBACK,
    free_udp_port,
    pinned,
    set_autogroup_nice,
    stop_process,
    tree_cpu_seconds,
)
from .reg_targets import make_users, write_injection_csv
from .register_bench import default_python, scratch_base
from .sipp_step import read_stats

log = logging.getLogger(__name__)

TARGETS = ("pbx", "sippy")


@dataclass(slots=True)
class HoldRun:
    """One target holding ``calls`` calls."""

    name: str
    calls: int
    ok: int = 0
    failed: int = 0
    rss_idle_kb: int = 0
    rss_held_kb: int = 0
    kb_per_call: float | None = None
    fds_idle: int = 0
    fds_held: int = 0
    cpu_pct_holding: float | None = None
    error: str | None = None


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/hold",
        description="Calls held at once by pbx (media ports included) and sippy: memory per call.",
    )
    ap.add_argument("--calls", type=int, help="calls held at once (default 3000; --quick 50)")
    ap.add_argument("--cps", type=int, help="set-up rate of the ramp (default 100; --quick 50)")
    ap.add_argument("--window", type=float, help="seconds measured while all are held (10)")
    ap.add_argument("--settle", type=float, default=5.0, help="seconds after the ramp")
    ap.add_argument("--only", choices=TARGETS, action="append", help="measure only this target")
    ap.add_argument("--quick", action="store_true", help="50 calls, 3 s window (smoke)")
    ap.add_argument("--python", default=default_python(), help="interpreter that runs pbx")
    ap.add_argument("--server-cpu", type=int, default=0, help="core of the server under test")
    ap.add_argument("--gen-cpu", type=int, default=1, help="core of SIPp")
    ap.add_argument("--nice", type=int, default=0, help="niceness of servers, SIPp (root)")
    ap.add_argument("--workdir", type=Path, help="scratch dir (default: a new dir in /dev/shm)")
    ap.add_argument("--out", type=Path, help="also write all results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.calls = args.calls or (50 if args.quick else 3000)
    args.cps = args.cps or (50 if args.quick else 100)
    args.window = args.window or (3.0 if args.quick else 10.0)
    args.only = args.only or list(TARGETS)
    return args


def hold_seconds(args: argparse.Namespace) -> float:
    return math.ceil(args.calls / args.cps) + args.settle + args.window + 3


def build_target(name: str, workdir: Path, args: argparse.Namespace) -> CallTarget:
    if name == "pbx":
        pairs = (RTP_RANGE[1] - RTP_RANGE[0]) // 2
        if 2 * args.calls > pairs:
            raise ValueError(f"{args.calls} calls need {2 * args.calls} RTP port pairs: > {pairs}")
        users = make_users(10)
        media_timeout = int(hold_seconds(args) + 600)  # held calls send no RTP
        return PbxCallTarget(workdir, users, args.server_cpu, args.python, args.nice, media_timeout)
    return SippyTarget(workdir, args.server_cpu, args.nice)


def uac_command(target: CallTarget, stats: Path, args: argparse.Namespace) -> list[str]:
    csv = stats.parent / "hold-callers.csv"
    users = target.users if isinstance(target, PbxCallTarget) else make_users(10)
    write_injection_csv(csv, users)
    scenario = SCENARIOS / ("uac_call_auth.xml" if target.auth else "uac_call.xml")
    hold = hold_seconds(args)
    argv = ["sipp", f"{LOOPBACK}:{target.port}", "-sf", str(scenario), "-inf", str(csv)]
    argv += ["-s", CALLEE_EXTENSION, "-i", LOOPBACK, "-p", str(free_udp_port())]
    argv += ["-mi", LOOPBACK, "-mp", str(free_port_block())]
    argv += ["-r", str(args.cps), "-m", str(args.calls), "-l", str(args.calls)]
    argv += ["-d", str(int(hold * 1000)), "-timeout", f"{int(2 * hold + 60)}s"]
    argv += ["-timeout_error", "-nostdin", "-trace_stat", "-stf", str(stats), "-fd", "1"]
    argv += ["-trace_err", "-error_file", str(stats.with_suffix(".errors"))]
    argv += ["-max_log_size", "2000000"]
    return pinned(args.gen_cpu, argv, args.nice)


def steady_rss_kb(pid: int, timeout: float = 30.0) -> int:
    """The server's RSS once start-up work is done (pbx decodes its hold music and imports
    the audio libraries in the background after it answers): two readings a second apart
    within 0.5 %, after at least 2 s."""
    time.sleep(2)
    deadline = time.monotonic() + timeout
    last = rss_kb(pid)
    while time.monotonic() < deadline:
        time.sleep(1)
        now = rss_kb(pid)
        if abs(now - last) <= 0.005 * last:
            return now
        last = now
    return last


def hold(name: str, workdir: Path, args: argparse.Namespace) -> HoldRun:
    run = HoldRun(name, args.calls)
    callee = Callee(workdir, args.gen_cpu, args.nice)
    target: CallTarget | None = None
    stats = workdir / f"{name}-hold.csv"
    print(f"\n== {name}: {args.calls} calls at {args.cps}/s, held {hold_seconds(args):g} s")
    try:
        target = build_target(name, workdir, args)
        target.prepare(callee.port)
        target.start()
        target.after_start()
        callee.start(int(2 * hold_seconds(args) + 120))
        run.rss_idle_kb = steady_rss_kb(target.pid)
        run.fds_idle = open_fds(target.pid)
        with (workdir / f"{name}-hold.stderr").open("wb") as err:
            proc = subprocess.Popen(
                uac_command(target, stats, args), stdout=subprocess.DEVNULL, stderr=err, cwd=workdir
            )
        try:
            time.sleep(math.ceil(args.calls / args.cps) + args.settle)
            cpu0, t0 = tree_cpu_seconds(target.pid), time.monotonic()
            time.sleep(args.window)
            cpu = tree_cpu_seconds(target.pid) - cpu0
            run.cpu_pct_holding = round(100 * cpu / (time.monotonic() - t0), 1)
            run.rss_held_kb, run.fds_held = rss_kb(target.pid), open_fds(target.pid)
            proc.wait(timeout=2 * hold_seconds(args) + 90)
        finally:
            stop_process(proc)
        run.kb_per_call = round((run.rss_held_kb - run.rss_idle_kb) / args.calls, 1)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        run.error = str(exc)
        print(f"   {name} FAILED: {exc}", flush=True)
    finally:
        callee.stop()
        if target is not None:
            target.stop()
    rows = read_stats(stats) if stats.exists() else []
    run.ok = int(rows[-1].get("SuccessfulCall(C)") or 0) if rows else 0
    run.failed = args.calls - run.ok
    print(
        f"   ok {run.ok}, failed {run.failed}; RSS {run.rss_idle_kb} kB idle -> "
        f"{run.rss_held_kb} kB held = {run.kb_per_call} kB per call; open fds "
        f"{run.fds_idle} -> {run.fds_held}; CPU while holding {run.cpu_pct_holding} %",
        flush=True,
    )
    return run


def summary(runs: list[HoldRun]) -> str:
    lines = ["", "== summary", f"{'target':>8} {'held':>6} {'failed':>7} {'kB/call':>8} {'fds':>7}"]
    for r in runs:
        error = f"  ERROR: {r.error.splitlines()[0][:70]}" if r.error else ""
        lines.append(
            f"{r.name:>8} {r.ok:>6} {r.failed:>7} {r.kb_per_call or '-':>8} {r.fds_held:>7}{error}"
        )
    by_name = {r.name: r for r in runs}
    pbx, sippy = by_name.get("pbx"), by_name.get("sippy")
    if pbx and sippy and pbx.kb_per_call and sippy.kb_per_call:
        lines.append(f"pbx/sippy memory per call x{pbx.kb_per_call / sippy.kb_per_call:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pbx-bench-hold-", dir=scratch_base()))
    workdir.mkdir(parents=True, exist_ok=True)
    limit = raise_open_files()
    print(f"bench/hold: {args.calls} calls, open-files limit {limit}, scratch {workdir}")
    previous_nice = set_autogroup_nice(args.nice) if args.nice else None
    try:
        runs = [hold(name, workdir, args) for name in TARGETS if name in args.only]
    finally:
        if previous_nice is not None:
            set_autogroup_nice(previous_nice)
    print(summary(runs), flush=True)
    result = {
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "runs": [asdict(r) for r in runs],
    }
    for path in filter(None, [workdir / "results.json", args.out]):
        path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return 1 if any(r.error or r.failed for r in runs) else 0
