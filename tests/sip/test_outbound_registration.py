"""pbx registering at a provider, in process: pbx's SIP stack and a scripted provider registrar
(pbx's own digest server side) on the memory network, fake clock, optional loss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from pbx.sip.auth import (
    AuthResult,
    DigestAuthenticator,
    DigestConfig,
    compute_ha1,
    parse_authorization,
)
from pbx.sip.client import ClientTransactions
from pbx.sip.digest_client import Credentials, DigestClient
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.message import Request
from pbx.sip.outbound_registration import (
    OutboundRegistration,
    RegistrationConfig,
    RegistrationState,
    RegistrationStatus,
)
from pbx.sip.stack import IncomingRequest, Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address
from tests.calls.sipnet import FakeReactor, MemoryTransports

PBX = Address("UDP", "127.0.0.1", 5060)
PROVIDER = Address("UDP", "127.0.0.2", 5060)
OTHER = Address("UDP", "127.0.0.3", 5060)
REALM = "sip.provider.example"


@dataclass
class Registrar:
    """A provider's registrar: challenges, checks the digest, grants an expiry."""

    reactor: FakeReactor
    address: Address
    password: str = "trunk-secret"
    min_expires: int | None = None
    grant: int | None = None  # expires granted (None: as asked)
    refuse: int | None = None  # answer every REGISTER with this status
    redirect_to: Address | None = None
    challenge_status: int = 401
    requests: list[Request] = field(default_factory=list)
    bindings: dict[str, int] = field(default_factory=dict)  # contact -> expires

    def __post_init__(self) -> None:
        self.stack = Stack(
            self.reactor, Guard(GuardConfig(), self.reactor.seconds), StackOptions(TimerConfig())
        )
        self.transports = MemoryTransports(self.reactor.network, self.address)
        self.transports.sink = self.stack.receive
        self.stack.transports = self.transports  # type: ignore[assignment]
        self.stack.sink = self  # type: ignore[assignment]
        self.auth = DigestAuthenticator(
            b"p" * 32,
            self.reactor.seconds,
            DigestConfig(realm=REALM, algorithms=("SHA-256", "MD5")),
        )

    allowed = ("REGISTER",)

    def handle_request(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        self.requests.append(request)
        if self.refuse is not None:
            incoming.respond(self.refuse)
            return
        if self.redirect_to is not None:
            target = self.redirect_to
            incoming.respond(302, headers=[("Contact", f"<sip:{target.host}:{target.port}>")])
            return
        header = "Proxy-Authorization" if self.challenge_status == 407 else "Authorization"
        value = request.headers.get(header)
        result = AuthResult.FAILED
        if value is not None:
            resp = parse_authorization(value)
            ha1 = compute_ha1("trunk1", REALM, self.password, resp.algorithm)
            result = self.auth.verify(resp, "REGISTER", ha1)
        if result is not AuthResult.OK:
            name = "Proxy-Authenticate" if self.challenge_status == 407 else "WWW-Authenticate"
            challenges = self.auth.challenge_values(stale=result is AuthResult.STALE)
            incoming.respond(self.challenge_status, headers=[(name, c) for c in challenges])
            return
        asked = request.expires if request.expires is not None else 3600
        if self.min_expires is not None and 0 < asked < self.min_expires:
            incoming.respond(423, headers=[("Min-Expires", str(self.min_expires))])
            return
        contact = str(request.contacts[0]) if request.contacts != "*" else "*"
        if asked == 0:
            self.bindings.pop(contact, None)
            incoming.respond(200)
            return
        granted = self.grant or asked
        self.bindings[contact] = granted
        incoming.respond(200, headers=[("Contact", f"{contact};expires={granted}")])


@dataclass
class World:
    reactor: FakeReactor
    provider: Registrar
    registration: OutboundRegistration
    changes: list[RegistrationStatus]

    def run(self, seconds: float, step: float = 0.05) -> None:
        end = self.reactor.seconds() + seconds
        while self.reactor.seconds() < end:
            self.reactor.advance(step)

    @property
    def states(self) -> list[str]:
        out: list[str] = []
        for change in self.changes:
            if not out or out[-1] != change.state.value:
                out.append(change.state.value)
        return out


def world(
    password: str = "trunk-secret",
    realm: str | None = REALM,
    expires: int = 600,
    rng: Callable[[], float] = lambda: 1.0,
    **provider: object,
) -> World:
    reactor = FakeReactor()
    registrar = Registrar(reactor, PROVIDER, **provider)  # type: ignore[arg-type]
    Registrar(reactor, OTHER)  # a second registrar for redirects
    stack = Stack(reactor, Guard(GuardConfig(), reactor.seconds), StackOptions(TimerConfig()))
    transports = MemoryTransports(reactor.network, PBX)
    transports.sink = stack.receive
    stack.transports = transports  # type: ignore[assignment]
    client = ClientTransactions(reactor, transports, TimerConfig(), transports.local_address)  # type: ignore[arg-type]
    stack.client = client
    changes: list[RegistrationStatus] = []
    registration = OutboundRegistration(
        reactor,
        client,
        RegistrationConfig("trunk1", REALM, PROVIDER, expires=expires),
        DigestClient(Credentials("trunk1", password, realm=realm)),
        on_change=changes.append,
        rng=rng,
    )
    return World(reactor, registrar, registration, changes)


def test_registers_with_the_trunk_s_credentials_and_refreshes_before_expiry() -> None:
    w = world(expires=300)
    w.registration.start()
    w.run(1)
    status = w.registration.status
    assert status.state is RegistrationState.REGISTERED and status.expires == 300
    assert w.provider.bindings == {"<sip:trunk1@127.0.0.1:5060>": 300}
    first, second = w.provider.requests
    assert first.headers.get("Authorization") is None
    assert second.headers.get("Authorization") is not None
    assert first.call_id == second.call_id and second.cseq.seq == first.cseq.seq + 1
    since = status.since
    w.run(240 - 1 + 0.5)  # refresh a minute before the 300 s run out
    assert len(w.provider.requests) == 3  # the refresh reused the nonce: no new challenge
    refresh = w.provider.requests[2]
    assert parse_authorization(refresh.headers.get("Authorization") or "").nc == "00000002"
    assert w.registration.status.since == since and w.states == ["registering", "registered"]


def test_a_wrong_password_fails_with_the_reason_and_retries_with_a_growing_wait() -> None:
    w = world(password="wrong")
    w.registration.start()
    w.run(1)
    status = w.registration.status
    assert status.state is RegistrationState.FAILED
    assert "refused" in status.reason and status.retry_in == 30.0
    assert len(w.provider.requests) == 2  # the refused credentials were not sent again
    w.run(30)
    assert w.registration.status.retry_in == 60.0 and len(w.provider.requests) == 4
    w.provider.password = "wrong"  # the installer fixes the provider side instead
    w.registration.digest.credentials = Credentials("trunk1", "wrong", realm=REALM)
    w.run(61)
    assert w.registration.status.state is RegistrationState.REGISTERED


def test_423_raises_the_expiry_to_min_expires() -> None:
    w = world(expires=60, min_expires=1800)
    w.registration.start()
    w.run(1)
    assert w.registration.status.state is RegistrationState.REGISTERED
    assert w.registration.status.expires == 1800
    assert w.provider.requests[-1].expires == 1800


def test_a_407_is_answered_in_proxy_authorization() -> None:
    w = world(challenge_status=407)
    w.registration.start()
    w.run(1)
    assert w.registration.status.state is RegistrationState.REGISTERED
    assert w.provider.requests[-1].headers.get("Proxy-Authorization") is not None


def test_a_challenge_from_another_realm_is_not_answered() -> None:
    w = world(realm="sip.other-provider.example")
    w.registration.start()
    w.run(1)
    status = w.registration.status
    assert status.state is RegistrationState.FAILED and "realm" in status.reason
    assert all(r.headers.get("Authorization") is None for r in w.provider.requests)


def test_a_redirect_to_an_address_is_followed() -> None:
    w = world(redirect_to=OTHER)
    w.registration.start()
    w.run(1)
    assert w.registration.status.state is RegistrationState.REGISTERED
    assert len(w.provider.requests) == 1  # the rest went to the other registrar


def test_no_answer_is_a_failure_after_timer_f_and_is_retried() -> None:
    w = world()
    w.reactor.network.loss = lambda data, src, dst: dst == (PROVIDER.host, PROVIDER.port)
    w.registration.start()
    w.run(33)
    status = w.registration.status
    assert status.state is RegistrationState.FAILED and status.reason.startswith("408")
    w.reactor.network.loss = None
    w.run(31)
    assert w.registration.status.state is RegistrationState.REGISTERED


def test_a_refusal_is_shown_and_stop_removes_the_binding() -> None:
    w = world(refuse=403)
    w.registration.start()
    w.run(1)
    assert w.registration.status.reason == "403 Forbidden"
    w.provider.refuse = None
    w.run(30)
    assert w.registration.status.state is RegistrationState.REGISTERED and w.provider.bindings
    w.registration.stop()
    w.run(1)
    assert w.provider.bindings == {} and w.registration.status.state is RegistrationState.STOPPED
    assert w.provider.requests[-1].expires == 0
    w.run(700)
    assert w.provider.requests[-1].expires == 0  # no refresh after stop


def test_a_refresh_with_an_expired_nonce_is_answered_again_after_stale_true() -> None:
    w = world(expires=600)  # refreshed at 540 s; the registrar's nonces live 300 s
    w.registration.start()
    w.run(541)
    statuses = [c.state for c in w.changes]
    assert RegistrationState.FAILED not in statuses
    refresh, stale_answer = w.provider.requests[2:]
    assert refresh.headers.get("Authorization") is not None  # the old nonce, refused as stale
    assert stale_answer.headers.get("Authorization") != refresh.headers.get("Authorization")
    assert w.registration.status.state is RegistrationState.REGISTERED


def test_located_registrars_are_tried_in_order_with_fail_over_when_one_does_not_answer() -> None:
    w = world()
    dead = Address("UDP", "127.0.0.9", 5060)  # nothing listens there: Timer F, then 408
    asked: list[int] = []

    def locate() -> Any:
        asked.append(1)
        return defer.succeed([dead, PROVIDER])

    registration = OutboundRegistration(
        w.reactor, w.registration._client,
        RegistrationConfig("trunk1", REALM, None, expires=600),
        DigestClient(Credentials("trunk1", "trunk-secret", realm=REALM)),
        locate=locate,
    )  # fmt: skip
    registration.start()
    w.run(31)
    assert registration.status.state is RegistrationState.REGISTERING
    w.run(3)  # Timer F (64*T1) ran out on the dead address: the next one answered
    assert registration.status.state is RegistrationState.REGISTERED
    assert w.provider.bindings and asked == [1]
    w.run(600)  # the refresh is located again and keeps the working registrar
    assert len(asked) == 2 and registration.status.state is RegistrationState.REGISTERED
