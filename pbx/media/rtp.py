"""RTP and RTCP packets, RTP/RTCP demultiplexing, serial numbers and receiver statistics.

Owns: the wire format of RTP (RFC 3550 §5.1) and of compound RTCP (RFC 3550 §6.4: SR, RR,
SDES, BYE; APP and every other packet type as :class:`RtcpGenericPacket`), the RTP/RTCP demux
test of RFC 5761 §4, RFC 1982 serial-number arithmetic for sequence numbers and timestamps,
and the receiver statistics of RFC 3550 Appendix A.1/A.3/A.8 (:class:`StreamStatistics`).

Packets are immutable values with ``parse(data)`` and ``serialize()``; malformed input raises
``ValueError`` with a message naming what is wrong. The relay's hot path uses
:func:`peek_header` (one ``struct.unpack_from``, no object built) instead of
:meth:`RtpPacket.parse`.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import ClassVar

log = logging.getLogger(__name__)

RTP_VERSION = 2
RTP_HEADER_SIZE = 12
RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1  # RFC 3550 §6.5: CNAME=1 NAME=2 EMAIL=3 PHONE=4 LOC=5 TOOL=6 NOTE=7 PRIV=8

_RTP_HEADER = struct.Struct("!BBHII")  # V/P/X/CC, M/PT, sequence, timestamp, SSRC
_RTCP_HEADER = struct.Struct("!BBH")  # V/P/count, packet type, length in 32-bit words - 1
_SENDER_INFO = struct.Struct("!IQIII")  # SSRC, NTP timestamp, RTP timestamp, packets, octets
_REPORT_BLOCK = struct.Struct("!IIIIII")  # SSRC, fraction|lost, highest seq, jitter, LSR, DLSR
_MAX_COUNT = 31  # RC/SC is a 5-bit field (RFC 3550 §6.4.1)


# --- serial-number arithmetic (RFC 1982; RFC 3550 §A.1 for sequence numbers) ---------------


def uint16_add(a: int, b: int) -> int:
    """``a + b`` modulo 2**16 (sequence numbers wrap, RFC 3550 §5.1)."""
    return (a + b) & 0xFFFF


def uint16_gt(a: int, b: int) -> bool:
    """True if sequence number ``a`` is after ``b`` (RFC 1982 §3.2 with SERIAL_BITS=16)."""
    return _serial_gt(a, b, 0x8000)


def uint16_gte(a: int, b: int) -> bool:
    return a == b or uint16_gt(a, b)


def uint32_add(a: int, b: int) -> int:
    """``a + b`` modulo 2**32 (RTP timestamps wrap, RFC 3550 §5.1)."""
    return (a + b) & 0xFFFFFFFF


def uint32_gt(a: int, b: int) -> bool:
    """True if timestamp ``a`` is after ``b`` (RFC 1982 §3.2 with SERIAL_BITS=32)."""
    return _serial_gt(a, b, 0x80000000)


def uint32_gte(a: int, b: int) -> bool:
    return a == b or uint32_gt(a, b)


def _serial_gt(a: int, b: int, half: int) -> bool:
    return (a < b and b - a > half) or (a > b and a - b < half)


# --- RTP ------------------------------------------------------------------------------------


def peek_header(data: bytes) -> tuple[int, bool, int, int, int]:
    """Return ``(payload_type, marker, sequence, timestamp, ssrc)`` of an RTP packet, fast.

    Checks only the length and the version (RFC 3550 §5.1); the relay uses it per packet.
    """
    try:
        first, second, sequence, timestamp, ssrc = _RTP_HEADER.unpack_from(data)
    except struct.error:
        raise ValueError(f"RTP packet of {len(data)} bytes is shorter than the header") from None
    if first >> 6 != RTP_VERSION:
        raise ValueError(f"RTP packet has version {first >> 6}, expected 2")
    return second & 0x7F, bool(second & 0x80), sequence, timestamp, ssrc


def is_rtcp(data: bytes) -> bool:
    """True if a datagram on a muxed port is RTCP, not RTP (RFC 5761 §4).

    RTCP packet types 192-223 occupy the octet where RTP has the marker bit and payload types
    64-95, which RFC 5761 §4 reserves for that reason; SR..APP are 200-204.
    """
    return len(data) >= 4 and data[0] >> 6 == RTP_VERSION and 192 <= data[1] <= 223


@dataclass(frozen=True, slots=True, kw_only=True)
class RtpPacket:
    """One RTP packet (RFC 3550 §5.1); the P and X flags follow from the fields.

    ``padding_length`` counts the padding octets including the last one that holds the count;
    padding is written as zeros. ``extension_profile`` is None when there is no header
    extension (§5.3.1); ``extension_data`` is its body, a multiple of 4 octets.
    """

    version: int = RTP_VERSION
    marker: bool = False
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    csrc: tuple[int, ...] = ()
    extension_profile: int | None = None
    extension_data: bytes = b""
    payload: bytes = b""
    padding_length: int = 0

    def __post_init__(self) -> None:
        _check(self.version == RTP_VERSION, f"RTP version must be 2, not {self.version}")
        _check(0 <= self.payload_type <= 127, "RTP payload type must be 0-127")
        _check(0 <= self.sequence <= 0xFFFF, "RTP sequence number must be 0-65535")
        _check_u32("RTP timestamp, SSRC or CSRC", self.timestamp, self.ssrc, *self.csrc)
        _check(len(self.csrc) <= 15, "RTP packet has at most 15 CSRCs")
        _check(0 <= self.padding_length <= 255, "RTP padding length must be 0-255")
        if self.extension_profile is None:
            _check(not self.extension_data, "RTP extension data needs an extension profile")
        else:
            _check(0 <= self.extension_profile <= 0xFFFF, "RTP extension profile is 16 bits")
            _check(len(self.extension_data) % 4 == 0, "RTP extension data is whole words")
            _check(len(self.extension_data) <= 4 * 0xFFFF, "RTP extension data is too long")

    @property
    def padding(self) -> bool:
        return self.padding_length > 0

    @property
    def extension(self) -> bool:
        return self.extension_profile is not None

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        """Parse one RTP packet; ``ValueError`` names what is malformed."""
        payload_type, marker, sequence, timestamp, ssrc = peek_header(data)
        first = data[0]
        pos = RTP_HEADER_SIZE
        cc = first & 0x0F
        if len(data) < pos + 4 * cc:
            raise ValueError("RTP packet has truncated CSRC list")
        csrc = struct.unpack_from(f"!{cc}I", data, pos)
        pos += 4 * cc
        profile: int | None = None
        extension = b""
        if first & 0x10:
            if len(data) < pos + 4:
                raise ValueError("RTP packet has truncated extension header")
            profile, words = struct.unpack_from("!HH", data, pos)
            pos += 4
            if len(data) < pos + 4 * words:
                raise ValueError("RTP packet has truncated extension data")
            extension = bytes(data[pos : pos + 4 * words])
            pos += 4 * words
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise ValueError("RTP packet has the padding flag but a padding length of 0")
            if pos + padding > end:
                raise ValueError(f"RTP packet padding length {padding} exceeds the payload")
            end -= padding
        return cls(
            marker=marker,
            payload_type=payload_type,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            csrc=csrc,
            extension_profile=profile,
            extension_data=extension,
            payload=bytes(data[pos:end]),
            padding_length=padding,
        )

    def serialize(self) -> bytes:
        first = (self.version << 6) | len(self.csrc)
        if self.padding_length:
            first |= 0x20
        if self.extension_profile is not None:
            first |= 0x10
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            _RTP_HEADER.pack(first, second, self.sequence, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension_profile is not None:
            words = len(self.extension_data) // 4
            parts += [struct.pack("!HH", self.extension_profile, words), self.extension_data]
        parts.append(self.payload)
        if self.padding_length:
            parts.append(bytes(self.padding_length - 1) + bytes([self.padding_length]))
        return b"".join(parts)

    __bytes__ = serialize


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _check_u32(kind: str, *values: int) -> None:
    if not all(0 <= value <= 0xFFFFFFFF for value in values):
        raise ValueError(f"{kind} field does not fit 32 bits")


# --- RTCP (RFC 3550 §6.4) -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """A reception report block (RFC 3550 §6.4.1); ``packets_lost`` is 24-bit signed."""

    ssrc: int
    fraction_lost: int = 0
    packets_lost: int = 0
    highest_sequence: int = 0  # extended: cycles in the high 16 bits
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    def __post_init__(self) -> None:
        _check_u32("report block", self.ssrc, self.highest_sequence, self.jitter, self.lsr)
        _check_u32("report block", self.dlsr)
        _check(0 <= self.fraction_lost <= 255, "report block fraction lost is 8 bits")
        _check(-0x800000 <= self.packets_lost <= 0x7FFFFF, "report block lost is 24-bit signed")

    @classmethod
    def parse(cls, data: bytes, pos: int) -> ReportBlock:
        ssrc, lost_word, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        lost = lost_word & 0xFFFFFF
        if lost & 0x800000:
            lost -= 0x1000000
        return cls(ssrc, lost_word >> 24, lost, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost_word = (self.fraction_lost << 24) | (self.packets_lost & 0xFFFFFF)
        return _REPORT_BLOCK.pack(
            self.ssrc, lost_word, self.highest_sequence, self.jitter, self.lsr, self.dlsr
        )


def _parse_blocks(body: bytes, pos: int, count: int, kind: str) -> tuple[ReportBlock, ...]:
    if len(body) < pos + count * _REPORT_BLOCK.size:
        raise ValueError(f"RTCP {kind} has truncated report blocks")
    size = _REPORT_BLOCK.size
    return tuple(ReportBlock.parse(body, pos + i * size) for i in range(count))


@dataclass(frozen=True, slots=True)
class RtcpSenderReport:
    """SR (RFC 3550 §6.4.1); ``extension`` is the profile-specific tail."""

    packet_type: ClassVar[int] = RTCP_SR
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __post_init__(self) -> None:
        _check_u32("RTCP SR", self.ssrc, self.rtp_timestamp, self.packet_count, self.octet_count)
        _check(0 <= self.ntp_timestamp < 1 << 64, "RTCP SR NTP timestamp is 64 bits")

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpSenderReport:
        if len(body) < _SENDER_INFO.size:
            raise ValueError("RTCP SR has truncated sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
        reports = _parse_blocks(body, _SENDER_INFO.size, count, "SR")
        tail = _SENDER_INFO.size + count * _REPORT_BLOCK.size
        return cls(ssrc, ntp, rtp_ts, packets, octets, reports, body[tail:])

    def body(self) -> tuple[int, bytes]:
        info = _SENDER_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        blocks = b"".join(r.serialize() for r in self.reports)
        return len(self.reports), info + blocks + self.extension


@dataclass(frozen=True, slots=True)
class RtcpReceiverReport:
    """RR (RFC 3550 §6.4.2)."""

    packet_type: ClassVar[int] = RTCP_RR
    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    def __post_init__(self) -> None:
        _check_u32("RTCP RR", self.ssrc)

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpReceiverReport:
        if len(body) < 4:
            raise ValueError("RTCP RR has truncated SSRC")
        (ssrc,) = struct.unpack_from("!I", body)
        reports = _parse_blocks(body, 4, count, "RR")
        return cls(ssrc, reports, body[4 + count * _REPORT_BLOCK.size :])

    def body(self) -> tuple[int, bytes]:
        blocks = b"".join(r.serialize() for r in self.reports)
        return len(self.reports), struct.pack("!I", self.ssrc) + blocks + self.extension


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its ``(item type, value)`` items (RFC 3550 §6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        _check_u32("SDES chunk", self.ssrc)
        for kind, value in self.items:
            _check(1 <= kind <= 255, "SDES item type must be 1-255")
            _check(len(value) <= 255, "SDES item value is at most 255 octets")

    @property
    def cname(self) -> bytes | None:
        return next((value for kind, value in self.items if kind == SDES_CNAME), None)

    def serialize(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for kind, value in self.items:
            out += bytes([kind, len(value)]) + value
        # "terminated by one or more null octets ... padding to the next 32-bit boundary"
        out += bytes(4 - len(out) % 4)
        return bytes(out)


def _parse_chunk(body: bytes, pos: int) -> tuple[SdesChunk, int]:
    if len(body) < pos + 4:
        raise ValueError("RTCP SDES has truncated chunk SSRC")
    (ssrc,) = struct.unpack_from("!I", body, pos)
    pos += 4
    items: list[tuple[int, bytes]] = []
    while True:
        if pos >= len(body):
            raise ValueError("RTCP SDES chunk has no terminating null item")
        kind = body[pos]
        if kind == 0:
            return SdesChunk(ssrc, tuple(items)), (pos + 4) & ~3
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            raise ValueError("RTCP SDES has truncated item")
        length = body[pos + 1]
        items.append((kind, body[pos + 2 : pos + 2 + length]))
        pos += 2 + length


@dataclass(frozen=True, slots=True)
class RtcpSourceDescription:
    """SDES (RFC 3550 §6.5)."""

    packet_type: ClassVar[int] = RTCP_SDES
    chunks: tuple[SdesChunk, ...] = ()

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpSourceDescription:
        chunks = []
        pos = 0
        for _ in range(count):
            chunk, pos = _parse_chunk(body, pos)
            chunks.append(chunk)
        return cls(tuple(chunks))

    def body(self) -> tuple[int, bytes]:
        return len(self.chunks), b"".join(chunk.serialize() for chunk in self.chunks)


@dataclass(frozen=True, slots=True)
class RtcpBye:
    """BYE (RFC 3550 §6.6) with an optional reason."""

    packet_type: ClassVar[int] = RTCP_BYE
    sources: tuple[int, ...] = ()
    reason: bytes | None = None

    def __post_init__(self) -> None:
        _check_u32("RTCP BYE", *self.sources)
        _check(self.reason is None or len(self.reason) <= 255, "BYE reason is at most 255 octets")

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> RtcpBye:
        if len(body) < 4 * count:
            raise ValueError("RTCP BYE has truncated SSRC list")
        sources = struct.unpack_from(f"!{count}I", body)
        pos = 4 * count
        reason = None
        if pos < len(body):
            length = body[pos]
            if pos + 1 + length > len(body):
                raise ValueError("RTCP BYE has truncated reason")
            reason = body[pos + 1 : pos + 1 + length]
        return cls(sources, reason)

    def body(self) -> tuple[int, bytes]:
        out = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason is not None:
            text = bytes([len(self.reason)]) + self.reason
            out += text + bytes(-len(text) % 4)
        return len(self.sources), out


@dataclass(frozen=True, slots=True)
class RtcpGenericPacket:
    """APP (RFC 3550 §6.7) and any other packet type (RTPFB, PSFB, XR ...), kept as bytes.

    ``count`` is the 5-bit field after V/P (the APP subtype); ``payload`` follows the length.
    """

    packet_type: int
    count: int = 0
    payload: bytes = b""

    def __post_init__(self) -> None:
        _check(0 <= self.packet_type <= 255, "RTCP packet type must be 0-255")

    def body(self) -> tuple[int, bytes]:
        return self.count, self.payload


RtcpPacket = (
    RtcpSenderReport | RtcpReceiverReport | RtcpSourceDescription | RtcpBye | RtcpGenericPacket
)

_TYPED: dict[
    int,
    type[RtcpSenderReport] | type[RtcpReceiverReport] | type[RtcpSourceDescription] | type[RtcpBye],
] = {
    RTCP_SR: RtcpSenderReport,
    RTCP_RR: RtcpReceiverReport,
    RTCP_SDES: RtcpSourceDescription,
    RTCP_BYE: RtcpBye,
}


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a compound RTCP packet (RFC 3550 §6.1) into its packets; padding is removed."""
    if not data:
        raise ValueError("RTCP packet is empty")
    packets: list[RtcpPacket] = []
    pos = 0
    while pos < len(data):
        if len(data) - pos < _RTCP_HEADER.size:
            raise ValueError("RTCP packet has truncated header")
        first, packet_type, length = _RTCP_HEADER.unpack_from(data, pos)
        if first >> 6 != RTP_VERSION:
            raise ValueError(f"RTCP packet has version {first >> 6}, expected 2")
        end = pos + 4 + 4 * length
        if end > len(data):
            raise ValueError("RTCP packet length exceeds the datagram")
        body = bytes(data[pos + 4 : end])
        if first & 0x20:
            padding = body[-1] if body else 0
            if padding == 0 or padding > len(body):
                raise ValueError(f"RTCP packet has invalid padding length {padding}")
            body = body[:-padding]
        count = first & 0x1F
        typed = _TYPED.get(packet_type)
        if typed is None:
            packets.append(RtcpGenericPacket(packet_type, count, body))
        else:
            packets.append(typed.parse_body(count, body))
        pos = end
    return packets


