"""SDP session descriptions (RFC 4566): the model, its wire format and attribute accessors.

Owns: :class:`SessionDescription`, :class:`MediaDescription` and their line values;
``parse``/``serialize`` (byte-exact for canonical input: CRLF, lines in the RFC 4566 §5
order; unknown lines and attributes are kept in their order); accessors for the attributes a
PBX uses (rtpmap, fmtp, ptime, maxptime, direction, rtcp (RFC 3605), rtcp-mux (RFC 5761),
crypto (RFC 4568)); :class:`Codec` and the RFC 3551 static payload types; :class:`Direction`
with the RFC 3264 §6.1 answer rule. Offer/answer, anchoring rewrites, ``o=`` versioning and
hold detection live in :mod:`pbx.media.offer_answer`.

Descriptions are immutable; helpers return new ones. Malformed SDP raises ``ValueError`` whose
message names the line. Must not import: twisted, socket, sqlite3, sqlite_utils, flask,
pbx.store.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

log = logging.getLogger(__name__)

_LINE = re.compile(r"([a-z])=(.*)")
_SESSION_KINDS = frozenset("vosiuepcbtrzka")
_MEDIA_KINDS = frozenset("icbka")
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")


def _number(text: str, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise ValueError(f"SDP {what} is not a number: {text!r}")
    return int(text)


def _fields(value: str, count: int, kind: str) -> list[str]:
    parts = value.split(" ")
    if len(parts) != count or not all(parts):
        raise ValueError(f"SDP {kind}= line needs {count} fields: {value!r}")
    return parts


# --- line values ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Origin:
    """``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <address>`` (§5.2)."""

    username: str
    session_id: str
    session_version: int
    nettype: str = "IN"
    addrtype: str = "IP4"
    address: str = "0.0.0.0"

    @classmethod
    def parse(cls, value: str) -> Origin:
        user, sid, version, nettype, addrtype, address = _fields(value, 6, "o")
        return cls(user, sid, _number(version, "session version"), nettype, addrtype, address)

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.session_version} "
            f"{self.nettype} {self.addrtype} {self.address}"
        )


@dataclass(frozen=True, slots=True)
class Connection:
    """``c=<nettype> <addrtype> <connection-address>`` (§5.7)."""

    address: str
    nettype: str = "IN"
    addrtype: str = "IP4"

    @classmethod
    def parse(cls, value: str) -> Connection:
        nettype, addrtype, address = _fields(value, 3, "c")
        return cls(address, nettype, addrtype)

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, "IN", "IP6" if ":" in address else "IP4")

    def __str__(self) -> str:
        return f"{self.nettype} {self.addrtype} {self.address}"


@dataclass(frozen=True, slots=True)
class Bandwidth:
    """``b=<bwtype>:<bandwidth>`` (§5.8)."""

    bwtype: str
    bandwidth: int

    @classmethod
    def parse(cls, value: str) -> Bandwidth:
        bwtype, sep, amount = value.partition(":")
        if not sep or not bwtype:
            raise ValueError(f"SDP b= line is not <type>:<bandwidth>: {value!r}")
        return cls(bwtype, _number(amount, "bandwidth"))

    def __str__(self) -> str:
        return f"{self.bwtype}:{self.bandwidth}"


@dataclass(frozen=True, slots=True)
class Timing:
    """``t=<start> <stop>`` with its ``r=`` lines (§5.9, §5.10); ``t=0 0`` is a permanent session."""

    start: int = 0
    stop: int = 0
    repeats: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Attribute:
    """``a=<name>`` (``value`` None) or ``a=<name>:<value>`` (§5.13)."""

    name: str
    value: str | None = None

    @classmethod
    def parse(cls, value: str) -> Attribute:
        name, sep, rest = value.partition(":")
        if not name:
            raise ValueError(f"SDP a= line has no attribute name: {value!r}")
        return cls(name, rest if sep else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class Codec:
    """A payload format: ``a=rtpmap:<pt> <encoding>/<clock>[/<channels>]`` plus its fmtp."""

    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1
    fmtp: str | None = None

    def matches(self, other: Codec) -> bool:
        """Same format, whatever the payload type number (encoding names are case-blind)."""
        return (self.encoding.casefold(), self.clock_rate, self.channels) == (
            other.encoding.casefold(),
            other.clock_rate,
            other.channels,
        )

    @property
    def is_telephone_event(self) -> bool:
        return self.encoding.casefold() == "telephone-event"

    def attributes(self) -> list[Attribute]:
        rate = f"{self.clock_rate}" + (f"/{self.channels}" if self.channels != 1 else "")
        out = [Attribute("rtpmap", f"{self.payload_type} {self.encoding}/{rate}")]
        if self.fmtp is not None:
            out.append(Attribute("fmtp", f"{self.payload_type} {self.fmtp}"))
        return out


@dataclass(frozen=True, slots=True)
class Crypto:
    """``a=crypto:<tag> <crypto-suite> <key-params> [<session-param>]*`` (RFC 4568 §9.1)."""

    tag: int
    suite: str
    key_params: tuple[str, ...]
    session_params: tuple[str, ...] = ()

    @classmethod
    def parse(cls, value: str) -> Crypto:
        parts = value.split(" ")
        if len(parts) < 3 or not all(parts) or len(parts[0]) > 9:
            raise ValueError(f"SDP crypto attribute needs tag, suite and key: {value!r}")
        keys = tuple(parts[2].split(";"))
        return cls(_number(parts[0], "crypto tag"), parts[1], keys, tuple(parts[3:]))

    def __str__(self) -> str:
        return " ".join(
            [str(self.tag), self.suite, ";".join(self.key_params), *self.session_params]
        )


@dataclass(frozen=True, slots=True)
class RtcpAttribute:
    """``a=rtcp:<port> [<nettype> <addrtype> <address>]`` (RFC 3605 §2.1)."""

    port: int
    connection: Connection | None = None

    @classmethod
    def parse(cls, value: str) -> RtcpAttribute:
        port, _, rest = value.partition(" ")
        return cls(_port(port), Connection.parse(rest) if rest else None)

    def __str__(self) -> str:
        return f"{self.port}" + (f" {self.connection}" if self.connection else "")


def _port(text: str) -> int:
    port = _number(text, "port")
    if port > 65535:
        raise ValueError(f"SDP port {port} is out of range")
    return port


class Direction(enum.Enum):
    """Media direction attributes (RFC 3264 §5.1); absent means sendrecv."""

    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    @property
    def sends(self) -> bool:
        return self in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def receives(self) -> bool:
        return self in (Direction.SENDRECV, Direction.RECVONLY)

    @classmethod
    def of(cls, sends: bool, receives: bool) -> Direction:
        if sends:
            return cls.SENDRECV if receives else cls.SENDONLY
        return cls.RECVONLY if receives else cls.INACTIVE

    def answer(self, ours: Direction | None = None) -> Direction:
        """The answer's direction to this offered one (RFC 3264 §6.1).

        "sendonly" is answered "recvonly" (or "inactive"), "recvonly" is answered "sendonly"
        (or "inactive"), "inactive" only "inactive"; ``ours`` limits what we want to do.
        """
        ours = ours or Direction.SENDRECV
        return Direction.of(ours.sends and self.receives, ours.receives and self.sends)


# --- descriptions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaDescription:
    """One ``m=`` section (§5.14) and its i/c/b/k/a lines; other lines kept in ``other_lines``."""

    media: str
    port: int
    port_count: int | None = None
    proto: str
    formats: tuple[str, ...]
    information: str | None = None
    connections: tuple[Connection, ...] = ()
    bandwidths: tuple[Bandwidth, ...] = ()
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[tuple[str, str], ...] = ()

    def attribute_values(self, name: str) -> tuple[str, ...]:
        """Values of every ``a=<name>``, in order (``""`` for a property attribute)."""
        return tuple(a.value or "" for a in self.attributes if a.name == name)

    def attribute(self, name: str) -> str | None:
        values = self.attribute_values(name)
        return values[0] if values else None

    def has_attribute(self, name: str) -> bool:
        return any(a.name == name for a in self.attributes)

    def fmtp(self, payload_type: int) -> str | None:
        for value in self.attribute_values("fmtp"):
            pt, _, params = value.partition(" ")
            if pt == str(payload_type):
                return params
        return None

    def rtpmap(self, payload_type: int) -> Codec | None:
        """The codec of ``payload_type``: its rtpmap, else the static table (RFC 3551 §6)."""
        for value in self.attribute_values("rtpmap"):
            pt, _, mapping = value.partition(" ")
            if pt == str(payload_type):
                return _rtpmap(payload_type, mapping, self.fmtp(payload_type))
        static = STATIC_PAYLOAD_TYPES.get(payload_type)
        return replace(static, fmtp=self.fmtp(payload_type)) if static else None

    def codecs(self) -> tuple[Codec, ...]:
        """The RTP formats in m= order; dynamic types without rtpmap are left out."""
        found = (self.rtpmap(int(f)) for f in self.formats if f.isascii() and f.isdigit())
        return tuple(codec for codec in found if codec is not None)

    @property
    def ptime(self) -> int | None:
        value = self.attribute("ptime")
        return None if value is None else _number(value, "ptime")

    @property
    def maxptime(self) -> int | None:
        value = self.attribute("maxptime")
        return None if value is None else _number(value, "maxptime")

    @property
    def direction(self) -> Direction | None:
        """This section's own direction attribute, None when absent."""
        return _direction(self.attributes)

    @property
    def rtcp(self) -> RtcpAttribute | None:
        value = self.attribute("rtcp")
        return None if value is None else RtcpAttribute.parse(value)

    @property
    def rtcp_mux(self) -> bool:
        return self.has_attribute("rtcp-mux")

    @property
    def crypto(self) -> tuple[Crypto, ...]:
        return tuple(Crypto.parse(value) for value in self.attribute_values("crypto"))

    def lines(self) -> list[str]:
        port = f"{self.port}" + (f"/{self.port_count}" if self.port_count is not None else "")
        out = [" ".join(["m=" + self.media, port, self.proto, *self.formats])]
        out += _optional("i", self.information)
        out += [f"c={c}" for c in self.connections] + [f"b={b}" for b in self.bandwidths]
        out += _optional("k", self.key)
        out += [f"a={a}" for a in self.attributes]
        return out + [f"{kind}={value}" for kind, value in self.other_lines]


