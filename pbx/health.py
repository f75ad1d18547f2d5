"""Reactor health: loop-lag measurement and the live status file.

:class:`LoopLagMonitor` schedules a tick every ``interval`` seconds on the reactor and records how
late each tick ran (the time the reactor thread was busy elsewhere) in a cumulative histogram.
:class:`StatusFile` rewrites ``DATA/run/status.json`` every second (atomically, written on a worker
thread so the reactor never waits for the disk) with the process id, listening addresses and loop
lag; ``pbx status`` and the benchmarks read it. A large part that rarely changes (the active
calls: half a megabyte at 1,000 calls, 10 ms to build and 10 ms to encode, which held music
streams would feel as jitter every second) is a :class:`CachedPart`: rebuilt and encoded only
when its version moved, or at the latest every ``max_age`` seconds. :class:`GcPauseMonitor`
times the garbage collector's passes, the other source of reactor stalls. The reactor is
injected.
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


class CachedPart:
    """One key of the status file, rebuilt by ``build`` only when ``version()`` changed or the
    last build is ``max_age`` seconds old; kept JSON-encoded between builds."""

    def __init__(
        self,
        key: str,
        build: Callable[[], Any],
        version: Callable[[], int],
        clock: Callable[[], float],
        max_age: float = 15.0,
    ) -> None:
        self.key = key
        self._build = build
        self._version = version
        self._clock = clock
        self.max_age = max_age
        self._built: tuple[int, float, Any] | None = None  # version, when, value
        self._encoded: tuple[Any, str] | None = None  # value, its JSON
        self.builds = 0

    def value(self) -> Any:
        """The part's value (on the reactor thread): the cached one when still current."""
        version, now = self._version(), self._clock()
        if self._built is None or self._built[0] != version or now - self._built[1] >= self.max_age:
            self._built = (version, now, self._build())
            self.builds += 1
        return self._built[2]

    def encoded(self, value: Any) -> str:
        """``value``'s JSON (on the writer thread), encoded once per build."""
        cached = self._encoded
        if cached is not None and cached[0] is value:
            return cached[1]
        text = json.dumps(value)
        self._encoded = (value, text)
        return text


class StatusFile:
    """Rewrites DATA/run/status.json every second from a snapshot callable and cached parts."""

    def __init__(
        self,
        reactor: Any,
        path: Path,
        snapshot: Callable[[], dict[str, Any]],
        parts: tuple[CachedPart, ...] = (),
    ) -> None:
        self._reactor = reactor
        self.path = path
        self._snapshot = snapshot
        self._parts = parts
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
        self._write(self._snapshot(), self._values())

    def _values(self) -> list[tuple[CachedPart, Any]]:
        return [(part, part.value()) for part in self._parts]

    def _write_async(self) -> None:
        if self._writing:
            return
        self._writing = True
        data, values = self._snapshot(), self._values()
        d = threads.deferToThreadPool(
            self._reactor, self._reactor.getThreadPool(), self._write, data, values
        )

        def done(result: object) -> None:
            self._writing = False

        d.addErrback(lambda f: log.warning("status file not written: %s", f.getErrorMessage()))
        d.addBoth(done)

    def _write(self, data: dict[str, Any], values: list[tuple[CachedPart, Any]]) -> None:
        text = json.dumps(data)
        if values:  # the cached parts' JSON spliced in as the last keys of the object
            extra = ", ".join(f"{json.dumps(part.key)}: {part.encoded(v)}" for part, v in values)
            text = f"{text[:-1]}, {extra}}}" if data else f"{{{extra}}}"
        _write_text(self.path, text)


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
