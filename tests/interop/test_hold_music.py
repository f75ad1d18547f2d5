"""Hold with music through pbx (issue 9): pbx answers a phone's hold itself and plays music
on hold to the other phone instead of forwarding the hold.

The music is known: a 700 Hz sine at DATA/moh/default/tone.wav (callflows.write_moh), so a
held phone must decode ~700 Hz ("moh") between the holder's audio before and after. pbx
answers a=sendonly with a=recvonly and a=inactive with a=inactive (RFC 3264 6.1) and sends
the held phone no re-INVITE (its call goes on, only the audio changes).

Peers: baresip ``hold``/``resume`` (and ``accept`` of a second call, which holds the first),
SIPp hold_uac_moh.xml with the held phone's RTP read from a capture on pbx's media ports,
the raw phone for hold by UPDATE. Every peer verb is proven without pbx in
test_transfer_peers.py. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .callflows import (
    HOST,
    PASSWORDS,
    TONES,
    A,
    B,
    C,
    assert_phone_heard,
    assert_raw_heard,
    baresip_phone,
    start_pbx,
    uri,
)
from .harness.baresip import Baresip
from .harness.pbx_server import PbxServer
from .harness.raw_phone import RawPhone
from .harness.raw_sip import read_sipp_trace
from .harness.rtp_capture import UdpCapture, capture_unavailable, write_rtp_pcap
from .harness.sip_message import SipMessage, parse_message, select
from .harness.sipp import Sipp, write_users_csv
from .harness.tones import sine_samples, ulaw_decode, ulaw_encode

pytestmark = pytest.mark.netns

BaresipFactory = Callable[..., Baresip]
TALK = 2.0
HOLD = 3.0


@pytest.fixture
def pbx(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    return start_pbx(pbx_factory)


def phone(
    baresip_factory: BaresipFactory, tmp_path: Path, pbx: PbxServer, ext: str, **kw: str
) -> Baresip:
    return baresip_phone(baresip_factory, tmp_path, pbx, ext, **kw)


def invite_answers(agent: Baresip) -> list[str | None]:
    """SDP directions of the 200s the phone received to its (re-)INVITEs, in order."""
    return [m.sdp_direction() for m in select(agent.sip_messages(), "INVITE", status=200)]


def test_hold_from_baresip_plays_music_to_the_other_phone_and_resume_brings_back_its_audio(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    a.dial(uri(pbx, B))
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    b.hold()
    time.sleep(HOLD)
    b.resume()
    time.sleep(TALK)
    a.hangup()
    b.wait_event("CALL_CLOSED", timeout=5)

    # pbx answered B's hold itself and did not pass it on to A
    reinvites = [
        m for m in b.sip_messages() if m.direction == "sent" and m.start.startswith("INVITE ")
    ]
    assert [m.sdp_direction() for m in reinvites] == ["sendonly", "sendrecv"]
    assert invite_answers(b)[-2:] == ["recvonly", "sendrecv"]
    assert a.received("INVITE") == [], "pbx forwarded the hold to A"
    assert_phone_heard(a, [B, "moh", B])
    assert_phone_heard(b, [A])  # no music for the holder, A again after the resume


def _trace_messages(run: Sipp, direction: str) -> list[SipMessage]:
    out = []
    for traced in read_sipp_trace(run.workdir / "messages.log"):
        msg = parse_message(traced.data)
        if msg is not None and traced.direction == direction:
            out.append(msg)
    return out


@pytest.mark.parametrize(("hold", "answer"), [("sendonly", "recvonly"), ("inactive", "inactive")])
def test_hold_from_sipp_is_answered_by_pbx_and_the_held_phone_receives_music_on_hold(
    hold: str,
    answer: str,
    pbx: PbxServer,
    sipp_factory: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    """SIPp A (playing a 1 kHz PCMU tone) holds SIPp B for 3 s: pbx answers the hold,
    B gets no re-INVITE and, on the wire, A's tone, then the 700 Hz music, then A's tone."""
    reason = capture_unavailable()
    if reason is not None:
        pytest.skip(reason)
    assert pbx.rtp_ports is not None
    reg_users = write_users_csv(tmp_path / "reg-b.csv", [(B, PASSWORDS[B])])
    reg = sipp_factory("reg_auth", remote=(HOST, pbx.sip_port), inf=[reg_users], calls=1)
    assert reg.run().ok
    callee = sipp_factory(
        "uas_answer_tolerant", local_port=reg.local_port, calls=1, timeout_s=40
    ).start()
    users = write_users_csv(tmp_path / "users-a.csv", [(A, PASSWORDS[A])])
    caller = sipp_factory(
        "hold_uac_moh",
        remote=(HOST, pbx.sip_port),
        inf=[users],
        service=B,
        calls=1,
        timeout_s=30,
        variables={"hold": hold, "holdms": str(int(HOLD * 1000))},
        extra_args=["-d", "2500"],
    )
    tone = [ulaw_encode(sine_samples(TONES[A], 160, n * 160)) for n in range(100)]
    write_rtp_pcap(caller.workdir / "rtp.pcap", 100, payload=lambda n: tone[n])
    with UdpCapture(tmp_path / "media.pcap", *pbx.rtp_ports) as capture:
        result = caller.run()
        callee_result = callee.wait()
        time.sleep(0.2)

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    answers = select(_trace_messages(caller, "received"), "INVITE", status=200)
    assert [m.sdp_direction() for m in answers] == ["sendrecv", answer, "sendrecv"]
    assert callee_result.count("INVITE", "Recv") == 1, "pbx forwarded the hold to B"
    low, high = pbx.rtp_ports
    to_b = [
        p.payload
        for p in capture.packets()
        if p.dst == (HOST, callee.media_port) and low <= p.src[1] <= high and len(p.payload) > 12
    ]
    pcm: list[int] = []
    for packet in to_b:
        if packet[1] & 0x7F == 0:
            pcm += ulaw_decode(packet[12 + 4 * (packet[0] & 0x0F) :])
    assert_raw_heard("B (what pbx sent it)", pcm, [A, "moh", A])


@pytest.mark.parametrize(
    ("method", "hold", "answer"),
    [("UPDATE", "sendonly", "recvonly"), ("INVITE", "inactive", "inactive")],
)
def test_hold_from_the_raw_phone_plays_music_to_baresip(
    method: str,
    hold: str,
    answer: str,
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    raw_phone_factory: Callable[..., RawPhone],
    tmp_path: Path,
) -> None:
    """RFC 3311 UPDATE holds as well as a re-INVITE does; with a=inactive the holder sends
    nothing at all while on hold, and the held phone must hear the music all the same."""
    b = phone(baresip_factory, tmp_path, pbx, B)
    a = raw_phone_factory(pbx.sip_port, A, PASSWORDS[A], tone=TONES[A])
    call = a.call(B)
    time.sleep(TALK)
    held = a.hold(call, hold, method=method)
    time.sleep(HOLD)
    resumed = a.resume(call, method=method)
    time.sleep(TALK)
    a.bye(call)
    b.wait_event("CALL_CLOSED", timeout=5)

    assert (held.status, held.sdp_direction()) == (200, answer)
    assert (resumed.status, resumed.sdp_direction()) == (200, "sendrecv")
    assert [m for m in b.received("INVITE") if m.to_tag] == [] and b.received("UPDATE") == []
    assert_phone_heard(b, [A, "moh", A])
    assert_raw_heard("A", call.samples(), [B])


def test_answering_a_second_call_holds_the_first_whose_caller_hears_music(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """B talks to A; C calls B; baresip's ``accept`` holds A and answers C; when B hangs up
    on C, baresip resumes A by itself. A hears B, music, B; C hears B."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B, answermode="manual")
    c = phone(baresip_factory, tmp_path, pbx, C)
    a.dial(uri(pbx, B))
    b.wait_event("CALL_INCOMING", timeout=10)
    b.accept()
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    c.dial(uri(pbx, B))
    b.wait_event("CALL_INCOMING", timeout=10)
    b.accept()
    c.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(HOLD)
    c.hangup()  # B resumes A by itself
    b.wait_event("CALL_CLOSED", timeout=5)
    time.sleep(TALK)
    a.hangup()
    b.wait_event("CALL_CLOSED", timeout=5)

    assert a.received("INVITE") == [], "pbx forwarded the hold to A"
    assert_phone_heard(a, [B, "moh", B])
    assert_phone_heard(c, [B])


