"""DTMF: RFC 4733 payload, sender schedule and exactly-once receiver; SIP INFO bodies;
Goertzel detector and tone generator (ITU-T Q.23 frequencies, Q.24 reception limits)."""

from __future__ import annotations

import array
import math
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.media.dtmf import (
    DTMF,
    DTMF_RELAY,
    DigitEvent,
    DtmfDetector,
    EventPacket,
    EventReceiver,
    EventSender,
    InfoDigit,
    Phase,
    TelephoneEvent,
    digit_to_event,
    dtmf_sequence,
    dtmf_tone,
    event_to_digit,
    format_info_body,
    level_to_amplitude,
    parse_info_body,
)
from tests.media.audio_helpers import mix, noise, sine, speech_like

ALL_DIGITS = "0123456789*#ABCD"

# --- RFC 4733 payload ----------------------------------------------------------------------


def test_event_codes_follow_rfc_4733_table_3() -> None:
    assert [digit_to_event(d) for d in "09*#AD"] == [0, 9, 10, 11, 12, 15]
    assert digit_to_event("b") == 13
    assert event_to_digit(11) == "#"
    with pytest.raises(ValueError):
        digit_to_event("E")
    with pytest.raises(ValueError):
        event_to_digit(17)


def test_payload_golden_bytes_round_trip() -> None:
    golden = bytes([0x05, 0x8A, 0x03, 0x20])  # event 5, E=1, R=0, volume 10, duration 800
    event = TelephoneEvent.parse(golden)
    assert event == TelephoneEvent(event=5, end=True, volume=10, duration=800)
    assert event.serialize() == golden


def test_payload_reserved_bit_is_ignored_and_short_payload_refused() -> None:
    assert TelephoneEvent.parse(bytes([0x0B, 0x4A, 0x00, 0xA0])) == TelephoneEvent(
        11, False, 10, 160
    )
    with pytest.raises(ValueError, match="too short"):
        TelephoneEvent.parse(b"\x05\x8a\x03")
    with pytest.raises(ValueError):
        TelephoneEvent(5, volume=64)


# --- sender ----------------------------------------------------------------------------------


def summary(packets: list[EventPacket]) -> list[tuple[int, bool, bool, int]]:
    return [(p.offset_ms, p.marker, p.event.end, p.event.duration) for p in packets]


def test_sender_marks_first_updates_every_50ms_and_sends_end_three_times() -> None:
    packets = EventSender().packets("5", 250, timestamp=1000)
    assert summary(packets) == [
        (0, True, False, 400),
        (50, False, False, 800),
        (100, False, False, 1200),
        (150, False, False, 1600),
        (200, False, True, 2000),
        (250, False, True, 2000),
        (300, False, True, 2000),
    ]
    assert {p.timestamp for p in packets} == {1000}
    assert {p.payload[0] for p in packets} == {5}


def test_sender_short_digit_starts_with_a_marked_end_packet() -> None:
    packets = EventSender().packets("#", 40, timestamp=7)
    assert summary(packets) == [
        (0, True, True, 320),
        (50, False, True, 320),
        (100, False, True, 320),
    ]


def test_sender_uses_the_negotiated_clock_rate() -> None:
    packets = EventSender(clock_rate=48000, update_ms=20).packets("1", 60, timestamp=0)
    assert [p.event.duration for p in packets] == [960, 1920, 2880, 2880, 2880]


def test_sender_refuses_events_longer_than_the_duration_field() -> None:
    with pytest.raises(ValueError, match="2.3.5"):
        EventSender().packets("1", 9000, timestamp=0)


# --- receiver --------------------------------------------------------------------------------


def stream(digits: str, start: int = 0, spacing: int = 2400) -> list[tuple[int, bytes]]:
    """(timestamp, payload) of every packet for ``digits``, 100 ms tones 300 ms apart."""
    sender = EventSender()
    out: list[tuple[int, bytes]] = []
    for i, digit in enumerate(digits):
        ts = (start + i * spacing) & 0xFFFFFFFF
        out += [(p.timestamp, p.payload) for p in sender.packets(digit, 100, ts)]
    return out


def receive(packets: list[tuple[int, bytes]]) -> list[DigitEvent]:
    receiver = EventReceiver()
    events = [e for ts, payload in packets for e in receiver.feed(ts, payload)]
    return events + receiver.flush()


def digits_of(events: list[DigitEvent], phase: Phase) -> str:
    return "".join(e.digit for e in events if e.phase is phase)


def lossy(
    packets: list[tuple[int, bytes]], drop_every: int, dup_every: int
) -> Iterator[tuple[int, bytes]]:
    """aiortc-style deterministic loss pattern: drop every n-th packet, duplicate every m-th."""
    for i, packet in enumerate(packets, start=1):
        if i % drop_every == 0:
            continue
        yield packet
        if i % dup_every == 0:
            yield packet


