"""The call core in process: dials, endings, media choice, hold with music, in-dialog rules.

Every scenario runs the real switch, call control, SIP legs and media relay on the memory
network (tests/calls/rig.py) and ends with ``rig.check()``: the invariants of
tests/calls/invariants.py over the whole event feed, and one record per call.
"""

from __future__ import annotations

import math
import struct

from pbx.calls.bridge import Media
from pbx.calls.sipleg import OutboundLeg
from pbx.media.codecs import get_decoder
from pbx.media.moh import HoldMusic
from pbx.media.tones import TonePlan, ToneSource
from tests.calls.phones import direction_of
from tests.calls.rig import Rig, binding_for


def answered(rig: Rig, caller: str = "1001", callee: str = "1002", **options: object):  # noqa: ANN201
    a = rig.phone(caller, f"127.0.1.{int(caller[-2:])}")
    b = rig.phone(callee, f"127.0.1.{int(callee[-2:])}", **options)
    call = a.dial(callee)
    rig.run(1.0)
    assert call.confirmed, call.statuses
    return a, b, call, b.calls[-1]


def tone_pcm(freq: float, seconds: float) -> bytes:
    source = ToneSource(TonePlan((freq,), (600000, 1), -13.0))
    return b"".join(source.next_frame() for _ in range(int(seconds * 50)))


def dominant_frequency(pcm: bytes, rate: int = 8000) -> float:
    samples = struct.unpack(f"<{len(pcm) // 2}h", pcm)
    best, best_power = 0.0, 0.0
    for freq in range(200, 3000, 25):
        re = sum(s * math.cos(2 * math.pi * freq * i / rate) for i, s in enumerate(samples))
        im = sum(s * math.sin(2 * math.pi * freq * i / rate) for i, s in enumerate(samples))
        power = re * re + im * im
        if power > best_power:
            best, best_power = float(freq), power
    return best


# -- dials -------------------------------------------------------------------------------------


def test_every_contact_rings_the_first_answer_wins_and_the_others_are_cancelled() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    desk = rig.phone("1002", "127.0.0.12", answer_after=0.3)
    soft = rig.phone("1002", "127.0.0.13", answer_after=5.0)
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.confirmed and desk.calls[0].confirmed
    assert soft.calls[0].ended and soft.calls[0].ended_by == "cancel"
    cancels = [d for d in rig.network.sip(dst_host="127.0.0.13") if d.data.startswith(b"CANCEL")]
    assert cancels and b'Reason: SIP;cause=200;text="Call completed elsewhere"' in cancels[0].data
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()
    (record,) = rig.records
    assert record.callee == "1002" and record.disposition == "answered"


def test_two_answers_race_the_second_is_acked_and_hung_up() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    one = rig.phone("1002", "127.0.0.12", answer_after=0.3)
    two = rig.phone("1002", "127.0.0.13", answer_after=0.3)
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.confirmed
    winners = [p.calls[0] for p in (one, two) if not p.calls[0].ended]
    losers = [p.calls[0] for p in (one, two) if p.calls[0].ended]
    assert len(winners) == 1 and len(losers) == 1 and losers[0].ended_by == "remote"
    ended = [e for e in rig.events if e.name == "leg_ended"]
    # the loser's 200 crossed pbx's CANCEL: the leg ended once (cancelled), its 2xx got ACK+BYE
    assert [e.cause for e in ended] in (["lost_race"], ["cancelled"])
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_cancel_by_the_caller_ends_every_leg_once_and_records_cancelled() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12", answer_mode="ignore")
    call = alice.dial("1002")
    rig.run(0.5)
    alice.cancel(call)
    rig.run(0.5)
    assert call.statuses[-1] == 487 and bob.calls[0].ended_by == "cancel"
    rig.check()
    (record,) = rig.records
    assert (record.disposition, record.hangup_cause, record.hangup_side) == (
        "cancelled", "CANCEL", "caller",
    )
    assert record.callee == "1002"


def test_answer_and_cancel_in_the_same_moment_leave_one_outcome() -> None:
    for delay in (0.0, 0.001, 0.002, 0.003):
        rig = Rig()
        alice = rig.phone("1001", "127.0.0.11")
        bob = rig.phone("1002", "127.0.0.12", answer_mode="ignore")
        call = alice.dial("1002")
        rig.run(0.3)
        bob.answer(bob.calls[0])
        rig.reactor.advance(delay)
        alice.cancel(call)
        rig.run(2.0)
        for phone_call in (call, bob.calls[0]):
            if phone_call.confirmed:  # the 200 won: the caller hangs up normally
                phone_call.phone.hang_up(phone_call)
        rig.run(1.0)
        assert rig.active == [], delay
        rig.check()
        assert len(rig.records) == 1


