"""One leg's offer/answer state (pbx.calls.sdpsession): anchoring, versions, hold, SRTP."""

from __future__ import annotations

import pytest

from pbx.calls import negotiate
from pbx.calls.sdpsession import MediaRefused, SdpSession, direction_of, hold_of, with_direction
from pbx.media.offer_answer import HoldState
from pbx.media.relay import MediaLeg
from pbx.media.sdp import Direction, SessionDescription

OFFER = (
    b"v=0\r\no=phone 1 41 IN IP4 127.0.0.7\r\ns=-\r\nc=IN IP4 127.0.0.7\r\nt=0 0\r\n"
    b"m=audio 4000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=sendrecv\r\n"
)
CRYPTO = b"a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
SECURE = OFFER.replace(b"RTP/AVP", b"RTP/SAVP").replace(b"a=sendrecv", CRYPTO + b"a=sendrecv")


def session(secure: bool = False) -> SdpSession:
    media = MediaLeg("test")
    media.local_ports = (20000, 20001)
    return SdpSession(media, "127.0.0.1", secure)


def desc(body: bytes) -> SessionDescription:
    return SessionDescription.parse(body)


def test_direction_and_hold_state_of_an_offer() -> None:
    held = OFFER.replace(b"a=sendrecv", b"a=sendonly")
    assert direction_of(held) is Direction.SENDONLY and hold_of(held) is HoldState.HELD
    old_style = OFFER.replace(b"c=IN IP4 127.0.0.7", b"c=IN IP4 0.0.0.0")
    assert direction_of(old_style) is Direction.INACTIVE
    assert direction_of(OFFER) is Direction.SENDRECV and hold_of(OFFER) is HoldState.ACTIVE
    assert direction_of(b"") is None and with_direction(b"garbage", Direction.INACTIVE) == b"garbage"
    assert direction_of(with_direction(OFFER, Direction.RECVONLY)) is Direction.RECVONLY


def test_a_local_answer_points_at_the_legs_ports_and_prefers_the_given_codec() -> None:
    sdp = session()
    body = sdp.answer_locally(OFFER, prefer="PCMU")
    answer = desc(body)
    assert answer.media[0].port == 20000 and answer.media_connection(0).address == "127.0.0.1"
    assert answer.media[0].formats == ("0", "101") and sdp.format is not None
    assert sdp.format.codec == "PCMU" and sdp.format.telephone_event == 101
    assert sdp.media.rtp.remote == ("127.0.0.7", 4000)


def test_a_hold_is_answered_recvonly_and_the_version_goes_up_only_when_the_sdp_changes() -> None:
    sdp = session()
    first = desc(sdp.answer_locally(OFFER)).origin.session_version
    same = desc(sdp.reanswer(OFFER)).origin.session_version
    assert same == first and not sdp.holding
    held = sdp.reanswer(OFFER.replace(b"a=sendrecv", b"a=sendonly"))
    assert direction_of(held) is Direction.RECVONLY and sdp.holding
    assert desc(held).origin.session_version == first + 1
    resumed = sdp.reanswer(OFFER)
    assert direction_of(resumed) is Direction.SENDRECV and not sdp.holding
    inactive = sdp.reanswer(OFFER.replace(b"a=sendrecv", b"a=inactive"))
    assert direction_of(inactive) is Direction.INACTIVE and sdp.holding


def test_a_codec_change_in_a_reinvite_picks_a_new_format() -> None:
    sdp = session()
    sdp.answer_locally(OFFER)
    assert sdp.format is not None and sdp.format.codec == "PCMA"
    only_pcmu = OFFER.replace(b"RTP/AVP 8 0 101", b"RTP/AVP 0 101")
    sdp.reanswer(only_pcmu)
    assert sdp.format.codec == "PCMU"


def test_pbx_hold_offers_sendonly_and_retrieve_sendrecv() -> None:
    sdp = session()
    sdp.answer_locally(OFFER)
    assert direction_of(sdp.hold_offer(True)) is Direction.SENDONLY
    assert direction_of(sdp.hold_offer(False)) is Direction.SENDRECV


def test_srtp_keys_are_answered_only_over_tls() -> None:
    with pytest.raises(MediaRefused):
        session(secure=False).answer_locally(SECURE)
    sdp = session(secure=True)
    body = sdp.answer_locally(SECURE)
    assert b"RTP/SAVP" in body and b"a=crypto:1 AES_CM_128_HMAC_SHA1_80" in body
    assert sdp.media.rtp.wrap is not None and sdp.media.rtp.unwrap is not None
    # the same offer again (a refresh) keeps pbx's key
    assert sdp.reanswer(SECURE).split(b"a=crypto")[1] == body.split(b"a=crypto")[1]


def test_best_effort_srtp_over_udp_is_answered_plain() -> None:
    sdp = session(secure=False)
    body = sdp.answer_locally(OFFER.replace(b"a=sendrecv", CRYPTO + b"a=sendrecv"))
    assert b"a=crypto" not in body and b"RTP/AVP" in body


def test_an_own_offer_and_the_phones_answer_give_the_format() -> None:
    sdp = session()
    offer = sdp.offer(negotiate.own_offer(["G722", "PCMA", "PCMU", "opus"]))
    assert desc(offer).media[0].port == 20000
    answer = b"v=0\r\no=x 1 1 IN IP4 127.0.0.8\r\ns=-\r\nc=IN IP4 127.0.0.8\r\nt=0 0\r\n"
    answer += b"m=audio 5000 RTP/AVP 9 101\r\na=rtpmap:9 G722/8000\r\n"
    answer += b"a=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    fmt = sdp.take_answer(answer)
    assert fmt.codec == "G722" and fmt.telephone_event == 101
    assert sdp.media.rtp.remote == ("127.0.0.8", 5000)
    with pytest.raises(MediaRefused):
        sdp.take_answer(b"")
