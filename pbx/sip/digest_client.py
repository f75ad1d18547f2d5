"""The client side of SIP digest authentication: answering a 401 or 407 with one account's
credentials (RFC 3261 §22.2-22.3, RFC 7616, RFC 8760).

Owns: reading WWW-Authenticate / Proxy-Authenticate challenges (:func:`parse_challenge`),
choosing the one to answer (:func:`choose`), and :class:`DigestClient`, which builds the
Authorization / Proxy-Authorization value for one account (a trunk) and counts nonces.

Rules it keeps:
- Only the account's own realm is answered when the account names one
  (:attr:`Credentials.realm`): a challenge from another realm raises
  :class:`Unanswerable`, so a request routed somewhere else never carries these credentials.
  Which account answers which request is the caller's choice (the trunk the request was sent
  through), never a guess from the challenge.
- Of several challenges the topmost one pbx supports is answered (RFC 8760 §2.4: servers list
  their preferred algorithm first): SHA-256, MD5 and their ``-sess`` forms; qop ``auth`` is
  preferred to ``auth-int``, and a challenge without qop gets the RFC 2069 form RFC 3261 keeps.
- Credentials that were refused are not sent again: a new challenge for a request that already
  carried them is :class:`Unanswerable` unless it says ``stale=true`` (RFC 7616 §3.3: the
  password was right, the nonce had expired).
- The nonce-count rises with every use of a nonce (RFC 7616 §3.4), so a nonce may be reused
  for the next request (:meth:`DigestClient.authorize`) until the server challenges again.

Sans-IO: hashing through :mod:`pbx.sip.auth` (hashlib), nothing else.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pbx.sip.auth import compute_ha1, compute_response, quote_auth_value, split_auth_value
from pbx.sip.errors import RemoteProtocolError

log = logging.getLogger(__name__)

#: Algorithms pbx answers, as upper-cased SIP names.
SUPPORTED_ALGORITHMS = ("SHA-256", "MD5", "SHA-256-SESS", "MD5-SESS")
_SPELLING = {"MD5-SESS": "MD5-sess", "SHA-256-SESS": "SHA-256-sess"}  # RFC 7616 §3.3
_QOP_PREFERENCE = ("auth", "auth-int")


class Unanswerable(Exception):
    """A challenge pbx cannot or must not answer with these credentials (the reason says
    which); the request has then failed with the challenge's status."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """One account at a server: a trunk's user name, password and, if known, its realm."""

    username: str
    password: str
    realm: str | None = None  # answer only this realm; None: the realm the server names

    def __repr__(self) -> str:  # never the password, in logs or tracebacks
        return f"Credentials(username={self.username!r}, realm={self.realm!r})"


@dataclass(frozen=True, slots=True)
class Challenge:
    """One Digest challenge of a 401 (WWW-Authenticate) or a 407 (Proxy-Authenticate)."""

    realm: str
    nonce: str
    algorithm: str = "MD5"  # upper-cased; absent means MD5 (RFC 7616 §3.3)
    qop: tuple[str, ...] = ()  # offered, lower-cased; empty: RFC 2069 form
    opaque: str | None = None
    stale: bool = False
    proxy: bool = False  # from Proxy-Authenticate: answered in Proxy-Authorization

    @property
    def answer_header(self) -> str:
        return "Proxy-Authorization" if self.proxy else "Authorization"

    @property
    def supported(self) -> bool:
        return self.algorithm in SUPPORTED_ALGORITHMS and (
            not self.qop or any(q in _QOP_PREFERENCE for q in self.qop)
        )


def parse_challenge(value: str, proxy: bool = False) -> Challenge | None:
    """The Digest challenge in one header value; None for another scheme (Basic, Bearer...).
    Raises RemoteProtocolError for a Digest challenge without realm or nonce, or bad syntax."""
    scheme, params = split_auth_value(value)
    if scheme.lower() != "digest":
        return None
    if "realm" not in params or "nonce" not in params:
        raise RemoteProtocolError("digest challenge without realm or nonce")
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
        proxy=proxy,
    )


def choose(values: Iterable[str], proxy: bool = False) -> Challenge | None:
    """The topmost supported Digest challenge of a response's challenge header values;
    values that do not parse are skipped (logged), as are schemes other than Digest."""
    for value in values:
        try:
            challenge = parse_challenge(value, proxy)
        except RemoteProtocolError as exc:
            log.info("challenge not understood (%s): %.80r", exc, value)
            continue
        if challenge is not None and challenge.supported:
            return challenge
    return None


def _new_cnonce() -> str:
    return secrets.token_hex(8)


class DigestClient:
    """Answers the challenges met by one account's requests."""

    def __init__(self, credentials: Credentials, cnonce: Callable[[], str] = _new_cnonce) -> None:
        self.credentials = credentials
        self._cnonce = cnonce
        self._counts: dict[tuple[str, str], int] = {}  # (realm, nonce) -> last nc used
        self._last: dict[bool, Challenge] = {}  # proxy? -> the challenge answered last

    def answer(
        self,
        status: int,
        challenges: Iterable[str],
        method: str,
        uri: str,
        body: bytes = b"",
        carried_credentials: bool = False,
    ) -> tuple[str, str]:
        """(header name, value) answering a 401 or 407 to ``method`` ``uri``, for the new
        request (new CSeq, same Call-ID). ``challenges`` are the response's WWW-Authenticate
        (401) or Proxy-Authenticate (407) values; ``carried_credentials`` says whether the
        challenged request already carried ours for this kind of challenge.

        Raises :class:`Unanswerable` when there is no supported challenge, it names another
        realm than the account's, or the credentials were refused (no ``stale=true``)."""
        if status not in (401, 407):
            raise Unanswerable(f"{status} is not a challenge")
        proxy = status == 407
        challenge = choose(challenges, proxy)
        if challenge is None:
            raise Unanswerable(f"no supported digest challenge in the {status}")
        wanted = self.credentials.realm
        if wanted is not None and challenge.realm != wanted:
            raise Unanswerable(
                f"challenge for realm {challenge.realm!r}, the account is for {wanted!r}"
            )
        if carried_credentials and not challenge.stale:
            raise Unanswerable(f"credentials of {self.credentials.username!r} refused")
        self._last[proxy] = challenge
        return challenge.answer_header, self.authorization(challenge, method, uri, body)

    def authorize(
        self, method: str, uri: str, body: bytes = b"", proxy: bool = False
    ) -> tuple[str, str] | None:
        """Credentials for a new request from the challenge answered last (the next
        nonce-count), or None before any challenge: saves a round trip per re-REGISTER."""
        challenge = self._last.get(proxy)
        if challenge is None:
            return None
        return challenge.answer_header, self.authorization(challenge, method, uri, body)

    def forget(self) -> None:
        """Drop remembered challenges (the server or the account changed)."""
        self._last.clear()
        self._counts.clear()

    def authorization(self, challenge: Challenge, method: str, uri: str, body: bytes = b"") -> str:
        """The Authorization / Proxy-Authorization value answering ``challenge``."""
        if not challenge.supported:
            raise Unanswerable(f"digest algorithm {challenge.algorithm!r} is not supported")
        creds = self.credentials
        session = challenge.algorithm.endswith("-SESS")
        base = challenge.algorithm.removesuffix("-SESS")
        qop = next((q for q in _QOP_PREFERENCE if q in challenge.qop), None)
        cnonce = self._cnonce() if qop is not None or session else None
        ha1 = compute_ha1(creds.username, challenge.realm, creds.password, base)
        if session:
            # RFC 7616 §3.4.2: H(H(user:realm:password):nonce:cnonce)
            ha1 = compute_ha1(ha1, challenge.nonce, cnonce or "", base)
        nc: str | None = None
        if qop is not None:
            key = (challenge.realm, challenge.nonce)
            count = self._counts.get(key, 0) + 1
            if len(self._counts) > 64 and key not in self._counts:
                self._counts.clear()  # old nonces: servers issue new ones, never reused
            self._counts[key] = count
            nc = f"{count:08x}"
        response = compute_response(ha1, challenge.nonce, method, uri, base, qop, nc, cnonce, body)
        parts = [
            f"username={quote_auth_value(creds.username)}",
            f"realm={quote_auth_value(challenge.realm)}",
            f"nonce={quote_auth_value(challenge.nonce)}",
            f"uri={quote_auth_value(uri)}",
            f"response={quote_auth_value(response)}",
            f"algorithm={_SPELLING.get(challenge.algorithm, challenge.algorithm)}",
        ]
        if cnonce is not None:
            parts.append(f"cnonce={quote_auth_value(cnonce)}")
        if challenge.opaque is not None:
            parts.append(f"opaque={quote_auth_value(challenge.opaque)}")
        if qop is not None:
            parts.append(f"qop={qop}, nc={nc}")
        return "Digest " + ", ".join(parts)


__all__ = [
    "SUPPORTED_ALGORITHMS",
    "Challenge",
    "Credentials",
    "DigestClient",
    "Unanswerable",
    "choose",
    "parse_challenge",
]