def serialize_rtcp(packets: Iterable[RtcpPacket]) -> bytes:
    """Serialise packets into one compound RTCP packet.

    A body that is not a whole number of 32-bit words is padded and gets the P flag
    (RFC 3550 §6.4.1), so ``parse_rtcp`` gives the same packets back.
    """
    out = bytearray()
    for packet in packets:
        count, body = packet.body()
        if not 0 <= count <= _MAX_COUNT:
            raise ValueError(f"RTCP packet count {count} does not fit 5 bits")
        first = (RTP_VERSION << 6) | count
        padding = -len(body) % 4
        if padding:
            first |= 0x20
            body += bytes(padding - 1) + bytes([padding])
        words = len(body) // 4
        if words > 0xFFFF:
            raise ValueError("RTCP packet is too long")
        out += _RTCP_HEADER.pack(first, packet.packet_type, words) + body
    return bytes(out)


# --- receiver statistics (RFC 3550 A.1, A.3, A.8) -------------------------------------------

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100


class StreamStatistics:
    """Loss and jitter of one received RTP stream (one SSRC), fed per packet.

    Sequence validation follows RFC 3550 A.1 (a new source is "on probation" until
    ``min_sequential`` packets arrive in sequence; a jump larger than MAX_DROPOUT restarts the
    count when two sequential packets confirm it). Loss follows A.3, jitter A.8 with the
    arrival time converted to timestamp units by ``clock_rate``.
    """

    def __init__(self, clock_rate: int, min_sequential: int = 2) -> None:
        if clock_rate <= 0:
            raise ValueError("clock rate must be positive")
        self.clock_rate = clock_rate
        self.min_sequential = min_sequential
        self.received = 0
        self.base_seq = 0
        self.max_seq: int | None = None
        self.cycles = 0
        self._bad_seq = RTP_SEQ_MOD + 1
        self._probation = min_sequential
        self._expected_prior = 0
        self._received_prior = 0
        self._transit: int | None = None
        self._jitter = 0.0

    def add(self, packet: RtpPacket, arrival_time: float) -> bool:
        """Account for a packet that arrived at ``arrival_time`` seconds; False if not valid."""
        return self.update(packet.sequence, packet.timestamp, arrival_time)

    def update(self, sequence: int, timestamp: int, arrival_time: float) -> bool:
        """Same as :meth:`add` from header fields (see :func:`peek_header`)."""
        if not self._update_seq(sequence):
            return False
        arrival = round(arrival_time * self.clock_rate)
        transit = (arrival - timestamp) & 0xFFFFFFFF
        if self._transit is not None:
            d = (transit - self._transit) & 0xFFFFFFFF
            if d & 0x80000000:
                d = 0x100000000 - d
            self._jitter += (d - self._jitter) / 16  # A.8: J += (|D| - J) / 16
        self._transit = transit
        return True

    def _init_seq(self, sequence: int) -> None:
        self.base_seq = sequence
        self.max_seq = sequence
        self._bad_seq = RTP_SEQ_MOD + 1
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def _update_seq(self, sequence: int) -> bool:  # RFC 3550 A.1 update_seq()
        if self.max_seq is None:
            self._init_seq(sequence)
            if not self._probation:
                self.received = 1
                return True
            self.max_seq = uint16_add(sequence, -1)
        udelta = (sequence - self.max_seq) & 0xFFFF
        if self._probation:
            if sequence != uint16_add(self.max_seq, 1):
                self._probation = self.min_sequential - 1
                self.max_seq = sequence
                return False
            self._probation -= 1
            self.max_seq = sequence
            if self._probation:
                return False
            self._init_seq(sequence)
        elif udelta < MAX_DROPOUT:
            if sequence < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = sequence
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if sequence != self._bad_seq:
                self._bad_seq = uint16_add(sequence, 1)
                return False
            self._init_seq(sequence)  # two sequential packets: the source restarted
        self.received += 1
        return True

    @property
    def extended_highest_sequence(self) -> int:
        return self.cycles + (self.max_seq or 0)

    @property
    def expected(self) -> int:
        if self.received == 0:
            return 0
        return self.extended_highest_sequence - self.base_seq + 1

    @property
    def lost(self) -> int:
        """Cumulative packets lost, clamped to the 24-bit signed report field (A.3)."""
        return max(-0x800000, min(0x7FFFFF, self.expected - self.received))

    @property
    def jitter(self) -> int:
        """Interarrival jitter in timestamp units, as reported in RR/SR (A.8)."""
        return int(self._jitter)

    def fraction_lost(self) -> int:
        """Fraction lost since the previous call, in 1/256 (A.3); starts a new interval."""
        expected_interval = self.expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = self.expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        if expected_interval == 0 or lost_interval <= 0:
            return 0
        return min(255, (lost_interval << 8) // expected_interval)

    def report_block(self, ssrc: int, lsr: int = 0, dlsr: int = 0) -> ReportBlock:
        """A report block about this stream (source ``ssrc``); starts a new loss interval."""
        highest = self.extended_highest_sequence & 0xFFFFFFFF
        fraction = self.fraction_lost()
        return ReportBlock(ssrc, fraction, self.lost, highest, self.jitter, lsr, dlsr)
