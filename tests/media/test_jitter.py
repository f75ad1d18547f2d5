"""Jitter buffer: slot contents after each add, output order, gaps for concealment, late and
duplicate drops, window overflow, sequence and timestamp wrap, SSRC change and jump probation.

Loss and reorder patterns are deterministic (aiortc ``loss_pattern`` style).
"""

from __future__ import annotations

import pytest

from pbx.media.jitter import AddResult, JitterBuffer, Playout
from pbx.media.rtp import RtpPacket

SSRC = 0x1234


def rtp(sequence: int, timestamp: int | None = None, ssrc: int = SSRC) -> RtpPacket:
    ts = (sequence * 160 if timestamp is None else timestamp) & 0xFFFFFFFF
    return RtpPacket(
        payload_type=0,
        sequence=sequence & 0xFFFF,
        timestamp=ts,
        ssrc=ssrc,
        payload=bytes([sequence & 0xFF]) * 160,
    )


def drain(buffer: JitterBuffer) -> list[Playout]:
    out = []
    while (frame := buffer.pop()) is not None:
        out.append(frame)
    return out


def order(frames: list[Playout]) -> list[tuple[int, bool]]:
    return [(f.sequence, f.missing) for f in frames]


def test_slots_are_indexed_by_sequence_modulo_capacity() -> None:
    buffer = JitterBuffer(capacity=4, prefetch=2)
    assert buffer.add(rtp(0)) is AddResult.STORED
    assert buffer.slots() == (0, None, None, None)
    assert buffer.add(rtp(2)) is AddResult.STORED
    assert buffer.slots() == (0, None, 2, None)
    assert buffer.add(rtp(1)) is AddResult.STORED
    assert buffer.slots() == (0, 1, 2, None)
    assert buffer.add(rtp(3)) is AddResult.STORED
    assert buffer.slots() == (0, 1, 2, 3)
    assert [f.sequence for f in drain(buffer)] == [0, 1, 2, 3]
    assert buffer.slots() == (None, None, None, None)


def test_nothing_plays_until_prefetch_depth_is_reached() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=3)
    buffer.add(rtp(10))
    buffer.add(rtp(11))
    assert buffer.pop() is None
    buffer.add(rtp(12))
    frame = buffer.pop()
    assert frame is not None and frame.packet is not None
    assert (frame.sequence, frame.timestamp, frame.packet.payload[0]) == (10, 1600, 10)


def test_reordered_packets_come_out_in_sequence_order() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=4)
    for seq in (20, 22, 21, 24, 23):
        buffer.add(rtp(seq))
    assert buffer.slots() == (24, None, None, None, 20, 21, 22, 23)
    assert order(drain(buffer)) == [(20, False), (21, False), (22, False), (23, False), (24, False)]


def test_gap_is_reported_missing_with_an_interpolated_timestamp() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=3)
    for seq in (30, 31, 33, 34):
        buffer.add(rtp(seq))
    frames = drain(buffer)
    assert order(frames) == [(30, False), (31, False), (32, True), (33, False), (34, False)]
    assert frames[2].timestamp == 32 * 160 and frames[2].packet is None
    assert buffer.stats.missing == 1


def test_duplicates_and_late_packets_are_dropped() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=2)
    buffer.add(rtp(40))
    assert buffer.add(rtp(40)) is AddResult.DUPLICATE
    buffer.add(rtp(41))
    assert [f.sequence for f in (buffer.pop(), buffer.pop()) if f] == [40, 41]
    assert buffer.add(rtp(41)) is AddResult.LATE  # duplicate of a packet already played
    assert buffer.add(rtp(39)) is AddResult.LATE  # arrived after its turn
    assert (buffer.stats.duplicates, buffer.stats.late) == (1, 2)
    assert buffer.slots() == (None,) * 8


def test_first_packets_out_of_order_move_the_origin_back() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=3)
    for seq in (101, 102, 100):
        buffer.add(rtp(seq))
    assert buffer.origin == 100
    assert [f.sequence for f in drain(buffer)] == [100, 101, 102]