def _rtpmap(payload_type: int, mapping: str, fmtp: str | None) -> Codec:
    parts = mapping.split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise ValueError(f"SDP rtpmap is not <encoding>/<clock>[/<channels>]: {mapping!r}")
    channels = _number(parts[2], "rtpmap channels") if len(parts) == 3 else 1
    return Codec(payload_type, parts[0], _number(parts[1], "rtpmap clock rate"), channels, fmtp)


# RFC 3551 §6 tables 4 and 5. G722 is 8000 here although it samples at 16 kHz (§4.5.2).
_STATIC = (
    "0 PCMU/8000, 3 GSM/8000, 4 G723/8000, 5 DVI4/8000, 6 DVI4/16000, 7 LPC/8000, 8 PCMA/8000,"
    " 9 G722/8000, 10 L16/44100/2, 11 L16/44100, 12 QCELP/8000, 13 CN/8000, 14 MPA/90000,"
    " 15 G728/8000, 16 DVI4/11025, 17 DVI4/22050, 18 G729/8000, 26 JPEG/90000, 31 H261/90000,"
    " 32 MPV/90000, 33 MP2T/90000, 34 H263/90000"
)
STATIC_PAYLOAD_TYPES: Mapping[int, Codec] = {
    int(pt): _rtpmap(int(pt), mapping, None)
    for pt, mapping in (item.split() for item in _STATIC.split(","))
}


