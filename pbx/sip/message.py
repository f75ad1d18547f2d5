"""SIP messages: Request/Response, parsing and serialisation (Headers lives in headers.py).

Owns: RFC 3261 §7 message syntax (start line, header section with folding and compact forms,
body framed by Content-Length), the validation of §8.1.1/§8.2 mandatory headers with the
RFC 4475 verdicts, the resource Limits (513 Message Too Large), §8.2.6 ``make_response`` and
the random branch/tag/Call-ID generators.
Must not import: twisted, socket, sqlite3, flask, pbx.store. Works on bytes only.

Performance: header lines are split with str.split/partition and kept as raw strings; typed
values (Via, From, To, CSeq, Contact) are parsed once, on validation or first access, and cached
in the Headers object until it is modified.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, cast

from pbx.sip import grammar
from pbx.sip.errors import (
    LocalProtocolError,
    MessageTooLarge,
    RemoteProtocolError,
    UnsupportedUriScheme,
    VersionNotSupported,
)
from pbx.sip.headers import (
    CSeq,
    Headers,
    NameAddr,
    Via,
    name_info,
    parse_contacts,
    stored_name,
)
from pbx.sip.uri import AbsoluteUri, SipUri, Uri, parse_uri

__all__ = [
    "DEFAULT_LIMITS",
    "REASONS",
    "Headers",
    "Limits",
    "Message",
    "Request",
    "Response",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_message",
    "serialize",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Limits:
    """Resource limits applied by the parser and the stream framer."""

    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192
    max_body: int = 65535


DEFAULT_LIMITS = Limits()

_TOKEN_RE = re.compile(grammar.TOKEN)
_CALLID_RE = re.compile(grammar.CALLID)
_VERSION_RE = re.compile(grammar.SIP_VERSION, re.IGNORECASE)
_FOLD_RE = re.compile(r"\r\n[ \t]+")


# ---------------------------------------------------------------------------------------------
# typed accessors (parsed lazily, cached in Headers)


def _required(headers: Headers, key: str) -> str:
    """First value of a mandatory header, by lookup key ("call-id")."""
    values = headers._lookup().get(key)
    if not values:
        raise RemoteProtocolError(f"missing {stored_name(key)} header")
    return values[0]


def _parse_vias(headers: Headers) -> list[Via]:
    vias = [Via.parse(v) for v in headers.get_all("Via")]
    if not vias:
        raise RemoteProtocolError("missing Via header")
    return vias


def _parse_from(headers: Headers) -> NameAddr:
    return NameAddr.parse(_required(headers, "from"))


def _parse_to(headers: Headers) -> NameAddr:
    return NameAddr.parse(_required(headers, "to"))


def _parse_cseq(headers: Headers) -> CSeq:
    return CSeq.parse(_required(headers, "cseq"))


def _parse_call_id(headers: Headers) -> str:
    value = _required(headers, "call-id")
    if not _CALLID_RE.fullmatch(value):
        raise RemoteProtocolError(f"bad Call-ID {value[:200]!r}")
    return value


def _parse_contact_lines(headers: Headers) -> list[NameAddr] | Literal["*"]:
    out: list[NameAddr] = []
    lines = headers.get_lines("Contact")
    for line in lines:
        contacts = parse_contacts(line)
        if contacts == "*":
            if len(lines) > 1:  # RFC 3261 §10.2.2: "*" only alone
                raise RemoteProtocolError("Contact: * combined with other contacts")
            return "*"
        out.extend(contacts)
    return out


def _parse_routes(name: str) -> Callable[[Headers], list[NameAddr]]:
    def parse(headers: Headers) -> list[NameAddr]:
        return [NameAddr.parse(v) for v in headers.get_all(name)]

    return parse


_parse_route = _parse_routes("Route")
_parse_record_route = _parse_routes("Record-Route")


def _small_int(value: str | None, maximum: int) -> int | None:
    if value is None:
        return None
    value = value.strip(" \t")
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        return None
    number = int(value)
    return number if number <= maximum else None


class _MessageBase:
    """Typed header accessors shared by Request and Response."""

    __slots__ = ()
    headers: Headers
    body: bytes

    @property
    def call_id(self) -> str:
        return self.headers.cached("call-id", _parse_call_id)

    @property
    def cseq(self) -> CSeq:
        return self.headers.cached("cseq", _parse_cseq)

    @property
    def vias(self) -> list[Via]:
        return list(self.headers.cached("via", _parse_vias))

    @property
    def top_via(self) -> Via:
        return self.headers.cached("via", _parse_vias)[0]

    @property
    def from_(self) -> NameAddr:
        return self.headers.cached("from", _parse_from)

    @property
    def to(self) -> NameAddr:
        return self.headers.cached("to", _parse_to)

    @property
    def contacts(self) -> list[NameAddr] | Literal["*"]:
        value = self.headers.cached("contact", _parse_contact_lines)
        return value if value == "*" else list(value)

    @property
    def routes(self) -> list[NameAddr]:
        return list(self.headers.cached("route", _parse_route))

    @property
    def record_routes(self) -> list[NameAddr]:
        return list(self.headers.cached("record-route", _parse_record_route))

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.strip(" \t") if value is not None else None

    @property
    def expires(self) -> int | None:
        """Expires header in seconds; None when absent or not a valid delta-seconds
        (RFC 3261 §20.19: 0..2**32-1; RFC 4475 §3.1.2.4: an overlarge value counts as absent)."""
        return _small_int(self.headers.get("Expires"), 2**32 - 1)

    @property
    def max_forwards(self) -> int | None:
        """Max-Forwards 0..255 (RFC 3261 §20.22); None when absent or invalid."""
        return _small_int(self.headers.get("Max-Forwards"), 255)

    def to_bytes(self) -> bytes:
        return serialize(cast("Message", self))


@dataclass(slots=True)
class Request(_MessageBase):
    method: str
    uri: Uri
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"


@dataclass(slots=True)
class Response(_MessageBase):
    status: int
    reason: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"


Message = Request | Response


# ---------------------------------------------------------------------------------------------
# parsing

# RFC 3261 §8.1.1: mandatory in every request (Max-Forwards is left out so that RFC 2543
# peers are understood, RFC 4475 §3.4.1).
_REQUIRED = ("via", "from", "to", "call-id", "cseq")
# Headers that may appear once only (RFC 3261 §7.3.1, RFC 4475 §3.3.8/§3.3.9).
_SINGLE = ("from", "to", "call-id", "cseq", "max-forwards", "content-length", "content-type")


def _split_head(data: bytes) -> tuple[bytes, bytes] | None:
    """Header section and the rest, or None when the section cannot be delimited."""
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        return data[:end], data[end + 4 :]
    if data.endswith(b"\r\n"):
        # A datagram whose header section is not closed by an empty line (the RFC 4475
        # archive copy of §3.1.2.15): the datagram boundary ends it (RFC 3261 §18.3).
        return data[:-2], b""
    return None


def _header_lines(head: str) -> list[str]:
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)  # RFC 3261 §7.3.1: folding is equivalent to one SP
    return head.split("\r\n")


Triple = tuple[str, str, str]
# raw field-name (as it precedes the colon) -> (lookup key, stored name); bounded so that
# random names from the network cannot grow it without limit
_FIELD_NAMES: dict[str, tuple[str, str]] = {}
_FIELD_NAMES_MAX = 2048


def _field_name(raw: str) -> tuple[str, str] | None:
    """Lookup key and stored name of a raw field-name, None when it is not a token
    (message-header = field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS)."""
    name = raw.rstrip(" \t")
    if not _TOKEN_RE.fullmatch(name):
        return None
    info = name_info(name)
    if len(_FIELD_NAMES) < _FIELD_NAMES_MAX:
        _FIELD_NAMES[raw] = info
    return info


def _scan_headers(lines: list[str]) -> tuple[list[Triple], dict[str, list[str]], str | None]:
    """(key, name, value) triples, the key -> values index, and the first malformed line."""
    triples: list[Triple] = []
    index: dict[str, list[str]] = {}
    bad: str | None = None
    known = _FIELD_NAMES.get
    for line in lines:
        raw, colon, value = line.partition(":")
        info = known(raw) if colon else None
        if info is None:
            info = _field_name(raw) if colon else None
            if info is None:
                if bad is None:
                    bad = line
                continue
        key = info[0]
        value = value.strip(" \t")
        triples.append((key, info[1], value))
        values = index.get(key)
        if values is None:
            index[key] = [value]
        else:
            values.append(value)
    return triples, index, bad


def _partial_request(start_line: str, headers: Headers) -> Request | None:
    """Whatever request can be built for an error response, None for responses."""
    if start_line.startswith("SIP/"):
        return None
    parts = start_line.split()
    method = parts[0] if parts else ""
    raw_uri = parts[1] if len(parts) > 1 else ""
    try:
        uri = parse_uri(raw_uri)
    except RemoteProtocolError:
        uri = AbsoluteUri("", raw_uri)
    return Request(method, uri, headers)


def _salvage(data: bytes, limits: Limits) -> Request | None:
    """Partial request from the head of an oversized message, when it can be delimited."""
    split = _split_head(data[: limits.max_message_size].lstrip(b"\r\n"))
    if split is None:
        return None
    head = split[0].decode("utf-8", "surrogateescape")
    if "\r" in head.replace("\r\n", "") or "\n" in head.replace("\r\n", ""):
        return None
    lines = _header_lines(head)
    if any(len(line) > limits.max_line_length for line in lines):
        return None
    triples, index, _ = _scan_headers(lines[1 : limits.max_headers + 1])
    return _partial_request(lines[0], Headers._trusted(triples, index))


def parse_message(data: bytes, limits: Limits = DEFAULT_LIMITS) -> Message:
    """Parse one SIP message from a datagram (or a frame cut by StreamFramer).

    RFC 3261 §7 and the RFC 4475 verdicts: leading CRLFs are skipped (§7.5), folding and
    compact forms are understood, the body is cut to Content-Length and octets after it are
    ignored (§18.3); without Content-Length the body runs to the end of the data.
    Raises RemoteProtocolError (or a subclass carrying 505/416/513) with ``partial`` set to
    the request as parsed so far, or None when the message cannot be answered.
    """
    if len(data) > limits.max_message_size:
        raise MessageTooLarge(f"message of {len(data)} octets", partial=_salvage(data, limits))
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")
    split = _split_head(data)
    if split is None:
        raise RemoteProtocolError("no end of header section")
    head_bytes, rest = split
    head = head_bytes.decode("utf-8", "surrogateescape")
    if "\r\n " in head or "\r\n\t" in head:
        head = _FOLD_RE.sub(" ", head)  # RFC 3261 §7.3.1: folding is equivalent to one SP
    nlines = head.count("\r\n")
    if head.count("\r") != nlines or head.count("\n") != nlines:
        # A bare CR or LF inside the header section: never echo it back.
        raise RemoteProtocolError("bare CR or LF in header section")
    lines = head.split("\r\n")
    start_line = lines[0]
    triples, index, bad_line = _scan_headers(lines[1:])
    headers = Headers._trusted(triples, index)
    try:
        if nlines > limits.max_headers:
            raise MessageTooLarge(f"{nlines} header lines")
        if len(head) > limits.max_line_length and any(
            len(line) > limits.max_line_length for line in lines
        ):
            raise MessageTooLarge("header line too long")
        if bad_line is not None:
            raise RemoteProtocolError(f"malformed header line {bad_line[:100]!r}")
        if start_line.startswith("SIP/"):
            return _parse_response(start_line, headers, rest, limits)
        return _parse_request(start_line, headers, rest, limits)
    except RemoteProtocolError as exc:
        if exc.partial is None:
            exc.partial = _partial_request(start_line, headers)
        raise


def _check_version(version: str) -> None:
    if version != "SIP/2.0" and version.upper() != "SIP/2.0":
        if _VERSION_RE.fullmatch(version):
            raise VersionNotSupported(f"unsupported version {version[:20]!r}")
        raise RemoteProtocolError(f"bad SIP-Version {version[:20]!r}")


def _parse_request(start_line: str, headers: Headers, rest: bytes, limits: Limits) -> Request:
    # Request-Line = Method SP Request-URI SP SIP-Version CRLF (RFC 3261 §7.1). Extra SP
    # between the elements or before CRLF (RFC 4475 §3.1.2.9, §3.1.2.10) is rejected with
    # 400, the answer both tests allow: guessing where the URI ends is not robust.
    parts = start_line.split(" ")
    if len(parts) != 3 or not parts[1]:
        raise RemoteProtocolError(f"malformed Request-Line {start_line[:200]!r}")
    method, raw_uri, version = parts
    if not _TOKEN_RE.fullmatch(method):
        raise RemoteProtocolError(f"bad method {method[:50]!r}")
    _check_version(version)
    uri = parse_uri(raw_uri)  # RFC 4475 §3.1.2.7 (<...>), §3.1.2.8: 400 from here
    request = Request(method, uri, headers)
    try:
        if isinstance(uri, AbsoluteUri):
            # RFC 3261 §8.2.2.1; RFC 4475 §3.3.2/§3.3.3 (the README's verdict is 416 for both).
            raise UnsupportedUriScheme(f"unsupported Request-URI scheme {uri.scheme!r}")
        if isinstance(uri, SipUri) and uri.headers:
            # RFC 3261 §19.1.1 table: headers are not allowed in a Request-URI
            # (RFC 4475 §3.1.2.11: reject rather than materialise them).
            raise RemoteProtocolError("headers in Request-URI")
        request.body = _body(headers, rest, limits)
        _validate(headers)
        if request.cseq.method != method:
            # RFC 3261 §20.16 (the CSeq method matches the request), RFC 4475 §3.1.2.17.
            # §3.1.2.18 prefers 501 for an unknown method but allows 400: the parser does not
            # know which methods the application implements, so it answers 400 for both.
            raise RemoteProtocolError("CSeq method does not match the Request-Line")
    except RemoteProtocolError as exc:
        exc.partial = request
        raise
    return request


def _parse_response(start_line: str, headers: Headers, rest: bytes, limits: Limits) -> Response:
    # Status-Line = SIP-Version SP Status-Code SP Reason-Phrase CRLF (RFC 3261 §7.2); the
    # reason may be empty (RFC 4475 §3.1.1.13) and any UTF-8 (§3.1.1.12).
    parts = start_line.split(" ", 2)
    if len(parts) < 2:
        raise RemoteProtocolError(f"malformed Status-Line {start_line[:200]!r}")
    _check_version(parts[0])
    code = parts[1]
    if len(code) != 3 or not code.isascii() or not code.isdigit() or not "100" <= code <= "699":
        raise RemoteProtocolError(f"bad status code {code[:20]!r}")  # RFC 4475 §3.1.2.19
    response = Response(int(code), parts[2] if len(parts) == 3 else "", headers)
    response.body = _body(headers, rest, limits)
    _validate(headers)
    return response


def _body(headers: Headers, rest: bytes, limits: Limits) -> bytes:
    values = headers._lookup().get("content-length")
    if values is None:
        # No Content-Length: the body ends with the datagram (RFC 3261 §18.3, §20.14).
        if len(rest) > limits.max_body:
            raise MessageTooLarge(f"body of {len(rest)} octets")
        return rest
    if len(values) > 1:
        raise RemoteProtocolError("several Content-Length values")  # RFC 4475 §3.3.9
    value = values[0]
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise RemoteProtocolError(f"bad Content-Length {value[:20]!r}")  # RFC 4475 §3.1.2.3
    length = int(value)
    if length > limits.max_body:
        raise MessageTooLarge(f"Content-Length {length}")
    if length > len(rest):
        raise RemoteProtocolError("Content-Length larger than the message")  # §3.1.2.2
    return rest[:length] if length < len(rest) else rest


def _validate(headers: Headers) -> None:
    """Presence, uniqueness and syntax of the headers every element needs (RFC 3261 §8.1.1,
    RFC 4475 §3.1.2.x/§3.3.1/§3.3.8); parsed values stay cached for the accessors."""
    index = headers._lookup()
    for key in _REQUIRED:
        if key not in index:
            raise RemoteProtocolError(f"missing {stored_name(key)} header")
    for key in _SINGLE:
        values = index.get(key)
        if values is not None and len(values) > 1:
            raise RemoteProtocolError(f"several {stored_name(key)} headers")
    cache = headers._cache
    for key, parse in _EAGER:
        if key in index and key not in cache:
            cache[key] = parse(headers)


# Typed values parsed (and cached) by _validate, so that a message that parses is usable.
_EAGER: tuple[tuple[str, Callable[[Headers], object]], ...] = (
    ("via", _parse_vias),
    ("from", _parse_from),
    ("to", _parse_to),
    ("cseq", _parse_cseq),
    ("call-id", _parse_call_id),
    ("contact", _parse_contact_lines),
)


# ---------------------------------------------------------------------------------------------
# serialisation and responses


def serialize(msg: Message) -> bytes:
    """Wire form of a message; Content-Length always matches the body (RFC 3261 §20.14)."""
    body = msg.body
    if isinstance(msg, Request):
        out = [f"{msg.method} {msg.uri} {msg.version}"]
    else:
        out = [f"{msg.version} {msg.status} {msg.reason}"]
    length_written = False
    for key, name, value in msg.headers._items:
        if key == "content-length":
            if length_written:
                continue
            value = str(len(body))
            length_written = True
        out.append(f"{name}: {value}")
    if not length_written:
        out.append(f"Content-Length: {len(body)}")
    out.append("\r\n")
    return "\r\n".join(out).encode("utf-8", "surrogateescape") + body


# Default reason phrases (RFC 3261 §21 and the IANA response-code registry).
# fmt: off
REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated", 200: "OK", 202: "Accepted",
    204: "No Notification", 300: "Multiple Choices", 301: "Moved Permanently",
    302: "Moved Temporarily", 305: "Use Proxy", 380: "Alternative Service", 400: "Bad Request",
    401: "Unauthorized", 402: "Payment Required", 403: "Forbidden", 404: "Not Found",
    405: "Method Not Allowed", 406: "Not Acceptable", 407: "Proxy Authentication Required",
    408: "Request Timeout", 410: "Gone", 412: "Conditional Request Failed",
    413: "Request Entity Too Large", 414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 417: "Unknown Resource-Priority", 420: "Bad Extension",
    421: "Extension Required", 422: "Session Interval Too Small", 423: "Interval Too Brief",
    428: "Use Identity Header", 429: "Provide Referrer Identity", 433: "Anonymity Disallowed",
    436: "Bad Identity-Info", 437: "Unsupported Certificate", 438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support", 440: "Max-Breadth Exceeded", 469: "Bad Info Package",
    470: "Consent Needed", 480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist",
    482: "Loop Detected", 483: "Too Many Hops", 484: "Address Incomplete", 485: "Ambiguous",
    486: "Busy Here", 487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable", 494: "Security Agreement Required",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 555: "Push Notification Service Not Supported",
    580: "Precondition Failure", 600: "Busy Everywhere", 603: "Decline",
    604: "Does Not Exist Anywhere", 606: "Not Acceptable", 607: "Unwanted", 608: "Rejected",
}
# fmt: on

_CLASS_REASONS = {1: "Trying", 2: "OK", 3: "Redirect", 4: "Client Error", 5: "Server Error"}
_COPIED = frozenset(("via", "from", "to", "call-id", "cseq"))


def make_response(
    request: Request, status: int, reason: str | None = None, *, to_tag: str | None = None
) -> Response:
    """Build a response to ``request`` (RFC 3261 §8.2.6): Via (all, in order), From, To,
    Call-ID and CSeq are copied; a To tag is added when given and the To has none; for 100
    the Timestamp is copied (§8.2.6.1). Works on the ``partial`` of a parse error too."""
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range")
    if reason is None:
        reason = REASONS.get(status) or _CLASS_REASONS.get(status // 100, "Global Failure")
    copied = [item for item in request.headers._items if item[0] in _COPIED]
    if to_tag is not None:
        copied = [_tagged(item, request, to_tag) if item[0] == "to" else item for item in copied]
    if status == 100:
        copied.extend(item for item in request.headers._items if item[0] == "timestamp")
    copied.append(("content-length", "Content-Length", "0"))
    return Response(status, reason, Headers._trusted(copied))


def _tagged(item: tuple[str, str, str], request: Request, to_tag: str) -> tuple[str, str, str]:
    try:
        if request.to.tag is not None:
            return item
    except RemoteProtocolError:
        return item  # an unparsable To is echoed as it came (answering a 400)
    return (item[0], item[1], f"{item[2]};tag={to_tag}")


def new_branch() -> str:
    """RFC 3261 §8.1.1.7: magic cookie + a value unique across space and time."""
    return "z9hG4bK" + secrets.token_hex(10)


def new_tag() -> str:
    """RFC 3261 §19.3: at least 32 bits of randomness."""
    return secrets.token_hex(8)


def new_call_id() -> str:
    """RFC 3261 §8.1.1.4: globally unique Call-ID."""
    return secrets.token_hex(16)
