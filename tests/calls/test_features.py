"""Transfers, park, pickup, INVITE with Replaces and click-to-call, in process.

Each scenario drives scripted phones through the real call core and features, checks what the
phones saw (NOTIFY sipfrag, CANCEL, media), the events and the call records, and ends with
the invariants (``rig.check()``).
"""

from __future__ import annotations

from typing import Any

from pbx.calls import events as ev
from pbx.media.moh import HoldMusic
from tests.calls.phones import Phone, PhoneCall
from tests.calls.rig import Rig
from tests.calls.test_call_core import tone_pcm


def setup(**options: Any) -> tuple[Rig, Phone, Phone, Phone]:
    rig = Rig(**options)
    rig.music = HoldMusic("test", tone_pcm(700.0, 5), rig.clock, reactor=rig.reactor)
    alice = rig.phone("1001", "127.0.1.1")
    bob = rig.phone("1002", "127.0.1.2")
    carol = rig.phone("1003", "127.0.1.3")
    return rig, alice, bob, carol


def call(rig: Rig, caller: Phone, callee: Phone, number: str) -> tuple[PhoneCall, PhoneCall]:
    out = caller.dial(number)
    rig.run(1.0)
    assert out.confirmed, out.statuses
    return out, callee.calls[-1]


def media_flows(rig: Rig, x: tuple[Phone, PhoneCall], y: tuple[Phone, PhoneCall]) -> bool:
    (px, cx), (py, cy) = x, y
    before = (len(cx.rtp), len(cy.rtp))
    px.send_rtp(cx, b"x" * 160, count=3)
    py.send_rtp(cy, b"y" * 160, count=3)
    rig.run(0.2)
    return b"x" * 160 in cy.rtp_payloads()[before[1]:] and b"y" * 160 in cx.rtp_payloads()[before[0]:]


def sipfrags(c: PhoneCall) -> list[bytes]:
    return [body.split(b"\r\n")[0] for body in c.notify_bodies()]


def history(rig: Rig, index: int = 0) -> list[dict[str, Any]]:
    record = rig.records[index]
    assert record.id is not None
    return rig.histories[record.id]


# -- blind transfer ----------------------------------------------------------------------------


def test_blind_transfer_connects_the_transferee_and_the_target_and_reports_progress() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(0.1)
    assert a_call.responses[-1].status == 202
    assert sipfrags(a_call)[:1] == [b"SIP/2.0 100 Trying"]
    rig.run(1.0)
    at_carol = carol.calls[0]
    assert at_carol.confirmed
    assert b"SIP/2.0 200 OK" in sipfrags(a_call)
    assert media_flows(rig, (bob, at_bob), (carol, at_carol))
    alice.hang_up(a_call)  # the transferor leaves after the final NOTIFY
    rig.run(0.5)
    assert media_flows(rig, (bob, at_bob), (carol, at_carol))
    bob.hang_up(at_bob)
    rig.run(0.5)
    assert at_carol.ended
    rig.check()
    (record,) = rig.records
    kinds = [h["kind"] for h in history(rig)]
    assert kinds == ["talk", "transfer", "talk"]
    assert history(rig)[2]["parties"] == ["1002", "1003"]
    assert "1001 transferred 1002 to 1003" in history(rig)[1]["detail"]


def test_the_transferee_hears_ringback_while_the_target_rings() -> None:
    rig, alice, bob, carol = setup()
    carol.answer_after = 2.0
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(1.0)
    assert not carol.calls[0].confirmed
    ringback = len(at_bob.rtp)
    rig.run(0.5)
    assert len(at_bob.rtp) > ringback  # pbx's ringback tone
    assert b"SIP/2.0 180 Ringing" in sipfrags(a_call)
    rig.run(2.0)
    assert carol.calls[0].confirmed
    rig.run(5.0)  # pbx hangs up a transferor that does not
    assert a_call.ended
    bob.hang_up(at_bob)
    rig.run(0.5)
    rig.check()


