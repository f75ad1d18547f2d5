"""A minimal raw SIP user agent client over UDP or TCP for precise interop checks.

Owns: building requests byte by byte (so a test controls every header, the Via branch and
retransmissions), reading responses with their arrival time and their headers in wire order,
parsing digest challenges and answering them (RFC 3261 22.4, RFC 7616 3.4.1 with qop=auth, MD5
or SHA-256, hashes from hashlib). Used where SIPp cannot express a check (compare two responses
header by header, replay a nonce-count, send from a chosen 127.0.0.x address), and reading
SIPp's ``-trace_msg`` log (:func:`read_sipp_trace`) to compare and time the messages SIPp saw.

Must not import anything from ``pbx``: the server is a black box reached over the network.
Only 127.0.0.0/8 addresses; every receive is bounded by a timeout.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
import secrets
import socket
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

log = logging.getLogger(__name__)

_HASHLIB = {"MD5": "md5", "SHA-256": "sha256"}
_PARAM = re.compile(r'\s*([A-Za-z0-9_.!%*+`\'~-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]+)\s*,?')
_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
}
_seq = itertools.count(1)


def _check_loopback(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError("interop tests use 127.0.0.0/8 only")


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie, 8.1.1.7)."""
    return "z9hG4bK" + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


@dataclass
class SipResponse:
    """One response as received: status line, headers in wire order, body, arrival time."""

    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    raw: bytes
    #: time.monotonic() at arrival; for a SIPp trace entry, SIPp's wall-clock time (epoch)
    received_at: float = field(default_factory=time.monotonic)

    @property
    def names(self) -> list[str]:
        """Header names in the order they were sent (as spelled on the wire)."""
        return [name for name, _ in self.headers]

    def get_all(self, name: str) -> list[str]:
        wanted = _COMPACT.get(name.lower(), name.lower())
        return [v for n, v in self.headers if _COMPACT.get(n.lower(), n.lower()) == wanted]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    @property
    def to_tag(self) -> str | None:
        match = re.search(r";\s*tag=([^;>\s]+)", self.get("To") or "")
        return match.group(1) if match else None

    @property
    def cseq_method(self) -> str:
        return (self.get("CSeq") or " ").split()[-1]

    def challenges(self) -> list[dict[str, str]]:
        """Parsed WWW-Authenticate / Proxy-Authenticate values, in order."""
        values = self.get_all("WWW-Authenticate") + self.get_all("Proxy-Authenticate")
        return [parse_challenge(v) for v in values]

    def contacts(self) -> list[str]:
        """Contact values, comma-separated lists split (our server sends no commas in URIs)."""
        return [part.strip() for v in self.get_all("Contact") for part in v.split(",")]

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace")


def parse_response(data: bytes, received_at: float | None = None) -> SipResponse | None:
    """Parse one complete response (requests and garbage give None)."""
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    match = re.fullmatch(r"SIP/2\.0 (\d{3}) ?(.*)", lines[0])
    if match is None:
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    return SipResponse(
        int(match.group(1)),
        match.group(2),
        headers,
        body,
        data,
        time.monotonic() if received_at is None else received_at,
    )


def parse_challenge(value: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", ...`` -> {"scheme": "Digest", "realm": "x", ...}."""
    scheme, _, rest = value.strip().partition(" ")
    params = {"scheme": scheme}
    for match in _PARAM.finditer(rest):
        raw = match.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[match.group(1).lower()] = raw
    return params


def _h(algorithm: str, text: str) -> str:
    return hashlib.new(_HASHLIB[algorithm], text.encode()).hexdigest()


def digest_authorization(
    challenge: dict[str, str],
    *,
    username: str,
    password: str,
    method: str,
    uri: str,
    nc: int = 1,
    cnonce: str | None = None,
) -> str:
    """An Authorization value answering ``challenge`` (qop=auth when offered, RFC 7616 3.4.1)."""
    algorithm = challenge.get("algorithm", "MD5").upper()
    realm, nonce = challenge["realm"], challenge["nonce"]
    ha1 = _h(algorithm, f"{username}:{realm}:{password}")
    ha2 = _h(algorithm, f"{method}:{uri}")
    parts = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
        f"algorithm={algorithm}",
    ]
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    if "auth" in qops:
        cnonce = cnonce or secrets.token_hex(8)
        nc_text = f"{nc:08x}"
        response = _h(algorithm, f"{ha1}:{nonce}:{nc_text}:{cnonce}:auth:{ha2}")
        parts += [f'response="{response}"', "qop=auth", f"nc={nc_text}", f'cnonce="{cnonce}"']
    else:
        parts.append(f'response="{_h(algorithm, f"{ha1}:{nonce}:{ha2}")}"')
    if "opaque" in challenge:
        parts.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(parts)