def test_receiver_reports_each_digit_once_despite_loss_and_duplicates() -> None:
    packets = stream("123#")  # 4 packets per digit: start, 3 x end
    events = receive(list(lossy(packets, drop_every=3, dup_every=2)))
    assert digits_of(events, Phase.BEGIN) == "123#"
    assert digits_of(events, Phase.END) == "123#"
    assert [e.duration for e in events if e.phase is Phase.END] == [800] * 4


def test_receiver_begins_a_digit_whose_start_packet_was_lost() -> None:
    packets = stream("7")[1:]
    events = receive(packets)
    assert [(e.digit, e.phase, e.duration) for e in events] == [
        ("7", Phase.BEGIN, 800),
        ("7", Phase.END, 800),
    ]


def test_receiver_ends_a_digit_whose_end_packets_were_all_lost() -> None:
    packets = [p for p in stream("12") if TelephoneEvent.parse(p[1]).end is False]
    receiver = EventReceiver()
    first = receiver.feed(*packets[0])
    second = receiver.feed(*packets[1])
    assert [(e.digit, e.phase) for e in first] == [("1", Phase.BEGIN)]
    assert [(e.digit, e.phase) for e in second] == [("1", Phase.END), ("2", Phase.BEGIN)]
    assert [(e.digit, e.phase) for e in receiver.flush()] == [("2", Phase.END)]
    assert receiver.flush() == []


def test_receiver_drops_stragglers_of_an_older_event() -> None:
    one, two = stream("1"), stream("2", start=2400)
    events = receive(one[:1] + two[:1] + one[1:] + two[1:])
    assert [(e.digit, e.phase) for e in events] == [
        ("1", Phase.BEGIN),
        ("1", Phase.END),
        ("2", Phase.BEGIN),
        ("2", Phase.END),
    ]


def test_receiver_follows_the_timestamp_across_the_32_bit_wrap() -> None:
    packets = stream("4567", start=0xFFFFF000)
    timestamps = sorted({ts for ts, _ in packets})
    assert timestamps[0] < 0x1000 < 0xFFFFF000 <= timestamps[-1]
    events = receive(packets + packets[:2])  # replayed old packets after the wrap
    assert digits_of(events, Phase.BEGIN) == "4567"
    assert digits_of(events, Phase.END) == "4567"


def test_receiver_ignores_events_that_are_not_dtmf() -> None:
    assert EventReceiver().feed(0, TelephoneEvent(32, False, 10, 160).serialize()) == []


@settings(max_examples=150, deadline=None)
@given(
    digits=st.text(alphabet=ALL_DIGITS, min_size=1, max_size=6),
    data=st.data(),
)
def test_receiver_yields_each_digit_once_in_order_for_any_loss(
    digits: str, data: st.DataObject
) -> None:
    packets = stream(digits, start=data.draw(st.integers(0, 0xFFFFFFFF)))
    per_digit = len(packets) // len(digits)
    kept: list[tuple[int, bytes]] = []
    for i in range(len(digits)):
        group = packets[i * per_digit : (i + 1) * per_digit]
        keep = data.draw(st.lists(st.booleans(), min_size=per_digit, max_size=per_digit))
        keep[data.draw(st.integers(0, per_digit - 1))] = True  # at least one packet survives
        for packet, kept_flag in zip(group, keep, strict=True):
            if kept_flag:
                kept += [packet] * data.draw(st.integers(1, 3))
    events = receive(kept)
    assert digits_of(events, Phase.BEGIN) == digits
    assert digits_of(events, Phase.END) == digits


# --- SIP INFO --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        (DTMF_RELAY, b"Signal=5\r\nDuration=160\r\n", InfoDigit("5", 160)),
        (
            "Application/DTMF-Relay; charset=utf-8",
            "signal= *\nduration = 250\n",
            InfoDigit("*", 250),
        ),
        (DTMF_RELAY, b"Signal=11\r\nDuration=100\r\n", InfoDigit("#", 100)),
        (DTMF_RELAY, b"Signal=d\r\n", InfoDigit("D", None)),
        (DTMF, b"9", InfoDigit("9", None)),
        (DTMF, b"10\r\n", InfoDigit("*", None)),
    ],
)
def test_info_bodies_parse(content_type: str, body: bytes | str, expected: InfoDigit) -> None:
    assert parse_info_body(content_type, body) == expected


