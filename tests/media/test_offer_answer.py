"""Anchoring rewrite, o= versioning, RFC 3264 answers and hold detection."""

from __future__ import annotations

import pytest
from hypothesis import given

from pbx.media.offer_answer import (
    HoldState,
    SdpVersioner,
    answer,
    hold_state,
    media_hold_state,
    rewrite_connection,
)
from pbx.media.sdp import Codec, Connection, Direction, Origin, SessionDescription

from .test_sdp import BARESIP, LINPHONE, SIPP_UAC, SLOW_OK, YEALINK_SRTP, crlf, sdp_lines

PCMU = Codec(0, "PCMU", 8000)
PCMA = Codec(8, "PCMA", 8000)
G722 = Codec(9, "G722", 8000)
OPUS = Codec(111, "opus", 48000, 2, "useinbandfec=1")
EVENTS_8K = Codec(101, "telephone-event", 8000, 1, "0-16")
EVENTS_48K = Codec(102, "telephone-event", 48000)
OURS = [PCMA, PCMU, G722, EVENTS_8K]


def parse(text: str) -> SessionDescription:
    return SessionDescription.parse(text)


# --- rewrite_connection ---------------------------------------------------------------------


def test_rewrite_points_c_lines_m_port_and_rtcp_at_the_anchor() -> None:
    rewritten = rewrite_connection(parse(BARESIP), "127.0.0.1", {0: 40000})
    expected = (
        BARESIP.replace("c=IN IP4 192.168.1.20", "c=IN IP4 127.0.0.1")
        .replace("m=audio 10548", "m=audio 40000")
        .replace("a=rtcp:10549", "a=rtcp:40001")
    )
    assert rewritten.serialize() == expected
    assert rewritten.origin == parse(BARESIP).origin  # o= is SdpVersioner's job


def test_rewrite_takes_an_explicit_rtcp_port_and_rewrites_the_rtcp_address() -> None:
    offer = parse(SIPP_UAC + "a=rtcp:6001 IN IP4 127.0.0.1\r\n")
    rewritten = rewrite_connection(offer, "::1", {0: (40000, 40011)})
    assert rewritten.connection == Connection("::1", "IN", "IP6")
    assert rewritten.media[0].port == 40000
    assert rewritten.media[0].attribute("rtcp") == "40011 IN IP6 ::1"


def test_rewrite_changes_media_level_connections_and_keeps_rejected_streams() -> None:
    offer = parse(
        crlf("""
v=0
o=- 1 1 IN IP4 10.0.0.1
s=-
t=0 0
m=audio 5000 RTP/AVP 0
c=IN IP4 10.0.0.1
m=video 0 RTP/AVP 31
c=IN IP4 10.0.0.1
""")
    )
    rewritten = rewrite_connection(offer, "127.0.0.2", {0: 41000})
    assert rewritten.connection is None
    assert rewritten.media[0].connections == (Connection("127.0.0.2"),)
    assert rewritten.media[1] == offer.media[1]


def test_rewrite_adds_a_session_connection_when_a_stream_has_none() -> None:
    offer = parse(SIPP_UAC.replace("c=IN IP4 127.0.0.1\r\n", ""))
    assert rewrite_connection(offer, "127.0.0.2", {0: 41000}).connection == Connection("127.0.0.2")


