"""Typed SIP header values and header-name handling (RFC 3261 §7.3, §20, §25.1).

Owns: header-name canonicalisation and compact forms (§7.3.3), the comma-list splitter
(§7.3.1), the Headers multi-map of a message (with its cache of parsed values), the immutable
value objects Via, NameAddr (From/To/Contact/Route...), CSeq, plus the generic auth-param
tokenizer used by pbx.sip.auth. Parsers accept LWS where §25.1 allows it
(SWS around ";", "=", "/", ":") and raise RemoteProtocolError on anything else.
Must not import: twisted, socket, sqlite3, flask, pbx.store.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Literal, TypeVar, cast

from pbx.sip import grammar
from pbx.sip.errors import LocalProtocolError, RemoteProtocolError
from pbx.sip.uri import Uri, parse_uri

__all__ = [
    "COMPACT_FORMS",
    "CSeq",
    "Headers",
    "LIST_HEADERS",
    "NameAddr",
    "Via",
    "canonical_name",
    "format_auth_params",
    "format_params",
    "header_key",
    "name_info",
    "parse_auth_params",
    "parse_contacts",
    "parse_params",
    "quote_string",
    "split_list",
    "stored_name",
    "unquote_string",
]

log = logging.getLogger(__name__)

T = TypeVar("T")
_MISSING = object()

Params = tuple[tuple[str, str | None], ...]

# RFC 3261 §7.3.3 and the IANA SIP header registry (compact forms).
COMPACT_FORMS: dict[str, str] = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "e": "Content-Encoding",
    "k": "Supported",
    "s": "Subject",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "u": "Allow-Events",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN_NAMES = (
    "Accept Accept-Contact Accept-Encoding Accept-Language Alert-Info Allow Allow-Events "
    "Authentication-Info Authorization Call-ID Call-Info Contact Content-Disposition "
    "Content-Encoding Content-Language Content-Length Content-Type CSeq Date Error-Info Event "
    "Expires From History-Info Identity In-Reply-To Max-Forwards Min-Expires Min-SE "
    "MIME-Version Organization P-Asserted-Identity P-Preferred-Identity Path Priority "
    "Privacy Proxy-Authenticate Proxy-Authorization Proxy-Require RAck Reason Record-Route "
    "Refer-To Referred-By Replaces Reply-To Require Retry-After Route RSeq Server "
    "Service-Route Session-Expires SIP-ETag SIP-If-Match Subject Subscription-State "
    "Supported Timestamp To Unsupported User-Agent Via Warning WWW-Authenticate"
).split()
_CANONICAL: dict[str, str] = {n.lower(): n for n in _KNOWN_NAMES}
_COMPACT_KEYS: dict[str, str] = {k: v.lower() for k, v in COMPACT_FORMS.items()}

# Headers whose values are comma-separated lists (RFC 3261 §7.3.1, §20).
LIST_HEADERS: frozenset[str] = frozenset(
    n.lower()
    for n in (
        "Accept Accept-Encoding Accept-Language Alert-Info Allow Allow-Events Call-Info "
        "Contact Content-Encoding Content-Language Error-Info In-Reply-To Path "
        "P-Asserted-Identity P-Preferred-Identity Proxy-Require Record-Route Require Route "
        "Service-Route Supported Unsupported Via Warning"
    ).split()
)


def header_key(name: str) -> str:
    """Lookup key of a header name: lower-case long form ("i" -> "call-id")."""
    key = name.lower()
    if len(key) == 1:
        return _COMPACT_KEYS.get(key, key)
    return key


def canonical_name(name: str) -> str:
    """Canonical spelling: "call-id"/"i" -> "Call-ID", "cseq" -> "CSeq", "x-foo" -> "X-Foo"."""
    key = header_key(name)
    known = _CANONICAL.get(key)
    if known is not None:
        return known
    return "-".join(part.capitalize() for part in key.split("-"))


def stored_name(name: str) -> str:
    """Name to keep in a header list: canonical for known headers, as given otherwise."""
    return _CANONICAL.get(header_key(name), name)


_NAME_INFO: dict[str, tuple[str, str]] = {}
_NAME_INFO_MAX = 2048


def name_info(name: str) -> tuple[str, str]:
    """(header_key, stored_name) of a header name, memoised (bounded) for the parser."""
    info = _NAME_INFO.get(name)
    if info is None:
        key = header_key(name)
        info = (key, _CANONICAL.get(key, name))
        if len(_NAME_INFO) < _NAME_INFO_MAX:
            _NAME_INFO[name] = info
    return info


# ---------------------------------------------------------------------------------------------
# lists and parameters

# possessive quantifiers: a value with an unterminated quote must fail in linear time
_LIST_ITEM_RE = re.compile(
    r'[ \t]*+((?:[^,"<]++|"(?:[^"\\]++|\\.)*+"|<[^>]*+>)*+)(?:,|$)',
    re.S,
)
_GENERIC_PARAM_RE = re.compile(grammar.GENERIC_PARAM)
_SIMPLE_PARAMS_RE = re.compile(rf"(?:;{grammar.TOKEN}(?:=[{grammar.TOKEN_CHARS}\[\]:]+)?)+")
_TOKEN_RE = re.compile(grammar.TOKEN)
_QUOTED_STRING_RE = re.compile(grammar.QUOTED_STRING)
_QUOTED_PAIR_RE = re.compile(r"\\(.)", re.S)
_ESCAPE_QUOTED_RE = re.compile(r'["\\\x00-\x08\x0b\x0c\x0e-\x1f\x7f]')


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value (RFC 3261 §7.3.1), respecting quoted strings
    and <...>; empty elements are dropped. Unbalanced quotes/brackets -> RemoteProtocolError."""
    if "," not in value:
        item = value.strip(" \t")
        if '"' in item or "<" in item:
            _check_balanced(item)
        return [item] if item else []
    if '"' not in value and "<" not in value:
        return [s for s in (p.strip(" \t") for p in value.split(",")) if s]
    out: list[str] = []
    pos, end = 0, len(value)
    while pos < end:
        m = _LIST_ITEM_RE.match(value, pos)
        if m is None or m.end() == pos:
            raise RemoteProtocolError(f"unbalanced quote or bracket in {value[:200]!r}")
        item = m.group(1).strip(" \t")
        if item:
            out.append(item)
        pos = m.end()
    return out


