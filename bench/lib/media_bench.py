"""bench/media: concurrent G.711 calls relayed by pbx and by rtpengine (userspace), one core each.

Owns the command line, the steps over rising numbers of concurrent calls and the summary. A
step with N calls: SIPp's caller (uac_call_rtp(_auth).xml) sets up N calls at --cps calls/s and
plays 20 ms G.711 RTP (50 packets/s) into the relay for each; the SIPp callee (-rtp_echo) sends
every packet back, so the relay carries 100 packets/s in and 100 out per call. Once all calls
are up, tcpdump records every RTP packet on lo for --window seconds (signalling is captured for
the whole step, to learn each call's relay ports from the SDPs). A step passes with < 1 %
failed calls, < 0.5 % of the packets sent into the relay lost, relay-added jitter p99 < 5 ms
and a complete capture. Stdlib only; must not import pbx or anything under ../shared.
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .call_targets import (
    CALLEE_EXTENSION,
    RTP_RANGE,
    SCENARIOS,
    Callee,
    CallTarget,
    PbxCallTarget,
    RtpengineTarget,
    free_port_block,
    raise_open_files,
    rss_kb,
)
from .capture import Capture, RelayFigures, relay_figures
from .g711_pcap import write_g711_pcap
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

TARGETS = ("pbx", "rtpengine")
DEFAULT_COUNTS = "50,100,200,300,400,500,600,800,1000"
QUICK_COUNTS = "5,20"
PCAP_NAME = "g711u_20ms.pcap"  # the name uac_call_rtp*.xml plays, in SIPp's working dir


@dataclass(slots=True)
class MediaStep:
    """Figures of N concurrent relayed calls."""

    calls: int
    ok: int = 0
    failed: int = 0
    relay: RelayFigures | None = None
    cpu_pct: float | None = None  # of the relay's core, during the capture window
    rss_kb: int = 0
    kb_per_call: float | None = None
    calls_per_core: float | None = None
    capture_drops: int | None = None
    passed: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class MediaRun:
    name: str
    steps: list[MediaStep] = field(default_factory=list)
    error: str | None = None
    idle_rss_kb: int = 0

    @property
    def best(self) -> MediaStep | None:
        passed = [s for s in self.steps if s.passed]
        return max(passed, key=lambda s: s.calls) if passed else None


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="bench/media",
        description="N concurrent G.711 calls with RTP both ways through pbx and rtpengine.",
    )
    ap.add_argument("--counts", help=f"concurrent calls per step (default {DEFAULT_COUNTS})")
    ap.add_argument("--cps", type=int, default=100, help="call set-up rate of the ramp")
    ap.add_argument("--window", type=float, help="seconds of RTP captured per step (10)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds after the ramp")
    ap.add_argument("--only", choices=TARGETS, action="append", help="measure only this target")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_COUNTS} calls, 3 s (smoke)")
    ap.add_argument("--python", default=default_python(), help="interpreter that runs pbx")
    ap.add_argument("--server-cpu", type=int, default=0, help="core of the relay under test")
    ap.add_argument("--gen-cpu", type=int, default=1, help="core of SIPp, tcpdump, Kamailio")
    ap.add_argument("--nice", type=int, default=0, help="niceness of servers, SIPp (root)")
    ap.add_argument("--pause", type=float, default=3.0, help="seconds between steps")
    ap.add_argument("--keep-going", action="store_true", help="run every count after a fail")
    ap.add_argument("--max-loss-pct", type=float, default=0.5)
    ap.add_argument("--max-jitter-ms", type=float, default=5.0)
    ap.add_argument("--max-fail-pct", type=float, default=1.0)
    ap.add_argument("--workdir", type=Path, help="scratch dir (default: a new dir in /dev/shm)")
    ap.add_argument("--out", type=Path, help="also write all results as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    counts = args.counts or (QUICK_COUNTS if args.quick else DEFAULT_COUNTS)
    args.counts = [int(n) for n in counts.split(",")]
    args.window = args.window or (3.0 if args.quick else 10.0)
    args.only = args.only or list(TARGETS)
    return args


def hold_seconds(calls: int, args: argparse.Namespace) -> float:
    """How long each call lasts: the whole ramp, the settle time, the window and a margin."""
    return math.ceil(calls / args.cps) + args.settle + args.window + 4


def build_target(name: str, workdir: Path, args: argparse.Namespace) -> CallTarget:
    if name == "pbx":
        users = make_users(10)
        return PbxCallTarget(workdir, users, args.server_cpu, args.python, args.nice)
    return RtpengineTarget(workdir, args.server_cpu, args.gen_cpu, args.nice)


def uac_command(target: CallTarget, calls: int, stats: Path, args: argparse.Namespace) -> list[str]:
    csv = stats.parent / "media-callers.csv"
    users = target.users if isinstance(target, PbxCallTarget) else make_users(10)
    write_injection_csv(csv, users)
    scenario = SCENARIOS / ("uac_call_rtp_auth.xml" if target.auth else "uac_call_rtp.xml")
    hold = hold_seconds(calls, args)
    argv = ["sipp", f"{LOOPBACK}:{target.port}", "-sf", str(scenario), "-inf", str(csv)]
    argv += ["-s", CALLEE_EXTENSION, "-i", LOOPBACK, "-p", str(free_udp_port())]
    argv += ["-mi", LOOPBACK, "-mp", str(free_port_block())]
    argv += ["-r", str(args.cps), "-m", str(calls), "-l", str(calls), "-d", str(int(hold * 1000))]
    argv += ["-timeout", f"{int(hold + calls / args.cps + 40)}s", "-timeout_error", "-nostdin"]
    argv += ["-trace_stat", "-stf", str(stats), "-fd", "1", "-trace_err"]
    argv += ["-error_file", str(stats.with_suffix(".errors")), "-max_log_size", "2000000"]
    return pinned(args.gen_cpu, argv, args.nice)


def run_step(
    target: CallTarget, callee: Callee, calls: int, workdir: Path, args: argparse.Namespace
) -> MediaStep:
    step = MediaStep(calls)
    label = f"{target.name}_n{calls}"
    stats = workdir / f"{label}.csv"
    stats.unlink(missing_ok=True)
    sip_pcap, rtp_pcap = workdir / f"{label}-sip.pcap", workdir / f"{label}-rtp.pcap"
    sip_bpf = f"udp port {target.port} or udp port {callee.port}"
    rtp_bpf = f"udp portrange {RTP_RANGE[0]}-{RTP_RANGE[1]}"
    sip_cap = Capture(sip_pcap, sip_bpf, args.gen_cpu, nice=args.nice)
    rtp_cap = Capture(rtp_pcap, rtp_bpf, args.gen_cpu, snaplen=64, nice=args.nice)
    sip_cap.start()
    rss0 = rss_kb(target.pid)
    with (workdir / f"{label}.stderr").open("wb") as err:
        proc = subprocess.Popen(
            uac_command(target, calls, stats, args),
            stdout=subprocess.DEVNULL,
            stderr=err,
            cwd=workdir,
        )
    try:
        time.sleep(math.ceil(calls / args.cps) + args.settle)
        cpu0 = tree_cpu_seconds(target.pid)
        t0 = time.monotonic()
        rtp_cap.start()
        time.sleep(args.window)
        rtp_cap.stop()
        cpu_window = tree_cpu_seconds(target.pid) - cpu0
        step.cpu_pct = round(100 * cpu_window / (time.monotonic() - t0), 1)
        step.rss_kb = rss_kb(target.pid)
        proc.wait(timeout=hold_seconds(calls, args) + calls / args.cps + 60)
    finally:
        stop_process(proc)
        sip_cap.stop()
        rtp_cap.stop()
    rows = read_stats(stats) if stats.exists() else []
    last = rows[-1] if rows else {}
    step.ok = int(last.get("SuccessfulCall(C)") or 0)
    step.failed = calls - step.ok
    step.capture_drops = (sip_cap.kernel_drops or 0) + (rtp_cap.kernel_drops or 0)
    step.relay = relay_figures(sip_pcap, rtp_pcap, target.port, callee.port)
    step.kb_per_call = round((step.rss_kb - rss0) / calls, 1) if calls else None
    if step.cpu_pct:
        step.calls_per_core = round(calls / (step.cpu_pct / 100))
    step.passed = judge(step, args)
    for pcap in (sip_pcap, rtp_pcap):
        pcap.unlink(missing_ok=True)
    return step


def judge(step: MediaStep, args: argparse.Namespace) -> bool:
    relay = step.relay
    if step.capture_drops:
        step.notes.append(f"tcpdump lost {step.capture_drops} packets: figures incomplete")
    if relay is None or relay.streams < 2 * step.calls:
        step.notes.append("not every call's relay ports were found in the SIP capture")
    return (
        not step.notes
        and relay is not None
        and step.failed < args.max_fail_pct / 100 * step.calls
        and relay.loss_pct is not None
        and relay.loss_pct < args.max_loss_pct
        and relay.jitter_p99_ms is not None
        and relay.jitter_p99_ms < args.max_jitter_ms
    )


COLUMNS = (
    ("calls", 6),
    ("ok", 6),
    ("streams", 8),
    ("pkts_in", 9),
    ("loss%", 7),
    ("transit_p50", 12),
    ("transit_p99", 12),
    ("jitter_p99", 11),
    ("cpu%", 6),
    ("calls/core", 11),
    ("kB/call", 8),
    ("cap_drop", 9),
    ("pass", 5),
)


def _f(value: float | int | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def step_row(s: MediaStep) -> str:
    r = s.relay or RelayFigures()
    cells = (
        s.calls,
        s.ok,
        r.streams,
        r.packets_in,
        _f(r.loss_pct, 3),
        _f(r.transit_p50_ms),
        _f(r.transit_p99_ms),
        _f(r.jitter_p99_ms),
        _f(s.cpu_pct, 1),
        s.calls_per_core if s.calls_per_core is not None else "-",
        _f(s.kb_per_call, 1),
        s.capture_drops,
        "yes" if s.passed else "NO",
    )
    row = " ".join(str(c).rjust(w) for c, (_, w) in zip(cells, COLUMNS, strict=True))
    return row + ("  " + "; ".join(s.notes) if s.notes else "")


def sweep(name: str, workdir: Path, args: argparse.Namespace) -> MediaRun:
    run = MediaRun(name)
    target = build_target(name, workdir, args)
    callee = Callee(workdir, args.gen_cpu, args.nice, rtp_echo=True)
    budget = sum(2 * hold_seconds(n, args) + 60 + args.pause for n in args.counts)
    print(f"\n== {name}: {args.window:g} s of RTP captured per step, ramp {args.cps}/s", flush=True)
    try:
        target.prepare(callee.port)
        target.start()
        target.after_start()
        callee.start(int(budget))
        run.idle_rss_kb = rss_kb(target.pid)
        print(f"   relay pid {target.pid} on core {args.server_cpu}, idle RSS {run.idle_rss_kb} kB")
        print(" ".join(h.rjust(w) for h, w in COLUMNS), flush=True)
        for calls in args.counts:
            step = run_step(target, callee, calls, workdir, args)
            run.steps.append(step)
            print(step_row(step), flush=True)
            if not step.passed and not args.keep_going:
                break
            time.sleep(args.pause)
    except (RuntimeError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        run.error = str(exc)
        print(f"   {name} FAILED: {exc}", flush=True)
    finally:
        callee.stop()
        target.stop()
    return run


def summary(runs: list[MediaRun], args: argparse.Namespace) -> str:
    lines = [
        "",
        f"== summary (pass: < {args.max_loss_pct:g} % packets lost, relay-added jitter p99 < "
        f"{args.max_jitter_ms:g} ms, < {args.max_fail_pct:g} % calls failed)",
        f"{'target':>10} {'max calls':>10} {'cpu%':>6} {'calls/core':>11} {'kB/call':>8} "
        f"{'loss%':>7} {'jitter_p99':>11}",
    ]
    for run in runs:
        b = run.best
        r = b.relay if b and b.relay else RelayFigures()
        error = f"  ERROR: {run.error.splitlines()[0][:70]}" if run.error else ""
        lines.append(
            f"{run.name:>10} {b.calls if b else '-':>10} {_f(b.cpu_pct if b else None, 1):>6} "
            f"{(b.calls_per_core if b else None) or '-':>11} "
            f"{_f(b.kb_per_call if b else None, 1):>8} {_f(r.loss_pct, 3):>7} "
            f"{_f(r.jitter_p99_ms):>11}{error}"
        )
    by_name = {run.name: run for run in runs}
    pbx, peer = by_name.get("pbx"), by_name.get("rtpengine")
    if pbx and peer and pbx.best and peer.best:
        ours, theirs = pbx.best.calls_per_core, peer.best.calls_per_core
        if ours and theirs:
            verdict = "met" if ours >= theirs else "NOT met"
            ratio = ours / theirs
            lines.append(f"pbx/rtpengine calls per core x{ratio:.2f} (target >= 1: {verdict})")
        lines.append(f"pbx/rtpengine max calls x{pbx.best.calls / peer.best.calls:.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pbx-bench-media-", dir=scratch_base()))
    workdir.mkdir(parents=True, exist_ok=True)
    raise_open_files()
    write_g711_pcap(workdir / PCAP_NAME, max(hold_seconds(n, args) for n in args.counts) + 10)
    print(f"bench/media: calls {args.counts}, scratch {workdir}", flush=True)
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
