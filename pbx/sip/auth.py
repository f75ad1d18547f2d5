"""SIP digest authentication (RFC 3261 §22, RFC 7616 semantics, RFC 8760 for SHA-256).

Owns: HA1 computation, digest challenges (WWW-/Proxy-Authenticate values), stateless nonces,
Authorization/Proxy-Authorization parsing and response verification with nonce-count replay
protection.

Sans-IO: must not import twisted, socket, sqlite3, flask or pbx.store. The only project import
is pbx.sip.errors. Callers look up the stored HA1 for ``resp.algorithm`` themselves and decide
what to answer (401/407/403) and whether a FAILED result counts towards a ban (pbx.sip.guard).

Design notes:
- The two challenges of one response (SHA-256 first, then MD5, RFC 8760 §2.4) share one nonce:
  the client answers exactly one of them, so one nonce-count sequence per nonce is enough.
- A nonce is base64url(timestamp || 16 random bytes || HMAC-SHA256(secret, timestamp || random)
  truncated to 24 bytes). It verifies without server state; only nonce-counts are remembered.
- Nonce-counts are kept for at most ``MAX_TRACKED_NONCES`` (100 000) nonces, expired ones are
  evicted first and then the oldest; at ~250 bytes an entry that is ~25 MB worst case.
- The digest-uri is not compared with the Request-URI here (RFC 3261 §22.4 leaves the match
  rules to the server); the caller may do that.
- Not supported: MD5-sess/SHA-256-sess, userhash, ``username*`` (RFC 7616 §3.4.4).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from pbx.sip.errors import RemoteProtocolError

log = logging.getLogger(__name__)

_HASHES: dict[str, str] = {"MD5": "md5", "SHA-256": "sha256"}  # SIP name -> hashlib name
#: Algorithms offered, strongest first (RFC 8760 §2.4).
CHALLENGE_ALGORITHMS: tuple[str, ...] = ("SHA-256", "MD5")
MAX_TRACKED_NONCES = 100_000
MAX_HEADER_LENGTH = 8192

_RANDOM_BYTES = 16
_MAC_BYTES = 24
_TS = struct.Struct(">d")
_NONCE_BYTES = _TS.size + _RANDOM_BYTES + _MAC_BYTES  # 48 bytes -> 64 base64 chars, no padding
_NONCE_RE = re.compile(r"[A-Za-z0-9_-]{64}")


def compute_ha1(username: str, realm: str, password: str, algorithm: str) -> str:
    """Return hex H(username ":" realm ":" password) (RFC 7616 §3.4.2, RFC 8760 §2)."""
    return _hash(algorithm, f"{username}:{realm}:{password}")


def compute_response(
    ha1: str,
    nonce: str,
    method: str,
    uri: str,
    algorithm: str = "MD5",
    qop: str | None = None,
    nc: str | None = None,
    cnonce: str | None = None,
    body: bytes = b"",
) -> str:
    """The request-digest (RFC 3261 §22.4, RFC 7616 §3.4.1); also usable by a UAC.

    qop None gives the RFC 2069 form H(HA1:nonce:HA2) that RFC 3261 keeps for compatibility.
    """
    if qop is not None and qop.lower() == "auth-int":
        ha2 = _hash(algorithm, f"{method}:{uri}:{_hash(algorithm, body)}")
    else:
        ha2 = _hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return _hash(algorithm, f"{ha1.lower()}:{nonce}:{ha2}")
    return _hash(algorithm, f"{ha1.lower()}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")


def _hash(algorithm: str, data: str | bytes) -> str:
    try:
        name = _HASHES[algorithm.upper()]
    except KeyError:
        raise ValueError(f"unsupported digest algorithm {algorithm!r}") from None
    return hashlib.new(name, data.encode() if isinstance(data, str) else data).hexdigest()


class AuthResult(Enum):
    """Outcome of :meth:`DigestAuthenticator.verify`."""

    OK = "ok"
    STALE = "stale"  # right password, expired nonce: re-challenge with stale=true, not a failure
    FAILED = "failed"  # wrong credentials, unknown user, wrong realm or forged nonce
    REPLAY = "replay"  # nonce-count not above the last accepted one (RFC 7616 §3.4.5)


@dataclass(frozen=True, slots=True)
class DigestConfig:
    realm: str = "pbx"
    nonce_lifetime: float = 300.0
    accept_no_qop: bool = True  # RFC 2069 style responses (RFC 3261 §22.4 keeps them legal)
    # Challenges offered, strongest first (RFC 8760 §2.4). Some old UAs (and SIPp) only read the
    # first challenge and know only MD5: a site with such phones sets ("MD5",).
    algorithms: tuple[str, ...] = CHALLENGE_ALGORITHMS

    def __post_init__(self) -> None:
        if not self.algorithms or any(a not in CHALLENGE_ALGORITHMS for a in self.algorithms):
            raise ValueError(f"digest algorithms must be taken from {CHALLENGE_ALGORITHMS}")


@dataclass(frozen=True, slots=True)
class DigestResponse:
    """The parameters of an Authorization / Proxy-Authorization Digest value."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str = "MD5"  # upper-cased; RFC 7616 §3.4: absent means MD5
    qop: str | None = None  # as sent (it is hashed verbatim)
    nc: str | None = None  # as sent (1-8 hex digits), needed verbatim for the hash
    cnonce: str | None = None
    opaque: str | None = None


