"""Defects found in the review of the call core (issue 8), each proven in process: media
latching (RTP bleed), calls whose routing fails, calls answered by pbx itself, a record for
every failed call, and SDES keys only over TLS."""

from __future__ import annotations

from typing import Any

import pytest

from tests.calls.phones import direction_of
from tests.calls.rig import Rig, binding_for

CRYPTO = "1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"


def answered_call(rig: Rig, **options: Any) -> tuple[Any, Any, Any, Any]:
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12", **options)
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.confirmed
    return alice, bob, call, bob.calls[0]


# -- RTP bleed -------------------------------------------------------------------------------


def test_media_from_a_stranger_is_not_latched_nor_relayed() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered_call(rig)
    pbx_port = call.remote_media  # where alice sends her media (pbx's port facing her)
    assert pbx_port is not None
    rig.network.send(b"\x80\x00" + b"\x00" * 10 + b"evil" * 40, ("127.0.0.66", 4000), pbx_port)
    rig.run(0.05)
    assert incoming.rtp == []
    alice.send_rtp(call, b"a" * 160)
    bob.send_rtp(incoming, b"b" * 160)
    rig.run(0.05)
    assert incoming.rtp_payloads() == [b"a" * 160]
    # media to alice still goes to her, not to the stranger
    assert [src for _, _, src in call.rtp] and all(
        addr == ("127.0.0.11", call.rtp_port) for addr in [("127.0.0.11", call.rtp_port)]
    )
    assert call.rtp_payloads() == [b"b" * 160]


def test_after_silence_only_the_same_address_may_latch_again() -> None:
    rig = Rig()
    alice, bob, call, incoming = answered_call(rig)
    pbx_port = call.remote_media
    assert pbx_port is not None
    alice.send_rtp(call, b"a" * 160)
    rig.run(8.0)  # silent for longer than relatch_after (5 s)
    rig.network.send(b"\x80\x00" + b"\x00" * 10 + b"x" * 160, ("127.0.0.66", 4000), pbx_port)
    rig.run(0.05)
    bob.send_rtp(incoming, b"b" * 160)
    rig.run(0.05)
    assert call.rtp_payloads() == [b"b" * 160]  # still to alice
    assert incoming.rtp_payloads() == [b"a" * 160]  # the stranger's packet was dropped
    # the phone itself from a new port (NAT rebinding): latched again
    rig.network.send(b"\x80\x00" + b"\x00" * 10 + b"n" * 160, ("127.0.0.11", 31000), pbx_port)
    rig.run(0.05)
    assert incoming.rtp_payloads()[-1] == b"n" * 160


def test_latching_to_any_address_is_a_setting_for_odd_nats() -> None:
    rig = Rig(latch_any_address=True)
    alice, bob, call, incoming = answered_call(rig)
    pbx_port = call.remote_media
    assert pbx_port is not None
    rig.network.send(b"\x80\x00" + b"\x00" * 10 + b"n" * 160, ("10.9.9.9", 4000), pbx_port)
    rig.run(0.05)
    assert incoming.rtp_payloads() == [b"n" * 160]


# -- calls whose routing fails -----------------------------------------------------------------


def test_a_call_whose_routing_fails_after_ports_were_taken_is_released_and_recorded() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.extensions["10#1"] = rig.extensions.pop("1001").__class__(
        bindings=[binding_for("10#1", "127.0.0.13")]
    )
    rig.extensions["1001"] = rig.extensions["10#1"].__class__()
    call = alice.dial("10%231")
    rig.run(2.0)
    assert call.ended and call.statuses[-1] >= 400
    assert rig.active == [] and rig.reactor.open_media_ports() == 0
    (record,) = rig.records
    assert record.disposition == "failed" and record.dialled == "10#1"


# -- calls answered by pbx -------------------------------------------------------------------------


def test_sip_info_digits_reach_a_call_answered_by_pbx() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    call = alice.dial("*43")
    rig.run(0.5)
    assert call.confirmed
    alice.info(call, "5")
    rig.run(0.2)
    assert [r.status for r in call.responses] == [200]
    alice.info(call, "#")  # ends the echo test
    rig.run(0.5)
    assert [r.status for r in call.responses] == [200, 200]
    assert call.ended and call.ended_by == "remote"


