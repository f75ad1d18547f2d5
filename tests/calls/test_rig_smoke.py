"""The in-process rig itself: a call between two scripted phones through the real switch."""

from __future__ import annotations

from tests.calls.rig import Rig


def test_a_call_is_answered_relayed_and_recorded() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.confirmed, call.statuses
    (incoming,) = bob.calls
    assert incoming.confirmed
    alice.send_rtp(call, b"a" * 160, count=3)
    bob.send_rtp(incoming, b"b" * 160, count=2)
    rig.run(0.1)
    assert incoming.rtp_payloads() == [b"a" * 160] * 3
    assert call.rtp_payloads() == [b"b" * 160] * 2
    alice.hang_up(call)
    rig.run(0.5)
    assert incoming.ended and rig.active == []
    (record,) = rig.records
    assert record.disposition == "answered" and record.hangup_side == "caller"
    assert rig.reactor.open_media_ports() == 0


def test_the_basic_call_publishes_the_expected_events_in_order() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(1.0)
    alice.hang_up(call)
    rig.run(0.5)
    rig.check()
    assert rig.names() == [
        "call_started",
        "leg_created",  # alice
        "leg_created",  # bob's phone
        "leg_ringing",
        "leg_answered",  # bob
        "leg_answered",  # alice, after the record was committed
        "bridge_joined",
        "bridge_joined",
        "bridge_media_changed",
        "bridge_left",  # alice hung up
        "leg_ended",
        "bridge_media_changed",
        "bridge_left",  # bob is hung up by the bridge's policy
        "leg_ended",
        "call_ended",
    ]
