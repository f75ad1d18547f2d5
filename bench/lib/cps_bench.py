"""bench/cps: calls per second through pbx, sippy's B2BUA and a Kamailio proxy, one core each.

Owns the command line, the per-target run (a post-dial-delay step under a packet capture, then
the sweep over rising call rates), the summary and the pbx / peer ratios. One call is SIPp's
uac_call(_auth).xml: INVITE with SDP (-> 407 -> ACK -> INVITE with credentials for pbx) -> 180
-> 200 -> ACK -> hold -> BYE -> 200, ending at the SIPp callee (uas_call.xml). A step passes
with < 1 % failed calls, the 99th-percentile setup time (first INVITE -> 200) <= 500 ms and
>= 95 % of the rate offered. Stdlib only; must not import pbx or anything under ../shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .call_targets import (
    CALLEE_EXTENSION,
    SCENARIOS,
    Callee,
    CallTarget,
    KamailioProxyTarget,
    PbxCallTarget,
    SippyTarget,
    free_port_block,
    raise_open_files,
)
from .capture import Capture, Delays, post_dial_delays
from .proc_stats import LOOPBACK, free_udp_port, set_autogroup_nice
from .reg_targets import make_users, write_injection_csv
from .register_bench import (
    STEP_COLUMNS,
    TargetRun,
    default_python,
    idle_cpu_pct,
    measure_step,
    scratch_base,
    step_row,
)
from .sipp_step import SippLoad, run_step

log = logging.getLogger(__name__)

TARGETS = ("pbx", "sippy", "kamailio")
DEFAULT_RATES = "50,100,150,200,300,450,600,800,1000,1250,1500,1750,2000,2500,3000"
QUICK_RATES = "10,30"
TARGET_CPS = 450  # issue 3: 3x sippy
TARGET_PDD_P99_MS = 5.0


@dataclass(slots=True)
class CpsRun(TargetRun):
    """A target's sweep plus its post-dial delays at the PDD rate."""

    pdd: Delays | None = None
    pdd_failed: int = 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/cps",
        description="SIPp calls (INVITE/180/200/ACK/BYE with SDP) through pbx, sippy's "
        "b2bua_simple and a Kamailio stateful proxy, rising rates; post-dial delay.",
    )
    ap.add_argument("--rates", help=f"comma-separated calls/s (default {DEFAULT_RATES})")
    ap.add_argument("--duration", type=float, help="seconds per step (default 60)")
    ap.add_argument("--hold-ms", type=int, default=1000, help="call length after the ACK")
    ap.add_argument("--pdd-rate", type=int, help="calls/s of the post-dial-delay step (100)")
    ap.add_argument("--pdd-duration", type=float, help="seconds of that step (default 20)")
    ap.add_argument("--users", type=int, help="calling users (default 100; --quick: 10)")
    ap.add_argument("--only", choices=TARGETS, action="append", help="measure only this target")
    ap.add_argument("--quick", action="store_true", help=f"5 s steps at {QUICK_RATES}/s (smoke)")
    ap.add_argument("--python", default=default_python(), help="interpreter that runs pbx")
    ap.add_argument("--server-cpu", type=int, default=0, help="core of the server under test")
    ap.add_argument("--gen-cpu", type=int, default=1, help="core of SIPp and tcpdump")
    ap.add_argument("--kamailio-children", type=int, default=1, help="Kamailio SIP workers")
    ap.add_argument("--nice", type=int, default=0, help="niceness of servers, SIPp (root)")
    ap.add_argument("--pause", type=float, help="seconds between steps (default 3)")
    ap.add_argument("--keep-going", action="store_true", help="run every rate even after a fail")
    ap.add_argument("--retries", type=int, default=1, help="re-runs of a failed step (1)")
    ap.add_argument("--max-fail-pct", type=float, default=1.0)
    ap.add_argument("--max-p99-ms", type=float, default=500.0)
    ap.add_argument("--min-achieved", type=float, default=0.95)
    ap.add_argument("--workdir", type=Path, help="scratch dir (default: a new dir in /dev/shm)")
    ap.add_argument("--out", type=Path, help="also write all results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    args.rates = [
        int(r) for r in (args.rates or (QUICK_RATES if args.quick else DEFAULT_RATES)).split(",")
    ]
    args.duration = args.duration or (5.0 if args.quick else 60.0)
    args.pdd_rate = args.pdd_rate or (20 if args.quick else 100)
    args.pdd_duration = args.pdd_duration or (3.0 if args.quick else 20.0)
    args.users = args.users or (10 if args.quick else 100)
    args.pause = args.pause if args.pause is not None else (1.0 if args.quick else 3.0)
    args.only = args.only or list(TARGETS)
    return args