def test_consultation_and_brokering_between_two_calls_gives_each_held_party_music(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """A calls B, holds B, calls C (consultation), then switches B <-> C twice (brokering):
    whoever is held hears music, whoever is active hears A; A hears only B on call 1 and
    only C on call 2."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C)
    a.dial(uri(pbx, B))
    to_b = str(a.wait_event("CALL_ESTABLISHED", timeout=10)["id"])
    time.sleep(TALK)
    a.hold(to_b)
    time.sleep(1.2)  # baresip names recordings by the second: keep the calls apart
    a.dial(uri(pbx, C))
    to_c = str(a.wait_event("CALL_ESTABLISHED", timeout=10)["id"])
    time.sleep(TALK)
    a.hold(to_c)
    a.resume(to_b)
    time.sleep(TALK)
    a.hold(to_b)
    a.resume(to_c)
    time.sleep(TALK)
    a.hangup(to_c)  # baresip resumes B by itself
    c.wait_event("CALL_CLOSED", timeout=5)
    time.sleep(TALK)
    a.hangup(to_b)
    b.wait_event("CALL_CLOSED", timeout=5)

    assert len(a.recordings()) == 2
    assert_phone_heard(a, [B], index=0)
    assert_phone_heard(a, [C], index=1)
    assert_phone_heard(b, [A, "moh", A, "moh", A])
    assert_phone_heard(c, [A, "moh", A])
    assert len(b.received("INVITE")) == 1 and len(c.received("INVITE")) == 1  # no re-INVITE
