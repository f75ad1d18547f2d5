"""SIP, SIPS, tel and other URIs (RFC 3261 §19.1, §25.1; RFC 3966 for tel).

Owns: the URI value objects (immutable), ``parse_uri`` and the canonical serialisation with
%HH escaping (RFC 3261 §19.1.2). User, password, parameter and header parts are stored
unescaped and re-escaped on output; octets that are not UTF-8 survive as surrogate escapes.
Must not import: twisted, socket, sqlite3, flask, pbx.store.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass, replace
from functools import lru_cache
from urllib.parse import quote, unquote

from pbx.sip import grammar
from pbx.sip.errors import RemoteProtocolError

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "parse_uri"]

log = logging.getLogger(__name__)

Params = tuple[tuple[str, str | None], ...]

_SCHEME_RE = re.compile(grammar.SCHEME)
_SIP_REST_RE = re.compile(grammar.SIP_URI_REST)
_TEL_NUMBER_RE = re.compile(grammar.TEL_NUMBER)
_TEL_PARAM_RE = re.compile(rf"[{grammar.PARAM_CHARS}%]+(?:=[{grammar.PARAM_CHARS}%]+)?")
# Anything that can never be inside a URI on the wire (RFC 3986 §2 + RFC 3261 §19.1.1).
_ABSOLUTE_BAD_RE = re.compile(r"[\x00-\x20\x7f<>\"]")

# Characters that may appear unescaped in each URI component (RFC 3261 §25.1); everything
# else is written as %HH of its UTF-8 octets (§19.1.2).
_MARK = "-_.!~*'()"
_USER_SAFE = _MARK + "&=+$,;?/"
_PASSWORD_SAFE = _MARK + "&=+$,"
_PARAM_SAFE = _MARK + "[]/:&+$"
_HEADER_SAFE = _MARK + "[]/?:+$"


def _plain_re(safe: str) -> re.Pattern[str]:
    return re.compile("[A-Za-z0-9" + re.escape(safe) + "]*")


_USER_PLAIN = _plain_re(_USER_SAFE)
_PASSWORD_PLAIN = _plain_re(_PASSWORD_SAFE)
_PARAM_PLAIN = _plain_re(_PARAM_SAFE)
_HEADER_PLAIN = _plain_re(_HEADER_SAFE)


def _escape(text: str, plain: re.Pattern[str], safe: str) -> str:
    if plain.fullmatch(text):
        return text
    return quote(text, safe=safe, encoding="utf-8", errors="surrogateescape")


def _unescape(text: str) -> str:
    if "%" not in text:
        return text
    return unquote(text, encoding="utf-8", errors="surrogateescape")


def _format_params(params: Params) -> str:
    parts = []
    for name, value in params:
        name = _escape(name, _PARAM_PLAIN, _PARAM_SAFE)
        if value is None:
            parts.append(";" + name)
        else:
            parts.append(f";{name}={_escape(value, _PARAM_PLAIN, _PARAM_SAFE)}")
    return "".join(parts)


def _find_param(params: Params, name: str) -> tuple[bool, str | None]:
    name = name.lower()
    for key, value in params:
        if key == name:
            return True, value
    return False, None


def _set_param(params: Params, name: str, value: str | None) -> Params:
    name = name.lower()
    out = [(k, v) for k, v in params if k != name]
    if len(out) == len(params):
        return (*params, (name, value))
    # keep the position of the first occurrence
    index = next(i for i, (k, _) in enumerate(params) if k == name)
    out.insert(index, (name, value))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class SipUri:
    """A sip: or sips: URI (RFC 3261 §19.1.1). Parts are stored unescaped."""

    scheme: str = "sip"
    user: str | None = None
    password: str | None = None
    host: str = ""
    port: int | None = None
    params: Params = ()
    headers: tuple[tuple[str, str], ...] = ()

    def param(self, name: str) -> str | None:
        """Value of a uri-parameter (None when absent or valueless)."""
        return _find_param(self.params, name)[1]

    def has_param(self, name: str) -> bool:
        return _find_param(self.params, name)[0]

    @property
    def transport(self) -> str | None:
        value = self.param("transport")
        return value.lower() if value is not None else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def with_param(self, name: str, value: str | None) -> SipUri:
        """Set (or add) one uri-parameter; ``None`` makes it valueless (e.g. ``lr``)."""
        return replace(self, params=_set_param(self.params, name, value))

    def with_params(self, **changes: str | None) -> SipUri:
        params = self.params
        for name, value in changes.items():
            params = _set_param(params, name, value)
        return replace(self, params=params)

    def without_params(self, *names: str) -> SipUri:
        drop = {n.lower() for n in names}
        return replace(self, params=tuple(p for p in self.params if p[0] not in drop))

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(_escape(self.user, _USER_PLAIN, _USER_SAFE))
            if self.password is not None:
                out.append(":" + _escape(self.password, _PASSWORD_PLAIN, _PASSWORD_SAFE))
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        if self.params:
            out.append(_format_params(self.params))
        if self.headers:
            out.append("?")
            out.append(
                "&".join(
                    _escape(n, _HEADER_PLAIN, _HEADER_SAFE)
                    + "="
                    + _escape(v, _HEADER_PLAIN, _HEADER_SAFE)
                    for n, v in self.headers
                )
            )
        return "".join(out)


@dataclass(frozen=True, slots=True)
class TelUri:
    """A tel: URI (RFC 3966); the number is kept as written (visual separators included)."""

    number: str
    params: Params = ()

    def param(self, name: str) -> str | None:
        return _find_param(self.params, name)[1]

    def __str__(self) -> str:
        return "tel:" + self.number + _format_params(self.params)


@dataclass(frozen=True, slots=True)
class AbsoluteUri:
    """Any other absoluteURI (RFC 3261 §25.1), kept opaque."""

    scheme: str
    rest: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.rest}"


Uri = SipUri | TelUri | AbsoluteUri


def _bad(text: str, why: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"invalid URI {text[:200]!r}: {why}")


def _parse_host(host: str, text: str) -> str:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _bad(text, "bad IPv6 reference") from None
    return host.lower()


def _split_params(text: str) -> Params:
    """';a=b;c' (already validated) -> (('a', 'b'), ('c', None)), unescaped, names lower."""
    out: list[tuple[str, str | None]] = []
    for item in text[1:].split(";"):
        name, eq, value = item.partition("=")
        out.append((_unescape(name).lower(), _unescape(value) if eq else None))
    return tuple(out)


def _parse_sip(scheme: str, rest: str, text: str) -> SipUri:
    m = _SIP_REST_RE.fullmatch(rest)
    if m is None:
        raise _bad(text, "not a SIP URI")
    user, password, host, port, params, headers = m.group(
        "user", "password", "host", "port", "params", "headers"
    )
    port_no = None
    if port is not None:
        port_no = int(port)
        if port_no > 65535:
            raise _bad(text, "port out of range")
    header_items: tuple[tuple[str, str], ...] = ()
    if headers:
        header_items = tuple(
            (_unescape(n), _unescape(v))
            for n, _, v in (h.partition("=") for h in headers.split("&"))
        )
    return SipUri(
        scheme=scheme,
        user=_unescape(user) if user is not None else None,
        password=_unescape(password) if password is not None else None,
        host=_parse_host(host, text),
        port=port_no,
        params=_split_params(params) if params else (),
        headers=header_items,
    )


def _parse_tel(rest: str, text: str) -> TelUri:
    number, semi, params = rest.partition(";")
    if not _TEL_NUMBER_RE.fullmatch(number):
        raise _bad(text, "bad telephone-subscriber")
    if not semi:
        return TelUri(number)
    if not all(_TEL_PARAM_RE.fullmatch(p) for p in params.split(";")):
        raise _bad(text, "bad tel parameter")
    return TelUri(number, _split_params(";" + params))


# Parsed URIs are immutable, so short ones are memoised: From/To/Contact/Request-URIs repeat
# across requests. Long texts bypass the cache so that it stays small (at most ~1 MB of keys).
_CACHE_MAX_TEXT = 256


def parse_uri(text: str) -> Uri:
    """Parse a URI as it appears in a Request-URI or inside <...> (no surrounding LWS).

    Raises RemoteProtocolError when the text is not a URI (RFC 3261 §25.1).
    """
    if len(text) <= _CACHE_MAX_TEXT:
        return _parse_uri_cached(text)
    return _parse_uri(text)


def _parse_uri(text: str) -> Uri:
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME_RE.fullmatch(scheme):
        raise _bad(text, "no scheme")
    scheme = scheme.lower()
    if scheme == "sip" or scheme == "sips":
        return _parse_sip(scheme, rest, text)
    if scheme == "tel":
        return _parse_tel(rest, text)
    if not rest or _ABSOLUTE_BAD_RE.search(rest):
        raise _bad(text, "bad absolute URI")
    return AbsoluteUri(scheme, rest)


_parse_uri_cached = lru_cache(maxsize=4096)(_parse_uri)