def test_busy_everywhere_gives_486_and_a_busy_record() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12", answer_mode="busy")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.statuses[-1] == 486
    rig.check()
    assert rig.records[0].disposition == "busy"


def test_no_answer_gives_480_after_the_time_and_cancels_the_phone() -> None:
    rig = Rig(no_answer=3.0)
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12", answer_mode="ignore")
    call = alice.dial("1002")
    rig.run(2.9)
    assert not call.ended
    rig.run(0.5)
    assert call.statuses[-1] == 480 and bob.calls[0].ended_by == "cancel"
    rig.check()
    assert (rig.records[0].disposition, rig.records[0].hangup_cause) == ("no answer", "480")


def test_unknown_and_unregistered_numbers_and_call_waiting_off() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1003", "127.0.0.13", register=False)
    assert alice.dial("4040") and True
    rig.run(0.5)
    alice.dial("1003")
    rig.run(0.5)
    assert [c.statuses[-1] for c in alice.calls] == [404, 480]
    _, _, first, _ = answered(rig, "1004", "1005")
    rig.extensions["1005"].call_waiting = False
    second = alice.dial("1005")
    rig.run(0.5)
    assert second.statuses[-1] == 486
    first.phone.hang_up(first)
    rig.run(0.5)
    rig.check()
    assert [r.hangup_cause for r in rig.records[:2]] == ["404", "480"]
    assert rig.records[1].callee == "1003"


def test_early_media_reaches_the_caller_before_the_answer() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12", answer_mode="early", answer_after=1.0)
    call = alice.dial("1002")
    rig.run(0.3)
    assert call.state == "early" and 183 in call.statuses
    bob.send_rtp(bob.calls[0], b"e" * 160, count=3)
    rig.run(0.1)
    assert call.rtp_payloads() == [b"e" * 160] * 3
    rig.run(1.0)
    assert call.confirmed
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


# -- media choice --------------------------------------------------------------------------------


def bridge_media(rig: Rig) -> Media:
    (bridge,) = rig.control.bridges.values()
    return bridge.media


def test_a_shared_codec_is_relayed_untouched_and_different_codecs_are_transcoded() -> None:
    rig = Rig()
    answered(rig)
    assert bridge_media(rig) is Media.RELAY
    rig2 = Rig()
    a = rig2.phone("1001", "127.0.0.11", codecs=("PCMU",))
    b = rig2.phone("1002", "127.0.0.12", codecs=("PCMA",))
    call = a.dial("1002")
    rig2.run(1.0)
    assert call.confirmed and bridge_media(rig2) is Media.TRANSCODE
    a.send_rtp(call, b"\xff" * 160, count=20)
    rig2.run(0.6)
    received = b.calls[0].rtp
    assert received and all(data[1] & 0x7F == 8 for _, data, _ in received)  # PCMA to bob


def test_the_callee_is_offered_the_callers_codecs_first_then_what_pbx_transcodes() -> None:
    rig = Rig()
    rig.control.codec_order = ["opus", "PCMA"]
    alice = rig.phone("1001", "127.0.0.11", codecs=("PCMU",))
    bob = rig.phone("1002", "127.0.0.12")
    alice.dial("1002")
    rig.run(1.0)
    offer = bob.calls[0].remote_description
    assert offer is not None
    audio = [c.encoding for c in offer.media[0].codecs() if not c.is_telephone_event]
    assert audio == ["PCMU", "opus", "PCMA"]


# -- hold ------------------------------------------------------------------------------------------