def test_deterministic_loss_and_reorder_pattern() -> None:
    sent = list(range(50))
    arrival = [s for s in sent if s % 5 != 4]  # every 5th packet lost
    for i in range(0, len(arrival) - 1, 7):  # every 7th pair swapped
        arrival[i], arrival[i + 1] = arrival[i + 1], arrival[i]
    buffer = JitterBuffer(capacity=16, prefetch=3)
    played: list[Playout] = []
    for seq in arrival:  # one pop per arrival: the buffer stays about prefetch deep
        buffer.add(rtp(seq))
        if (frame := buffer.pop()) is not None:
            played.append(frame)
    played += drain(buffer)
    # 49 was lost too, but a gap at the very end is invisible until a later packet comes
    assert [f.sequence for f in played] == sent[:-1]
    assert [f.sequence for f in played if f.missing] == [s for s in sent[:-1] if s % 5 == 4]
    assert all(f.timestamp == f.sequence * 160 for f in played)


def test_window_overflow_slides_forward_dropping_the_oldest() -> None:
    buffer = JitterBuffer(capacity=4, prefetch=4)
    for seq in range(4):
        buffer.add(rtp(seq))
    assert buffer.add(rtp(6)) is AddResult.STORED
    assert buffer.origin == 3
    assert buffer.slots() == (None, None, 6, 3)
    assert buffer.stats.overflow == 3


def test_sequence_and_timestamp_wrap_together() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=3, ticks_per_packet=160)
    base_ts = 0xFFFFFFFF - 200  # the timestamp wraps between 65535 and 0
    arrivals = [65534, 0, 65535, 2, 3]  # 1 is lost, 0 and 65535 swapped
    for seq in arrivals:
        buffer.add(rtp(seq, base_ts + ((seq - 65534) & 0xFFFF) * 160))
    frames = drain(buffer)
    assert order(frames) == [
        (65534, False),
        (65535, False),
        (0, False),
        (1, True),
        (2, False),
        (3, False),
    ]
    assert frames[3].timestamp == (base_ts + 3 * 160) & 0xFFFFFFFF == 279


def test_ssrc_change_resynchronises_immediately() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=1)
    buffer.add(rtp(1))
    buffer.add(rtp(2))
    assert buffer.add(rtp(900, ssrc=0x9999)) is AddResult.RESYNCED
    assert buffer.origin == 900
    assert buffer.slots() == (None, None, None, None, 900, None, None, None)
    assert buffer.stats.resyncs == 1


def test_big_jump_needs_a_second_packet_to_resynchronise() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=1)
    buffer.add(rtp(100))
    assert buffer.add(rtp(9000)) is AddResult.PROBATION  # stray packet: not stored
    assert buffer.add(rtp(101)) is AddResult.STORED
    assert buffer.add(rtp(20000)) is AddResult.PROBATION
    assert buffer.add(rtp(20001)) is AddResult.RESYNCED  # the jump is confirmed
    assert [f.sequence for f in drain(buffer)] == [20000, 20001]


def test_far_backward_jump_is_a_restart_not_a_late_packet() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=1)
    buffer.add(rtp(5000))
    assert buffer.add(rtp(4000)) is AddResult.PROBATION
    assert buffer.add(rtp(4001)) is AddResult.RESYNCED
    assert buffer.origin == 4000


def test_underrun_waits_for_the_prefetch_depth_again() -> None:
    buffer = JitterBuffer(capacity=8, prefetch=2)
    buffer.add(rtp(1))
    buffer.add(rtp(2))
    assert [f.sequence for f in drain(buffer)] == [1, 2]
    assert buffer.stats.underruns == 1
    buffer.add(rtp(3))
    assert buffer.pop() is None  # one packet is below the prefetch depth
    buffer.add(rtp(4))
    assert [f.sequence for f in drain(buffer)] == [3, 4]


def test_reset_forgets_the_stream() -> None:
    buffer = JitterBuffer()
    buffer.add(rtp(7))
    buffer.reset()
    assert (buffer.origin, buffer.held, buffer.pop()) == (None, 0, None)


@pytest.mark.parametrize(("capacity", "prefetch"), [(12, 2), (1, 1), (2048, 2), (8, 0), (8, 9)])
def test_invalid_sizes_are_refused(capacity: int, prefetch: int) -> None:
    with pytest.raises(ValueError):
        JitterBuffer(capacity=capacity, prefetch=prefetch)
