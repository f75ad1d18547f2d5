"""pbx registering itself at a provider: the REGISTER client of one trunk (RFC 3261 §10.2).

Owns :class:`OutboundRegistration`: one binding of pbx's contact at a registrar, kept alive.
It sends REGISTER through :class:`pbx.sip.client.ClientTransactions` (one Call-ID for the
binding's life, rising CSeq, RFC 3261 §10.2.4), answers 401/407 with the trunk's own
:class:`pbx.sip.digest_client.DigestClient` (and reuses the nonce for the refreshes), raises its
expiry after 423 to the registrar's Min-Expires (§10.2.8), follows a 3xx to the first contact
whose host is an IP address (a name needs DNS, which the trunk layer resolves), refreshes
before the granted expiry runs out, and after a failure retries with a growing, jittered wait
(RFC 5626 §4.5's shape: base × 2^failures, capped, × 0.5-1). :meth:`stop` removes the binding
(Expires: 0).

Its state (:class:`RegistrationStatus`: registered, failed with the reason, since when) is
what the dashboard, ``pbx status`` and the API show; ``on_change`` reports every change.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pbx.sip.client import ClientTransactions
from pbx.sip.digest_client import DigestClient, Unanswerable
from pbx.sip.headers import NameAddr
from pbx.sip.message import Headers, Request, Response, new_call_id, new_tag
from pbx.sip.transport import Address
from pbx.sip.uri import SipUri, parse_uri

log = logging.getLogger(__name__)

MAX_REDIRECTS = 3
MAX_INTERVAL_CHANGES = 3  # 423s answered in a row


class RegistrationState(enum.Enum):
    IDLE = "idle"  # not started
    REGISTERING = "registering"
    REGISTERED = "registered"
    FAILED = "failed"  # retried after ``retry_in``
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class RegistrationConfig:
    """What one trunk registers: ``user`` at ``domain``, sent to ``registrar``."""

    user: str
    domain: str
    registrar: Address | None  # None: found by ``locate`` (RFC 3263) before each attempt
    expires: int = 600
    retry_base: float = 30.0  # first wait after a failure
    retry_max: float = 1800.0
    user_agent: str = "pbx"


@dataclass(frozen=True, slots=True)
class RegistrationStatus:
    state: RegistrationState
    since: float
    reason: str = ""
    expires: int | None = None  # granted, when registered
    retry_in: float | None = None  # when failed

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state.value,
            "since": self.since,
            "reason": self.reason,
            "expires": self.expires,
            "retry_in": self.retry_in,
        }


@dataclass(slots=True)
class _Attempt:
    """One REGISTER transaction's context: what it carried and how it got there."""

    expires: int
    carried: dict[bool, bool] = field(default_factory=dict)  # proxy? -> our credentials sent
    challenges: int = 0
    failovers: int = 0
    redirects: int = 0
    interval_changes: int = 0