def test_refer_sub_false_gets_no_notify() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003", refer_sub=False)
    rig.run(1.5)
    assert a_call.responses[-1].status == 202
    assert a_call.responses[-1].headers.get("Refer-Sub") == "false"
    assert carol.calls[0].confirmed and a_call.notify_bodies() == []
    bob.hang_up(at_bob)
    rig.run(5.0)
    rig.check()


def test_an_unanswered_blind_transfer_rings_the_transferor_again() -> None:
    rig, alice, bob, carol = setup(transfer_recall=3.0)
    carol.answer_mode = "ignore"
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(0.5)
    alice.hang_up(a_call)  # the transferor goes away at once
    rig.run(3.5)  # the recall time runs out: carol stops ringing, alice's phone rings
    assert carol.calls[0].ended
    recall = alice.calls[-1]
    assert recall.direction == "in" and recall.confirmed
    assert media_flows(rig, (bob, at_bob), (alice, recall))
    alice.hang_up(recall)
    rig.run(0.5)
    rig.check()
    outcomes = [e.outcome for e in rig.events if isinstance(e, ev.Transferred)]
    assert outcomes == ["recalled"]


def test_a_failed_transfer_gives_the_party_back_to_a_transferor_still_on_the_line() -> None:
    rig, alice, bob, carol = setup()
    carol.answer_mode = "busy"
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(1.0)
    assert b"SIP/2.0 486 Busy Here" in sipfrags(a_call)
    rig.run(2.5)  # the transferor did not hang up: it gets its party back
    assert not a_call.ended and media_flows(rig, (alice, a_call), (bob, at_bob))
    alice.hang_up(a_call)
    rig.run(0.5)
    rig.check()


def test_the_transferee_hanging_up_while_the_target_rings_stops_the_target() -> None:
    rig, alice, bob, carol = setup()
    carol.answer_mode = "ignore"
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(0.5)
    bob.hang_up(at_bob)
    rig.run(0.5)
    assert carol.calls[0].ended and carol.calls[0].ended_by == "cancel"
    assert b"SIP/2.0 487 Request Terminated" in sipfrags(a_call)
    alice.hang_up(a_call)
    rig.run(0.5)
    rig.check()


def test_the_same_transfer_twice_is_refused_the_second_time() -> None:
    rig, alice, bob, carol = setup()
    carol.answer_mode = "ignore"
    a_call, at_bob = call(rig, alice, bob, "1002")
    (bob_leg,) = [leg for leg in rig.control.legs.values() if leg.party.number == "1002"]
    rig.control.blind_transfer(bob_leg.id, "1003")
    try:
        rig.control.blind_transfer(bob_leg.id, "1003")
    except Exception as exc:  # noqa: BLE001
        assert getattr(exc, "status", None) == 409
    else:
        raise AssertionError("a second transfer was accepted")
    bob.hang_up(at_bob)
    rig.run(1.0)
    rig.check()


# -- attended transfer ------------------------------------------------------------------------


def test_attended_transfer_joins_the_two_other_parties_and_ends_the_transferor() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.hold(a_call)
    rig.run(0.3)
    consult, at_carol = call(rig, alice, carol, "1003")
    alice.refer(a_call, "1003", replaces=consult)
    rig.run(0.2)
    assert a_call.responses[-1].status == 202
    assert b"SIP/2.0 200 OK" in sipfrags(a_call)
    assert media_flows(rig, (bob, at_bob), (carol, at_carol))
    rig.run(5.0)  # pbx ends both of alice's legs
    assert a_call.ended and consult.ended
    assert media_flows(rig, (bob, at_bob), (carol, at_carol))
    carol.hang_up(at_carol)
    rig.run(0.5)
    assert at_bob.ended
    rig.check()
    assert len(rig.records) == 2  # the transferred call and alice's consultation
    transferred = [e for e in rig.events if isinstance(e, ev.Transferred)]
    assert [(e.kind, e.target) for e in transferred] == [("attended", "1003")]


# -- park ------------------------------------------------------------------------------------------


