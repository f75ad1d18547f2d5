"""Codec negotiation across the B2BUA: the callee's offer and the plan from its answer."""

from __future__ import annotations

import pytest

from pbx.calls.negotiate import (
    NoCommonCodec,
    StreamFormat,
    UnusableSdp,
    offer_for_callee,
    plan,
)
from pbx.media.sdp import SessionDescription

ALL = ("PCMU", "PCMA", "G722", "opus")


def sdp(formats: str, *attrs: str, port: int = 4000, extra: str = "") -> bytes:
    lines = [
        "v=0",
        "o=phone 1 1 IN IP4 127.0.0.10",
        "s=-",
        "c=IN IP4 127.0.0.10",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *(f"a={a}" for a in attrs),
    ]
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


OPUS_ONLY = sdp(
    "111 101",
    "rtpmap:111 opus/48000/2",
    "fmtp:111 useinbandfec=1",
    "rtpmap:101 telephone-event/8000",
    "fmtp:101 0-16",
    "sendrecv",
)


def audio(body: bytes) -> tuple[list[tuple[int, str, int]], list[str]]:
    media = SessionDescription.parse(body).media[0]
    codecs = [(c.payload_type, c.encoding, c.clock_rate) for c in media.codecs()]
    return codecs, list(media.formats)


# --- offer_for_callee ----------------------------------------------------------------------


def test_offer_appends_transcodable_codecs_after_the_callers_own() -> None:
    codecs, formats = audio(offer_for_callee(OPUS_ONLY, ALL))
    assert formats == ["111", "101", "0", "8", "9"]
    assert codecs == [
        (111, "opus", 48000),
        (101, "telephone-event", 8000),
        (0, "PCMU", 8000),
        (8, "PCMA", 8000),
        (9, "G722", 8000),
    ]


def test_offer_keeps_caller_codecs_and_adds_only_missing_ones() -> None:
    caller = sdp("8 0", "rtpmap:8 PCMA/8000", "rtpmap:0 PCMU/8000")
    codecs, formats = audio(offer_for_callee(caller, ALL))
    assert formats[:2] == ["8", "0"]
    names = [name for _, name, _ in codecs]
    assert names == ["PCMA", "PCMU", "G722", "opus", "telephone-event"]
    opus_pt = codecs[3][0]
    event_pt = codecs[4][0]
    assert 96 <= opus_pt <= 127 and event_pt == 101 and opus_pt != event_pt
    media = SessionDescription.parse(offer_for_callee(caller, ALL)).media[0]
    assert media.rtpmap(opus_pt) is not None and media.rtpmap(opus_pt).channels == 2  # type: ignore[union-attr]
    assert media.fmtp(101) == "0-16"


def test_offer_avoids_payload_type_collisions_with_the_callers_dynamic_types() -> None:
    # the caller uses 101 for something else and 96-100 too: new types must not collide
    caller = sdp(
        "96 97 98 99 100 101",
        *(f"rtpmap:{pt} X{pt}/8000" for pt in range(96, 101)),
        "rtpmap:101 iLBC/8000",
    )
    codecs, formats = audio(offer_for_callee(caller, ("opus",)))
    assert formats[:6] == ["96", "97", "98", "99", "100", "101"]
    added = {name: pt for pt, name, _ in codecs[6:]}
    assert set(added) == {"opus", "telephone-event"}
    assert len(set(formats)) == len(formats)
    assert all(pt >= 102 for pt in added.values())


def test_offer_is_unchanged_when_the_caller_has_everything() -> None:
    caller = sdp("0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000")
    assert offer_for_callee(caller, ("PCMU",)) == caller


def test_offer_leaves_ports_and_connection_alone() -> None:
    out = SessionDescription.parse(offer_for_callee(OPUS_ONLY, ALL))
    assert out.media[0].port == 4000 and out.connection is not None
    assert out.connection.address == "127.0.0.10"
    assert out.origin.session_version == 1


def test_unparseable_or_audio_less_offers_come_back_unchanged() -> None:
    assert offer_for_callee(b"not sdp at all", ALL) == b"not sdp at all"
    assert offer_for_callee(b"", ALL) == b""
    video = sdp("96", "rtpmap:96 H264/90000").replace(b"m=audio", b"m=video")
    assert offer_for_callee(video, ALL) == video


# --- plan ------------------------------------------------------------------------------------


def answer_from(formats: str, *attrs: str) -> bytes:
    return sdp(formats, *attrs, port=6000).replace(b"127.0.0.10", b"127.0.0.20")