def _direction(attributes: Iterable[Attribute]) -> Direction | None:
    return next((Direction(a.name) for a in attributes if a.name in _DIRECTIONS), None)


def _optional(kind: str, value: str | None) -> list[str]:
    return [] if value is None else [f"{kind}={value}"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionDescription:
    """A whole SDP body (RFC 4566 §5); lines of unknown type are kept in ``other_lines``."""

    version: int = 0
    origin: Origin
    session_name: str = "-"
    information: str | None = None
    uri: str | None = None
    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    connection: Connection | None = None
    bandwidths: tuple[Bandwidth, ...] = ()
    times: tuple[Timing, ...] = (Timing(),)
    time_zones: str | None = None
    key: str | None = None
    attributes: tuple[Attribute, ...] = ()
    other_lines: tuple[tuple[str, str], ...] = ()
    media: tuple[MediaDescription, ...] = ()

    @classmethod
    def parse(cls, text: str | bytes) -> SessionDescription:
        """Parse an SDP body; ``ValueError`` names the offending line."""
        if isinstance(text, bytes):
            try:
                text = text.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"SDP is not UTF-8: {exc.reason} at {exc.start}") from None
        sections: list[list[tuple[str, str]]] = [[]]
        for number, raw in enumerate(text.split("\n"), 1):
            line = raw.removesuffix("\r")
            if not line:
                continue
            match = _LINE.fullmatch(line)
            if match is None:
                raise ValueError(f"SDP line {number} is not <type>=<value>: {line[:60]!r}")
            if match[1] == "m":
                sections.append([])
            sections[-1].append((match[1], match[2]))
        return _build_session(sections[0], [_build_media(lines) for lines in sections[1:]])

    @property
    def direction(self) -> Direction | None:
        """The session-level direction attribute, None when absent."""
        return _direction(self.attributes)

    def media_direction(self, index: int) -> Direction:
        """Direction of m-line ``index``: its own attribute, else the session's (RFC 3264 §5.1)."""
        return self.media[index].direction or self.direction or Direction.SENDRECV

    def media_connection(self, index: int) -> Connection | None:
        """Where m-line ``index`` is received: its own c=, else the session's (§5.7)."""
        connections = self.media[index].connections
        return connections[0] if connections else self.connection

    def serialize(self) -> str:
        out = [f"v={self.version}", f"o={self.origin}", f"s={self.session_name}"]
        out += _optional("i", self.information) + _optional("u", self.uri)
        out += [f"e={e}" for e in self.emails] + [f"p={p}" for p in self.phones]
        out += _optional("c", None if self.connection is None else str(self.connection))
        out += [f"b={b}" for b in self.bandwidths]
        for timing in self.times:
            out += [f"t={timing.start} {timing.stop}"] + [f"r={r}" for r in timing.repeats]
        out += _optional("z", self.time_zones) + _optional("k", self.key)
        out += [f"a={a}" for a in self.attributes]
        out += [f"{kind}={value}" for kind, value in self.other_lines]
        for media in self.media:
            out += media.lines()
        return "\r\n".join(out) + "\r\n"

    def __bytes__(self) -> bytes:
        return self.serialize().encode("utf-8")


