"""Jitter buffer for the decoding side of a transcoding leg.

Owns: :class:`JitterBuffer`, which reorders one RTP stream's packets by sequence number and
hands them out one per packetisation interval, reporting a gap where a packet never came so
the decoder can conceal it (``Decoder.decode_missing``). It never decodes and keeps no clock:
the caller adds packets as they arrive and pops one frame per ptime tick.

Model (after aiortc's jitterbuffer): a fixed ring of ``capacity`` slots indexed by
``sequence % capacity`` holds the window ``[origin, origin + capacity)``, where ``origin`` is
the next sequence number to play. Serial-number comparisons follow RFC 1982 / RFC 3550 §A.1:

- before ``origin``: LATE (already played or skipped), unless more than ``MAX_MISORDER``
  behind, which is a jump; before the first pop, a packet that still fits the window moves
  ``origin`` back instead (the stream's first packets arrived out of order);
- already held: DUPLICATE;
- past the window but within ``MAX_DROPOUT``: the window slides forward, dropping the oldest
  held packets (counted as overflow) rather than growing latency;
- a jump beyond those limits is believed only when the next packet continues it (§A.1
  probation), then the buffer re-synchronises on it; an SSRC change re-synchronises at once.

Timestamps are not used for ordering; a gap's timestamp is interpolated from the last played
packet with ``ticks_per_packet``, modulo 2**32 (RFC 3550 §5.1 wrap).

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

from pbx.media.rtp import uint16_add, uint32_add

log = logging.getLogger(__name__)

MAX_DROPOUT = 3000  # RFC 3550 §A.1: larger forward jumps are a restart, not loss
MAX_MISORDER = 100  # RFC 3550 §A.1: packets further behind than this are a restart


class Packet(Protocol):
    """What the buffer needs of a packet; :class:`pbx.media.rtp.RtpPacket` fits."""

    @property
    def sequence(self) -> int: ...

    @property
    def timestamp(self) -> int: ...

    @property
    def ssrc(self) -> int: ...

    @property
    def payload(self) -> bytes: ...


class AddResult(Enum):
    STORED = "stored"
    DUPLICATE = "duplicate"  # already held: dropped
    LATE = "late"  # its turn has passed: dropped
    PROBATION = "probation"  # a big jump, held until the next packet confirms it
    RESYNCED = "resynced"  # new SSRC or confirmed jump: buffer restarted on this packet


@dataclass(frozen=True, slots=True)
class Playout:
    """One frame's worth of output: the packet, or ``None`` for a gap to conceal."""

    sequence: int
    timestamp: int
    packet: Packet | None

    @property
    def missing(self) -> bool:
        return self.packet is None


@dataclass(slots=True)
class JitterStats:
    stored: int = 0
    duplicates: int = 0
    late: int = 0
    missing: int = 0  # gaps handed out for concealment
    overflow: int = 0  # held packets dropped because the window slid past them
    underruns: int = 0  # pops that found the buffer empty
    resyncs: int = 0


@dataclass(slots=True)
class _Stream:
    ssrc: int
    origin: int  # next sequence number to play
    last: tuple[int, int] | None = None  # (sequence, timestamp) of the last played packet
    held: int = 0
    playing: bool = False
    probation: Packet | None = None
    slots: list[Packet | None] = field(default_factory=list)


