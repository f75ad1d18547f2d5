"""SDP model, wire format and accessors (RFC 4566, RFC 3551 §6, RFC 3605, RFC 4568, RFC 5761).

The samples are written by hand in the shape each phone or tool sends.
"""

from __future__ import annotations

import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.media.sdp import (
    STATIC_PAYLOAD_TYPES,
    Attribute,
    Bandwidth,
    Codec,
    Connection,
    Crypto,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    SessionDescription,
    Timing,
)

SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def crlf(text: str) -> str:
    return text.strip("\n").replace("\n", "\r\n") + "\r\n"


BARESIP = crlf("""
v=0
o=- 1846587221 2063193938 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
a=tool:baresip 3.10.1
m=audio 10548 RTP/AVP 0 8 9 96 101 102
b=AS:102
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:9 G722/8000
a=rtpmap:96 opus/48000/2
a=fmtp:96 stereo=1;sprop-stereo=1
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtpmap:102 telephone-event/48000
a=fmtp:102 0-15
a=rtcp:10549
a=rtcp-rsize
a=sendrecv
a=label:1
a=ssrc:3208459218 cname:sip:alice@192.168.1.20
a=ptime:20
""")

LINPHONE = crlf("""
v=0
o=alice 2317 1793 IN IP4 192.168.1.30
s=Talk
c=IN IP4 192.168.1.30
t=0 0
a=rtcp-xr:rcvr-rtt=all:10000 stat-summary=loss,dup,jitt,TTL voip-metrics
a=record:off
m=audio 7078 RTP/AVP 96 97 98 0 8 18 101 99 100
a=rtpmap:96 opus/48000/2
a=fmtp:96 useinbandfec=1
a=rtpmap:97 speex/16000
a=fmtp:97 vbr=on
a=rtpmap:98 speex/8000
a=fmtp:98 vbr=on
a=fmtp:18 annexb=yes
a=rtpmap:101 telephone-event/48000
a=rtpmap:99 telephone-event/16000
a=rtpmap:100 telephone-event/8000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:* ccm tmmbr
m=video 9078 RTP/AVP 96
a=rtpmap:96 VP8/90000
a=rtcp-fb:* trr-int 1000
a=rtcp-fb:96 nack pli
""")

YEALINK_SRTP = crlf("""
v=0
o=- 20021 20021 IN IP4 10.0.0.50
s=SDP data
c=IN IP4 10.0.0.50
t=0 0
m=audio 11800 RTP/SAVP 0 8 18 9 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:18 G729/8000
a=fmtp:18 annexb=no
a=rtpmap:9 G722/8000
a=fmtp:101 0-15
a=rtpmap:101 telephone-event/8000
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4
a=crypto:2 AES_CM_128_HMAC_SHA1_32 inline:d0RmdmcmVCspeEc3QGZiNWpVLFJhQX1cfHAwJSoj|2^20|1:32 \
KDR=1 UNENCRYPTED_SRTCP
a=ptime:20
a=sendrecv
""").replace("\\\r\n", "")

SIPP_UAC = crlf("""
v=0
o=user1 53655765 2353687637 IN IP4 127.0.0.1
s=-
c=IN IP4 127.0.0.1
t=0 0
m=audio 6000 RTP/AVP 0
a=rtpmap:0 PCMU/8000
""")

# Every line type of RFC 4566 §5 in its order, at both levels, plus unknown lines.
EVERYTHING = crlf("""
v=0
o=jdoe 2890844526 2890842807 IN IP4 10.47.16.5
s=SDP Seminar
i=A Seminar on the session description protocol
u=http://www.example.com/seminars/sdp.pdf
e=j.doe@example.com (Jane Doe)
p=+1 617 555-6011
c=IN IP4 224.2.17.12/127
b=CT:128
t=2873397496 2873404696
r=604800 3600 0 90000
t=0 0
z=2882844526 -1h 2898848070 0
k=prompt
a=recvonly
y=0100000001
m=audio 49170/2 RTP/AVP 0
i=voice
c=IN IP4 224.2.17.12/127
c=IN IP4 224.2.17.13/127
b=AS:64
k=clear:secret
a=maxptime:40
f=v/2/25
m=application 5000 udp wb
a=orient:portrait
""")