def build_target(name: str, workdir: Path, args: argparse.Namespace) -> CallTarget:
    if name == "pbx":
        users = make_users(args.users)
        return PbxCallTarget(workdir, users, args.server_cpu, args.python, args.nice)
    if name == "sippy":
        return SippyTarget(workdir, args.server_cpu, args.nice)
    return KamailioProxyTarget(workdir, args.server_cpu, args.nice, args.kamailio_children)


def _grace(args: argparse.Namespace) -> float:
    return 20.0 + args.hold_ms / 1000


def callee_budget(args: argparse.Namespace) -> int:
    """Seconds the SIPp callee may live: every step, with retries, pauses and grace."""
    step = args.duration + _grace(args) + args.pause + 35
    return int(args.pdd_duration + _grace(args) + 60 + len(args.rates) * (1 + args.retries) * step)


def call_load(name: str, target: CallTarget, workdir: Path, args: argparse.Namespace) -> SippLoad:
    # pbx's callers with their passwords; the peers do not authenticate (any names do)
    users = target.users if isinstance(target, PbxCallTarget) else make_users(args.users)
    csv = write_injection_csv(workdir / f"{name}-callers.csv", users)
    scenario = SCENARIOS / ("uac_call_auth.xml" if target.auth else "uac_call.xml")
    extra: tuple[str, ...] = ("-s", CALLEE_EXTENSION, "-d", str(args.hold_ms))
    extra += ("-mi", LOOPBACK, "-mp", str(free_port_block()))
    return SippLoad(
        scenario,
        csv,
        target.port,
        free_udp_port(),
        args.gen_cpu,
        args.server_cpu,
        workdir,
        name,
        grace=_grace(args),
        nice=args.nice,
        extra_args=extra,
    )


def at_rate(load: SippLoad, rate: int, args: argparse.Namespace) -> SippLoad:
    """The load with room for every call of ~hold + 3 s in flight at ``rate``."""
    return dataclasses.replace(load, limit=max(200, int(rate * (args.hold_ms / 1000 + 3))))


def pdd_step(
    load: SippLoad, target: CallTarget, callee: Callee, run: CpsRun, args: argparse.Namespace
) -> None:
    """Calls at the PDD rate under tcpdump; post-dial delay per call from the capture."""
    pcap = load.workdir / f"{load.label}-pdd.pcap"
    bpf = f"udp port {target.port} or udp port {callee.port}"
    capture = Capture(pcap, bpf, args.gen_cpu, nice=args.nice)
    capture.start()
    try:
        step_load = dataclasses.replace(
            at_rate(load, args.pdd_rate, args), label=f"{load.label}-pdd"
        )
        step = run_step(step_load, args.pdd_rate, args.pdd_duration, target.pid)
    finally:
        capture.stop()
    run.pdd = post_dial_delays(pcap, target.port, callee.port)
    run.pdd_failed = step.calls - step.ok
    drops = capture.kernel_drops
    print(
        f"   post-dial delay at {args.pdd_rate}/s ({run.pdd.calls} calls, {run.pdd_failed} "
        f"failed, capture drops {drops}): INVITE in -> 180 out p50 {run.pdd.p50_ms} ms, "
        f"p99 {run.pdd.p99_ms} ms, max {run.pdd.max_ms} ms; the server's own share p50 "
        f"{run.pdd.own_p50_ms} ms, p99 {run.pdd.own_p99_ms} ms",
        flush=True,
    )
    pcap.unlink(missing_ok=True)