def test_a_blind_transfer_to_700_parks_the_call_the_parker_hears_the_slot_and_another_phone_retrieves_it() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "700")
    rig.run(0.2)
    assert rig.prompts.said == ["701"]
    heard = len(a_call.rtp)
    rig.run(2.5)
    assert len(a_call.rtp) > heard  # the slot number is read to alice
    assert b"SIP/2.0 200 OK" in sipfrags(a_call)
    music = len(at_bob.rtp)
    rig.run(0.5)
    assert len(at_bob.rtp) > music  # bob waits with music on hold
    alice.hang_up(a_call)
    rig.run(0.3)
    retrieve, at_carol_side = carol.dial("701"), None
    rig.run(1.0)
    assert retrieve.confirmed and at_carol_side is None
    assert media_flows(rig, (bob, at_bob), (carol, retrieve))
    carol.hang_up(retrieve)
    rig.run(0.5)
    rig.check()
    assert len(rig.records) == 1  # the retrieval is part of the parked call
    names = [h["kind"] for h in history(rig)]
    assert names == ["talk", "park", "unpark", "talk"]


def test_a_parked_call_not_retrieved_rings_the_parker() -> None:
    rig, alice, bob, carol = setup(park_timeout=5.0)
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "700")
    rig.run(3.0)
    alice.hang_up(a_call)
    rig.run(3.0)
    recall = alice.calls[-1]
    assert recall.direction == "in" and recall.confirmed
    assert media_flows(rig, (bob, at_bob), (alice, recall))
    unparked = [e for e in rig.events if isinstance(e, ev.Unparked)]
    assert [u.reason for u in unparked] == ["timeout"]
    bob.hang_up(at_bob)
    rig.run(0.5)
    rig.check()


def test_dialling_an_empty_slot_gets_404_and_a_parked_call_hanging_up_frees_its_slot() -> None:
    rig, alice, bob, carol = setup()
    empty = carol.dial("705")
    rig.run(0.5)
    assert empty.statuses[-1] == 404
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "700")
    rig.run(3.0)
    assert list(rig.parking.slots) == ["701"]
    bob.hang_up(at_bob)
    rig.run(0.5)
    assert rig.parking.slots == {}
    assert [e.reason for e in rig.events if isinstance(e, ev.Unparked)] == ["hangup"]
    rig.run(5.0)
    rig.check()


def test_dialling_700_parks_the_caller_and_an_attended_transfer_parks_the_held_call() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.hold(a_call)
    rig.run(0.3)
    park_call = alice.dial("700")
    rig.run(0.5)
    assert park_call.confirmed and rig.prompts.said == ["701"]
    alice.refer(a_call, "700", replaces=park_call)
    rig.run(5.5)
    assert a_call.ended and park_call.ended
    (slot,) = rig.parking.slots.values()
    assert slot.leg is not None and slot.leg.party.number == "1002"
    retrieve = carol.dial("701")
    rig.run(1.0)
    assert media_flows(rig, (bob, at_bob), (carol, retrieve))
    carol.hang_up(retrieve)
    rig.run(0.5)
    rig.check()


# -- pickup --------------------------------------------------------------------------------------


def test_group_pickup_takes_the_call_ringing_at_a_member_and_stops_its_phone() -> None:
    rig, alice, bob, carol = setup()
    rig.extensions["1002"].pickup_group = "sales"
    rig.extensions["1003"].pickup_group = "sales"
    bob.answer_mode = "ignore"
    a_call = alice.dial("1002")
    rig.run(0.5)
    pick = carol.dial("*8")
    rig.run(1.0)
    assert pick.confirmed and a_call.confirmed
    assert bob.calls[0].ended and bob.calls[0].ended_by == "cancel"
    cancel = [d for d in rig.network.sip(dst_host="127.0.1.2") if d.data.startswith(b"CANCEL")]
    assert b"Call completed elsewhere" in cancel[0].data
    assert media_flows(rig, (alice, a_call), (carol, pick))
    alice.hang_up(a_call)
    rig.run(0.5)
    rig.check()
    (record,) = rig.records
    assert record.callee == "1003" and record.dialled == "1002"
    assert [h["kind"] for h in history(rig)] == ["pickup", "talk"]


