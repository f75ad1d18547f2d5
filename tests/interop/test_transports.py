"""SIP transports of the real running pbx: UDP, TCP and TLS (RFC 3261 §18, RFC 5626 §3.5.1).

OPTIONS over every transport with its capability headers and no product banner; the
configurable Server header; CRLF keep-alive ping/pong on streams and ignored CRLF datagrams;
stream framing (pipelined requests, a request trickled byte by byte, answers on the same
connection); the idle timeout; scanner user agents dropped everywhere; and the limits:
oversized datagrams, endless header sections, oversized Content-Length and the server's memory
after megabytes of junk. Traffic goes only to 127.0.0.0/8. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .harness.pbx_server import PbxServer, sip_options
from .harness.sip_wire import (
    SipResponse,
    StreamReader,
    options,
    parse_response,
    recv_datagrams,
    request,
    status_line,
    stream_connect,
    tokens,
    udp_exchange,
    udp_socket,
)

IDLE_TIMEOUT = 2
MAX_MESSAGE_SIZE = 4000
SITE_TOML = f"[sip]\ntcp_idle_timeout = {IDLE_TIMEOUT}\nmax_message_size = {MAX_MESSAGE_SIZE}\n"
TRANSPORTS = ("UDP", "TCP", "TLS")
AOR = "1000"


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PbxServer]:
    """One server for the module: idle timeout 2 s, max_message_size 4000 (site config)."""
    server = PbxServer(
        tmp_path_factory.mktemp("transports") / "data", python=sys.executable, site_toml=SITE_TOML
    )
    try:
        yield server.start()
    finally:
        server.close()


def _port(pbx: PbxServer, transport: str) -> int:
    return pbx.tls_port if transport == "TLS" else pbx.sip_port


def _connect(pbx: PbxServer, transport: str, source: str = "127.0.0.1") -> socket.socket:
    return stream_connect(
        transport, "127.0.0.1", _port(pbx, transport), str(pbx.cert_path), source=source
    )


def _ask(
    pbx: PbxServer,
    transport: str,
    make: Callable[[tuple[str, int], tuple[str, int]], bytes],
    source: str = "127.0.0.1",
    timeout: float = 1.0,
) -> SipResponse | None:
    """Send one request built by make(local, target) over a fresh socket; the final answer."""
    target = ("127.0.0.1", _port(pbx, transport))
    if transport == "UDP":
        with udp_socket(source) as sock:
            return udp_exchange(sock, make(sock.getsockname(), target), target, timeout)
    with _connect(pbx, transport, source) as sock:
        sock.sendall(make(sock.getsockname()[:2], target))
        return StreamReader(sock).read_response(timeout)


def _options_with(transport: str, **kwargs: object) -> Callable[..., bytes]:
    def make(local: tuple[str, int], target: tuple[str, int]) -> bytes:
        return options(local, target, transport=transport, **kwargs)

    return make


def _register(transport: str, agent: str | None = None, rport: bool = True) -> Callable[..., bytes]:
    """A REGISTER for extension 1000 without credentials (answered 401 by pbx)."""

    def make(local: tuple[str, int], target: tuple[str, int]) -> bytes:
        return request(
            "REGISTER",
            local=local,
            uri=f"sip:{target[0]}",
            to=f"sip:{AOR}@{target[0]}",
            transport=transport,
            user_agent=agent,
            extra=[("Expires", "60")],
            rport=rport,
        )

    return make


def _alive(pbx: PbxServer) -> bool:
    return pbx.running and sip_options("127.0.0.1", pbx.sip_port, timeout=1.0) is not None


# -- OPTIONS and the Server header -----------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_options_lists_allow_accept_supported_and_sends_no_server_banner(
    pbx: PbxServer, transport: str
) -> None:
    resp = _ask(pbx, transport, _options_with(transport))
    assert resp is not None and resp.status == 200, resp
    assert {"invite", "ack", "bye", "cancel", "options", "register"} <= tokens(resp, "Allow")
    assert "application/sdp" in tokens(resp, "Accept")
    assert bool(resp.get_all("Supported")), resp.raw
    assert not bool(resp.get_all("Server")) and not bool(resp.get_all("User-Agent")), resp.raw
    challenge = _ask(pbx, transport, _register(transport))
    assert challenge is not None and challenge.status == 401, challenge
    assert not bool(challenge.get_all("Server")) and not bool(challenge.get_all("User-Agent")), (
        challenge.raw
    )


def test_server_header_appears_on_every_transport_when_configured(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    server = pbx_factory(site_toml='[sip]\nserver_header = "x"\n')
    for transport in TRANSPORTS:
        resp = _ask(server, transport, _options_with(transport))
        assert resp is not None and resp.status == 200, (transport, resp)
        assert resp.get_all("Server") == ["x"], (transport, resp.raw)
        challenge = _ask(server, transport, _register(transport))
        assert challenge is not None and challenge.get_all("Server") == ["x"], (
            transport,
            challenge,
        )


# -- keep-alives ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_double_crlf_ping_on_a_stream_gets_one_crlf_pong_and_the_flow_stays_usable(
    pbx: PbxServer, transport: str
) -> None:
    with _connect(pbx, transport) as sock:
        reader = StreamReader(sock)
        sock.sendall(b"\r\n\r\n")
        assert reader.read_pong(1.0), f"no CRLF pong, got {reader.buffer!r}"
        assert reader.read_message(0.3) is None and reader.buffer == b"" and not reader.closed
        local = sock.getsockname()[:2]
        sock.sendall(options(local, ("127.0.0.1", _port(pbx, transport)), transport=transport))
        resp = reader.read_response(1.0)
        assert resp is not None and resp.status == 200


def test_crlf_datagrams_over_udp_are_ignored(pbx: PbxServer) -> None:
    with udp_socket() as sock:
        for ping in (b"\r\n\r\n", b"\r\n", b"\r\n\r\n\r\n\r\n"):
            sock.sendto(ping, ("127.0.0.1", pbx.sip_port))
        assert recv_datagrams([sock], 0.5) == []
        target = ("127.0.0.1", pbx.sip_port)
        resp = udp_exchange(sock, options(sock.getsockname(), target), target)
        assert resp is not None and resp.status == 200
    assert _alive(pbx)


# -- stream framing ---------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_two_requests_pipelined_in_one_segment_are_both_answered_in_order(
    pbx: PbxServer, transport: str
) -> None:
    with _connect(pbx, transport) as sock:
        local, target = sock.getsockname()[:2], ("127.0.0.1", _port(pbx, transport))
        first = options(local, target, transport=transport, call_id="first-" + uuid.uuid4().hex)
        second = request(
            "REGISTER",
            local=local,
            uri="sip:127.0.0.1",
            to=f"sip:{AOR}@127.0.0.1",
            transport=transport,
            call_id="second-" + uuid.uuid4().hex,
        )
        sock.sendall(first + second)
        reader = StreamReader(sock)
        answers = [reader.read_response(1.0), reader.read_response(1.0)]
    assert [(a.status, a.cseq_method) if a else None for a in answers] == [
        (200, "OPTIONS"),
        (401, "REGISTER"),
    ]
    assert [(a.get("Call-ID") or "")[:6] for a in answers if a] == ["first-", "second"]


def test_request_trickled_byte_by_byte_over_tcp_is_answered(pbx: PbxServer) -> None:
    with _connect(pbx, "TCP") as sock:
        data = options(sock.getsockname()[:2], ("127.0.0.1", pbx.sip_port), transport="TCP")
        for index in range(len(data)):
            sock.send(data[index : index + 1])  # TCP_NODELAY: one segment per octet
            time.sleep(0.001)
        resp = StreamReader(sock).read_response(1.0)
    assert resp is not None and resp.status == 200


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_answers_over_a_stream_come_back_on_the_same_connection_not_to_the_via(
    pbx: PbxServer, transport: str
) -> None:
    """RFC 3261 §18.2.2: a response to a request over a stream goes back on that connection,
    even when the Via names another port (and carries no rport)."""
    with udp_socket() as udp_listener, socket.socket() as tcp_listener:
        via_port = udp_listener.getsockname()[1]
        tcp_listener.bind(("127.0.0.1", via_port))
        tcp_listener.listen(4)
        tcp_listener.settimeout(0.2)
        via = ("127.0.0.1", via_port)
        with _connect(pbx, transport) as sock:
            target = ("127.0.0.1", _port(pbx, transport))
            sock.sendall(options(via, target, transport=transport, rport=False))
            sock.sendall(_register(transport, rport=False)(via, target))
            reader = StreamReader(sock)
            answers = [reader.read_response(1.0), reader.read_response(1.0)]
        assert [a.status if a else None for a in answers] == [200, 401]
        assert recv_datagrams([udp_listener], 0.2) == []
        with pytest.raises(TimeoutError):
            tcp_listener.accept()


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_idle_stream_is_closed_after_tcp_idle_timeout_but_pings_keep_it_open(
    pbx: PbxServer, transport: str
) -> None:
    with _connect(pbx, transport) as idle, _connect(pbx, transport) as busy:
        started = time.monotonic()
        idle_reader, busy_reader = StreamReader(idle), StreamReader(busy)
        while time.monotonic() - started < IDLE_TIMEOUT + 1.0:
            busy.sendall(b"\r\n\r\n")
            assert busy_reader.read_pong(1.0), "keep-alive not answered"
            if idle_reader.wait_closed(0.5):
                break
        closed_after = time.monotonic() - started
        assert idle_reader.closed, f"idle {transport} connection open after {closed_after:.1f}s"
        assert IDLE_TIMEOUT - 0.5 <= closed_after <= IDLE_TIMEOUT + 1.0
        assert not busy_reader.closed  # active for longer than the timeout, still open
        time.sleep(0.5)
        busy.sendall(b"\r\n\r\n")
        assert busy_reader.read_pong(1.0)


# -- scanners ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transport", "source", "agent"),
    [
        ("UDP", "127.0.0.31", "friendly-scanner"),
        ("TCP", "127.0.0.32", "sipvicious 0.3.4"),
        ("TLS", "127.0.0.33", "SIPCLI/v1.8"),
    ],
)
def test_scanner_user_agent_is_dropped_silently(
    pbx: PbxServer, transport: str, source: str, agent: str
) -> None:
    normal = _ask(pbx, transport, _options_with(transport, user_agent="Linphone/5.1"), source)
    assert normal is not None and normal.status == 200  # the same path answers a phone
    for make in (_options_with(transport, user_agent=agent), _register(transport, agent)):
        dropped = _ask(pbx, transport, make, source)
        assert dropped is None, f"{agent!r} over {transport} was answered: {status_line(dropped)}"
    assert _alive(pbx)


# -- limits -----------------------------------------------------------------------------------


def _padded_options(size: int, pad_in_header: bool) -> Callable[..., bytes]:
    """An OPTIONS of about ``size`` octets: padded by a text body or by one long header."""

    def make(local: tuple[str, int], target: tuple[str, int]) -> bytes:
        if pad_in_header:
            return options(local, target, extra=[("X-Pad", "a" * size)])
        return options(local, target, extra=[("Content-Type", "text/plain")], body=b"b" * size)

    return make


def test_udp_request_above_max_message_size_gets_513_or_is_dropped(pbx: PbxServer) -> None:
    fits = _ask(pbx, "UDP", _padded_options(MAX_MESSAGE_SIZE - 700, pad_in_header=False))
    assert fits is not None and fits.status == 200  # the limit, not the body, decides
    for pad_in_header in (False, True):
        resp = _ask(pbx, "UDP", _padded_options(MAX_MESSAGE_SIZE + 1000, pad_in_header))
        assert resp is None or resp.status == 513, f"oversized datagram got {status_line(resp)}"
        assert _alive(pbx)


def _send_until_closed(sock: socket.socket, data: bytes) -> None:
    """Send as much of ``data`` as the server takes before it closes the connection."""
    try:
        sock.sendall(data)
    except (BrokenPipeError, ConnectionResetError):
        pass


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_header_section_that_never_ends_gets_the_stream_closed(
    pbx: PbxServer, transport: str
) -> None:
    filler = b"X-Filler: " + b"f" * 88 + b"\r\n"  # 100 octets; no empty line anywhere
    endless = b"OPTIONS sip:127.0.0.1 SIP/2.0\r\n" + filler * 1000  # 100 kB
    with _connect(pbx, transport) as sock:
        reader = StreamReader(sock)
        started = time.monotonic()
        _send_until_closed(sock, endless)
        assert reader.wait_closed(1.0), "server still buffers an endless header section"
        assert time.monotonic() - started < IDLE_TIMEOUT  # closed by the limit, not by idling
        replies = []
        while (raw := reader.read_message(0)) is not None:
            replies.append(parse_response(raw))
        assert all(r is not None and r.status == 513 for r in replies), replies
    assert _ask(pbx, transport, _options_with(transport)) is not None


@pytest.mark.parametrize("transport", ["TCP", "TLS"])
def test_content_length_above_max_body_gets_the_stream_closed(
    pbx: PbxServer, transport: str
) -> None:
    with _connect(pbx, transport) as sock:
        head = options(sock.getsockname()[:2], ("127.0.0.1", _port(pbx, transport)))
        head = head.replace(b"Content-Length: 0", b"Content-Length: 1000000")
        reader = StreamReader(sock)
        started = time.monotonic()
        _send_until_closed(sock, head + b"x" * 1000)
        assert reader.wait_closed(1.0), "server waits for a 1 MB body"
        assert time.monotonic() - started < IDLE_TIMEOUT
        raw = reader.read_message(0)
        resp = parse_response(raw) if raw is not None else None
        assert raw is None or (resp is not None and resp.status == 513), raw
    assert _ask(pbx, transport, _options_with(transport)) is not None


def _vm_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _junk_frames(total: int, big: bool) -> bytes:
    """Framed junk the server must read to the end: stray 'responses' with garbage bodies
    (dropped without an answer); ``big``: bodies near max_body, far over max_message_size."""
    chunks, size = [], 0
    while size < total:
        body = os.urandom(60_000 if big else 64)
        head = f"SIP/2.0 {uuid.uuid4().int % 10**9} junk\r\nContent-Length: {len(body)}\r\n\r\n"
        chunk = head.encode() + body
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _pump_junk(pbx: PbxServer, per_connection: int) -> int:
    """Junk over 10 TCP connections: 4 framed with big bodies, 4 framed small, 2 never framed.
    Returns the framed octets, which the server reads to the end (the unframed ones are cut
    off at max_message_size); each framed flow ends with an OPTIONS whose answer proves the
    server digested everything before it."""
    sent = 0
    for kind in ["big"] * 4 + ["small"] * 4 + ["endless"] * 2:
        with _connect(pbx, "TCP") as sock:
            reader = StreamReader(sock)
            if kind == "endless":
                data = b"JUNK " + os.urandom(per_connection).replace(b"\r", b"").replace(b"\n", b"")
                _send_until_closed(sock, data)
                assert reader.wait_closed(1.0), "unframed junk did not get the connection closed"
                continue
            data = _junk_frames(per_connection, big=kind == "big")
            barrier = options(sock.getsockname()[:2], ("127.0.0.1", pbx.sip_port), transport="TCP")
            sock.sendall(data + barrier)
            resp = reader.read_response(10.0)
            assert resp is not None and resp.status == 200, f"{kind} junk stream not digested"
            sent += len(data)
    return sent


def test_server_memory_stays_flat_after_5_mb_of_tcp_junk(pbx: PbxServer) -> None:
    assert pbx.pid is not None
    _pump_junk(pbx, 64_000)  # warm-up: code paths, buffers and allocator pools in use
    before = _vm_rss_kib(pbx.pid)
    sent = _pump_junk(pbx, 660_000)
    time.sleep(0.5)
    after = _vm_rss_kib(pbx.pid)
    assert sent >= 5_000_000
    assert after - before < 4 * 1024, f"VmRSS grew {before} -> {after} KiB after {sent} octets"
    assert _alive(pbx)
