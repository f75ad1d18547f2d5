"""Raw SIP on the wire for black-box tests: build requests, read and parse responses.

Owns: byte-level helpers for tests that talk to the pbx server over plain sockets (UDP, TCP,
TLS) instead of through a SIP peer, complementing :mod:`.raw_sip` (whose response parser it
uses) with TLS, CRLF keep-alive pongs and close detection -- building a request (RFC 3261 §8.1.1: Via with branch and
rport, From tag, Call-ID, CSeq, Max-Forwards, Content-Length), cutting responses out of a
stream by Content-Length (RFC 3261 §18.3) and parsing their start line and header fields.
Addresses are always in 127.0.0.0/8; every read is bounded by a timeout.

Must not import anything from ``pbx``: the server stays a black box.
"""

from __future__ import annotations

import re
import select
import socket
import ssl
import time
import uuid

from .raw_sip import SipResponse, parse_response

__all__ = [
    "SipResponse",
    "StreamReader",
    "options",
    "parse_response",
    "recv_datagrams",
    "request",
    "status_line",
    "stream_connect",
    "tcp_connect",
    "tokens",
    "udp_exchange",
    "udp_socket",
]

_CONTENT_LENGTH_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*(\d+)", re.I)


def _local(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError("interop tests use 127.0.0.0/8 only")


def tokens(resp: SipResponse, name: str) -> set[str]:
    """The comma-separated tokens of every ``name`` header of ``resp``, lower-cased."""
    return {t.strip().lower() for v in resp.get_all(name) for t in v.split(",") if t.strip()}


def status_line(resp: SipResponse | None) -> str:
    """ "407 Proxy Authentication Required" (or "nothing") for problem reports."""
    return "nothing" if resp is None else f"{resp.status} {resp.reason}"


def request(
    method: str,
    *,
    local: tuple[str, int],
    transport: str = "UDP",
    uri: str | None = None,
    target: tuple[str, int] | None = None,
    call_id: str | None = None,
    cseq: int = 1,
    user_agent: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    rport: bool = True,
    to: str | None = None,
) -> bytes:
    """A well-formed request from ``local`` (Via sent-by) to ``uri``/``target``; ``to`` is
    the To URI (default: the Request-URI; a REGISTER needs the address of record)."""
    host, port = local
    _local(host)
    if uri is None:
        if target is None:
            raise ValueError("need uri or target")
        uri = f"sip:{target[0]}:{target[1]}"
    branch = "z9hG4bK" + uuid.uuid4().hex[:16]
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{transport} {host}:{port};branch={branch}{';rport' if rport else ''}",
        "Max-Forwards: 70",
        f"From: <sip:probe@{host}>;tag={uuid.uuid4().hex[:10]}",
        f"To: <{to or uri}>",
        f"Call-ID: {call_id or uuid.uuid4().hex}@{host}",
        f"CSeq: {cseq} {method}",
        f"Contact: <sip:probe@{host}:{port};transport={transport.lower()}>",
    ]
    if user_agent is not None:
        lines.append(f"User-Agent: {user_agent}")
    lines += [f"{name}: {value}" for name, value in extra or []]
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def options(local: tuple[str, int], target: tuple[str, int], **kwargs: object) -> bytes:
    """An OPTIONS request (RFC 3261 §11) from ``local`` to ``target``."""
    return request("OPTIONS", local=local, target=target, **kwargs)  # type: ignore[arg-type]


def udp_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    _local(host)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, port))
    return sock


def recv_datagrams(socks: list[socket.socket], timeout: float) -> list[tuple[int, bytes]]:
    """Every datagram arriving on ``socks`` within ``timeout`` s: (index in socks, data)."""
    got: list[tuple[int, bytes]] = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select(socks, [], [], left)
        for sock in ready:
            got.append((socks.index(sock), sock.recv(65535)))
    return got


def udp_exchange(
    sock: socket.socket, data: bytes, target: tuple[str, int], timeout: float = 1.0
) -> SipResponse | None:
    """Send one datagram; return the first final (>= 200) response within ``timeout``."""
    _local(target[0])
    sock.sendto(data, target)
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        resp = parse_response(sock.recv(65535))
        if resp is not None and resp.status >= 200:
            return resp
    return None


class StreamReader:
    """Reads SIP responses and CRLF pongs from one TCP or TLS socket, bounded in time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.closed = False

    def _fill(self, deadline: float) -> bool:
        """Read once; False when the deadline passed or the peer closed."""
        if self.closed:
            return False
        if not (isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()):
            left = max(0.0, deadline - time.monotonic())  # past the deadline: poll once
            ready, _, _ = select.select([self.sock], [], [], left)
            if not ready:
                return False
        # a readable TLS socket may hold only handshake records (TLS 1.3 session tickets):
        # never block in recv beyond the deadline
        self.sock.settimeout(max(0.001, deadline - time.monotonic()))
        try:
            chunk = self.sock.recv(65536)
        except (TimeoutError, ssl.SSLWantReadError):
            return False
        except OSError:  # reset by the peer counts as closed
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buffer += chunk
        return True

    def read_pong(self, timeout: float) -> bool:
        """True when a bare CRLF (RFC 5626 §3.5.1 pong) arrives within ``timeout``."""
        deadline = time.monotonic() + timeout
        while len(self.buffer) < 2:
            if not self._fill(deadline):
                return False
        if self.buffer.startswith(b"\r\n"):
            self.buffer = self.buffer[2:]
            return True
        return False

    def read_message(self, timeout: float) -> bytes | None:
        """The next complete message (header section + Content-Length body) or None."""
        deadline = time.monotonic() + timeout
        while True:
            self.buffer = self.buffer.lstrip(b"\r\n")
            end = self.buffer.find(b"\r\n\r\n")
            if end >= 0:
                match = _CONTENT_LENGTH_RE.search(self.buffer[: end + 2])
                need = end + 4 + (int(match.group(1)) if match else 0)
                if len(self.buffer) >= need:
                    message, self.buffer = self.buffer[:need], self.buffer[need:]
                    return message
            if not self._fill(deadline):
                return None

    def read_response(self, timeout: float, final: bool = True) -> SipResponse | None:
        """The next response (skipping provisional ones when ``final``)."""
        deadline = time.monotonic() + timeout
        while True:
            data = self.read_message(max(0.0, deadline - time.monotonic()))
            if data is None:
                return None
            resp = parse_response(data)
            if resp is not None and (resp.status >= 200 or not final):
                return resp

    def wait_closed(self, timeout: float) -> bool:
        """True when the peer closes within ``timeout`` (data read meanwhile is kept)."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            if not self._fill(deadline) and not self.closed:
                return False
        return True


def tcp_connect(
    host: str, port: int, source: str = "127.0.0.1", timeout: float = 5.0
) -> socket.socket:
    """A TCP connection from ``source`` (any port) to host:port, Nagle off."""
    _local(host)
    _local(source)
    sock = socket.create_connection((host, port), timeout=timeout, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def stream_connect(
    transport: str, host: str, port: int, cafile: str | None = None, source: str = "127.0.0.1"
) -> socket.socket:
    """A TCP connection, or a TLS one verifying the server against ``cafile`` (the server's
    self-signed DATA/tls/cert.pem, which names 127.0.0.1)."""
    sock = tcp_connect(host, port, source)
    if transport.upper() == "TCP":
        return sock
    context = ssl.create_default_context(cafile=cafile)
    return context.wrap_socket(sock, server_hostname=host)