def test_hold_of_a_call_answered_by_pbx_is_answered_with_the_held_direction() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    call = alice.dial("*43")
    rig.run(0.5)
    first = call.remote_sdp
    alice.hold(call)
    rig.run(0.3)
    assert call.responses[-1].status == 200
    assert direction_of(call.remote_sdp) == "recvonly" and call.remote_sdp != first
    alice.send_rtp(call, b"\xff" * 160, count=10)
    rig.run(0.5)
    assert call.rtp == []  # held: pbx sends nothing back
    alice.resume(call)
    rig.run(0.3)
    assert direction_of(call.remote_sdp) == "sendrecv"


# -- every call leaves a record ------------------------------------------------------------------


def test_no_media_ports_gives_503_and_a_record() -> None:
    rig = Rig(rtp_ports=(10000, 10002))  # one pair: not enough for two legs
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.statuses[-1] == 503
    (record,) = rig.records
    assert record.disposition == "failed" and record.hangup_cause == "503"
    assert rig.reactor.open_media_ports() == 0


def test_a_too_small_session_interval_gives_422_and_a_record() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002", headers=(("Session-Expires", "30"), ("Supported", "timer")))
    rig.run(1.0)
    assert call.statuses[-1] == 422
    (record,) = rig.records
    assert record.disposition == "failed" and record.hangup_cause == "422"


def test_a_lookup_that_fails_gives_500_and_a_record() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.directory.error = RuntimeError("database is gone")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.statuses[-1] == 500
    (record,) = rig.records
    assert record.disposition == "failed" and record.hangup_cause == "500"


# -- SDES keys only over TLS ---------------------------------------------------------------------


@pytest.mark.parametrize("number", ["1002", "*43"])
def test_an_srtp_only_offer_over_udp_is_refused_without_keys(number: str) -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial(number, crypto=CRYPTO)
    rig.run(1.0)
    assert call.statuses[-1] == 488
    assert not any(b"a=crypto" in d.data for d in rig.network.sip(src_host="127.0.0.1"))
    assert rig.records[-1].hangup_cause == "488"


def test_best_effort_srtp_over_udp_is_answered_with_plain_rtp() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12")
    body = alice.sdp(alice._new_call("out", "x")).replace(
        b"a=sendrecv", f"a=crypto:{CRYPTO}\r\na=sendrecv".encode()
    )
    call = alice.dial("1002", body=body)
    rig.run(1.0)
    assert call.confirmed
    assert b"a=crypto" not in call.remote_sdp and b"RTP/AVP" in call.remote_sdp
    assert b"a=crypto" not in bob.calls[0].remote_sdp


def test_an_invite_retried_after_422_with_the_same_call_id_is_answered_and_both_recorded() -> None:
    rig = Rig()
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    first = alice.dial("1002", headers=(("Session-Expires", "30"),), call_id="same-call")
    rig.run(0.5)
    assert first.statuses[-1] == 422
    retry = alice.dial("1002", headers=(("Session-Expires", "1800"),), call_id="same-call", cseq=2)
    rig.run(1.0)
    assert retry.confirmed
    alice.hang_up(retry)
    rig.run(0.5)
    assert [(r.call_id, r.disposition) for r in rig.records] == [
        ("same-call", "failed"),
        ("same-call", "answered"),
    ]


def test_a_call_that_ends_while_its_record_is_written_is_closed_once_committed() -> None:
    rig = Rig()
    rig.record_delay = 0.5  # a slow store
    alice = rig.phone("1001", "127.0.0.11")
    bob = rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(0.25)  # bob answered (0.2 s), the record is being written
    bob.hang_up(bob.calls[0]) if bob.calls[0].dialog else None
    alice.cancel(call)
    rig.run(2.0)
    assert rig.active == []
    (record,) = rig.records
    assert record.disposition != "open" and record.ended_at is not None


def test_a_record_that_cannot_be_written_ends_the_call_with_500_and_a_failed_row() -> None:
    rig = Rig()
    rig.record_error = RuntimeError("disk full")
    rig.record_error_kinds = ("open",)
    alice = rig.phone("1001", "127.0.0.11")
    rig.phone("1002", "127.0.0.12")
    call = alice.dial("1002")
    rig.run(1.0)
    assert call.statuses[-1] == 500 and rig.active == []
    (record,) = rig.records
    assert (record.disposition, record.hangup_cause, record.answered_at) == ("failed", "500", None)