def test_opus_caller_and_pcma_only_callee_are_transcoded() -> None:
    callee = answer_from("8 101", "rtpmap:8 PCMA/8000", "rtpmap:101 telephone-event/8000")
    result = plan(OPUS_ONLY, callee)
    assert not result.untouched
    assert result.caller == StreamFormat(
        "opus", 111, 48000, 2, {"useinbandfec": "1"}, 20, 101, 8000
    )
    assert result.callee == StreamFormat("PCMA", 8, 8000, 1, {}, 20, 101, 8000)
    codecs, formats = audio(result.caller_answer_body)
    assert formats == ["111", "101"]  # only what the caller offered
    assert codecs[0] == (111, "opus", 48000)
    assert SessionDescription.parse(result.caller_answer_body).media_direction(0).value == (
        "sendrecv"
    )


def test_shared_codec_with_the_same_types_is_relayed_untouched() -> None:
    caller = sdp("0 8 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000")
    callee = answer_from("0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000")
    result = plan(caller, callee)
    assert result.untouched
    assert result.caller.codec == result.callee.codec == "PCMU"
    assert audio(result.caller_answer_body)[1] == ["0", "101"]


def test_telephone_event_mismatch_is_not_untouched() -> None:
    caller = sdp("0", "rtpmap:0 PCMU/8000")  # no telephone-event: pbx appended one
    callee = answer_from("0 101", "rtpmap:0 PCMU/8000", "rtpmap:101 telephone-event/8000")
    result = plan(caller, callee)
    assert not result.untouched
    assert result.caller.telephone_event is None and result.callee.telephone_event == 101
    assert audio(result.caller_answer_body)[1] == ["0"]  # caller never offered events


def test_ptime_mismatch_is_not_untouched() -> None:
    caller = sdp("0", "rtpmap:0 PCMU/8000", "ptime:30")
    callee = answer_from("0", "rtpmap:0 PCMU/8000")
    result = plan(caller, callee)
    assert (result.caller.ptime, result.callee.ptime, result.untouched) == (30, 20, False)
    assert b"a=ptime:30" in result.caller_answer_body


def test_callee_direction_is_kept_in_the_callers_answer() -> None:
    caller = sdp("0", "rtpmap:0 PCMU/8000", "sendonly")
    callee = answer_from("0", "rtpmap:0 PCMU/8000", "recvonly")
    body = plan(caller, callee).caller_answer_body
    assert SessionDescription.parse(body).media_direction(0).value == "recvonly"


def test_callers_first_transcodable_codec_is_used_when_the_callee_chose_an_added_one() -> None:
    caller = sdp("18 9 0", "rtpmap:18 G729/8000", "rtpmap:9 G722/8000", "rtpmap:0 PCMU/8000")
    callee = answer_from("8", "rtpmap:8 PCMA/8000")
    result = plan(caller, callee)
    assert result.caller.codec == "G722" and result.caller.payload_type == 9
    assert audio(result.caller_answer_body)[1] == ["9"]


def test_no_common_ground_raises() -> None:
    caller = sdp("18", "rtpmap:18 G729/8000")
    with pytest.raises(NoCommonCodec):
        plan(caller, answer_from("8", "rtpmap:8 PCMA/8000"))
    with pytest.raises(NoCommonCodec):  # callee picked something nobody offered
        plan(OPUS_ONLY, answer_from("3", "rtpmap:3 GSM/8000"))
    with pytest.raises(NoCommonCodec):  # callee refused the audio stream
        plan(OPUS_ONLY, answer_from("111", "rtpmap:111 opus/48000/2").replace(b"6000", b"0"))


def test_untranscodable_shared_codec_is_relayed_even_with_an_event_mismatch() -> None:
    caller = sdp("18", "rtpmap:18 G729/8000")
    callee = answer_from("18 101", "rtpmap:18 G729/8000", "rtpmap:101 telephone-event/8000")
    assert plan(caller, callee).untouched


def test_unparseable_bodies_raise_unusable_sdp() -> None:
    with pytest.raises(UnusableSdp):
        plan(b"garbage", answer_from("0", "rtpmap:0 PCMU/8000"))
    with pytest.raises(UnusableSdp):
        plan(OPUS_ONLY, b"")


def test_other_streams_are_rejected_in_the_callers_answer() -> None:
    video = "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
    caller = sdp("0", "rtpmap:0 PCMU/8000", extra=video)
    callee = answer_from("0", "rtpmap:0 PCMU/8000") + b"m=video 0 RTP/AVP 96\r\n"
    desc = SessionDescription.parse(plan(caller, callee).caller_answer_body)
    assert [m.port for m in desc.media] == [6000, 0]
    assert desc.media[1].media == "video"


def test_full_round_trip_through_offer_for_callee() -> None:
    offer = offer_for_callee(OPUS_ONLY, ALL)
    callee_codecs, _ = audio(offer)
    pcma = next(pt for pt, name, _ in callee_codecs if name == "PCMA")
    callee = answer_from(
        f"{pcma} 101", f"rtpmap:{pcma} PCMA/8000", "rtpmap:101 telephone-event/8000"
    )
    result = plan(OPUS_ONLY, callee)
    assert (result.caller.codec, result.callee.codec) == ("opus", "PCMA")
    assert result.callee.payload_type == pcma