SAMPLES = [BARESIP, LINPHONE, YEALINK_SRTP, SIPP_UAC, EVERYTHING]


@pytest.mark.parametrize("text", SAMPLES)
def test_canonical_samples_round_trip_byte_exact(text: str) -> None:
    desc = SessionDescription.parse(text)
    assert desc.serialize() == text
    assert bytes(desc) == text.encode()
    assert SessionDescription.parse(text.encode()) == desc


def test_baresip_offer_lists_its_codecs_in_m_line_order() -> None:
    (audio,) = SessionDescription.parse(BARESIP).media
    assert audio.codecs() == (
        Codec(0, "PCMU", 8000),
        Codec(8, "PCMA", 8000),
        Codec(9, "G722", 8000),
        Codec(96, "opus", 48000, 2, "stereo=1;sprop-stereo=1"),
        Codec(101, "telephone-event", 8000, 1, "0-15"),
        Codec(102, "telephone-event", 48000, 1, "0-15"),
    )
    assert audio.port == 10548 and audio.proto == "RTP/AVP"
    assert audio.bandwidths == (Bandwidth("AS", 102),)
    assert audio.ptime == 20 and audio.maxptime is None
    assert audio.direction is Direction.SENDRECV
    assert audio.rtcp == RtcpAttribute(10549)
    assert not audio.rtcp_mux
    assert audio.attribute("ssrc") == "3208459218 cname:sip:alice@192.168.1.20"
    assert audio.has_attribute("rtcp-rsize")


def test_session_fields_of_a_sample_are_parsed() -> None:
    desc = SessionDescription.parse(BARESIP)
    assert desc.origin == Origin("-", "1846587221", 2063193938, "IN", "IP4", "192.168.1.20")
    assert desc.session_name == "-"
    assert desc.connection == Connection("192.168.1.20")
    assert desc.times == (Timing(0, 0),)
    assert desc.attributes == (Attribute("tool", "baresip 3.10.1"),)


def test_static_payload_types_without_rtpmap_come_from_rfc_3551() -> None:
    desc = SessionDescription.parse(LINPHONE)
    codecs = desc.media[0].codecs()
    assert [c.encoding for c in codecs] == [
        "opus",
        "speex",
        "speex",
        "PCMU",
        "PCMA",
        "G729",
        "telephone-event",
        "telephone-event",
        "telephone-event",
    ]
    assert codecs[5] == Codec(18, "G729", 8000, 1, "annexb=yes")
    assert STATIC_PAYLOAD_TYPES[9] == Codec(9, "G722", 8000)  # 8000 in SDP, RFC 3551 §4.5.2
    assert STATIC_PAYLOAD_TYPES[10] == Codec(10, "L16", 44100, 2)


def test_a_dynamic_payload_type_without_rtpmap_is_left_out_of_the_codec_list() -> None:
    media = MediaDescription(media="audio", port=1, proto="RTP/AVP", formats=("0", "96"))
    assert [c.payload_type for c in media.codecs()] == [0]
    assert media.rtpmap(96) is None


def test_media_direction_falls_back_to_the_session_level_and_then_to_sendrecv() -> None:
    desc = SessionDescription.parse(EVERYTHING)
    assert desc.direction is Direction.RECVONLY
    assert desc.media_direction(0) is Direction.RECVONLY
    assert SessionDescription.parse(SIPP_UAC).media_direction(0) is Direction.SENDRECV


def test_crypto_attributes_expose_tag_suite_key_and_session_params() -> None:
    (audio,) = SessionDescription.parse(YEALINK_SRTP).media
    first, second = audio.crypto
    assert first == Crypto(
        1,
        "AES_CM_128_HMAC_SHA1_80",
        ("inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4",),
    )
    assert second.tag == 2 and second.suite == "AES_CM_128_HMAC_SHA1_32"
    assert second.session_params == ("KDR=1", "UNENCRYPTED_SRTCP")
    assert str(second) == audio.attribute_values("crypto")[1]


