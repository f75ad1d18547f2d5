"""Transcoding bridge: codecs, jitter, and DTMF interworking between two legs.

The end-to-end tests run two fake phones on real UDP sockets on 127.0.0.1 through the bridge on
the asyncio reactor, each in a subprocess (tests/media/transcode_scenarios.py), as
test_relay.py does; the last ones drive the bridge with a fake clock and fake sockets.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import task

from pbx.calls.negotiate import StreamFormat
from pbx.media.codecs import UnsupportedCodec, get_encoder
from pbx.media.relay import MediaLeg, bridge
from pbx.media.rtp import RtpPacket
from pbx.media.transcode import PlayoutClock, TranscodingBridge
from tests.media.test_relay import FakeUdp

ROOT = Path(__file__).resolve().parents[2]


def scenario(name: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "tests.media.transcode_scenarios", name],
        capture_output=True,
        text=True,
        timeout=45,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    return result


def test_opus_tone_leaves_as_pcma_at_1khz_and_pcma_comes_back_as_opus() -> None:
    result = scenario("opus_pcma")
    at_b, at_a = result["at_b"], result["at_a"]
    assert at_b["pts"] == [8] and at_a["pts"] == [111]
    for leg in (at_b, at_a):
        assert leg["freq"] == 1000
        assert leg["snr"] > 12
        assert leg["count"] >= 45  # 50 sent; the jitter buffer keeps none back at the end
        assert leg["ssrcs"] == 1 and leg["first_marker"] and leg["seq_steps"] == [1]


def test_g722_and_pcmu_transcode_both_ways() -> None:
    result = scenario("g722_pcmu")
    assert result["at_b"]["pts"] == [0] and result["at_a"]["pts"] == [9]
    assert result["at_b"]["freq"] == result["at_a"]["freq"] == 1000
    assert result["at_b"]["snr"] > 20 and result["at_a"]["snr"] > 20


def test_reordered_and_lost_packets_still_play_with_concealment() -> None:
    result = scenario("loss")
    assert result["concealed"]["A"] == 3  # three packets never came
    assert result["count"] == 50  # every 20 ms was played, the lost ones concealed
    assert result["seq_steps"] == [1]
    assert result["freq"] == 1000


def test_rfc4733_digits_arrive_once_each_in_order_with_the_other_sides_payload_type() -> None:
    result = scenario("te_to_te")
    assert result["events_at_b"] == "123#"  # retransmitted end packets did not duplicate
    assert result["pts_at_b"] == [8, 96]  # never the caller's 101
    assert result["inband_at_b"] == ""
    assert result["digits"] == [["A", "1"], ["A", "2"], ["A", "3"], ["A", "#"]]


def test_rfc4733_digits_become_inband_tones_for_a_side_without_telephone_event() -> None:
    result = scenario("te_to_inband")
    assert result["inband_at_b"] == "123#"
    assert result["pts_at_b"] == [8]


def test_inband_tones_become_rfc4733_once_and_are_muted_in_the_audio() -> None:
    result = scenario("inband_to_te")
    assert result["events_at_b"] == "123#"
    assert result["inband_at_b"] == ""  # the far end does not get the digits twice
    assert result["digits"] == [["A", "1"], ["A", "2"], ["A", "3"], ["A", "#"]]


def test_deliver_as_info_hands_digits_to_on_info_instead_of_rtp() -> None:
    for name, duration in (("te_to_info", 100), ("inband_to_info", 100)):
        result = scenario(name)
        assert result["infos"] == [["B", d, duration] for d in "123#"], name
        assert result["events_at_b"] == "" and result["inband_at_b"] == "", name
        assert result["pts_at_b"] == [8], name


def test_send_digit_plays_rfc4733_or_tones_to_the_phone() -> None:
    result = scenario("send_digit")
    assert result["events_at_b"] == "5"  # B negotiated telephone-event
    assert result["inband_at_a"] == "7*"  # A did not: tones in its PCMU
    assert result["pts_at_a"] == [0]
    assert result["digits"] == []  # digits pbx sends are not digits pbx saw


def test_an_untouched_call_switches_to_the_bridge_for_a_tone_and_back_to_relay() -> None:
    result = scenario("midcall")
    assert result["inband_at_b"] == "9"
    assert result["first_ssrc"] == result["last_ssrc"] == 0xA  # relayed before and after
    assert len(result["ssrcs"]) == 2
    assert result["relayed"] > 40


# --- fake clock and sockets ------------------------------------------------------------------


def fmt(codec: str, pt: int, clock: int = 8000, te: int | None = 101) -> StreamFormat:
    return StreamFormat(codec, pt, clock, 1, {}, 20, te, 8000)


def fake_call(clock: task.Clock) -> tuple[TranscodingBridge, FakeUdp, FakeUdp, PlayoutClock]:
    a, b = MediaLeg("a"), MediaLeg("b")
    ta, tb = FakeUdp(), FakeUdp()
    a.rtp.transport, b.rtp.transport = ta, tb
    a.rtcp.transport, b.rtcp.transport = FakeUdp(), FakeUdp()
    a.set_remote("127.0.0.10", 4000)
    b.set_remote("127.0.0.20", 6000)
    bridge(a, b)
    playout = PlayoutClock(clock)
    return TranscodingBridge(a, b, fmt("PCMU", 0), fmt("PCMA", 8), clock=playout), ta, tb, playout


def pcmu_packet(seq: int) -> bytes:
    payload = get_encoder("PCMU").encode(bytes(320))
    return RtpPacket(
        payload_type=0, sequence=seq, timestamp=seq * 160, ssrc=7, payload=payload
    ).serialize()


def test_rtcp_is_dropped_and_rtp_goes_through_the_bridge_not_the_relay() -> None:
    clock = task.Clock()
    tb_bridge, ta, tb, _ = fake_call(clock)
    tb_bridge.start()
    a = tb_bridge.legs["A"]
    for seq in range(10):
        a.rtp.datagramReceived(pcmu_packet(seq), ("127.0.0.10", 4000))
        clock.advance(0.02)
    a.rtcp.datagramReceived(b"\x81\xc9\x00\x01\x00\x00\x00\x07", ("127.0.0.10", 4001))
    sent = [RtpPacket.parse(data) for data, _ in tb.written]
    assert sent and {p.payload_type for p in sent} == {8} and {p.ssrc for p in sent} != {7}
    assert tb_bridge.stats["A"].rtcp_dropped == 1
    assert tb_bridge.legs["B"].rtcp.transport.written == []
    tb_bridge.stop()
    a.rtp.datagramReceived(pcmu_packet(10), ("127.0.0.10", 4000))
    assert tb.written[-1][0] == pcmu_packet(10)  # relayed untouched again


def test_a_late_reactor_catches_up_and_counts_late_ticks() -> None:
    clock = task.Clock()
    tb_bridge, _, tb, playout = fake_call(clock)
    tb_bridge.start()
    a = tb_bridge.legs["A"]
    for seq in range(8):
        a.rtp.datagramReceived(pcmu_packet(seq), ("127.0.0.10", 4000))
    clock.advance(0.1)  # five ticks due at once
    assert playout.ticks == 5 and playout.late_ticks == 4
    assert len(tb.written) == 5
    tb_bridge.stop()
    assert len(playout) == 0


def test_bad_arguments_are_refused() -> None:
    clock = task.Clock()
    tb_bridge, _, _, _ = fake_call(clock)
    with pytest.raises(ValueError):
        tb_bridge.send_digit("C", "1")
    with pytest.raises(ValueError):
        tb_bridge.send_digit("A", "E")
    a, b = MediaLeg("a"), MediaLeg("b")
    with pytest.raises(UnsupportedCodec):
        TranscodingBridge(a, b, fmt("G729", 18), fmt("PCMA", 8), clock=PlayoutClock(clock))