def _single(lines: list[tuple[str, str]], kind: str) -> str | None:
    values = [value for k, value in lines if k == kind]
    if len(values) > 1:
        raise ValueError(f"SDP has more than one {kind}= line in a section")
    return values[0] if values else None


def _build_session(
    lines: list[tuple[str, str]], media: list[MediaDescription]
) -> SessionDescription:
    if not lines or lines[0] != ("v", "0"):
        raise ValueError("SDP must start with v=0")
    origin, name = _single(lines, "o"), _single(lines, "s")
    if origin is None or name is None:
        raise ValueError("SDP needs an o= and an s= line")
    _single(lines, "v")
    connection = _single(lines, "c")
    return SessionDescription(
        origin=Origin.parse(origin),
        session_name=name,
        information=_single(lines, "i"),
        uri=_single(lines, "u"),
        emails=tuple(value for kind, value in lines if kind == "e"),
        phones=tuple(value for kind, value in lines if kind == "p"),
        connection=None if connection is None else Connection.parse(connection),
        bandwidths=tuple(Bandwidth.parse(value) for kind, value in lines if kind == "b"),
        times=_timings(lines),
        time_zones=_single(lines, "z"),
        key=_single(lines, "k"),
        attributes=tuple(Attribute.parse(value) for kind, value in lines if kind == "a"),
        other_lines=tuple((k, v) for k, v in lines if k not in _SESSION_KINDS),
        media=tuple(media),
    )


def _timings(lines: list[tuple[str, str]]) -> tuple[Timing, ...]:
    times: list[Timing] = []
    for kind, value in lines:
        if kind == "t":
            start, stop = _fields(value, 2, "t")
            times.append(Timing(_number(start, "start time"), _number(stop, "stop time")))
        elif kind == "r":
            if not times:
                raise ValueError("SDP r= line before any t= line")
            times[-1] = replace(times[-1], repeats=(*times[-1].repeats, value))
    return tuple(times)


def _build_media(lines: list[tuple[str, str]]) -> MediaDescription:
    parts = lines[0][1].split(" ")
    if len(parts) < 3 or not all(parts):
        raise ValueError(f"SDP m= line needs media, port and proto: {lines[0][1]!r}")
    port, slash, count = parts[1].partition("/")
    rest = lines[1:]
    return MediaDescription(
        media=parts[0],
        port=_port(port),
        port_count=_number(count, "port count") if slash else None,
        proto=parts[2],
        formats=tuple(parts[3:]),
        information=_single(rest, "i"),
        connections=tuple(Connection.parse(value) for kind, value in rest if kind == "c"),
        bandwidths=tuple(Bandwidth.parse(value) for kind, value in rest if kind == "b"),
        key=_single(rest, "k"),
        attributes=tuple(Attribute.parse(value) for kind, value in rest if kind == "a"),
        other_lines=tuple((k, v) for k, v in rest if k not in _MEDIA_KINDS),
    )


@functools.lru_cache(maxsize=256)
def parse_cached(body: bytes) -> SessionDescription:
    """:meth:`SessionDescription.parse` of ``body``, remembered: one call set-up reads each
    body several times (anchoring, codecs, SRTP, the codec plan), and descriptions are
    immutable, so they can be shared. Errors are not remembered."""
    return SessionDescription.parse(body)


def parse_or_none(body: bytes) -> SessionDescription | None:
    """The description of ``body``, or None when it is empty or not SDP (logged: a body pbx
    cannot read is passed on or refused by the caller, never an error of pbx)."""
    if not body:
        return None
    try:
        return parse_cached(body)
    except ValueError as exc:
        log.info("SDP not understood (%s)", exc)
        return None