def pick_challenge(response: SipResponse, algorithm: str = "MD5") -> dict[str, str]:
    """The challenge of ``response`` for ``algorithm``; AssertionError if it has none."""
    for challenge in response.challenges():
        if challenge.get("algorithm", "MD5").upper() == algorithm:
            return challenge
    raise AssertionError(f"no {algorithm} challenge in:\n{response}")


class SipClient:
    """One socket (UDP, or a TCP connection) from ``local_ip`` to the server."""

    def __init__(
        self,
        server: tuple[str, int],
        *,
        local_ip: str = "127.0.0.1",
        transport: str = "udp",
        timeout: float = 2.0,
    ) -> None:
        _check_loopback(server[0])
        _check_loopback(local_ip)
        self.server = server
        self.local_ip = local_ip
        self.transport = transport.lower()
        self.timeout = timeout
        kind = socket.SOCK_STREAM if self.transport == "tcp" else socket.SOCK_DGRAM
        self.sock = socket.socket(socket.AF_INET, kind)
        self.sock.bind((local_ip, 0))
        if self.transport == "tcp":
            self.sock.settimeout(timeout)
            self.sock.connect(server)
        self.local_port: int = self.sock.getsockname()[1]
        self._buffer = b""
        self.sent: list[bytes] = []

    # -- wire ----------------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        self.sent.append(data)
        if self.transport == "tcp":
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.server)

    def receive(self, timeout: float | None = None) -> SipResponse | None:
        """The next response, or None if none arrives within ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            data = self._read_message(remaining)
            if data is None:
                return None
            resp = parse_response(data)
            if resp is not None:
                return resp
            log.debug("ignored non-response from server: %r", data[:80])

    def _read_message(self, timeout: float) -> bytes | None:
        self.sock.settimeout(timeout)
        if self.transport != "tcp":
            try:
                data, _ = self.sock.recvfrom(65535)
            except (TimeoutError, BlockingIOError):
                return None
            return data
        deadline = time.monotonic() + timeout
        while True:
            message = self._take_framed()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65535)
            except TimeoutError:
                return None
            if not chunk:
                return None
            self._buffer += chunk

    def _take_framed(self) -> bytes | None:
        self._buffer = self._buffer.lstrip(b"\r\n")  # keep-alive CRLFs (RFC 5626 3.5.1)
        head_end = self._buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return None
        head = self._buffer[:head_end].decode("latin-1")
        match = re.search(r"(?im)^(?:content-length|l)\s*:\s*(\d+)", head)
        length = int(match.group(1)) if match else 0
        end = head_end + 4 + length
        if len(self._buffer) < end:
            return None
        message, self._buffer = self._buffer[:end], self._buffer[end:]
        return message

    def final(self, timeout: float | None = None) -> SipResponse | None:
        """The next final (>= 200) response, skipping provisional ones."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (remaining := deadline - time.monotonic()) > 0:
            resp = self.receive(remaining)
            if resp is None or resp.status >= 200:
                return resp
        return None

    def collect(self, duration: float) -> list[SipResponse]:
        """Every response arriving within ``duration`` seconds."""
        got: list[SipResponse] = []
        deadline = time.monotonic() + duration
        while (remaining := deadline - time.monotonic()) > 0:
            resp = self.receive(remaining)
            if resp is None:
                break
            got.append(resp)
        return got

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> SipClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ------------------------------------------------------------------------------
    def build(
        self,
        method: str,
        *,
        uri: str | None = None,
        from_user: str,
        to_user: str | None = None,
        call_id: str,
        from_tag: str,
        cseq: int,
        branch: str | None = None,
        headers: Sequence[tuple[str, str]] = (),
        via: str | None = None,
        to_tag: str | None = None,
        body: bytes = b"",
    ) -> bytes:
        """A request from this socket; Via gets ``;rport`` (RFC 3581) unless ``via`` is given."""
        host, port = self.server
        uri = uri or f"sip:{host}:{port}"
        to_user = to_user or from_user
        proto = "TCP" if self.transport == "tcp" else "UDP"
        via = via or f"SIP/2.0/{proto} {self.local_ip}:{self.local_port};rport"
        to_suffix = f";tag={to_tag}" if to_tag else ""
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: {via};branch={branch or new_branch()}",
            "Max-Forwards: 70",
            f"From: <sip:{from_user}@{host}>;tag={from_tag}",
            f"To: <sip:{to_user}@{host}>{to_suffix}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
        ]
        lines += [f"{name}: {value}" for name, value in headers]
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class Registerer:
    """REGISTERs for one user on one Call-ID (CSeq increases), answering 401s with digest."""

    def __init__(
        self,
        client: SipClient,
        user: str,
        password: str,
        *,
        algorithm: str = "MD5",
        user_agent: str = "raw-sip-test/1.0",
    ) -> None:
        self.client = client
        self.user = user
        self.password = password
        self.algorithm = algorithm
        self.user_agent = user_agent
        self.call_id = f"{secrets.token_hex(8)}-{next(_seq)}@{client.local_ip}"
        self.from_tag = new_tag()
        self.cseq = 0
        self.challenge: dict[str, str] | None = None
        self.nc = 0

    @property
    def uri(self) -> str:
        host, port = self.client.server
        return f"sip:{host}:{port}"

    def contact(self, name: str = "") -> str:
        """A contact URI on this client's socket (``name`` distinguishes several)."""
        user = f"{self.user}{'-' + name if name else ''}"
        return f"sip:{user}@{self.client.local_ip}:{self.client.local_port}"

    def build(
        self,
        contacts: Iterable[str] | str | None = None,
        *,
        expires: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
        authorization: str | None = None,
        branch: str | None = None,
        via: str | None = None,
    ) -> bytes:
        """The next REGISTER (CSeq + 1). ``contacts``: header values (``<uri>;params`` or
        ``*``); None sends no Contact (a query, RFC 3261 10.2.3)."""
        self.cseq += 1
        extra: list[tuple[str, str]] = []
        if isinstance(contacts, str):
            contacts = [contacts]
        extra += [("Contact", value) for value in contacts or ()]
        if expires is not None:
            extra.append(("Expires", str(expires)))
        if authorization is not None:
            extra.append(("Authorization", authorization))
        extra.append(("User-Agent", self.user_agent))
        extra += list(headers)
        return self.client.build(
            "REGISTER",
            uri=self.uri,
            from_user=self.user,
            call_id=self.call_id,
            from_tag=self.from_tag,
            cseq=self.cseq,
            branch=branch,
            headers=extra,
            via=via,
        )

    def authorization(
        self, challenge: dict[str, str] | None = None, password: str | None = None
    ) -> str:
        """Credentials for the next request on the current (or given) challenge's nonce."""
        if challenge is not None and challenge is not self.challenge:
            self.challenge, self.nc = challenge, 0
        if self.challenge is None:
            raise AssertionError("no challenge received yet")
        self.nc += 1
        return digest_authorization(
            self.challenge,
            username=self.user,
            password=self.password if password is None else password,
            method="REGISTER",
            uri=self.uri,
            nc=self.nc,
        )

    def send(self, data: bytes, timeout: float | None = None) -> SipResponse | None:
        """Send one request and wait for its final response."""
        self.client.send(data)
        return self.client.final(timeout)

    def register(
        self,
        contacts: Iterable[str] | str | None = None,
        *,
        expires: int | None = None,
        headers: Sequence[tuple[str, str]] = (),
        password: str | None = None,
        timeout: float | None = None,
    ) -> SipResponse | None:
        """REGISTER; answer a 401 once with credentials; return the last final response."""
        contacts = [contacts] if isinstance(contacts, str) else list(contacts or [])
        resp = self.send(self.build(contacts, expires=expires, headers=headers), timeout)
        if resp is None or resp.status != 401:
            return resp
        auth = self.authorization(pick_challenge(resp, self.algorithm), password)
        data = self.build(contacts, expires=expires, headers=headers, authorization=auth)
        return self.send(data, timeout)