def sweep(name: str, workdir: Path, args: argparse.Namespace) -> CpsRun:
    run = CpsRun(name)
    target = build_target(name, workdir, args)
    callee = Callee(workdir, args.gen_cpu, args.nice)
    print(f"\n== {name}: {args.duration:g} s per step, calls held {args.hold_ms} ms", flush=True)
    try:
        target.prepare(callee.port)
        target.start()
        target.after_start()
        callee.start(callee_budget(args))
        load = call_load(name, target, workdir, args)
        print(f"   server pid {target.pid} on core {args.server_cpu}, udp {LOOPBACK}:{target.port}")
        run.idle_cpu_pct = idle_cpu_pct(target.pid, 1.0 if args.quick else 5.0)
        print(f"   idle: {run.idle_cpu_pct:.1f} % of a core", flush=True)
        pdd_step(load, target, callee, run, args)
        print(" ".join(h.rjust(w) for h, w in STEP_COLUMNS), flush=True)
        for rate in args.rates:
            time.sleep(args.pause)
            step = measure_step(at_rate(load, rate, args), target, rate, args)
            for _ in range(args.retries if not step.passed else 0):
                print(step_row(step) + "  (retrying)", flush=True)
                time.sleep(args.pause)
                step = measure_step(at_rate(load, rate, args), target, rate, args)
            run.steps.append(step)
            print(step_row(step), flush=True)
            if not step.passed and not args.keep_going:
                break
    except (RuntimeError, OSError, ValueError) as exc:
        run.error = str(exc)
        print(f"   {name} FAILED: {exc}", flush=True)
    finally:
        callee.stop()
        target.stop()
    return run


def _f(value: float | int | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def summary(runs: list[CpsRun], args: argparse.Namespace) -> str:
    lines = [
        "",
        f"== summary ({args.duration:g} s steps, calls held {args.hold_ms} ms; pass: < "
        f"{args.max_fail_pct:g} % failed, setup p99 <= {args.max_p99_ms:g} ms, >= "
        f"{args.min_achieved:.0%} of the rate offered; post-dial delay at {args.pdd_rate}/s)",
        f"{'target':>10} {'max calls/s':>12} {'cpu_s/1k':>9} {'setup_p99':>10} "
        f"{'pdd_p50':>8} {'pdd_p99':>8} {'own_p99':>8} {'idle%':>6}",
    ]
    for run in runs:
        b, pdd = run.best, run.pdd
        cells = [
            str(b.rate) if b else "-",
            _f(b.cpu_s_per_1k, 3) if b else "-",
            (b.p99_bucket + "ms") if b else "-",
            _f(pdd.p50_ms, 2) if pdd else "-",
            _f(pdd.p99_ms, 2) if pdd else "-",
            _f(pdd.own_p99_ms, 2) if pdd else "-",
        ]
        error = f"  ERROR: {run.error.splitlines()[0][:70]}" if run.error else ""
        lines.append(
            f"{run.name:>10} {cells[0]:>12} {cells[1]:>9} {cells[2]:>10} {cells[3]:>8} "
            f"{cells[4]:>8} {cells[5]:>8} {_f(run.idle_cpu_pct):>6}{error}"
        )
    by_name = {run.name: run for run in runs}
    pbx = by_name.get("pbx")
    for peer in ("sippy", "kamailio"):
        other = by_name.get(peer)
        if pbx is None or other is None or pbx.best is None or other.best is None:
            continue
        lines.append(f"pbx/{peer}: max calls/s x{pbx.best.rate / other.best.rate:.2f}")
    if pbx is not None:
        rate_ok = pbx.best is not None and pbx.best.rate >= TARGET_CPS
        pdd_ok = pbx.pdd is not None and (pbx.pdd.p99_ms or 1e9) < TARGET_PDD_P99_MS
        lines.append(
            f"target (>= {TARGET_CPS} calls/s; post-dial delay p99 < {TARGET_PDD_P99_MS:g} ms at "
            f"{args.pdd_rate}/s): rate {'met' if rate_ok else 'NOT met'}, "
            f"post-dial delay {'met' if pdd_ok else 'NOT met'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pbx-bench-cps-", dir=scratch_base()))
    workdir.mkdir(parents=True, exist_ok=True)
    raise_open_files()
    print(f"bench/cps: rates {args.rates}, scratch {workdir}", flush=True)
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
