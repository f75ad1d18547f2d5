"""Fakes for the media-source tests: a stream format, a leg whose socket keeps what is sent,
and a fake reactor (task.Clock) whose thread pool is real.

``ThreadedClock`` runs work in a real one-thread pool (so code that must not block the
reactor thread really runs elsewhere) and delivers the results back through
``callFromThread`` into a queue the test drains with :meth:`ThreadedClock.wait`, on the
test's own thread: deterministic, no reactor running.
"""

from __future__ import annotations

import math
import queue
import struct
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.threadpool import ThreadPool

from pbx.media.relay import MediaLeg

PHONE = ("127.0.0.1", 40000)
HEADER = struct.Struct("!BBHII")


@dataclass(frozen=True)
class Fmt:
    """Fits pbx.media.transcode.Format."""

    codec: str
    payload_type: int
    clock_rate: int = 8000
    fmtp: Mapping[str, str] = field(default_factory=dict)
    ptime: int = 20
    telephone_event: int | None = None
    telephone_event_rate: int = 8000


PCMU = Fmt("PCMU", 0)
PCMA = Fmt("PCMA", 8)
G722 = Fmt("G722", 9)
OPUS = Fmt("opus", 111, 48000)


class SentPackets:
    """Stands in for a leg's UDP port: keeps what pbx sends to the phone."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes, addr: Any) -> None:
        self.sent.append(data)


def leg(name: str = "leg") -> tuple[MediaLeg, SentPackets]:
    media = MediaLeg(name)
    port = SentPackets()
    media.rtp.transport = port
    media.rtp.remote = PHONE
    media.rtcp.transport = SentPackets()
    media.rtcp.remote = (PHONE[0], PHONE[1] + 1)
    return media, port


def header(packet: bytes) -> tuple[bool, int, int, int, int]:
    """(marker, payload type, sequence, timestamp, ssrc)."""
    first, second, seq, ts, ssrc = HEADER.unpack_from(packet)
    assert first == 0x80
    return bool(second & 0x80), second & 0x7F, seq, ts, ssrc


def sine(freq: float, ms: int, amplitude: float = 8000.0, rate: int = 8000) -> bytes:
    n = rate * ms // 1000
    return array(
        "h", (round(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    ).tobytes()


class ThreadedClock(Clock):
    """A fake reactor (time under the test's control) with a real one-thread pool."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="test")
        self.pool.start()
        self.from_threads: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        self.triggers: list[tuple[str, str, Callable[[], Any]]] = []

    def getThreadPool(self) -> ThreadPool:  # noqa: N802 (Twisted's name)
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        self.from_threads.put((f, args))

    def addSystemEventTrigger(  # noqa: N802
        self, phase: str, event: str, f: Callable[[], Any]
    ) -> None:
        self.triggers.append((phase, event, f))

    def drain(self, timeout: float = 5.0) -> None:
        """Run one result delivered from the pool (waits for it)."""
        f, args = self.from_threads.get(timeout=timeout)
        f(*args)

    def wait(self, d: defer.Deferred[Any], timeout: float = 10.0) -> Any:
        """Deliver results from the pool until ``d`` fired; its result (raises its error)."""
        results: list[Any] = []
        d.addBoth(results.append)
        while not results:
            self.drain(timeout)
        result = results[0]
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    def close(self) -> None:
        self.pool.stop()