# -- SIPp -trace_msg logs ----------------------------------------------------------------------

_TRACE_HEAD = re.compile(
    rb"^-{20,} (\d{4}-\d\d-\d\d[ \t]\d\d:\d\d:\d\d\.\d+)\n(\w+) message (sent|received)[^\n]*\n\n",
    re.MULTILINE,
)


@dataclass
class TracedMessage:
    """One message from a SIPp ``-trace_msg`` log: wall-clock time, direction and bytes."""

    at: float  # seconds since the epoch (SIPp logs local time with microseconds)
    transport: str
    direction: str  # "sent" or "received"
    data: bytes

    @property
    def first_line(self) -> str:
        return self.data.split(b"\r\n", 1)[0].decode("utf-8", "replace")

    @property
    def response(self) -> SipResponse | None:
        return parse_response(self.data, self.at)


def read_sipp_trace(path: Path) -> list[TracedMessage]:
    """Parse SIPp's messages.log (written with -trace_msg) into messages, in log order."""
    text = path.read_bytes()
    heads = list(_TRACE_HEAD.finditer(text))
    messages = []
    for head, nxt in zip(heads, heads[1:] + [None], strict=True):
        end = nxt.start() if nxt is not None else len(text)
        stamp = head.group(1).decode().replace("\t", " ")
        at = datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()
        data = text[head.end() : end]
        while data.endswith(b"\n") and not data.endswith(b"\r\n"):
            data = data[:-1]  # the blank lines SIPp adds after each message
        messages.append(TracedMessage(at, head.group(2).decode(), head.group(3).decode(), data))
    return messages