def test_rewrite_keeps_an_rfc_2543_hold_address() -> None:
    offer = parse(SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"))
    rewritten = rewrite_connection(offer, "127.0.0.2", {0: 41000})
    assert rewritten.connection == Connection("0.0.0.0")
    assert hold_state(rewritten) is HoldState.INACTIVE


def test_rewrite_drops_ice_attributes_that_name_the_phones_addresses() -> None:
    offer = parse(
        SIPP_UAC
        + "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789012345678901\r\n"
        + "a=candidate:1 1 UDP 2130706431 192.168.1.20 6000 typ host\r\n"
    )
    rewritten = rewrite_connection(offer, "127.0.0.2", {0: 41000})
    assert [a.name for a in rewritten.media[0].attributes] == ["rtpmap"]


def test_rewrite_without_a_port_for_an_accepted_stream_raises_value_error() -> None:
    with pytest.raises(ValueError, match="no anchored port for m-line 0"):
        rewrite_connection(parse(SIPP_UAC), "127.0.0.2", {})


# --- SdpVersioner (RFC 3264 §8) -------------------------------------------------------------


def test_versioner_keeps_the_first_session_id_and_bumps_the_version_only_on_change() -> None:
    versioner = SdpVersioner(username="pbx", address="127.0.0.1")
    first = versioner.stamp(parse(SIPP_UAC))
    assert first.origin == Origin("pbx", "53655765", 2353687637, "IN", "IP4", "127.0.0.1")
    same = parse(SIPP_UAC.replace("o=user1 53655765 2353687637", "o=other 9 9"))
    assert versioner.stamp(same).origin == first.origin  # identical body: same version
    changed = versioner.stamp(rewrite_connection(same, "127.0.0.3", {0: 42000}))
    assert changed.origin.session_version == 2353687638
    assert changed.origin.session_id == "53655765"
    assert versioner.stamp(changed).origin.session_version == 2353687638
    assert versioner.origin == changed.origin


def test_versioner_can_impose_its_own_session_id() -> None:
    versioner = SdpVersioner(session_id="777")
    assert versioner.origin is None
    assert versioner.stamp(parse(SIPP_UAC)).origin.session_id == "777"


# --- answer (RFC 3264 §6) -------------------------------------------------------------------


def test_answer_keeps_common_codecs_in_the_offerers_order_with_its_payload_types() -> None:
    result = answer(parse(BARESIP), OURS)
    (audio,) = result.media
    assert audio.formats == ("0", "8", "9", "101")
    assert audio.codecs() == (PCMU, PCMA, G722, EVENTS_8K)
    assert audio.direction is Direction.SENDRECV
    assert audio.ptime == 20


def test_answer_can_prefer_our_codec_order_and_limit_the_count() -> None:
    assert answer(parse(BARESIP), OURS, prefer="ours").media[0].formats == ("8", "0", "9", "101")
    assert answer(parse(BARESIP), OURS, "ours", max_codecs=1).media[0].formats == ("8", "101")


def test_telephone_event_follows_the_clock_rate_of_the_first_codec() -> None:
    ours = [OPUS, PCMU, EVENTS_8K, EVENTS_48K]
    (audio,) = answer(parse(BARESIP), ours).media
    assert audio.formats == ("0", "96", "101")  # PCMU first: 8 kHz events
    (audio,) = answer(parse(BARESIP), ours, prefer="ours").media
    assert audio.formats == ("96", "0", "102")  # opus first: 48 kHz events
    assert audio.fmtp(96) == "useinbandfec=1"  # ours replaces the offer's fmtp
    assert audio.fmtp(102) == "0-15"  # we gave none: the offer's stays


def test_no_telephone_event_is_answered_when_we_do_not_support_it() -> None:
    assert answer(parse(BARESIP), [PCMU]).media[0].formats == ("0",)


def test_unsupported_streams_are_rejected_with_port_zero_keeping_m_line_count_and_order() -> None:
    result = answer(parse(LINPHONE), OURS)
    audio, video = result.media
    assert audio.formats == ("0", "8", "100") and audio.port == 7078
    assert (video.media, video.port, video.formats, video.attributes) == ("video", 0, ("96",), ())
    no_common = answer(parse(LINPHONE), [Codec(97, "iLBC", 8000)])
    assert [m.port for m in no_common.media] == [0, 0]


def test_secure_rtp_is_rejected_unless_its_profile_is_allowed() -> None:
    assert answer(parse(YEALINK_SRTP), OURS).media[0].port == 0
    allowed = answer(parse(YEALINK_SRTP), OURS, protos=("RTP/SAVP",)).media[0]
    assert allowed.port == 11800 and allowed.formats == ("0", "8", "9", "101")


@pytest.mark.parametrize(
    ("offered", "ours", "answered"),
    [
        ("sendonly", Direction.SENDRECV, Direction.RECVONLY),
        ("recvonly", Direction.SENDRECV, Direction.SENDONLY),
        ("inactive", Direction.SENDRECV, Direction.INACTIVE),
        ("sendrecv", Direction.SENDRECV, Direction.SENDRECV),
        ("sendrecv", Direction.RECVONLY, Direction.RECVONLY),
        ("recvonly", Direction.RECVONLY, Direction.INACTIVE),
    ],
)
def test_answer_direction_follows_rfc_3264_section_6_1(
    offered: str, ours: Direction, answered: Direction
) -> None:
    offer = parse(SIPP_UAC + f"a={offered}\r\n")
    assert answer(offer, OURS, direction=ours).media[0].direction is answered


def test_a_session_level_direction_applies_to_the_answer() -> None:
    offer = parse(SIPP_UAC.replace("t=0 0\r\n", "t=0 0\r\na=sendonly\r\n"))
    assert answer(offer, OURS).media[0].direction is Direction.RECVONLY


def test_an_anchored_answer_to_sipp_is_exactly_this_sdp() -> None:
    result = answer(
        parse(SIPP_UAC),
        OURS,
        origin=Origin("pbx", "42", 1, address="127.0.0.1"),
        address="127.0.0.1",
        ports={0: 30000},
    )
    assert result.serialize() == crlf("""
v=0
o=pbx 42 1 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 30000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
a=sendrecv
""")


def test_an_unknown_preference_raises_value_error() -> None:
    with pytest.raises(ValueError, match="prefer must be"):
        answer(parse(SIPP_UAC), OURS, prefer="theirs")  # type: ignore[arg-type]


# --- hold (RFC 3264 §8.4) -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "state"),
    [
        ("a=sendrecv", HoldState.ACTIVE),
        ("a=recvonly", HoldState.ACTIVE),
        ("a=sendonly", HoldState.HELD),
        ("a=inactive", HoldState.INACTIVE),
    ],
)
def test_hold_state_follows_the_direction_attribute(change: str, state: HoldState) -> None:
    assert hold_state(parse(SIPP_UAC + change + "\r\n")) is state


def test_c_line_zero_address_is_rfc_2543_hold() -> None:
    desc = parse(SIPP_UAC.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"))
    assert hold_state(desc) is HoldState.INACTIVE
    assert hold_state(parse(SIPP_UAC)) is HoldState.ACTIVE


def test_the_call_is_held_only_when_every_accepted_stream_is() -> None:
    two = SIPP_UAC + "a=sendonly\r\nm=audio 6002 RTP/AVP 0\r\n"
    assert media_hold_state(parse(two), 0) is HoldState.HELD
    assert hold_state(parse(two)) is HoldState.ACTIVE
    assert hold_state(parse(two + "a=inactive\r\n")) is HoldState.INACTIVE
    assert hold_state(parse(SIPP_UAC + "a=sendonly\r\nm=video 0 RTP/AVP 31\r\n")) is (
        HoldState.HELD
    )


@SLOW_OK
@given(sdp_lines)
def test_offer_answer_helpers_on_sdp_shaped_noise_raise_only_value_error(text: str) -> None:
    try:
        offer = SessionDescription.parse(text)
        hold_state(offer)
        answer(offer, OURS, address="127.0.0.1", ports={i: 40000 for i in range(10)})
        SdpVersioner().stamp(rewrite_connection(offer, "127.0.0.1", {0: 40000}))
    except ValueError:
        pass
