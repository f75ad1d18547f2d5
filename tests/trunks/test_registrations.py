"""TrunkRegistrations in process: stored trunks become registrations, changes and deletions
act on them, and trunks pbx cannot register yet say why."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from twisted.internet import defer

from pbx.sip.client import ClientTransactions
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.stack import Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address
from pbx.store.trunks import Trunk
from pbx.trunks.registrations import TrunkRegistrations, registrar_address
from tests.calls.sipnet import FakeReactor, MemoryTransports
from tests.sip.test_outbound_registration import PBX, PROVIDER, REALM, Registrar


class FakeLocator:
    """Resolves every name to the provider's registrar (the DNS has its own tests)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, int | None, str | None]] = []

    def locate(self, host: str, port: int | None = None, transport: str | None = None) -> Any:
        self.asked.append((host, port, transport))
        return defer.succeed([PROVIDER] if host == "sip.provider.example" else [])


def _rig(
    locator: FakeLocator | None = None, ping_interval: float = 0.0
) -> tuple[FakeReactor, Registrar, TrunkRegistrations]:
    reactor = FakeReactor()
    registrar = Registrar(reactor, PROVIDER)
    stack = Stack(reactor, Guard(GuardConfig(), reactor.seconds), StackOptions(TimerConfig()))
    transports = MemoryTransports(reactor.network, PBX)
    transports.sink = stack.receive
    stack.transports = transports  # type: ignore[assignment]
    client = ClientTransactions(reactor, transports, TimerConfig(), transports.local_address)  # type: ignore[arg-type]
    stack.client = client
    trunks = TrunkRegistrations(
        reactor, client, decrypt=lambda token: token.removeprefix("enc:"),
        locator=None if locator is None else (lambda: locator),  # type: ignore[arg-type,return-value]
        ping_interval=ping_interval,
    )  # fmt: skip
    return reactor, registrar, trunks


TRUNK = Trunk(
    name="prov", preset="generic", domain=REALM, proxy=f"{PROVIDER.host}:{PROVIDER.port}",
    username="trunk1", password_enc="enc:trunk-secret", updated_at=1.0,
)  # fmt: skip


def _run(reactor: FakeReactor, seconds: float) -> None:
    for _ in range(int(seconds / 0.05)):
        reactor.advance(0.05)


def test_a_stored_trunk_registers_and_a_deleted_one_unregisters() -> None:
    reactor, registrar, trunks = _rig()
    trunks.sync([TRUNK])
    _run(reactor, 1)
    (shown,) = trunks.snapshot()
    assert shown["name"] == "prov" and shown["state"] == "registered" and shown["expires"] == 600
    assert registrar.bindings
    trunks.sync([TRUNK])  # unchanged: nothing sent
    count = len(registrar.requests)
    _run(reactor, 1)
    assert len(registrar.requests) == count
    trunks.sync([])
    _run(reactor, 1)
    assert registrar.bindings == {} and trunks.snapshot() == []


def test_a_changed_trunk_starts_over_with_its_new_settings() -> None:
    reactor, registrar, trunks = _rig()
    trunks.sync([replace(TRUNK, password_enc="enc:wrong")])
    _run(reactor, 1)
    assert trunks.snapshot()[0]["state"] == "failed"
    trunks.sync([replace(TRUNK, updated_at=2.0)])  # the installer fixed the password
    _run(reactor, 1)
    assert trunks.snapshot()[0]["state"] == "registered"


def test_disabled_and_ip_authenticated_trunks_do_not_register() -> None:
    reactor, registrar, trunks = _rig()
    trunks.sync([replace(TRUNK, enabled=False), replace(TRUNK, name="ip", register=False)])
    _run(reactor, 1)
    (shown,) = trunks.snapshot()
    assert (shown["name"], shown["state"], shown["reachable"]) == ("ip", "ip-authenticated", None)
    assert registrar.requests == []


def test_trunks_pbx_cannot_register_yet_say_why() -> None:
    reactor, _, trunks = _rig()
    named = replace(TRUNK, name="named", proxy="", domain="sip.provider.example")
    tls = replace(TRUNK, name="tls", transport="tls")
    trunks.sync([named, tls])
    states = {t["name"]: t for t in trunks.snapshot()}
    assert states["named"]["state"] == "failed" and "no DNS resolver" in states["named"]["reason"]
    assert (
        states["tls"]["state"] == "failed"
        and "TLS trunks are not supported yet" in states["tls"]["reason"]
    )
    assert registrar_address(replace(TRUNK, proxy="[::1]:5080")) == Address("UDP", "::1", 5080)
    assert registrar_address(replace(TRUNK, proxy="", domain="192.0.2.1")) == Address(
        "UDP", "192.0.2.1", 5060
    )


def test_a_registrar_given_by_name_is_located_before_each_attempt() -> None:
    locator = FakeLocator()
    reactor, registrar, trunks = _rig(locator)
    named = replace(TRUNK, proxy="", domain="sip.provider.example")
    unknown = replace(TRUNK, name="unknown", proxy="", domain="nowhere.example")
    trunks.sync([named, unknown])
    _run(reactor, 1)
    states = {t["name"]: t for t in trunks.snapshot()}
    assert states["prov"]["state"] == "registered" and registrar.bindings
    assert states["unknown"]["state"] == "failed"
    assert states["unknown"]["reason"] == "nowhere.example does not resolve (DNS)"
    assert ("sip.provider.example", None, "UDP") in locator.asked


def _options_sent(reactor: FakeReactor) -> int:
    return sum(
        1 for d in reactor.network.sip("127.0.0.1", PROVIDER.host) if d.data.startswith(b"OPTIONS ")
    )


def test_every_trunk_s_server_is_pinged_with_options_up_and_down() -> None:
    reactor, registrar, trunks = _rig(ping_interval=30)
    ip_trunk = replace(TRUNK, name="ip", register=False)
    gone = replace(TRUNK, name="gone", register=False, proxy="127.0.0.9:5060")  # nothing there
    trunks.sync([TRUNK, ip_trunk, gone])
    _run(reactor, 1)
    states = {t["name"]: t for t in trunks.snapshot()}
    assert states["prov"]["reachable"] == "up" and states["ip"]["reachable"] == "up"
    assert states["ip"]["rtt_ms"] is not None and states["gone"]["reachable"] == "unknown"
    assert _options_sent(reactor) == 2  # the registrar answers OPTIONS with 405: still up
    _run(reactor, 33)  # Timer F on the silent server
    states = {t["name"]: t for t in trunks.snapshot()}
    assert states["gone"]["reachable"] == "down"
    assert _options_sent(reactor) == 4  # every 30 s


def test_the_provider_of_a_request_is_known_by_its_source_address_only() -> None:
    reactor, _, trunks = _rig()
    assert trunks.trunk_for_source("127.0.0.2") is None  # no trunks at all
    ip_trunk = replace(TRUNK, name="ip", register=False, allow_from=("192.0.2.0/24",))
    trunks.sync([TRUNK, ip_trunk])
    _run(reactor, 1)
    assert trunks.trunk_for_source("192.0.2.77") == "ip"
    assert trunks.trunk_for_source(PROVIDER.host) == "prov"  # the registering trunk's registrar
    assert trunks.trunk_for_source("198.51.100.1") is None
    assert trunks.trunk_for_source("not-an-address") is None