class JitterBuffer:
    """Reorders one RTP stream and plays it out after ``prefetch`` packets are buffered."""

    def __init__(self, capacity: int = 16, prefetch: int = 3, ticks_per_packet: int = 160) -> None:
        if capacity < 2 or capacity & (capacity - 1) or capacity > 1024:
            raise ValueError("capacity must be a power of two between 2 and 1024")
        if not 1 <= prefetch <= capacity:
            raise ValueError("prefetch must be between 1 and capacity")
        self.capacity = capacity
        self.prefetch = prefetch
        self.ticks_per_packet = ticks_per_packet
        self.stats = JitterStats()
        self._stream: _Stream | None = None

    def add(self, packet: Packet) -> AddResult:
        """Offer one received packet to the buffer."""
        stream = self._stream
        if stream is None or packet.ssrc != stream.ssrc:
            return self._resync(packet)
        delta = (packet.sequence - stream.origin) & 0xFFFF
        if delta >= 0x8000 and 0x10000 - delta <= MAX_MISORDER:
            if self._rewind(stream, packet.sequence):
                return self._store(stream, packet)
            self.stats.late += 1
            return AddResult.LATE
        if delta >= 0x8000 or delta > MAX_DROPOUT:
            return self._probe(stream, packet)
        stream.probation = None
        if delta >= self.capacity:
            self._slide(stream, delta - self.capacity + 1)
        return self._store(stream, packet)

    def pop(self) -> Playout | None:
        """The next frame in sequence order, or ``None`` while buffering or empty."""
        stream = self._stream
        if stream is None:
            return None
        if not stream.playing:
            if stream.held < self.prefetch:
                return None
            stream.playing = True
        if stream.held == 0:
            stream.playing = False  # underrun: rebuild the prefetch depth before playing on
            self.stats.underruns += 1
            return None
        return self._take(stream)

    def slots(self) -> tuple[int | None, ...]:
        """Sequence number held in each slot (index = sequence % capacity), for inspection."""
        if self._stream is None:
            return (None,) * self.capacity
        return tuple(p.sequence if p is not None else None for p in self._stream.slots)

    @property
    def origin(self) -> int | None:
        """The next sequence number :meth:`pop` will hand out."""
        return self._stream.origin if self._stream else None

    @property
    def held(self) -> int:
        return self._stream.held if self._stream else 0

    def reset(self) -> None:
        """Forget the stream; the next packet starts a new one."""
        self._stream = None

    def _resync(self, packet: Packet, *, confirmed_by: Packet | None = None) -> AddResult:
        first = self._stream is None
        self._stream = _Stream(packet.ssrc, packet.sequence, slots=[None] * self.capacity)
        self._store(self._stream, packet)
        if confirmed_by is not None:
            self._store(self._stream, confirmed_by)
        if first:
            return AddResult.STORED
        self.stats.resyncs += 1
        log.debug("jitter buffer resynced on ssrc=%#x seq=%d", packet.ssrc, packet.sequence)
        return AddResult.RESYNCED

    def _rewind(self, stream: _Stream, sequence: int) -> bool:
        """Before anything was played, let an early straggler move ``origin`` back to it."""
        if stream.playing or stream.last is not None:
            return False
        held = [p.sequence for p in stream.slots if p is not None]
        if any((seq - sequence) & 0xFFFF >= self.capacity for seq in held):
            return False
        stream.origin = sequence
        return True

    def _probe(self, stream: _Stream, packet: Packet) -> AddResult:
        previous = stream.probation
        if previous is not None and packet.sequence == uint16_add(previous.sequence, 1):
            return self._resync(previous, confirmed_by=packet)
        stream.probation = packet
        return AddResult.PROBATION

    def _slide(self, stream: _Stream, count: int) -> None:
        """Advance ``origin`` by ``count``, dropping what the window leaves behind."""
        for _ in range(count):
            index = stream.origin % self.capacity
            if stream.slots[index] is not None:
                stream.slots[index] = None
                stream.held -= 1
                self.stats.overflow += 1
            stream.origin = uint16_add(stream.origin, 1)

    def _store(self, stream: _Stream, packet: Packet) -> AddResult:
        index = packet.sequence % self.capacity
        if stream.slots[index] is not None:
            self.stats.duplicates += 1
            return AddResult.DUPLICATE
        stream.slots[index] = packet
        stream.held += 1
        self.stats.stored += 1
        return AddResult.STORED

    def _take(self, stream: _Stream) -> Playout:
        index = stream.origin % self.capacity
        packet, stream.slots[index] = stream.slots[index], None
        sequence = stream.origin
        stream.origin = uint16_add(sequence, 1)
        if packet is not None:
            stream.held -= 1
            stream.last = (sequence, packet.timestamp)
            return Playout(sequence, packet.timestamp, packet)
        self.stats.missing += 1
        return Playout(sequence, self._interpolate(stream, sequence), None)

    def _interpolate(self, stream: _Stream, sequence: int) -> int:
        """Timestamp a gap would have had, from the last played or the next held packet."""
        if stream.last is not None:
            last_seq, last_ts = stream.last
            steps = (sequence - last_seq) & 0xFFFF
            return uint32_add(last_ts, steps * self.ticks_per_packet)
        nxt = next(p for p in self._in_order(stream) if p is not None)
        steps = (nxt.sequence - sequence) & 0xFFFF
        return uint32_add(nxt.timestamp, -steps * self.ticks_per_packet)

    def _in_order(self, stream: _Stream) -> list[Packet | None]:
        start = stream.origin % self.capacity
        return stream.slots[start:] + stream.slots[:start]