class OutboundRegistration:
    """Keeps one binding at a provider's registrar."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        config: RegistrationConfig,
        digest: DigestClient,
        on_change: Callable[[RegistrationStatus], None] | None = None,
        rng: Callable[[], float] = random.random,
        locate: Callable[[], Any] | None = None,
    ) -> None:
        """``locate()`` gives a Deferred list of the registrar's addresses, best first (DNS);
        without it ``config.registrar`` is the one address."""
        if locate is None and config.registrar is None:
            raise ValueError("a registration needs a registrar address or a locate function")
        self._reactor = reactor
        self._client = client
        self.config = config
        self.digest = digest
        self.on_change = on_change
        self._rng = rng
        self._locate = locate
        self._targets: list[Address] = [config.registrar] if config.registrar else []
        self._target: Address = config.registrar or Address("UDP", "0.0.0.0", 0)
        self._expires = config.expires
        self._call_id = new_call_id()
        self._from_tag = new_tag()
        self._cseq = 0
        self._failures = 0
        self._timer: Any = None
        self._unregistering = False
        self.status = RegistrationStatus(RegistrationState.IDLE, reactor.seconds())

    @property
    def targets(self) -> list[Address]:
        """The registrar's addresses as last given or located (a provider's calls come from
        them)."""
        return list(self._targets)

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.status.state in (RegistrationState.IDLE, RegistrationState.STOPPED):
            self._unregistering = False
            self._register(_Attempt(self._expires))

    def stop(self) -> None:
        """Remove the binding (Expires: 0) when there is one; no more refreshes or retries."""
        self._cancel_timer()
        was_registered = self.status.state is RegistrationState.REGISTERED
        self._unregistering = True
        self._set(RegistrationState.STOPPED, "stopped")
        if was_registered:
            self._send(_Attempt(0))

    # -- sending -----------------------------------------------------------------------------

    def _register(self, attempt: _Attempt) -> None:
        if self.status.state is not RegistrationState.REGISTERED:
            self._set(RegistrationState.REGISTERING, self.status.reason)
        if self._locate is None:
            self._send(attempt)
            return
        d = self._locate()
        d.addCallbacks(
            lambda targets: self._located(attempt, targets),
            lambda failure: self._failed(f"DNS: {failure.getErrorMessage()}"),
        )

    def _located(self, attempt: _Attempt, targets: list[Address]) -> None:
        if self._unregistering:
            return
        if not targets:
            self._failed(f"{self.config.domain} does not resolve (DNS)")
            return
        self._targets = list(targets)
        if self._target not in self._targets:  # keep a working registrar while it is listed
            self._target = self._targets[0]
        self._send(attempt)

    def _uri(self) -> str:
        return f"sip:{self.config.domain}"

    def _send(self, attempt: _Attempt, authorization: tuple[str, str] | None = None) -> None:
        config = self.config
        self._cseq += 1
        aor = NameAddr(parse_uri(f"sip:{config.user}@{config.domain}"))
        host, port = self._client.local_address(self._target)
        shown = f"[{host}]" if ":" in host else host
        suffix = (
            ""
            if self._target.transport == "UDP"
            else f";transport={self._target.transport.lower()}"
        )
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(aor.with_param("tag", self._from_tag)))
        headers.add("To", str(aor))
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} REGISTER")
        headers.add("Contact", f"<sip:{config.user}@{shown}:{port}{suffix}>")
        headers.add("Expires", str(attempt.expires))
        headers.add("User-Agent", config.user_agent)
        credentials = [authorization] if authorization is not None else []
        if authorization is None:  # the last challenge's nonce, next count: no extra round trip
            credentials = [
                c
                for c in (
                    self.digest.authorize("REGISTER", self._uri(), proxy=False),
                    self.digest.authorize("REGISTER", self._uri(), proxy=True),
                )
                if c is not None
            ]
        attempt.carried = {}
        for name, value in credentials:
            headers.add(name, value)
            attempt.carried[name == "Proxy-Authorization"] = True
        request = Request("REGISTER", parse_uri(self._uri()), headers)
        self._client.send(request, self._target, lambda response: self._response(attempt, response))

    # -- responses ---------------------------------------------------------------------------

    def _response(self, attempt: _Attempt, response: Response) -> None:
        status = response.status
        if status < 200:
            return
        if self._unregistering and attempt.expires != 0:
            return  # an answer to a REGISTER sent before stop()
        if 200 <= status < 300:
            self._registered(attempt, response)
        elif status in (401, 407):
            self._challenged(attempt, response)
        elif status == 423:
            self._interval_too_brief(attempt, response)
        elif 300 <= status < 400:
            self._redirected(attempt, response)
        elif status in (408, 503) and self._fail_over(attempt):
            return
        else:
            self._failed(f"{status} {response.reason}".strip())

    def _fail_over(self, attempt: _Attempt) -> bool:
        """No answer or unavailable (RFC 3263 §4.3): the next located address, if any."""
        if self._target not in self._targets:
            return False
        index = self._targets.index(self._target)
        if index + 1 >= len(self._targets) or attempt.failovers >= len(self._targets):
            return False
        attempt.failovers += 1
        self._target = self._targets[index + 1]
        log.info("registration of %s fails over to %s", self.config.user, self._target)
        self._send(attempt)
        return True

    def _registered(self, attempt: _Attempt, response: Response) -> None:
        if attempt.expires == 0:
            log.info("registration of %s at %s removed", self.config.user, self._target)
            return
        granted = _granted_expiry(response, self.config.user) or response.expires
        if granted is None:
            granted = attempt.expires
        if granted <= 0:
            self._failed("registrar granted no expiry")
            return
        self._failures = 0
        self.status = RegistrationStatus(
            RegistrationState.REGISTERED, self._now_if_new(RegistrationState.REGISTERED),
            expires=granted,
        )  # fmt: skip
        self._changed()
        # refresh half-way for short bindings, a minute early for long ones
        self._schedule(
            max(granted / 2, granted - 60), lambda: self._register(_Attempt(self._expires))
        )

    def _challenged(self, attempt: _Attempt, response: Response) -> None:
        proxy = response.status == 407
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        attempt.challenges += 1
        if attempt.challenges > 3:
            self._failed(f"{response.status}: challenged again and again")
            return
        try:
            authorization = self.digest.answer(
                response.status,
                response.headers.get_lines(name),
                "REGISTER",
                self._uri(),
                carried_credentials=attempt.carried.get(proxy, False),
            )
        except Unanswerable as exc:
            self._failed(f"{response.status} {response.reason}: {exc}".strip())
            return
        self._send(attempt, authorization)

    def _interval_too_brief(self, attempt: _Attempt, response: Response) -> None:
        minimum = _small_int(response.headers.get("Min-Expires"))
        attempt.interval_changes += 1
        if (
            minimum is None
            or minimum <= attempt.expires
            or attempt.interval_changes > MAX_INTERVAL_CHANGES
        ):
            self._failed("423 without a usable Min-Expires")
            return
        log.info("registrar of %s wants expiry >= %d s", self.config.user, minimum)
        self._expires = minimum
        attempt.expires = minimum
        self._send(attempt)

    def _redirected(self, attempt: _Attempt, response: Response) -> None:
        attempt.redirects += 1
        contacts = response.contacts
        target = None
        if contacts != "*":
            for contact in contacts:
                target = _address_of(contact.uri, self._target.transport)
                if target is not None:
                    break
        if target is None or attempt.redirects > MAX_REDIRECTS:
            self._failed(f"{response.status} {response.reason}: no usable contact".strip())
            return
        log.info("registration of %s redirected to %s", self.config.user, target)
        self._target = target
        self._send(attempt)

    def _failed(self, reason: str) -> None:
        if self._unregistering:
            return
        self._failures += 1
        wait = min(self.config.retry_max, self.config.retry_base * 2 ** (self._failures - 1))
        wait *= 0.5 + 0.5 * self._rng()
        log.warning(
            "registration of %s at %s failed (%s); retry in %.0f s",
            self.config.user, self._target, reason, wait,
        )  # fmt: skip
        if self._targets:  # a redirect or a fail-over is not kept across failures
            self._target = self._targets[0]
        self.digest.forget()  # the retry starts with a fresh challenge, not a refused nonce
        self.status = RegistrationStatus(
            RegistrationState.FAILED,
            self._now_if_new(RegistrationState.FAILED),
            reason,
            retry_in=wait,
        )
        self._changed()
        self._schedule(wait, lambda: self._register(_Attempt(self._expires)))

    # -- helpers -----------------------------------------------------------------------------

    def _now_if_new(self, state: RegistrationState) -> float:
        """``since`` stays when the state does not change (a refresh, another failure)."""
        return self.status.since if self.status.state is state else self._reactor.seconds()

    def _set(self, state: RegistrationState, reason: str) -> None:
        self.status = RegistrationStatus(state, self._now_if_new(state), reason)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self.status)

    def _schedule(self, delay: float, action: Callable[[], None]) -> None:
        self._cancel_timer()

        def fire() -> None:
            self._timer = None
            if not self._unregistering:
                action()

        self._timer = self._reactor.callLater(delay, fire)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


def _small_int(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    number = int(value.strip())
    return number if number < 2**31 else None


def _granted_expiry(response: Response, user: str) -> int | None:
    """The expires parameter of our own contact in a 2xx (RFC 3261 §10.2.4)."""
    contacts = response.contacts
    if contacts == "*":
        return None
    for contact in contacts:
        uri = contact.uri
        if isinstance(uri, SipUri) and uri.user == user:
            return _small_int(contact.param("expires"))
    return None


def _address_of(uri: Any, transport: str) -> Address | None:
    """Where a redirect points, when its host is an IP literal (names wait for DNS)."""
    if not isinstance(uri, SipUri):
        return None
    host = uri.host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    chosen = (uri.transport or transport).upper()
    default = 5061 if chosen == "TLS" else 5060
    return Address(chosen, host, uri.port or default)


__all__ = [
    "OutboundRegistration",
    "RegistrationConfig",
    "RegistrationState",
    "RegistrationStatus",
]