def test_a_phone_holding_the_call_is_answered_by_pbx_and_the_other_party_hears_music() -> None:
    rig = Rig()
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    alice, bob, call, incoming = answered(rig)
    sip_to_bob = len(rig.network.sip(dst_host="127.0.1.2"))
    alice.hold(call)
    rig.run(1.0)
    assert direction_of(call.remote_sdp) == "recvonly"
    assert len(rig.network.sip(dst_host="127.0.1.2")) == sip_to_bob  # bob is not re-INVITEd
    music = [data for _, data, _ in incoming.rtp]
    assert len(music) >= 40  # 20 ms packets from pbx's music stream
    decoder = get_decoder("PCMU")
    pcm = b"".join(decoder.decode(p[12:]) for p in music[10:20])
    assert abs(dominant_frequency(pcm) - 700) <= 25
    assert call.rtp == []  # nothing is sent to the phone that holds
    held = [e for e in rig.events if e.name == "leg_held"]
    assert len(held) == 1 and held[0].by == "phone"
    alice.resume(call)
    rig.run(0.5)
    before = len(incoming.rtp)
    rig.run(0.5)
    assert len(incoming.rtp) == before  # the music stopped
    alice.send_rtp(call, b"x" * 160, count=2)
    rig.run(0.1)
    assert incoming.rtp_payloads()[-2:] == [b"x" * 160] * 2  # relayed again
    assert bridge_media(rig) is Media.RELAY
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_hold_by_update_and_inactive_holds_too() -> None:
    rig = Rig()
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    alice, bob, call, incoming = answered(rig)
    alice.hold(call, method="UPDATE", direction="inactive")
    rig.run(0.6)
    assert direction_of(call.remote_sdp) == "inactive"
    assert len(incoming.rtp) >= 20
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_pbx_holds_a_leg_with_a_reinvite_and_plays_it_music() -> None:
    rig = Rig()
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    alice, bob, call, incoming = answered(rig)
    (bob_leg,) = [leg for leg in rig.control.legs.values() if leg.party.number == "1002"]
    rig.control.hold(bob_leg.id)
    rig.run(0.6)
    reinvite = [r for r in incoming.requests if r.method == "INVITE"]
    assert reinvite and direction_of(reinvite[-1].body) == "sendonly"
    assert len(incoming.rtp) >= 20
    rig.control.retrieve(bob_leg.id)
    rig.run(0.3)
    assert direction_of(incoming.requests[-1].body) == "sendrecv"
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_consultation_and_brokering_keep_both_calls_and_each_held_party_hears_music() -> None:
    rig = Rig()
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    alice, bob, call1, at_bob = answered(rig)
    carol = rig.phone("1003", "127.0.0.13")
    alice.hold(call1)
    rig.run(0.3)
    call2 = alice.dial("1003")
    rig.run(1.0)
    assert call2.confirmed
    at_carol = carol.calls[0]
    for _ in range(2):  # switch back and forth
        alice.hold(call2)
        rig.run(0.3)
        alice.resume(call1)
        rig.run(0.5)
        assert len(at_carol.rtp) > 0
        carol_heard = len(at_carol.rtp)
        rig.run(0.4)
        assert len(at_carol.rtp) > carol_heard  # carol hears music now
        alice.hold(call1)
        rig.run(0.3)
        alice.resume(call2)
        rig.run(0.3)
        bob_heard = len(at_bob.rtp)
        rig.run(0.4)
        assert len(at_bob.rtp) > bob_heard  # bob hears music
    alice.hang_up(call1)
    alice.hang_up(call2)
    rig.run(0.5)
    assert at_bob.ended and at_carol.ended
    rig.check()
    assert len(rig.records) == 2


# -- in-dialog rules -------------------------------------------------------------------------------


def test_a_phone_reinvite_while_pbx_waits_for_its_own_gets_491() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered(rig, answer_mode="answer")
    bob.answer_mode = lambda c: None
    (bob_leg,) = [leg for leg in rig.control.legs.values() if leg.party.number == "1002"]
    # bob's phone will not answer pbx's re-INVITE at once: hold it back
    original = bob._in_dialog
    held_back = []

    def slow(incoming_request):  # noqa: ANN001, ANN202
        if incoming_request.request.method == "INVITE" and not held_back:
            held_back.append(incoming_request)
            return None
        return original(incoming_request)

    bob._in_dialog = slow  # type: ignore[method-assign]
    rig.control.hold(bob_leg.id)
    rig.run(0.2)
    bob.hold(incoming)
    rig.run(0.3)
    assert incoming.responses[-1].status == 491
    original(held_back[0])
    rig.run(0.5)
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_a_missing_ack_ends_the_call_after_64_t1() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12")
    rig.network.loss = lambda data, src, dst: data.startswith(b"ACK") and src[0] == "127.0.0.11"
    call = alice.dial("1002")
    rig.run(31.0)
    assert not bob.calls[0].ended
    rig.run(2.5)
    assert bob.calls[0].ended and rig.active == []
    rig.check()
    assert rig.records[0].hangup_cause == "no ACK" and rig.records[0].hangup_side == "caller"
    assert call  # the caller's phone thinks it is up: it gets a BYE too
    assert call.ended


def test_the_maximum_duration_ends_a_call() -> None:
    rig = Rig(max_duration=10.0)
    answered(rig)
    rig.run(10.5)
    assert rig.active == []
    rig.check()
    assert rig.records[0].hangup_cause == "maximum call duration"


def test_a_static_contact_is_rung_without_registration() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    door = rig.phone("300", "127.0.0.30", register=False)
    rig.extensions["300"].bindings.append(binding_for("300", "127.0.0.30"))
    call = alice.dial("300")
    rig.run(1.0)
    assert call.confirmed and door.calls[0].confirmed
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


