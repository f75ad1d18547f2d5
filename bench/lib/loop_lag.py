"""Reactor loop lag of a running pbx over one interval, from two snapshots of DIR/run/status.json.

The server rewrites status.json every second; its "loop_lag" object carries a cumulative
histogram ("hist", bucket i counts lags in [i*w, (i+1)*w) ms with w = "hist_bucket_ms", the last
bucket open-ended; see notes/server-contract.md). Subtracting two snapshots gives the lag
distribution of the interval between them. Stdlib only; must not import pbx or twisted.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LagSnapshot:
    """One reading of the cumulative loop-lag histogram."""

    updated_at: float
    bucket_ms: float
    hist: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class LagSummary:
    """Loop lag over an interval: sample count and percentiles (upper edge of the bucket, ms)."""

    samples: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    open_ended: bool  # the p99 fell in the last, open-ended bucket (the lag was at least p99_ms)


def read_snapshot(status_file: Path) -> LagSnapshot | None:
    """The histogram in ``status_file`` now, or None if the file or its loop_lag is missing."""
    try:
        status = json.loads(status_file.read_text())
        lag = status["loop_lag"]
        return LagSnapshot(
            updated_at=float(status.get("updated_at", 0.0)),
            bucket_ms=float(lag["hist_bucket_ms"]),
            hist=tuple(int(c) for c in lag["hist"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fresh_snapshot(status_file: Path, after: float, timeout: float = 5.0) -> LagSnapshot | None:
    """Wait for a rewrite of ``status_file`` stamped later than ``after`` (epoch s) and read it."""
    deadline = time.monotonic() + timeout
    while True:
        snap = read_snapshot(status_file)
        if snap is not None and snap.updated_at >= after:
            return snap
        if time.monotonic() >= deadline:
            log.warning("%s was not rewritten after %.1f", status_file, after)
            return snap
        time.sleep(0.1)


def _percentile_index(counts: list[int], total: int, fraction: float) -> int:
    """Index of the bucket that holds the ``fraction`` quantile of ``total`` samples."""
    target = fraction * total
    seen = 0
    for i, count in enumerate(counts):
        seen += count
        if seen >= target:
            return i
    return len(counts) - 1


def summarize(before: LagSnapshot, after: LagSnapshot) -> LagSummary:
    """Lag distribution of the samples taken between ``before`` and ``after``.

    Each percentile is the upper edge of its bucket; for the open-ended last bucket it is the
    lower edge and ``open_ended`` is set (the true value is at least that).
    """
    if len(before.hist) != len(after.hist) or before.bucket_ms != after.bucket_ms:
        raise ValueError("loop-lag histograms of different shapes (was the server restarted?)")
    counts = [a - b for a, b in zip(after.hist, before.hist, strict=True)]
    total = sum(counts)
    if total <= 0:
        return LagSummary(0, None, None, None, False)
    width, last = after.bucket_ms, len(counts) - 1

    def edge(i: int) -> float:
        return i * width if i == last else (i + 1) * width

    p99 = _percentile_index(counts, total, 0.99)
    return LagSummary(
        samples=total,
        p50_ms=edge(_percentile_index(counts, total, 0.50)),
        p99_ms=edge(p99),
        max_ms=edge(max(i for i, c in enumerate(counts) if c)),
        open_ended=p99 == last,
    )
