"""MediaEndpoint: pbx as the far end of a leg (play, record, collect DTMF), driven tick by tick."""

from __future__ import annotations

import math
import struct
from array import array
from typing import Any

from twisted.internet.task import Clock

from pbx.calls.negotiate import StreamFormat
from pbx.media.codecs import get_decoder, get_encoder
from pbx.media.dtmf import EventSender, goertzel_power
from pbx.media.endpoint import MediaEndpoint
from pbx.media.relay import MediaLeg
from pbx.media.transcode import PlayoutClock

PHONE = ("127.0.0.1", 40000)
HEADER = struct.Struct("!BBHII")


class SentPackets:
    """Stands in for the leg's UDP port: keeps what pbx sends to the phone."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def write(self, data: bytes, addr: Any) -> None:
        assert addr == PHONE
        self.sent.append(data)


def endpoint(fmt: StreamFormat) -> tuple[MediaEndpoint, SentPackets]:
    leg = MediaLeg("call/A")
    port = SentPackets()
    leg.rtp.transport = port
    leg.rtp.remote = PHONE
    ep = MediaEndpoint(leg, fmt, clock=PlayoutClock(Clock()))
    ep.start()
    return ep, port


def pcmu(te: int | None = 101) -> StreamFormat:
    return StreamFormat("PCMU", 0, 8000, 1, {}, 20, te, 8000)


def tone(freq: float, ms: int) -> bytes:
    n = 8 * ms
    return array(
        "h", (int(8000 * math.sin(2 * math.pi * freq * i / 8000)) for i in range(n))
    ).tobytes()


def rtp(pt: int, seq: int, ts: int, payload: bytes, marker: bool = False) -> bytes:
    return HEADER.pack(0x80, pt | (0x80 if marker else 0), seq, ts, 0x1234) + payload


def test_play_sends_the_audio_in_20_ms_packets_of_the_phones_codec_and_fires_when_done() -> None:
    ep, port = endpoint(pcmu())
    done = ep.play(tone(1000, 100))
    for _ in range(4):
        ep.tick()
    assert not done.called
    ep.tick()
    assert done.called
    ep.tick()  # nothing left: silence is not sent
    assert len(port.sent) == 5
    assert all(p[1] & 0x7F == 0 and len(p) == 12 + 160 for p in port.sent)
    assert port.sent[0][1] & 0x80  # marker: the stream starts
    decoder = get_decoder("PCMU")
    pcm = array("h", b"".join(decoder.decode(p[12:]) for p in port.sent))
    assert goertzel_power(pcm, 1000, 8000) > 100 * goertzel_power(pcm, 440, 8000)


def test_what_the_phone_sends_is_decoded_and_given_to_on_audio_in_order() -> None:
    ep, _ = endpoint(pcmu())
    heard: list[bytes] = []
    ep.on_audio = heard.append
    encoder = get_encoder("PCMU")
    source = tone(440, 200)
    for i in range(10):  # one packet per 20 ms, as a phone sends them
        ep.leg.rtp.tap(rtp(0, 100 + i, 160 * i, encoder.encode(source[320 * i : 320 * (i + 1)])))
        ep.tick()
    for _ in range(3):  # the jitter buffer's prefetch
        ep.tick()
    assert len(heard) == 10 and all(len(f) == 320 for f in heard)
    pcm = array("h", b"".join(heard))
    assert goertzel_power(pcm, 440, 8000) > 100 * goertzel_power(pcm, 1000, 8000)


def _send_digits(ep: MediaEndpoint, digits: str) -> None:
    sender = EventSender(8000, 20)
    seq, ts = 500, 8000
    for digit in digits:
        for packet in sender.packets(digit, 100, ts):
            ep.leg.rtp.tap(rtp(101, seq, packet.timestamp, packet.payload, packet.marker))
            seq += 1
        ts += 1600
        ep.tick()


def test_collect_dtmf_stops_at_the_terminator_and_each_digit_counts_once() -> None:
    ep, _ = endpoint(pcmu())
    got = ep.collect_dtmf(max_digits=8, timeout=5.0)
    seen: list[str] = []
    ep.on_digit = seen.append
    _send_digits(ep, "12#")
    assert got.called and got.result == "12"
    assert seen == ["1", "2", "#"]


def test_collect_dtmf_ends_after_max_digits_or_silence() -> None:
    ep, _ = endpoint(pcmu())
    two = ep.collect_dtmf(max_digits=2, timeout=5.0)
    _send_digits(ep, "987")
    assert two.result == "98"
    quiet = ep.collect_dtmf(max_digits=4, timeout=0.1)
    for _ in range(5):
        ep.tick()
    assert quiet.called and quiet.result == ""


def test_send_digit_goes_out_as_rfc4733_or_in_band_without_telephone_event() -> None:
    ep, port = endpoint(pcmu())
    ep.send_digit("5")
    for _ in range(15):
        ep.tick()
    assert port.sent and {p[1] & 0x7F for p in port.sent} == {101}
    inband, port2 = endpoint(pcmu(te=None))
    inband.send_digit("5")
    for _ in range(8):
        inband.tick()
    assert port2.sent and {p[1] & 0x7F for p in port2.sent} == {0}


def test_stop_hands_the_socket_back_and_ends_pending_operations() -> None:
    ep, _ = endpoint(pcmu())
    playing = ep.play(tone(1000, 1000))
    collecting = ep.collect_dtmf(4, 10.0)
    ep.stop()
    assert ep.leg.rtp.tap is None
    assert playing.called and collecting.called
