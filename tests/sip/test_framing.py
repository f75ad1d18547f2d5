"""Stream framing for TCP/TLS (RFC 3261 §18.3, RFC 5626 §3.5.1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.errors import MessageTooLarge, RemoteProtocolError
from pbx.sip.framing import KEEPALIVE, KeepAlive, StreamFramer
from pbx.sip.message import Limits, parse_message

CORPUS = Path(__file__).resolve().parent.parent / "data" / "sip-torture"

OPTIONS = (
    b"OPTIONS sip:pbx.example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKa\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:pbx.example.com>\r\n"
    b"Call-ID: c1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
)
MESSAGE = (
    b"MESSAGE sip:b@example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKb\r\n"
    b"From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\n"
    b"Call-ID: c2\r\nCSeq: 2 MESSAGE\r\nContent-Type: text/plain\r\n"
    b"l:\r\n 12\r\n\r\nhello\r\n\r\n\r\nx"  # folded compact Content-Length, CRLFs in the body
)
PING = b"\r\n\r\n"
PONG = b"\r\n"
STREAM = PING + OPTIONS + PONG + MESSAGE + PING + PING + OPTIONS
FRAMES: list[bytes | KeepAlive] = [KEEPALIVE, OPTIONS, MESSAGE, KEEPALIVE, KEEPALIVE, OPTIONS]


# Property tests run on a shared, loaded machine: no per-example deadline.
SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def feed_in_pieces(
    data: bytes, size: int, framer: StreamFramer | None = None
) -> list[bytes | KeepAlive]:
    framer = framer or StreamFramer()
    out: list[bytes | KeepAlive] = []
    for i in range(0, len(data), size):
        out += framer.feed(data[i : i + size])
    return out


def test_big_chunk_yields_every_frame_and_keepalive() -> None:
    framer = StreamFramer()
    assert framer.feed(STREAM) == FRAMES
    assert framer.buffered == 0


def test_byte_by_byte_yields_the_same_frames() -> None:
    framer = StreamFramer()
    assert feed_in_pieces(STREAM, 1, framer) == FRAMES
    assert framer.buffered == 0


def test_frames_parse_as_messages() -> None:
    frames = [f for f in StreamFramer().feed(STREAM) if isinstance(f, bytes)]
    assert parse_message(frames[1]).body == b"hello\r\n\r\n\r\nx"


@SLOW_OK
@given(st.lists(st.integers(1, len(STREAM)), max_size=8))
def test_any_split_of_the_stream_yields_the_same_frames(cuts: list[int]) -> None:
    framer = StreamFramer()
    out: list[bytes | KeepAlive] = []
    start = 0
    for cut in sorted(set(cuts)) + [len(STREAM)]:
        out += framer.feed(STREAM[start:cut])
        start = cut
    assert out == FRAMES


def test_lone_crlf_pong_is_ignored_and_partial_ping_waits() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\n") == [KEEPALIVE]
    assert framer.feed(b"\r\n" + OPTIONS) == [OPTIONS]


def test_missing_content_length_is_an_error_on_streams() -> None:
    framer = StreamFramer()
    with pytest.raises(RemoteProtocolError):
        framer.feed(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
    with pytest.raises(RemoteProtocolError):  # the stream stays failed
        framer.feed(OPTIONS)


@pytest.mark.parametrize("value", [b"-999", b"abc", b"99999999999", b"5\r\nContent-Length: 6"])
def test_bad_content_length_is_an_error(value: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: " + value))


def test_header_section_without_end_is_bounded() -> None:
    limits = Limits(max_message_size=1000, max_body=100)
    framer = StreamFramer(limits)
    framer.feed(b"INVITE sip:a@b SIP/2.0\r\n")
    with pytest.raises(MessageTooLarge):
        for _ in range(100):
            framer.feed(b"X-Filler: " + b"a" * 20 + b"\r\n")
            assert framer.buffered <= limits.max_message_size + limits.max_body
    assert framer.buffered == 0


def test_content_length_above_max_body_is_too_large() -> None:
    framer = StreamFramer(Limits(max_body=10))
    with pytest.raises(MessageTooLarge) as info:
        framer.feed(OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 11"))
    assert info.value.status == 513


def test_waiting_body_never_exceeds_the_buffer_bound() -> None:
    limits = Limits(max_message_size=2000, max_body=100)
    framer = StreamFramer(limits)
    head = OPTIONS.replace(b"Content-Length: 0", b"Content-Length: 100")
    assert feed_in_pieces(head + b"b" * 99, 7, framer) == []
    assert framer.buffered == len(head) + 99
    assert framer.feed(b"b" + OPTIONS[:10]) == [head + b"b" * 100]
    assert framer.buffered == 10


# --- RFC 4475 framing cases over a stream -------------------------------------------------


def torture(name: str) -> bytes:
    return (CORPUS / name).read_bytes()


def test_clerr_waits_for_the_missing_body_without_growing() -> None:
    framer = StreamFramer()
    assert framer.feed(torture("3.1.2.2-clerr.dat")) == []  # the transport times out
    assert framer.buffered == len(torture("3.1.2.2-clerr.dat"))


@pytest.mark.parametrize("name", ["3.1.2.3-ncl.dat", "3.3.9-mcl01.dat", "3.4.1-inv2543.dat"])
def test_unframeable_torture_messages_fail_the_stream(name: str) -> None:
    with pytest.raises(RemoteProtocolError):
        StreamFramer().feed(torture(name))


def test_baddn_archive_copy_is_incomplete_and_the_fixed_variant_frames() -> None:
    assert StreamFramer().feed(torture("3.1.2.15-baddn.dat")) == []
    fixed = torture("variants/3.1.2.15-baddn.terminated.dat")
    assert StreamFramer().feed(fixed) == [fixed]


def test_dblreq_over_a_stream_frames_by_content_length_only() -> None:
    # Over a stream the REGISTER is followed by a CRLF pong and an INVITE whose body is
    # cut by its Content-Length (150); the 5 octets left over ("C" CRLF CRLF) are garbage.
    framer = StreamFramer()
    frames: list[bytes | KeepAlive] = []
    data = torture("3.1.1.8-dblreq.dat")
    with pytest.raises(RemoteProtocolError):
        for i in range(len(data)):
            frames += framer.feed(data[i : i + 1])
    assert [f[:8] for f in frames if isinstance(f, bytes)] == [b"REGISTER", b"INVITE s"]
    assert frames[0] == data[: data.index(b"\r\n\r\n") + 4]


@pytest.mark.parametrize(
    "name",
    [
        "3.1.1.1-wsinv.dat",
        "3.1.1.7-longreq.dat",
        "3.1.1.11-mpart01.dat",
        "3.1.1.12-unreason.dat",
        "3.1.1.3-esc01.dat",
    ],
)
def test_valid_torture_messages_frame_whole(name: str) -> None:
    data = torture(name)
    frames = feed_in_pieces(data * 2, 1)
    assert [len(f) for f in frames if isinstance(f, bytes)] == [len(data), len(data)]
    assert feed_in_pieces(data * 2, 4096) == frames