def test_rtcp_attribute_with_address_and_rtcp_mux_are_read() -> None:
    media = MediaDescription(
        media="audio",
        port=5000,
        proto="RTP/AVP",
        formats=("0",),
        attributes=(Attribute("rtcp", "53020 IN IP6 2001:db8::1"), Attribute("rtcp-mux")),
    )
    assert media.rtcp == RtcpAttribute(53020, Connection("2001:db8::1", "IN", "IP6"))
    assert media.rtcp_mux
    assert str(media.rtcp) == "53020 IN IP6 2001:db8::1"


def test_unknown_lines_and_multicast_details_are_kept() -> None:
    desc = SessionDescription.parse(EVERYTHING)
    assert desc.other_lines == (("y", "0100000001"),)
    assert desc.times[0].repeats == ("604800 3600 0 90000",)
    assert desc.time_zones == "2882844526 -1h 2898848070 0"
    audio, app = desc.media
    assert audio.port_count == 2 and len(audio.connections) == 2
    assert audio.other_lines == (("f", "v/2/25"),)
    assert audio.key == "clear:secret" and audio.maxptime == 40
    assert app.formats == ("wb",) and app.codecs() == ()


def test_lenient_input_with_bare_newlines_and_blank_lines_is_accepted() -> None:
    text = SIPP_UAC.replace("\r\n", "\n") + "\n\n"
    assert SessionDescription.parse(text).serialize() == SIPP_UAC


def test_codec_matching_ignores_payload_type_and_case() -> None:
    assert Codec(0, "pcmu", 8000).matches(Codec(99, "PCMU", 8000))
    assert not Codec(96, "opus", 48000, 2).matches(Codec(96, "opus", 48000, 1))
    assert [str(a) for a in Codec(96, "opus", 48000, 2, "useinbandfec=1").attributes()] == [
        "rtpmap:96 opus/48000/2",
        "fmtp:96 useinbandfec=1",
    ]


