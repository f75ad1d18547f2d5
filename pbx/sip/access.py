"""Digest authentication of requests from phones, with the guard's failure accounting.

Every request that needs a known user goes through :meth:`Access.authenticate`: REGISTER is
challenged with 401/WWW-Authenticate, everything else with 407/Proxy-Authenticate (RFC 3261
§22). Wrong credentials for a known user and any credentials for an unknown user get the same
fresh challenge (no user enumeration); a second failure on the same Call-ID from the same
address gets 403 (final), so a phone looping on a mistyped password stops instead of getting
its address banned within milliseconds. Every failure counts towards a ban. A failure (credentials that fail verification; never a
first unauthenticated request or a stale nonce) is reported to :class:`pbx.sip.guard.Guard`;
a resulting ban is handed to ``on_ban`` to be persisted.

Credentials are looked up through ``lookup`` (a Deferred, so the reactor never waits for
SQLite).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from pbx.sip.auth import AuthResult, DigestAuthenticator, DigestResponse, parse_authorization
from pbx.sip.errors import RemoteProtocolError
from pbx.sip.guard import Ban, Guard
from pbx.sip.stack import IncomingRequest
from pbx.store.credentials import Credentials

log = logging.getLogger(__name__)

REPEAT_WINDOW = 60.0  # seconds a failed (address, Call-ID) is remembered
MAX_FAILED_CALLS = 10_000  # bound on that memory

Lookup = Callable[[str], "defer.Deferred[Credentials | None]"]


class Access:
    """Authenticates requests; answers the challenge itself when authentication is not done."""

    def __init__(
        self,
        authenticator: DigestAuthenticator,
        guard: Guard,
        lookup: Lookup,
        on_ban: Callable[[Ban], None],
    ) -> None:
        self.authenticator = authenticator
        self.guard = guard
        self._lookup = lookup
        self._on_ban = on_ban
        self._failed_calls: OrderedDict[tuple[str, str], float] = OrderedDict()

    def authenticate(self, incoming: IncomingRequest) -> defer.Deferred[str | None]:
        """Fire with the authenticated username, or None after a challenge/error was sent."""
        request = incoming.request
        registering = request.method == "REGISTER"
        header = "Authorization" if registering else "Proxy-Authorization"
        candidate = self._pick_credentials(request.headers.get_all(header))
        if candidate is None:
            self.challenge(incoming)
            return defer.succeed(None)
        if isinstance(candidate, RemoteProtocolError):
            incoming.respond(400, "Malformed Authorization")
            return defer.succeed(None)
        d: defer.Deferred[Any] = self._lookup(candidate.username)
        d.addCallback(self._verify, incoming, candidate)
        return d

    def _verify(
        self, credentials: Credentials | None, incoming: IncomingRequest, candidate: DigestResponse
    ) -> str | None:
        request = incoming.request
        ha1 = None
        if credentials is not None:
            ha1 = (
                credentials.ha1_sha256
                if candidate.algorithm.upper() == "SHA-256"
                else credentials.ha1_md5
            )
        result = self.authenticator.verify(candidate, request.method, ha1, request.body)
        host = incoming.source.remote.host
        if result is AuthResult.OK:
            log.debug("authenticated %s with %s", candidate.username, candidate.algorithm)
            self.guard.record_success(host, candidate.username)
            return candidate.username
        if result is AuthResult.STALE:
            self.challenge(incoming, stale=True)
            return None
        if result is AuthResult.FAILED:
            repeated = self._repeated_failure(host, request.call_id)
            log.info(
                "[%s] authentication failed for %r from %s",
                request.call_id,
                candidate.username,
                incoming.source.remote,
            )
            ban = self.guard.record_failure(host, candidate.username)
            if ban is not None:
                log.warning(
                    "banned %s%s until %.0f (%s)",
                    ban.address,
                    f" for user {ban.username}" if ban.username else "",
                    ban.until,
                    ban.reason,
                )
                self._on_ban(ban)
            if repeated:
                # The same dialogue failed before: a phone looping on a mistyped password.
                # 403 is final, so it stops instead of burning through the ban limit in
                # milliseconds (the same answer for known and unknown users).
                incoming.respond(403, "Forbidden")
                return None
        self.challenge(incoming)
        return None

    def _repeated_failure(self, host: str, call_id: str) -> bool:
        """True when (host, Call-ID) already failed within REPEAT_WINDOW; else remember it."""
        now = self.guard.clock()
        key = (host, call_id)
        seen = self._failed_calls.get(key)
        if seen is not None and now - seen < REPEAT_WINDOW:
            return True
        self._failed_calls[key] = now
        self._failed_calls.move_to_end(key)
        while len(self._failed_calls) > MAX_FAILED_CALLS:
            self._failed_calls.popitem(last=False)
        return False

    def challenge(self, incoming: IncomingRequest, stale: bool = False) -> None:
        """Send 401 (REGISTER) or 407 (other requests) with SHA-256 and MD5 challenges."""
        registering = incoming.request.method == "REGISTER"
        name = "WWW-Authenticate" if registering else "Proxy-Authenticate"
        values = self.authenticator.challenge_values(stale=stale)
        incoming.respond(401 if registering else 407, headers=[(name, value) for value in values])

    def _pick_credentials(self, values: list[str]) -> DigestResponse | RemoteProtocolError | None:
        """The Digest credentials for our realm among the header values (RFC 3261 §22.4)."""
        realm = self.authenticator.config.realm
        error: RemoteProtocolError | None = None
        for value in values:
            if not value.lstrip().lower().startswith("digest"):
                continue  # unknown scheme (RFC 4475 3.3.7): a fresh Digest challenge
            try:
                parsed = parse_authorization(value)
            except RemoteProtocolError as exc:
                error = exc
                continue
            if parsed.realm == realm:
                return parsed
        return error