# -- digits ----------------------------------------------------------------------------------------


def event_packet(digit: int, end: bool, seq: int, duration: int) -> bytes:
    header = struct.pack("!BBHII", 0x80, 101, seq, 1000, 0x4242)
    return header + struct.pack("!BBH", digit, 0x80 | 10 if end else 10, duration)


def test_digits_are_collected_from_info_and_from_rfc4733_events_while_audio_stays_relayed() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered(rig)
    (alice_leg,) = [leg for leg in rig.control.legs.values() if leg.party.number == "1001"]
    got: list[str] = []
    rig.control.collect_digits(alice_leg, 4, timeout=5.0, terminators="#").addCallback(got.append)
    rig.run(0.05)
    assert bridge_media(rig) is Media.EVENT_RELAY
    target = call.remote_media
    assert target is not None
    for seq, (digit, end) in enumerate([(2, False), (2, True), (2, True)]):
        rig.network.send(event_packet(digit, end, 100 + seq, 800), ("127.0.1.1", call.rtp_port), target)
    rig.run(0.1)
    alice.send_rtp(call, b"a" * 160)
    rig.run(0.1)
    assert incoming.rtp_payloads()[-1] == b"a" * 160  # audio still untouched
    alice.info(call, "5")  # an INFO digit is played to bob: pbx writes into his stream
    alice.info(call, "#")
    rig.run(0.1)
    assert got == ["25"]
    assert bridge_media(rig) is Media.TRANSCODE  # the collector is gone; the injection stays
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_collecting_digits_times_out_with_what_was_pressed() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered(rig)
    (alice_leg,) = [leg for leg in rig.control.legs.values() if leg.party.number == "1001"]
    got: list[str] = []
    rig.control.collect_digits(alice_leg, 4, timeout=2.0).addCallback(got.append)
    alice.info(call, "7")
    rig.run(1.5)
    assert got == []
    rig.run(1.0)
    assert got == ["7"]
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_an_ended_call_is_freed_by_reference_counting_not_by_the_garbage_collector() -> None:
    import gc

    from pbx.calls.model import Conversation, Leg
    from pbx.media.relay import MediaLeg, RelaySocket

    rig = Rig()
    a, _b, call, _ = answered(rig)
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        a.hang_up(call)
        rig.run(40.0)  # every transaction of the call is gone (RFC 6026: 32 s)
        gc.collect()
        cyclic = [o for o in gc.garbage if isinstance(o, Leg | Conversation | MediaLeg | RelaySocket)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert cyclic == []  # a cycle would keep every call's graph for the older generations
    rig.check()


def test_a_party_held_before_the_music_is_loaded_hears_it_once_it_is() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered(rig)
    alice.hold(call)  # pbx is still decoding its music (start-up, an upload)
    rig.run(1.0)
    assert direction_of(call.remote_sdp) == "recvonly"
    assert incoming.rtp == []
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    rig.control.music_changed()  # what the music library tells once loaded
    rig.run(1.0)
    assert len(incoming.rtp) >= 40
    alice.resume(call)
    rig.run(0.5)
    before = len(incoming.rtp)
    rig.run(0.5)
    assert len(incoming.rtp) == before
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()


def test_a_retransmitted_2xx_of_the_callee_is_acked_again_and_the_invite_is_not_kept() -> None:
    """§13.2.2.4: every 2xx is ACKed, while its transaction lives (RFC 6026 Accepted: the
    transaction hands it to the leg) and after (a stray 2xx for the dialog); once ACKed, the
    outbound leg keeps neither its INVITE nor its transaction."""
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.confirmed
    (leg,) = [leg for leg in rig.control.legs.values() if isinstance(leg, OutboundLeg)]
    assert leg.request is None and leg.outgoing is None and leg.call_id
    from_callee = rig.network.sip("127.0.0.12", "127.0.0.1")
    (ok,) = [d for d in from_callee if d.data.startswith(b"SIP/2.0 200")]

    def acks() -> int:
        to_callee = rig.network.sip("127.0.0.1", "127.0.0.12")
        return sum(1 for d in to_callee if d.data.startswith(b"ACK"))

    assert acks() == 1
    rig.network.send(ok.data, ok.src, ok.dst)  # the callee did not get the ACK: it resends
    rig.run(0.1)
    assert acks() == 2
    rig.run(40.0)  # the INVITE transaction has ended: the dialog ACKs
    rig.network.send(ok.data, ok.src, ok.dst)
    rig.run(0.1)
    assert acks() == 3
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()