# --- auth-param parsing (RFC 3261 §25.1 / §22.4, RFC 7235 §2.1) -------------------------------

_LWS = re.compile(r"(?:[ \t]|\r?\n[ \t])*")
_TOKEN = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_QUOTED = re.compile(r'"((?:[^"\\\x00-\x08\x0a-\x1f\x7f]|\\[^\r\n])*)"')
_BARE = re.compile(r'[^ \t\r\n,"\\]+')
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
_NC = re.compile(r"[0-9A-Fa-f]{1,8}")
_REQUIRED = ("username", "realm", "nonce", "uri", "response")


def _skip_lws(value: str, pos: int) -> int:
    m = _LWS.match(value, pos)
    return pos if m is None else m.end()


def split_auth_value(value: str) -> tuple[str, dict[str, str]]:
    """Split ``scheme param=value, param="quoted"`` into the scheme and lower-cased params.

    Empty list elements are tolerated (RFC 7230 §7); duplicates and junk raise
    RemoteProtocolError.
    """
    if len(value) > MAX_HEADER_LENGTH:
        raise RemoteProtocolError("credentials too long")
    try:
        value.encode()
    except UnicodeEncodeError:
        raise RemoteProtocolError("credentials are not valid UTF-8") from None
    pos = _skip_lws(value, 0)
    m = _TOKEN.match(value, pos)
    if m is None:
        raise RemoteProtocolError("missing auth scheme")
    scheme, pos = m.group(), m.end()
    after = _skip_lws(value, pos)
    if after == pos and pos != len(value):
        raise RemoteProtocolError("malformed auth scheme")
    return scheme, _parse_params(value, after)