def test_directed_pickup_and_nothing_to_pick_up() -> None:
    rig, alice, bob, carol = setup()
    nothing = carol.dial("**1002")
    rig.run(0.5)
    assert nothing.statuses[-1] == 480
    bob.answer_mode = "ignore"
    a_call = alice.dial("1002")
    rig.run(0.5)
    pick = carol.dial("**1002")
    rig.run(1.0)
    assert pick.confirmed and a_call.confirmed and bob.calls[0].ended
    assert media_flows(rig, (alice, a_call), (carol, pick))
    carol.hang_up(pick)
    rig.run(0.5)
    rig.check()
    assert len(rig.records) == 2  # the failed pickup, and the picked-up call


def test_an_invite_with_replaces_picks_up_a_ringing_call() -> None:
    rig, alice, bob, carol = setup()
    bob.answer_mode = "ignore"
    a_call = alice.dial("1002")
    rig.run(0.5)
    ringing = bob.calls[0]
    invite = ringing.invite
    assert invite is not None
    # the dialog as the ringing phone names it: its own tag is the To tag pbx will see
    replaces = f"{invite.call_id};to-tag={invite.from_.tag};from-tag=bobtag"
    pick = carol.dial("1002", headers=(("Replaces", replaces),))
    rig.run(1.0)
    assert pick.confirmed and a_call.confirmed and ringing.ended
    carol.hang_up(pick)
    rig.run(0.5)
    rig.check()


def test_an_invite_with_replaces_takes_the_place_of_an_answered_call() -> None:
    rig, alice, bob, carol = setup()
    a_call, at_bob = call(rig, alice, bob, "1002")
    dialog = at_bob.dialog
    assert dialog is not None
    replaces = f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"
    takeover = carol.dial("1002", headers=(("Replaces", replaces),))
    rig.run(1.0)
    assert takeover.confirmed and at_bob.ended and at_bob.ended_by == "remote"
    assert media_flows(rig, (alice, a_call), (carol, takeover))
    unknown = carol.dial("1002", headers=(("Replaces", "nope;to-tag=a;from-tag=b"),))
    rig.run(0.5)
    assert unknown.statuses[-1] == 481
    alice.hang_up(a_call)
    rig.run(0.5)
    rig.check()


# -- click-to-call -------------------------------------------------------------------------------


def test_click_to_call_rings_the_user_then_the_target() -> None:
    rig, alice, bob, carol = setup()
    started: list[Any] = []
    rig.control.originate("1002", from_extension="1001").addCallback(started.append)
    rig.run(0.1)
    assert started and started[0]["call"]
    at_alice = alice.calls[0]
    assert at_alice.direction == "in"
    rig.run(1.5)
    at_bob = bob.calls[0]
    assert at_alice.confirmed and at_bob.confirmed
    assert media_flows(rig, (alice, at_alice), (bob, at_bob))
    alice.hang_up(at_alice)
    rig.run(0.5)
    rig.check()
    (record,) = rig.records
    assert (record.caller, record.dialled, record.callee) == ("1001", "1002", "1002")


def test_a_transferor_that_hangs_up_on_the_failure_notify_is_rung_back() -> None:
    rig, alice, bob, carol = setup(transfer_recall=3.0)
    carol.answer_mode = "ignore"
    a_call, at_bob = call(rig, alice, bob, "1002")
    alice.refer(a_call, "1003")
    rig.run(3.2)  # the recall time runs out: NOTIFY 480 to alice
    assert b"SIP/2.0 480 Temporarily Unavailable" in sipfrags(a_call)
    alice.hang_up(a_call)  # as baresip does on any final NOTIFY
    rig.run(3.0)
    recall = alice.calls[-1]
    assert recall.direction == "in" and recall.confirmed
    assert media_flows(rig, (bob, at_bob), (alice, recall))
    bob.hang_up(at_bob)
    rig.run(0.5)
    rig.check()