def _check_balanced(value: str) -> None:
    m = _LIST_ITEM_RE.match(value)
    if m is None or m.end() != len(value):
        raise RemoteProtocolError(f"unbalanced quote or bracket in {value[:200]!r}")


def parse_params(text: str) -> Params:
    """';a=b ; c' -> (('a', 'b'), ('c', None)); names lower-cased, quoted values kept quoted.

    generic-param = token [ EQUAL gen-value ] (RFC 3261 §25.1), SEMI/EQUAL allow SWS."""
    out: list[tuple[str, str | None]] = []
    if _SIMPLE_PARAMS_RE.fullmatch(text):  # fast path: no LWS, no quoted-string
        for item in text[1:].split(";"):
            name, eq, value = item.partition("=")
            out.append((name.lower(), value if eq else None))
        return tuple(out)
    pos, end = 0, len(text)
    while pos < end:
        m = _GENERIC_PARAM_RE.match(text, pos)
        if m is None:
            if not text[pos:].strip(" \t"):
                break
            raise RemoteProtocolError(f"bad header parameter in {text[:200]!r}")
        out.append((m.group("name").lower(), m.group("value")))
        pos = m.end()
    return tuple(out)


def format_params(params: Params) -> str:
    return "".join(f";{n}" if v is None else f";{n}={v}" for n, v in params)


def _find(params: Params, name: str) -> tuple[bool, str | None]:
    name = name.lower()
    for key, value in params:
        if key == name:
            return True, value
    return False, None


def _set(params: Params, name: str, value: str | None) -> Params:
    name = name.lower()
    for i, (key, _) in enumerate(params):
        if key == name:
            return (*params[:i], (name, value), *(p for p in params[i + 1 :] if p[0] != name))
    return (*params, (name, value))