# Fast path for the usual shape (every phone sends it): name=value pairs separated by commas,
# quoted values without escapes. Anything else falls back to the careful parser below, which
# accepts the full grammar and gives precise errors; the two agree where both apply.
_FAST_PARAM = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`\'~]+)[ \t]*=[ \t]*"
    r'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|([^ \t\r\n,"\\]+))[ \t]*(?:,|\Z)'
)


def _parse_params_fast(value: str, pos: int) -> dict[str, str] | None:
    params: dict[str, str] = {}
    end = len(value)
    match = _FAST_PARAM.match
    while pos < end:
        m = match(value, pos)
        if m is None:
            return None
        name = m.group(1).lower()
        if name in params:
            return None
        quoted = m.group(2)
        params[name] = quoted if quoted is not None else m.group(3)
        pos = m.end()
    if value.endswith(","):
        return None
    return params


def _parse_params(value: str, pos: int) -> dict[str, str]:
    fast = _parse_params_fast(value, pos)
    return fast if fast is not None else _parse_params_careful(value, pos)


def _parse_params_careful(value: str, pos: int) -> dict[str, str]:
    params: dict[str, str] = {}
    end = len(value)
    while True:
        pos = _skip_lws(value, pos)
        if pos >= end:
            return params
        if value[pos] == ",":
            pos += 1
            continue
        name, val, pos = _parse_param(value, pos)
        if name in params:
            raise RemoteProtocolError(f"duplicate auth-param {name!r}")
        params[name] = val
        pos = _skip_lws(value, pos)
        if pos < end and value[pos] != ",":
            raise RemoteProtocolError("expected ',' between auth-params")


def _parse_param(value: str, pos: int) -> tuple[str, str, int]:
    m = _TOKEN.match(value, pos)
    if m is None:
        raise RemoteProtocolError("malformed auth-param name")
    name = m.group().lower()
    pos = _skip_lws(value, m.end())
    if not value.startswith("=", pos):
        raise RemoteProtocolError(f"auth-param {name!r} has no value")
    pos = _skip_lws(value, pos + 1)
    q = _QUOTED.match(value, pos)
    if q is not None:
        return name, _QUOTED_PAIR.sub(r"\1", q.group(1)), q.end()
    b = _BARE.match(value, pos)
    if b is None:
        raise RemoteProtocolError(f"malformed value for auth-param {name!r}")
    return name, b.group(), b.end()


def parse_authorization(value: str) -> DigestResponse:
    """Parse an Authorization/Proxy-Authorization value (RFC 3261 §22.4, RFC 7616 §3.4).

    Raises RemoteProtocolError (400) on bad syntax, a non-Digest scheme or missing parameters.
    """
    scheme, p = split_auth_value(value)
    if scheme.lower() != "digest":
        raise RemoteProtocolError(f"unsupported auth scheme {scheme!r}")
    missing = [name for name in _REQUIRED if name not in p]
    if missing:
        raise RemoteProtocolError(f"missing digest parameters: {', '.join(missing)}")
    qop = p.get("qop")
    if qop is not None:
        # RFC 7616 §3.4: cnonce and nc MUST be sent when qop is.
        if "cnonce" not in p or "nc" not in p:
            raise RemoteProtocolError("qop without cnonce/nc")
        if _NC.fullmatch(p["nc"]) is None:
            raise RemoteProtocolError("malformed nonce-count")
    return DigestResponse(
        username=p["username"],
        realm=p["realm"],
        nonce=p["nonce"],
        uri=p["uri"],
        response=p["response"],
        algorithm=p.get("algorithm", "MD5").upper(),
        qop=qop,
        nc=p.get("nc") if qop is not None else None,
        cnonce=p.get("cnonce") if qop is not None else None,
        opaque=p.get("opaque"),
    )


def quote_auth_value(text: str) -> str:
    """``text`` as a quoted-string (RFC 3261 §25.1), backslash and double quote escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- the authenticator -------------------------------------------------------------------------


class DigestAuthenticator:
    """Issues challenges and verifies digest responses for one realm."""

    def __init__(
        self,
        secret: bytes,
        clock: Callable[[], float],
        config: DigestConfig = DigestConfig(),
    ) -> None:
        if len(secret) < 16:
            raise ValueError("digest secret must be at least 16 bytes")
        self._secret = secret
        self._clock = clock
        self.config = config
        self._opaque = hmac.new(secret, b"pbx-digest-opaque", hashlib.sha256).hexdigest()[:32]
        self._dummy_secret = hmac.new(secret, b"pbx-dummy-ha1", hashlib.sha256).hexdigest()
        # nonce -> [expires_at, last accepted nc]; insertion order ~ first use order.
        self._counts: dict[str, list[float | int]] = {}

    @property
    def tracked_nonces(self) -> int:
        return len(self._counts)

    # -- nonces --

    def new_nonce(self) -> str:
        payload = _TS.pack(self._clock()) + secrets.token_bytes(_RANDOM_BYTES)
        return base64.urlsafe_b64encode(payload + self._mac(payload)).decode("ascii")

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def _nonce_time(self, nonce: str) -> float | None:
        """The issue time of one of our nonces, or None if it is not ours (forged/garbled)."""
        if _NONCE_RE.fullmatch(nonce) is None:
            return None
        try:
            raw = base64.urlsafe_b64decode(nonce)
        except (binascii.Error, ValueError):
            return None
        if len(raw) != _NONCE_BYTES:
            return None
        payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        (issued,) = _TS.unpack(payload[: _TS.size])
        return float(issued)

    def _expired(self, issued: float) -> bool:
        age = self._clock() - issued
        return not (-self.config.nonce_lifetime <= age <= self.config.nonce_lifetime)

    # -- challenges --

    def challenge_values(self, stale: bool = False) -> list[str]:
        """Header values for WWW-Authenticate (401) or Proxy-Authenticate (407).

        One challenge per algorithm, SHA-256 first (RFC 8760 §2.4), sharing one fresh nonce.
        """
        nonce = self.new_nonce()
        values = []
        for algorithm in self.config.algorithms:
            parts = [
                f"realm={quote_auth_value(self.config.realm)}",
                f"nonce={quote_auth_value(nonce)}",
                f"opaque={quote_auth_value(self._opaque)}",
                f"algorithm={algorithm}",
                'qop="auth"',
            ]
            if stale:
                parts.append("stale=true")
            values.append("Digest " + ", ".join(parts))
        return values

    # -- verification --

    def verify(
        self, resp: DigestResponse, method: str, ha1: str | None, body: bytes = b""
    ) -> AuthResult:
        """Check ``resp`` for a request with ``method`` (RFC 3261 §22.4, RFC 7616 §3.4.1).

        ``ha1`` is the stored H(username:realm:password) for ``resp.algorithm``, or None for an
        unknown user (a dummy HA1 is used so the work done is the same; the result is FAILED).
        """
        algorithm = resp.algorithm.upper()
        if algorithm not in _HASHES or resp.realm != self.config.realm:
            return AuthResult.FAILED
        if resp.opaque is not None and not hmac.compare_digest(
            resp.opaque.encode(), self._opaque.encode()
        ):
            return AuthResult.FAILED
        issued = self._nonce_time(resp.nonce)
        if issued is None:
            log.debug("digest: forged or unknown nonce from user %r", resp.username)
            return AuthResult.FAILED
        if resp.qop is None and not self.config.accept_no_qop:
            return AuthResult.FAILED
        if resp.qop is not None and resp.qop.lower() not in ("auth", "auth-int"):
            return AuthResult.FAILED
        known = ha1 is not None
        if ha1 is None:
            ha1 = compute_ha1(resp.username, resp.realm, self._dummy_secret, algorithm)
        expected = compute_response(
            ha1, resp.nonce, method, resp.uri, algorithm, resp.qop, resp.nc, resp.cnonce, body
        )
        matches = hmac.compare_digest(expected.encode(), resp.response.lower().encode())
        if not (matches and known):
            return AuthResult.FAILED
        if self._expired(issued):
            return AuthResult.STALE
        if resp.qop is not None and resp.nc is not None:
            if not self._accept_count(resp.nonce, int(resp.nc, 16), issued):
                return AuthResult.REPLAY
        return AuthResult.OK

    def _accept_count(self, nonce: str, nc: int, issued: float) -> bool:
        """Record ``nc`` for ``nonce`` if it is above the last accepted one (RFC 7616 §3.4.5)."""
        entry = self._counts.get(nonce)
        if entry is not None:
            if nc <= entry[1]:
                return False
            entry[1] = nc
            return True
        self._evict()
        self._counts[nonce] = [issued + self.config.nonce_lifetime, nc]
        return True

    def _evict(self) -> None:
        now = self._clock()
        while self._counts:
            oldest = next(iter(self._counts))
            if self._counts[oldest][0] >= now and len(self._counts) < MAX_TRACKED_NONCES:
                break
            del self._counts[oldest]
