"""SDP anchoring for the B2BUA (pbx.calls.anchor)."""

from __future__ import annotations

from pbx.calls import anchor
from pbx.media.relay import MediaLeg
from pbx.media.sdp import SessionDescription

OFFER = (
    b"v=0\r\no=alice 2890844526 2890844526 IN IP4 127.0.0.2\r\ns=-\r\n"
    b"c=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    b"m=audio 41000 RTP/AVP 9 0 8 101\r\na=rtpmap:9 G722/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n"
    b"a=rtcp:41001\r\na=sendrecv\r\n"
    b"m=video 41002 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
)


def leg(ports: tuple[int, int] = (20000, 20001)) -> MediaLeg:
    media = MediaLeg("x")
    media.local_ports = ports
    return media


def test_remote_reads_the_first_audio_stream() -> None:
    assert anchor.remote(OFFER) == ("127.0.0.2", 41000, 41001)


def test_rewrite_points_audio_at_pbx_and_refuses_other_streams() -> None:
    out = SessionDescription.parse(anchor.rewrite(OFFER, "127.0.0.1", leg()))
    audio, video = out.media
    assert (audio.port, video.port) == (20000, 0)
    assert out.media_connection(0) is not None and out.media_connection(0).address == "127.0.0.1"  # type: ignore[union-attr]
    assert audio.rtcp is not None and audio.rtcp.port == 20001
    assert [c.encoding for c in audio.codecs()] == ["G722", "PCMU", "PCMA", "telephone-event"]
    assert out.origin.session_version == 2890844527 and out.origin.address == "127.0.0.1"


def test_hold_address_and_garbage_are_handled() -> None:
    held = OFFER.replace(b"c=IN IP4 127.0.0.2", b"c=IN IP4 0.0.0.0")
    assert anchor.remote(held) is None
    assert anchor.rewrite(b"not sdp at all", "127.0.0.1", leg()) == b"not sdp at all"
    assert anchor.remote(b"") is None


def test_a_host_name_as_media_address_is_never_resolved() -> None:
    """RFC 4566 allows a name in c=; pbx does not look it up (that would block the reactor):
    the stream has no address until the phone's first packet latches it."""
    named = OFFER.replace(b"c=IN IP4 127.0.0.2", b"c=IN IP4 phone.invalid")
    assert anchor.remote(named) is None
    v6 = OFFER.replace(b"c=IN IP4 127.0.0.2", b"c=IN IP6 ::1")
    assert anchor.remote(v6) == ("::1", 41000, 41001)