def unquote_string(text: str) -> str:
    """'"a \\"b\\""' -> 'a "b"' (quoted-string without its quotes, quoted-pairs resolved)."""
    inner = text[1:-1]
    return _QUOTED_PAIR_RE.sub(r"\1", inner) if "\\" in inner else inner


def quote_string(text: str) -> str:
    """Inverse of unquote_string; CR/LF cannot be represented (RFC 3261 §25.1)."""
    if "\r" in text or "\n" in text:
        raise LocalProtocolError("CR/LF cannot appear in a quoted-string")
    return '"' + _ESCAPE_QUOTED_RE.sub(lambda m: "\\" + m.group(0), text) + '"'


# ---------------------------------------------------------------------------------------------
# Via

_VIA_RE = re.compile(grammar.VIA_PARM, re.S)


def _parse_port(port: str | None) -> int | None:
    if port is None:
        return None
    value = int(port)
    if value > 65535:
        raise RemoteProtocolError(f"port out of range: {port}")
    return value


def _check_host(host: str) -> str:
    if host.startswith("["):
        parse_uri(f"sip:{host}")  # validates the IPv6 reference
    return host.lower()


@dataclass(frozen=True, slots=True)
class Via:
    """One via-parm (RFC 3261 §20.42): "SIP/2.0/UDP host:port;branch=..."."""

    transport: str
    host: str
    port: int | None = None
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _find(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _find(self.params, name)[0]

    @property
    def branch(self) -> str | None:
        return self.param("branch")

    @property
    def received(self) -> str | None:
        return self.param("received")

    @property
    def rport(self) -> str | None:
        """RFC 3581: "" when present without a value, None when absent."""
        present, value = _find(self.params, "rport")
        if not present:
            return None
        return "" if value is None else value

    @property
    def maddr(self) -> str | None:
        return self.param("maddr")

    def with_param(self, name: str, value: str | None) -> Via:
        return replace(self, params=_set(self.params, name, value))

    @classmethod
    def parse(cls, text: str) -> Via:
        m = _VIA_RE.fullmatch(text)
        if m is None:
            raise RemoteProtocolError(f"bad Via {text[:200]!r}")
        transport, host, port, params = m.groups()
        return cls(
            transport.upper(),
            _check_host(host) if host[0] == "[" else host.lower(),
            _parse_port(port) if port is not None else None,
            parse_params(params) if params else (),
        )

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"SIP/2.0/{self.transport} {self.host}{port}{format_params(self.params)}"


# ---------------------------------------------------------------------------------------------
# NameAddr

_NAME_ADDR_RE = re.compile(
    rf"(?:(?P<quoted>{grammar.QUOTED_STRING})|(?P<tokens>{grammar.DISPLAY_TOKENS}))?"
    r"[ \t]*<(?P<uri>[^<>]*)>(?P<params>.*)",
    re.S,
)


@dataclass(frozen=True, slots=True)
class NameAddr:
    """name-addr / addr-spec plus header parameters (From, To, Contact, Route, ...).

    ``display_name`` is unquoted; parameter values are kept as written (a quoted value keeps
    its quotes, e.g. +sip.instance)."""

    uri: Uri
    display_name: str | None = None
    params: Params = ()

    @property
    def tag(self) -> str | None:
        return self.param("tag")

    def param(self, name: str) -> str | None:
        return _find(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _find(self.params, name)[0]

    def with_param(self, name: str, value: str | None) -> NameAddr:
        return replace(self, params=_set(self.params, name, value))

    def without_param(self, name: str) -> NameAddr:
        name = name.lower()
        return replace(self, params=tuple(p for p in self.params if p[0] != name))

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """RFC 3261 §20.10/§25.1: (name-addr / addr-spec) *(SEMI param).

        Results are immutable and cached: To and Contact values repeat across requests."""
        if len(text) <= _CACHE_MAX_TEXT:
            return _parse_name_addr_cached(text)
        return _parse_name_addr(text)

    def __str__(self) -> str:
        out = f"<{self.uri}>"
        if self.display_name is not None:
            out = quote_string(self.display_name) + " " + out
        if self.params:
            out += format_params(self.params)
        return out


def _parse_name_addr(text: str) -> NameAddr:
    """Uncached body of NameAddr.parse."""
    s = text.strip(" \t")
    lt = s.find("<")
    if lt >= 0 and (lt == 0 or s[0] == '"' or ":" not in s[:lt]):
        m = _NAME_ADDR_RE.fullmatch(s)
        if m is None:
            raise RemoteProtocolError(f"bad name-addr {text[:200]!r}")
        quoted, tokens, uri_text, params = m.group("quoted", "tokens", "uri", "params")
        display = unquote_string(quoted) if quoted is not None else tokens
    else:
        # addr-spec: ";" starts header params, so the URI cannot contain ";", "?" or ","
        # (§20.10: such URIs MUST be in angle brackets; RFC 4475 §3.1.2.13).
        semi = s.find(";")
        uri_text, params = (s, "") if semi < 0 else (s[:semi].rstrip(" \t"), s[semi:])
        if "?" in uri_text or "," in uri_text:
            raise RemoteProtocolError(f"addr-spec needs <...>: {text[:200]!r}")
        display = None
    return NameAddr(
        uri=parse_uri(uri_text),
        display_name=display,
        params=parse_params(params) if params else (),
    )


# short values only, so that the cache stays small whatever peers send
_CACHE_MAX_TEXT = 256
_parse_name_addr_cached = lru_cache(maxsize=4096)(_parse_name_addr)


def parse_contacts(value: str) -> list[NameAddr] | Literal["*"]:
    """Contact header value: "*" or a list of name-addr/addr-spec (RFC 3261 §20.10)."""
    if value.strip(" \t") == "*":
        return "*"
    items = split_list(value)
    if not items:
        raise RemoteProtocolError("empty Contact")
    return [NameAddr.parse(item) for item in items]


# ---------------------------------------------------------------------------------------------
# CSeq

_CSEQ_RE = re.compile(grammar.CSEQ_VALUE)
MAX_CSEQ = 2**31 - 1  # RFC 3261 §8.1.1.5: "MUST be ... less than 2**31"


@dataclass(frozen=True, slots=True)
class CSeq:
    """CSeq (RFC 3261 §20.16): sequence number 0..2**31-1 and method."""

    seq: int
    method: str

    @classmethod
    def parse(cls, text: str) -> CSeq:
        m = _CSEQ_RE.fullmatch(text)
        if m is None:
            raise RemoteProtocolError(f"bad CSeq {text[:200]!r}")
        seq = m.group("seq")
        if len(seq) > 10 or int(seq) > MAX_CSEQ:
            raise RemoteProtocolError(f"CSeq number out of range: {seq[:40]}")
        return cls(int(seq), m.group("method"))

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"


# ---------------------------------------------------------------------------------------------
# auth-params (RFC 3261 §25.1 challenge/credentials; semantics live in pbx.sip.auth)

_AUTH_PARAM_RE = re.compile(grammar.AUTH_PARAM)
_AUTH_COMMA_RE = re.compile(r"[ \t]*,")


def parse_auth_params(value: str) -> tuple[str, dict[str, str]]:
    """'Digest a="b", c=d' -> ("Digest", {"a": "b", "c": "d"}); keys lower-cased."""
    text = value.strip(" \t")
    scheme, _, rest = text.partition(" ")
    if not _TOKEN_RE.fullmatch(scheme):
        raise RemoteProtocolError(f"bad auth scheme in {value[:200]!r}")
    params: dict[str, str] = {}
    pos, end = 0, len(rest)
    while pos < end:
        m = _AUTH_PARAM_RE.match(rest, pos)
        if m is None:
            if not rest[pos:].strip(" \t,"):
                break
            raise RemoteProtocolError(f"bad auth-param in {value[:200]!r}")
        raw = m.group("value")
        params[m.group("name").lower()] = unquote_string(raw) if raw[0] == '"' else raw
        pos = m.end()
        comma = _AUTH_COMMA_RE.match(rest, pos)
        if comma is not None:
            pos = comma.end()
        elif rest[pos:].strip(" \t"):
            raise RemoteProtocolError(f"missing comma in {value[:200]!r}")
    return scheme, params


def format_auth_params(scheme: str, params: list[tuple[str, str, bool]]) -> str:
    """("Digest", [("realm", "x", True), ("algorithm", "MD5", False)]) ->
    'Digest realm="x", algorithm=MD5'."""
    parts = [f"{n}={quote_string(v)}" if quoted else f"{n}={v}" for n, v, quoted in params]
    return f"{scheme} {', '.join(parts)}"


# ---------------------------------------------------------------------------------------------
# Headers: the ordered multi-map of a message (re-exported by pbx.sip.message)


class Headers:
    """Ordered, case-insensitive multi-map of header fields; compact names are expanded.

    Known header names are stored in canonical spelling, unknown ones as given."""

    __slots__ = ("_items", "_index", "_cache")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []  # (key, name, value)
        self._index: dict[str, list[str]] | None = None
        self._cache: dict[str, object] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _trusted(
        cls, triples: list[tuple[str, str, str]], index: dict[str, list[str]] | None = None
    ) -> Headers:
        """Build from already validated (key, name, value) triples (parser fast path)."""
        self = cls.__new__(cls)
        self._items = triples
        self._index = index
        self._cache = {}
        return self

    def _changed(self) -> None:
        self._index = None
        if self._cache:
            self._cache = {}

    def _lookup(self) -> dict[str, list[str]]:
        index = self._index
        if index is None:
            index = {}
            for key, _, value in self._items:
                values = index.get(key)
                if values is None:
                    index[key] = [value]
                else:
                    values.append(value)
            self._index = index
        return index

    @staticmethod
    def _checked(name: str, value: str) -> tuple[str, str, str]:
        if not _TOKEN_RE.fullmatch(name):
            raise LocalProtocolError(f"invalid header name {name!r}")
        if "\r" in value or "\n" in value:
            raise LocalProtocolError(f"CR/LF in value of header {name}")
        return header_key(name), stored_name(name), value.strip(" \t")

    def get(self, name: str) -> str | None:
        """First value of the header (the whole line value), or None."""
        values = self._lookup().get(header_key(name))
        return values[0] if values else None

    def get_lines(self, name: str) -> list[str]:
        """Every line value of the header, without splitting comma lists."""
        return list(self._lookup().get(header_key(name), ()))

    def get_all(self, name: str) -> list[str]:
        """Every value; comma-separated list headers (Via, Contact, Route, ...) are split."""
        key = header_key(name)
        values = self._lookup().get(key, ())
        if key not in LIST_HEADERS:
            return list(values)
        out: list[str] = []
        for value in values:
            if "," in value:
                out.extend(split_list(value))
            elif value:
                out.append(value)
        return out

    def count(self, name: str) -> int:
        return len(self._lookup().get(header_key(name), ()))

    def add(self, name: str, value: str) -> None:
        self._items.append(self._checked(name, value))
        self._changed()

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence by one value, at the position of the first one."""
        item = self._checked(name, value)
        key = item[0]
        out: list[tuple[str, str, str]] = []
        placed = False
        for old in self._items:
            if old[0] != key:
                out.append(old)
            elif not placed:
                out.append(item)
                placed = True
        if not placed:
            out.append(item)
        self._items = out
        self._changed()

    def prepend(self, name: str, value: str) -> None:
        """Insert above the first occurrence of the same header (e.g. a new top Via)."""
        item = self._checked(name, value)
        key = item[0]
        pos = next((i for i, old in enumerate(self._items) if old[0] == key), 0)
        self._items.insert(pos, item)
        self._changed()

    def remove(self, name: str) -> None:
        key = header_key(name)
        self._items = [item for item in self._items if item[0] != key]
        self._changed()

    def items(self) -> list[tuple[str, str]]:
        return [(name, value) for _, name, value in self._items]

    def copy(self) -> Headers:
        return Headers._trusted(list(self._items))

    def cached(self, key: str, parse: Callable[[Headers], T]) -> T:
        """Typed value computed by ``parse`` once until the headers change."""
        value = self._cache.get(key, _MISSING)
        if value is _MISSING:
            value = self._cache[key] = parse(self)
        return cast(T, value)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and header_key(name) in self._lookup()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
