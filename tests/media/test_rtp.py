"""RTP/RTCP wire format (RFC 3550 §5.1, §6.4), RFC 5761 demux, serial numbers, A.1/A.3/A.8 stats.

Golden packets are built here field by field with struct.pack, following the RFC figures.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.media.rtp import (
    RTCP_APP,
    SDES_CNAME,
    ReportBlock,
    RtcpBye,
    RtcpGenericPacket,
    RtcpPacket,
    RtcpReceiverReport,
    RtcpSenderReport,
    RtcpSourceDescription,
    RtpPacket,
    SdesChunk,
    StreamStatistics,
    is_rtcp,
    parse_rtcp,
    peek_header,
    serialize_rtcp,
    uint16_add,
    uint16_gt,
    uint16_gte,
    uint32_add,
    uint32_gt,
    uint32_gte,
)

SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- golden RTP (RFC 3550 §5.1 figure) ------------------------------------------------------

# V=2 P=0 X=0 CC=0 | M=1 PT=0 | seq | timestamp | SSRC, then 160 octets of PCMU silence
PCMU = struct.pack("!BBHII", 0x80, 0x80, 0x1234, 0xDEADBEEF, 0x01020304) + b"\xff" * 160

# V=2 P=1 X=1 CC=2 | M=0 PT=101, two CSRCs, extension profile 0xBEDE with one word,
# payload of 4 octets, then 3 padding octets whose last holds the count 3.
FULL = (
    struct.pack("!BBHII", 0x80 | 0x20 | 0x10 | 2, 101, 65535, 4294967295, 0xCAFEBABE)
    + struct.pack("!II", 11, 22)
    + struct.pack("!HH", 0xBEDE, 1)
    + b"\x10\xaa\x00\x00"
    + b"\x05\x0a\x01\xa0"
    + b"\x00\x00\x03"
)


def test_golden_pcmu_packet_parses_to_its_fields_and_serialises_to_the_same_bytes() -> None:
    packet = RtpPacket.parse(PCMU)
    assert packet.version == 2
    assert packet.marker is True
    assert packet.payload_type == 0
    assert packet.sequence == 0x1234
    assert packet.timestamp == 0xDEADBEEF
    assert packet.ssrc == 0x01020304
    assert packet.csrc == ()
    assert not packet.padding and not packet.extension
    assert packet.payload == b"\xff" * 160
    assert packet.serialize() == PCMU
    assert bytes(packet) == PCMU


def test_golden_packet_with_csrc_extension_and_padding_round_trips() -> None:
    packet = RtpPacket.parse(FULL)
    assert packet.payload_type == 101 and packet.marker is False
    assert packet.sequence == 65535 and packet.timestamp == 4294967295
    assert packet.csrc == (11, 22)
    assert packet.extension and packet.extension_profile == 0xBEDE
    assert packet.extension_data == b"\x10\xaa\x00\x00"
    assert packet.payload == b"\x05\x0a\x01\xa0"
    assert packet.padding and packet.padding_length == 3
    assert packet.serialize() == FULL


def test_peek_header_returns_the_fields_the_relay_needs() -> None:
    assert peek_header(PCMU) == (0, True, 0x1234, 0xDEADBEEF, 0x01020304)
    assert peek_header(FULL) == (101, False, 65535, 4294967295, 0xCAFEBABE)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "shorter than the header"),
        (PCMU[:11], "shorter than the header"),
        (b"\x40" + PCMU[1:], "version 1, expected 2"),
        (b"\x82" + PCMU[1:12] + b"\x00" * 4, "truncated CSRC list"),
        (b"\x90" + PCMU[1:12] + b"\xbe\xde", "truncated extension header"),
        (b"\x90" + PCMU[1:12] + b"\xbe\xde\x00\x02" + b"\x00" * 4, "truncated extension data"),
        (b"\xa0" + PCMU[1:12] + b"\x01\x00", "padding length of 0"),
        (b"\xa0" + PCMU[1:12] + b"\x01\x09", "padding length 9 exceeds the payload"),
        (b"\xa0" + PCMU[1:12], "exceeds the payload"),
    ],
)
def test_malformed_rtp_raises_value_error_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RtpPacket.parse(data)


def test_peek_header_rejects_short_and_wrong_version_packets() -> None:
    with pytest.raises(ValueError, match="shorter than the header"):
        peek_header(b"\x80\x00")
    with pytest.raises(ValueError, match="version 0"):
        peek_header(bytes(12))


@pytest.mark.parametrize(
    "fields",
    [
        {"payload_type": 128},
        {"sequence": 65536},
        {"timestamp": -1},
        {"csrc": tuple(range(16))},
        {"padding_length": 256},
        {"extension_data": b"\x00" * 4},
        {"extension_profile": 1, "extension_data": b"\x00"},
    ],
)
def test_constructing_an_unrepresentable_packet_raises_value_error(
    fields: dict[str, object],
) -> None:
    base: dict[str, object] = {"payload_type": 0, "sequence": 0, "timestamp": 0, "ssrc": 0}
    with pytest.raises(ValueError):
        RtpPacket(**(base | fields))  # type: ignore[arg-type]


u32 = st.integers(0, 0xFFFFFFFF)
words = st.binary(max_size=16).map(lambda b: b + bytes(-len(b) % 4))
rtp_packets = st.builds(
    RtpPacket,
    marker=st.booleans(),
    payload_type=st.integers(0, 127),
    sequence=st.integers(0, 0xFFFF),
    timestamp=u32,
    ssrc=u32,
    csrc=st.lists(u32, max_size=15).map(tuple),
    extension_profile=st.none() | st.integers(0, 0xFFFF),
    payload=st.binary(max_size=64),
    padding_length=st.integers(0, 255),
).flatmap(
    lambda p: (
        st.just(p)
        if p.extension_profile is None
        else words.map(
            lambda data: RtpPacket(
                marker=p.marker,
                payload_type=p.payload_type,
                sequence=p.sequence,
                timestamp=p.timestamp,
                ssrc=p.ssrc,
                csrc=p.csrc,
                extension_profile=p.extension_profile,
                extension_data=data,
                payload=p.payload,
                padding_length=p.padding_length,
            )
        )
    )
)


@SLOW_OK
@given(rtp_packets)
def test_any_rtp_packet_survives_serialise_then_parse(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data) == packet
    assert peek_header(data) == (
        packet.payload_type,
        packet.marker,
        packet.sequence,
        packet.timestamp,
        packet.ssrc,
    )


@SLOW_OK
@given(st.binary(max_size=80))
def test_random_bytes_either_parse_or_raise_value_error(data: bytes) -> None:
    for parse in (RtpPacket.parse, parse_rtcp):
        try:
            parse(data)
        except ValueError:
            pass


# --- golden RTCP (RFC 3550 §6.4 figures) ----------------------------------------------------

SR_BLOCK = struct.pack(
    "!IIIIII", 0x11111111, (64 << 24) | 5, (1 << 16) | 300, 42, 0xAABBCCDD, 65536
)
SR = (
    struct.pack("!BBH", 0x81, 200, 12)  # V=2 RC=1, PT=SR, length 13 words - 1
    + struct.pack("!IQIII", 0x01020304, 0xE1234567_89ABCDEF, 160000, 1000, 160000)
    + SR_BLOCK
)
SDES = (
    struct.pack("!BBH", 0x81, 202, 4)  # SC=1, 5 words
    + struct.pack("!I", 0x01020304)
    + bytes([SDES_CNAME, 8])
    + b"pbx@host"
    + b"\x00\x00"  # null item, padded to the 32-bit boundary
)
BYE = (
    struct.pack("!BBH", 0x82, 203, 4)  # SC=2, 5 words
    + struct.pack("!II", 0x01020304, 0x05060708)
    + bytes([6])
    + b"hangup"
    + b"\x00"
)
APP = struct.pack("!BBH", 0x81, 204, 3) + struct.pack("!I", 7) + b"TEST" + b"\x00\x01\x02\x03"


def test_golden_compound_sr_sdes_bye_parses_and_serialises_to_the_same_bytes() -> None:
    packets = parse_rtcp(SR + SDES + BYE)
    assert packets == [
        RtcpSenderReport(
            ssrc=0x01020304,
            ntp_timestamp=0xE1234567_89ABCDEF,
            rtp_timestamp=160000,
            packet_count=1000,
            octet_count=160000,
            reports=(ReportBlock(0x11111111, 64, 5, (1 << 16) | 300, 42, 0xAABBCCDD, 65536),),
        ),
        RtcpSourceDescription((SdesChunk(0x01020304, ((SDES_CNAME, b"pbx@host"),)),)),
        RtcpBye((0x01020304, 0x05060708), b"hangup"),
    ]
    assert isinstance(packets[1], RtcpSourceDescription)
    assert packets[1].chunks[0].cname == b"pbx@host"
    assert serialize_rtcp(packets) == SR + SDES + BYE


def test_receiver_report_carries_a_negative_cumulative_loss_as_24_bit_twos_complement() -> None:
    block = struct.pack("!IIIIII", 9, (0 << 24) | 0xFFFFFF, 100, 0, 0, 0)
    data = struct.pack("!BBH", 0x81, 201, 7) + struct.pack("!I", 1) + block
    (rr,) = parse_rtcp(data)
    assert rr == RtcpReceiverReport(1, (ReportBlock(9, 0, -1, 100),))
    assert serialize_rtcp([rr]) == data


def test_app_and_unknown_packet_types_are_kept_as_generic_packets() -> None:
    psfb = struct.pack("!BBH", 0x81, 206, 2) + struct.pack("!II", 1, 2)  # PLI (RFC 4585)
    app, fb = parse_rtcp(APP + psfb)
    assert app == RtcpGenericPacket(RTCP_APP, 1, struct.pack("!I", 7) + b"TEST\x00\x01\x02\x03")
    assert fb == RtcpGenericPacket(206, 1, struct.pack("!II", 1, 2))
    assert serialize_rtcp([app, fb]) == APP + psfb


def test_rtcp_padding_is_removed_and_an_unaligned_body_is_padded_on_output() -> None:
    padded = struct.pack("!BBH", 0xA0, 204, 2) + b"abcde" + b"\x00\x00\x03"
    (packet,) = parse_rtcp(padded)
    assert packet == RtcpGenericPacket(204, 0, b"abcde")
    assert serialize_rtcp([packet]) == padded


def test_empty_reports_and_bye_without_reason_round_trip() -> None:
    packets: list[RtcpPacket] = [RtcpReceiverReport(5), RtcpBye((5,)), RtcpBye((), b"")]
    data = serialize_rtcp(packets)
    assert data[:8] == struct.pack("!BBHI", 0x80, 201, 1, 5)
    assert parse_rtcp(data) == packets


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (SR + b"\x81", "truncated header"),
        (b"\x41" + SR[1:], "version 1"),
        (SR[:-4], "length exceeds the datagram"),
        (struct.pack("!BBH", 0x80, 200, 1) + b"\x00" * 4, "truncated sender info"),
        (struct.pack("!BBH", 0x81, 201, 1) + b"\x00" * 4, "RR has truncated report blocks"),
        (struct.pack("!BBH", 0x81, 200, 6) + b"\x00" * 24, "SR has truncated report blocks"),
        (struct.pack("!BBH", 0x80, 201, 0), "RR has truncated SSRC"),
        (struct.pack("!BBH", 0x81, 202, 0), "truncated chunk SSRC"),
        (struct.pack("!BBH", 0x81, 202, 2) + b"\x00\x00\x00\x01\x01\x09ab", "truncated item"),
        (struct.pack("!BBH", 0x81, 202, 2) + b"\x00\x00\x00\x01\x01\x02ab", "no terminating"),
        (struct.pack("!BBH", 0x82, 203, 1) + b"\x00" * 4, "truncated SSRC list"),
        (struct.pack("!BBH", 0x81, 203, 2) + b"\x00" * 4 + b"\x09abc", "truncated reason"),
        (struct.pack("!BBH", 0xA0, 204, 1) + b"\x00\x00\x00\x00", "invalid padding length 0"),
        (struct.pack("!BBH", 0xA0, 204, 1) + b"\x00\x00\x00\x09", "invalid padding length 9"),
    ],
)
def test_malformed_rtcp_raises_value_error_naming_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_rtcp(data)


def test_unrepresentable_rtcp_raises_value_error() -> None:
    with pytest.raises(ValueError, match="fraction lost"):
        ReportBlock(1, fraction_lost=256)
    with pytest.raises(ValueError, match="24-bit signed"):
        ReportBlock(1, packets_lost=0x800000)
    with pytest.raises(ValueError, match="does not fit 5 bits"):
        serialize_rtcp([RtcpBye(tuple(range(32)))])
    with pytest.raises(ValueError, match="at most 255"):
        SdesChunk(1, ((SDES_CNAME, b"x" * 256),))


blocks = st.builds(
    ReportBlock,
    ssrc=u32,
    fraction_lost=st.integers(0, 255),
    packets_lost=st.integers(-0x800000, 0x7FFFFF),
    highest_sequence=u32,
    jitter=u32,
    lsr=u32,
    dlsr=u32,
)
block_lists = st.lists(blocks, max_size=3).map(tuple)
rtcp_packets = st.one_of(
    st.builds(
        RtcpSenderReport,
        ssrc=u32,
        ntp_timestamp=st.integers(0, (1 << 64) - 1),
        rtp_timestamp=u32,
        packet_count=u32,
        octet_count=u32,
        reports=block_lists,
        extension=words,
    ),
    st.builds(RtcpReceiverReport, ssrc=u32, reports=block_lists, extension=words),
    st.builds(
        RtcpSourceDescription,
        st.lists(
            st.builds(
                SdesChunk,
                u32,
                st.lists(st.tuples(st.integers(1, 8), st.binary(max_size=20)), max_size=3).map(
                    tuple
                ),
            ),
            max_size=3,
        ).map(tuple),
    ),
    st.builds(RtcpBye, st.lists(u32, max_size=4).map(tuple), st.none() | st.binary(max_size=20)),
    st.builds(
        RtcpGenericPacket,
        st.sampled_from([204, 205, 206, 207]),
        st.integers(0, 31),
        st.binary(max_size=20),
    ),
)


@SLOW_OK
@given(st.lists(rtcp_packets, min_size=1, max_size=4))
def test_any_compound_rtcp_survives_serialise_then_parse(packets: list[RtcpPacket]) -> None:
    data = serialize_rtcp(packets)
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == packets


# --- RFC 5761 demultiplexing ----------------------------------------------------------------


def test_rtcp_and_rtp_are_told_apart_by_the_second_octet() -> None:
    assert is_rtcp(SR)
    assert is_rtcp(APP)
    assert not is_rtcp(PCMU)
    assert not is_rtcp(FULL)  # PT 101
    assert not is_rtcp(struct.pack("!BBHII", 0x80, 0x80 | 96, 1, 1, 1))  # marker + PT 96
    assert not is_rtcp(b"\x80\xc8")  # too short for an RTCP header
    assert not is_rtcp(b"\x00\xc8\x00\x01")  # not version 2 (e.g. STUN)


# --- serial numbers (RFC 1982) --------------------------------------------------------------


def test_sequence_numbers_wrap_and_compare_as_serial_numbers() -> None:
    assert uint16_add(65535, 1) == 0
    assert uint16_add(0, -1) == 65535
    assert uint16_gt(0, 65535)
    assert not uint16_gt(65535, 0)
    assert uint16_gt(10, 9) and not uint16_gt(9, 10)
    assert uint16_gte(7, 7) and not uint16_gt(7, 7)
    assert uint32_add(0xFFFFFFFF, 2) == 1
    assert uint32_gt(5, 0xFFFFFFF0)
    assert not uint32_gt(0xFFFFFFF0, 5)
    assert uint32_gte(3, 3)


# --- StreamStatistics (RFC 3550 A.1, A.3, A.8) ----------------------------------------------


def packet(sequence: int, timestamp: int = 0) -> RtpPacket:
    return RtpPacket(payload_type=0, sequence=sequence, timestamp=timestamp, ssrc=1)


def test_jitter_matches_a_hand_computed_example() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    # timestamps advance 160 per 20 ms; arrivals at 0, 20, 45, 60 ms = 0, 160, 360, 480 units
    # transit: 0, 0, 40, 0 -> |D|: 0, 40, 40
    # J: 0 + (0-0)/16 = 0; 0 + (40-0)/16 = 2.5; 2.5 + (40-2.5)/16 = 4.84375 -> reported 4
    for seq, ts, arrival in [(0, 0, 0.0), (1, 160, 0.020), (2, 320, 0.045), (3, 480, 0.060)]:
        assert stats.add(packet(seq, ts), arrival)
    assert stats.jitter == 4


def test_jitter_is_unaffected_by_a_timestamp_wrap() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    base = 0xFFFFFFFF - 159
    for i in range(4):
        stats.add(packet(i, (base + 160 * i) & 0xFFFFFFFF), 100.0 + 0.020 * i)
    assert stats.jitter == 0


def test_loss_and_fraction_lost_follow_appendix_a3() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    for seq in [100, 101, 103, 104, 107, 108, 109]:  # 102, 105, 106 lost
        stats.add(packet(seq), 0.0)
    assert (stats.expected, stats.received, stats.lost) == (10, 7, 3)
    block = stats.report_block(ssrc=77, lsr=5, dlsr=6)
    assert block == ReportBlock(77, (3 << 8) // 10, 3, 109, 0, 5, 6)
    stats.add(packet(110), 0.0)
    assert stats.fraction_lost() == 0  # the new interval lost nothing


def test_sequence_wrap_counts_a_cycle_in_the_extended_highest_sequence() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    for seq in [65534, 65535, 0, 1]:
        stats.add(packet(seq), 0.0)
    assert stats.extended_highest_sequence == 65536 + 1
    assert (stats.expected, stats.lost) == (4, 0)


def test_new_source_is_on_probation_until_two_packets_arrive_in_sequence() -> None:
    stats = StreamStatistics(clock_rate=8000)
    assert not stats.add(packet(10), 0.0)
    assert not stats.add(packet(50), 0.0)  # out of sequence: probation starts again
    assert stats.add(packet(51), 0.0)
    assert (stats.received, stats.base_seq, stats.expected) == (1, 51, 1)


def test_a_large_jump_is_ignored_once_and_restarts_the_count_when_confirmed() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    for seq in range(5):
        stats.add(packet(seq), 0.0)
    assert not stats.add(packet(30000), 0.0)
    assert stats.add(packet(30001), 0.0)  # sequential after the jump: the source restarted
    assert (stats.base_seq, stats.received, stats.lost) == (30001, 1, 0)


def test_late_and_duplicate_packets_count_as_received() -> None:
    stats = StreamStatistics(clock_rate=8000, min_sequential=0)
    for seq in [1, 2, 4, 3, 4]:
        assert stats.add(packet(seq), 0.0)
    assert (stats.expected, stats.received, stats.lost) == (4, 5, -1)
    assert stats.fraction_lost() == 0
