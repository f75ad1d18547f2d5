"""SDP direction helpers used to mirror hold/resume between the legs (pbx.calls.midcall)."""

from __future__ import annotations

from pbx.calls.midcall import answer_direction, direction_of, hold_of, restamp
from pbx.media.offer_answer import HoldState
from pbx.media.sdp import Direction, SessionDescription

BODY = (
    b"v=0\r\no=pbx 1 41 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    b"m=audio 20000 RTP/SAVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
    b"a=sendrecv\r\n"
)


def test_restamp_bumps_the_version_and_changes_only_the_direction() -> None:
    out = restamp(BODY, Direction.SENDONLY)
    desc = SessionDescription.parse(out)
    assert desc.origin.session_version == 42
    assert desc.media_direction(0) is Direction.SENDONLY
    assert out.replace(b"a=sendonly", b"a=sendrecv").replace(b" 42 ", b" 41 ") == BODY


def test_direction_and_hold_state_of_an_offer() -> None:
    held = BODY.replace(b"a=sendrecv", b"a=sendonly")
    assert direction_of(held) is Direction.SENDONLY and hold_of(held) is HoldState.HELD
    old_style = BODY.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
    assert direction_of(old_style) is Direction.INACTIVE
    assert direction_of(BODY) is Direction.SENDRECV and hold_of(BODY) is HoldState.ACTIVE
    assert direction_of(b"") is None and restamp(b"garbage", Direction.INACTIVE) == b"garbage"


def test_the_holders_answer_follows_the_other_phone_within_the_offer_answer_rules() -> None:
    assert answer_direction(Direction.SENDONLY, Direction.RECVONLY) is Direction.RECVONLY
    assert answer_direction(Direction.INACTIVE, Direction.INACTIVE) is Direction.INACTIVE
    assert answer_direction(Direction.SENDRECV, Direction.SENDRECV) is Direction.SENDRECV
    # the other phone answered sendrecv to a sendonly offer: the holder still gets recvonly
    assert answer_direction(Direction.SENDONLY, Direction.SENDRECV) is Direction.RECVONLY
    assert answer_direction(Direction.SENDONLY, None) is Direction.RECVONLY