def test_direction_answer_rules_of_rfc_3264() -> None:
    assert Direction.SENDONLY.answer() is Direction.RECVONLY
    assert Direction.RECVONLY.answer() is Direction.SENDONLY
    assert Direction.INACTIVE.answer() is Direction.INACTIVE
    assert Direction.SENDRECV.answer() is Direction.SENDRECV
    assert Direction.SENDRECV.answer(Direction.SENDONLY) is Direction.SENDONLY
    assert Direction.SENDONLY.answer(Direction.SENDONLY) is Direction.INACTIVE


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must start with v=0"),
        ("o=- 1 1 IN IP4 1.2.3.4\r\n", "must start with v=0"),
        ("v=1\r\n", "must start with v=0"),
        ("v=0\r\ns=-\r\n", "needs an o= and an s= line"),
        ("v=0\r\nhello\r\n", "line 2 is not <type>=<value>"),
        ("v=0\r\nA=b\r\n", "line 2 is not"),
        ("v=0\r\no=- 1 1 IN IP4\r\ns=-\r\n", "o= line needs 6 fields"),
        ("v=0\r\no=- 1 x IN IP4 h\r\ns=-\r\n", "session version is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\ns=x\r\n", "more than one s= line"),
        ("v=0\r\nv=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n", "more than one v= line"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nc=IN IP4\r\n", "c= line needs 3 fields"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nb=AS\r\n", "b= line is not"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nb=AS:x\r\n", "bandwidth is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0\r\n", "t= line needs 2 fields"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nr=1 2 3\r\n", "r= line before any t="),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\na=\r\n", "no attribute name"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1\r\n", "m= line needs media, port"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 70000 RTP/AVP 0\r\n", "out of range"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio ٣ RTP/AVP 0\r\n", "port is not a number"),
        ("v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1/x RTP/AVP 0\r\n", "port count"),
        (b"v=0\r\ns=\xff\r\n", "not UTF-8"),
    ],
)
def test_malformed_sdp_raises_value_error_naming_the_problem(
    text: str | bytes, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        SessionDescription.parse(text)


@pytest.mark.parametrize(
    ("attribute", "read", "message"),
    [
        ("rtpmap:96 opus", lambda m: m.codecs(), "rtpmap is not"),
        ("rtpmap:96 opus/x", lambda m: m.codecs(), "clock rate is not a number"),
        ("ptime:20ms", lambda m: m.ptime, "ptime is not a number"),
        ("maxptime:", lambda m: m.maxptime, "maxptime is not a number"),
        ("rtcp:x", lambda m: m.rtcp, "port is not a number"),
        ("rtcp:5001 IN", lambda m: m.rtcp, "c= line needs 3 fields"),
        ("crypto:1 AES_CM_128_HMAC_SHA1_80", lambda m: m.crypto, "needs tag, suite and key"),
        ("crypto:x AES inline:a", lambda m: m.crypto, "crypto tag is not a number"),
    ],
)
def test_malformed_attributes_raise_value_error_when_read(
    attribute: str, read: object, message: str
) -> None:
    text = SIPP_UAC.replace("m=audio 6000 RTP/AVP 0", "m=audio 6000 RTP/AVP 96")
    media = SessionDescription.parse(text + f"a={attribute}\r\n").media[0]
    with pytest.raises(ValueError, match=message):
        read(media)  # type: ignore[operator]


# --- property tests -------------------------------------------------------------------------

token = st.text(string.ascii_letters + string.digits + "-._+*!", min_size=1, max_size=8)
free_text = st.text(st.characters(exclude_characters="\r\n", codec="utf-8"), max_size=12)
number = st.integers(0, 2**40)
connections = st.builds(Connection, token, token, token)
bandwidths = st.builds(Bandwidth, token.filter(lambda t: ":" not in t), number)
attributes = st.builds(
    Attribute,
    st.text(string.ascii_letters + "-", min_size=1, max_size=10),
    st.none() | free_text,
)
SESSION_OTHER = sorted(set(string.ascii_lowercase) - set("vosiuepcbtrzkam"))
MEDIA_OTHER = sorted(set(string.ascii_lowercase) - set("icbkam"))


def other_lines(kinds: list[str]) -> st.SearchStrategy[tuple[tuple[str, str], ...]]:
    return st.lists(st.tuples(st.sampled_from(kinds), free_text), max_size=2).map(tuple)


def small(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[tuple[object, ...]]:
    return st.lists(strategy, max_size=2).map(tuple)


media_descriptions = st.builds(
    MediaDescription,
    media=token,
    port=st.integers(0, 65535),
    port_count=st.none() | st.integers(0, 10),
    proto=token,
    formats=st.lists(token, max_size=4).map(tuple),
    information=st.none() | free_text,
    connections=small(connections),
    bandwidths=small(bandwidths),
    key=st.none() | free_text,
    attributes=small(attributes),
    other_lines=other_lines(MEDIA_OTHER),
)
session_descriptions = st.builds(
    SessionDescription,
    origin=st.builds(Origin, token, token, number, token, token, token),
    session_name=free_text,
    information=st.none() | free_text,
    uri=st.none() | free_text,
    emails=small(free_text),
    phones=small(free_text),
    connection=st.none() | connections,
    bandwidths=small(bandwidths),
    times=small(st.builds(Timing, number, number, small(free_text))),
    time_zones=st.none() | free_text,
    key=st.none() | free_text,
    attributes=small(attributes),
    other_lines=other_lines(SESSION_OTHER),
    media=small(media_descriptions),
)


@SLOW_OK
@given(session_descriptions)
def test_any_description_survives_serialise_then_parse(desc: SessionDescription) -> None:
    text = desc.serialize()
    assert SessionDescription.parse(text) == desc
    assert SessionDescription.parse(text).serialize() == text


@SLOW_OK
@given(st.text(max_size=200))
def test_random_text_parses_or_raises_value_error(text: str) -> None:
    try:
        SessionDescription.parse(text)
    except ValueError:
        pass


NOISE_HEAD = "v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0 96\r\n"
sdp_lines = st.lists(
    st.tuples(
        st.sampled_from("vosictbrmaxk"),
        st.text(" 0123456789/:.IPNabcdeurvmtxy-", max_size=24),
    ),
    max_size=12,
).map(lambda lines: NOISE_HEAD + "".join(f"{k}={v}\r\n" for k, v in lines))


@SLOW_OK
@given(sdp_lines)
def test_sdp_shaped_noise_and_its_accessors_raise_only_value_error(text: str) -> None:
    try:
        desc = SessionDescription.parse(text)
        for index, media in enumerate(desc.media):
            media.codecs(), media.ptime, media.maxptime, media.rtcp, media.crypto
            desc.media_direction(index)
    except ValueError:
        pass
