"""Reactor health: loop-lag measurement and the live status file.

:class:`LoopLagMonitor` schedules a tick every ``interval`` seconds on the reactor and records how
late each tick ran (the time the reactor thread was busy elsewhere) in a cumulative histogram.
:class:`StatusFile` rewrites ``DATA/run/status.json`` every second (atomically, written on a worker
thread so the reactor never waits for the disk) with the process id, listening addresses and loop
lag; ``pbx status`` and the benchmarks read it. :class:`GcPauseMonitor` times the garbage
collector's passes, the other source of reactor stalls. The reactor is injected.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import task, threads

log = logging.getLogger(__name__)

BUCKET_MS = 0.5
BUCKETS = 200


class LoopLagMonitor:
    """Histogram of reactor loop lag, in 0.5 ms buckets up to 100 ms (last bucket open-ended)."""

    def __init__(
        self, reactor: Any, interval: float = 0.01, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._reactor = reactor
        self._clock = clock
        self.interval = interval
        self.hist = [0] * BUCKETS
        self.samples = 0
        self.max_ms = 0.0
        self._expected = 0.0
        self._call: Any = None

    def start(self) -> None:
        self._expected = self._clock() + self.interval
        self._call = self._reactor.callLater(self.interval, self._tick)

    def stop(self) -> None:
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _tick(self) -> None:
        now = self._clock()
        lag_ms = max(0.0, (now - self._expected) * 1000.0)
        self.samples += 1
        self.max_ms = max(self.max_ms, lag_ms)
        self.hist[min(BUCKETS - 1, int(lag_ms / BUCKET_MS))] += 1
        self._expected = now + self.interval
        self._call = self._reactor.callLater(self.interval, self._tick)

    def percentile(self, fraction: float) -> float:
        """Upper edge of the bucket holding the given fraction of samples, in ms."""
        return histogram_percentile(self.hist, fraction)

    def snapshot(self) -> dict[str, Any]:
        return {
            "interval_ms": self.interval * 1000.0,
            "samples": self.samples,
            "p50_ms": self.percentile(0.50),
            "p99_ms": self.percentile(0.99),
            "max_ms": round(self.max_ms, 3),
            "hist_bucket_ms": BUCKET_MS,
            "hist": list(self.hist),
        }


def histogram_percentile(hist: list[int], fraction: float) -> float:
    """Percentile of a loop-lag histogram (also used on the difference of two snapshots)."""
    total = sum(hist)
    if total == 0:
        return 0.0
    wanted = fraction * total
    seen = 0
    for index, count in enumerate(hist):
        seen += count
        if seen >= wanted:
            return (index + 1) * BUCKET_MS
    return len(hist) * BUCKET_MS


class GcPauseMonitor:
    """Times the cyclic garbage collector's passes (they stop the reactor thread)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._started = 0.0
        self.passes = [0, 0, 0]
        self.max_ms = [0.0, 0.0, 0.0]
        self.total_ms = [0.0, 0.0, 0.0]

    def start(self) -> None:
        gc.callbacks.append(self._callback)

    def stop(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        generation = info.get("generation", 0)
        elapsed = (self._clock() - self._started) * 1000.0
        self.passes[generation] += 1
        self.total_ms[generation] += elapsed
        self.max_ms[generation] = max(self.max_ms[generation], elapsed)

    def snapshot(self) -> dict[str, Any]:
        return {
            "passes": list(self.passes),
            "max_ms": [round(v, 3) for v in self.max_ms],
            "total_ms": [round(v, 3) for v in self.total_ms],
        }


class StatusFile:
    """Rewrites DATA/run/status.json every second from a snapshot callable."""

    def __init__(self, reactor: Any, path: Path, snapshot: Callable[[], dict[str, Any]]) -> None:
        self._reactor = reactor
        self.path = path
        self._snapshot = snapshot
        self._loop: task.LoopingCall | None = None
        self._writing = False

    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.write_now()
        self._loop = task.LoopingCall(self._write_async)
        self._loop.clock = self._reactor
        self._loop.start(1.0, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass

    def write_now(self) -> None:
        _write_json(self.path, self._snapshot())

    def _write_async(self) -> None:
        if self._writing:
            return
        self._writing = True
        data = self._snapshot()
        d = threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), _write_json, self.path, data
        )

        def done(result: object) -> None:
            self._writing = False

        d.addErrback(lambda f: log.warning("status file not written: %s", f.getErrorMessage()))
        d.addBoth(done)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)