@pytest.mark.parametrize(
    ("content_type", "body"),
    [(DTMF_RELAY, b"Duration=160\r\n"), (DTMF_RELAY, b"Signal=X\r\n"), ("text/plain", b"5")],
)
def test_info_bodies_reject_garbage(content_type: str, body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_info_body(content_type, body)


def test_info_bodies_format_and_round_trip() -> None:
    assert format_info_body(DTMF_RELAY, "#", 250) == b"Signal=#\r\nDuration=250\r\n"
    assert format_info_body(DTMF, "a") == b"A"
    for digit in ALL_DIGITS:
        assert parse_info_body(DTMF_RELAY, format_info_body(DTMF_RELAY, digit)) == InfoDigit(
            digit, 160
        )


# --- in-band detection -----------------------------------------------------------------------


def detect(pcm: bytes, chunk: int = 320) -> list[str]:
    detector = DtmfDetector()
    return [d for i in range(0, len(pcm), chunk) for d in detector.feed(pcm[i : i + chunk])]


@pytest.mark.parametrize("digit", list(ALL_DIGITS))
def test_every_digit_is_detected_exactly_once(digit: str) -> None:
    assert detect(bytes(400) + dtmf_tone(digit, 100) + bytes(800)) == [digit]


def test_sequence_with_60ms_gaps_is_detected_in_order() -> None:
    assert detect(dtmf_sequence("123#", tone_ms=100, gap_ms=60)) == ["1", "2", "3", "#"]


def test_repeated_digit_separated_by_40ms_is_two_presses() -> None:
    assert detect(dtmf_sequence("55", tone_ms=50, gap_ms=40)) == ["5", "5"]


def test_detection_holds_with_white_noise_at_6db_snr() -> None:
    signal = dtmf_sequence(ALL_DIGITS)
    tone_power = 7000.0**2  # two tones of peak 7000: 2 x A^2/2
    noisy = mix(signal, noise(len(signal) // 2, rms=math.sqrt(tone_power / 10 ** (6 / 10))))
    assert "".join(detect(noisy)) == ALL_DIGITS


def test_detection_does_not_depend_on_chunk_size() -> None:
    signal = dtmf_sequence("9A0")
    assert detect(signal, chunk=74) == detect(signal, chunk=4000) == ["9", "A", "0"]


def test_long_press_with_a_short_dropout_is_reported_once() -> None:
    tone = dtmf_tone("8", 1000)
    assert detect(tone[:4000] + bytes(80) + tone[4080:]) == ["8"]  # 5 ms hole


@pytest.mark.parametrize(
    ("duration_ms", "found"), [(40, True), (38, True), (26, False), (20, False)]
)
def test_minimum_duration_accepts_40ms_and_rejects_short_blips(
    duration_ms: int, found: bool
) -> None:
    for digit in "13D0":
        for lead in range(0, 51, 10):  # alignments of the tone against the analysis windows
            pcm = bytes(2 * lead) + dtmf_tone(digit, duration_ms) + bytes(800)
            assert detect(pcm) == ([digit] if found else [])


def two_tones(low: float, high: float, low_amp: float, high_amp: float, ms: int = 100) -> bytes:
    return array.array(
        "h",
        [
            round(
                low_amp * math.sin(2 * math.pi * low * n / 8000)
                + high_amp * math.sin(2 * math.pi * high * n / 8000)
            )
            for n in range(8 * ms)
        ],
    ).tobytes()


@pytest.mark.parametrize(
    ("offset", "expected"), [(-0.015, ["5"]), (0.015, ["5"]), (-0.035, []), (0.035, [])]
)
def test_frequency_tolerance_follows_q24(offset: float, expected: list[str]) -> None:
    # Q.24: accept within ±1.5 % (plus generator tolerance 1.8 %), reject beyond ±3.5 %
    assert detect(two_tones(770 * (1 + offset), 1336 * (1 + offset), 7000, 7000)) == expected


@pytest.mark.parametrize(
    ("low_db", "high_db", "expected"),
    [(0, -7, ["9"]), (0, -9, []), (-3, 0, ["9"]), (-5, 0, [])],
)
def test_twist_limits(low_db: float, high_db: float, expected: list[str]) -> None:
    low, high = 7000 * 10 ** (low_db / 20), 7000 * 10 ** (high_db / 20)
    assert detect(two_tones(852, 1477, low, high)) == expected


def test_level_threshold_is_minus_30_dbm0_per_tone() -> None:
    assert detect(dtmf_tone("9", 100, level_to_amplitude(-28))) == ["9"]
    assert detect(dtmf_tone("9", 100, level_to_amplitude(-32))) == []


TALK_OFF_SIGNALS: dict[str, Callable[[], bytes]] = {
    "1kHz-sine": lambda: sine(1000, 8000, 16000, amplitude=20000),
    "silence": lambda: bytes(16000),
    "white-noise": lambda: noise(16000, rms=6000),
    "speech-like": lambda: speech_like(1.0),
}


@pytest.mark.parametrize("signal", list(TALK_OFF_SIGNALS))
def test_no_talk_off(signal: str) -> None:
    assert detect(TALK_OFF_SIGNALS[signal]()) == []


def test_generator_uses_q23_frequencies() -> None:
    tone = array.array("h")
    tone.frombytes(dtmf_tone("0", 100, amplitude=5000))
    assert len(tone) == 800
    assert max(map(abs, tone)) <= 10000
    for freq, present in [(941, True), (1336, True), (697, False), (1209, False)]:
        re = sum(v * math.cos(2 * math.pi * freq * n / 8000) for n, v in enumerate(tone))
        im = sum(v * math.sin(2 * math.pi * freq * n / 8000) for n, v in enumerate(tone))
        assert (2 * math.hypot(re, im) / len(tone) > 4000) is present
    with pytest.raises(ValueError):
        dtmf_tone("!")
