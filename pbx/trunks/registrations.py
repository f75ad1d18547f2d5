"""The registrations of every registering trunk and the OPTIONS pings of every trunk, kept
in step with the stored trunks.

:class:`TrunkRegistrations` owns one :class:`pbx.sip.outbound_registration.OutboundRegistration`
per enabled, registering trunk. :meth:`sync` takes the stored trunks (at start and every few
seconds, so ``pbx trunk add/del`` and the web act on a running server): a new trunk starts
registering, a changed one (``updated_at``) starts over with its new settings, a deleted or
disabled one removes its binding. Each trunk answers the challenges of its own registrations
with its own credentials only (one :class:`pbx.sip.digest_client.DigestClient` per trunk).
Every enabled trunk's server (its proxy, else its domain) also gets an OPTIONS every
``ping_interval`` seconds (:class:`pbx.sip.keepalive.OptionsPing`): up or down.

A domain or proxy that is a host name is located before each attempt through RFC 3263
(pbx.sip.dns: NAPTR, SRV, A/AAAA, with fail-over to the next address when one does not
answer); a host with a port is looked up as A/AAAA only. Where a trunk cannot register yet,
its status says why instead of guessing: TCP/TLS (pbx opens no outgoing stream connections
yet).
:meth:`snapshot` is what the status file, ``pbx status`` and the dashboard show.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from pbx import trunkpresets
from pbx.sip.client import ClientTransactions
from pbx.sip.digest_client import Credentials, DigestClient
from pbx.sip.dns import SipLocator
from pbx.sip.keepalive import OptionsPing
from pbx.sip.outbound_registration import (
    OutboundRegistration,
    RegistrationConfig,
    RegistrationState,
    RegistrationStatus,
)
from pbx.sip.transport import Address
from pbx.store.trunks import Trunk

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    trunk: Trunk
    registration: OutboundRegistration | None
    blocked: RegistrationStatus | None = None  # why it cannot register, when it cannot
    ping: OptionsPing | None = None
    digest: DigestClient | None = None  # an IP-authenticated trunk's, made on first need
    since: float = 0.0  # when this entry started (the state of an IP-authenticated trunk)
    # an IP-authenticated trunk's allow_from, parsed once: every INVITE is checked against it
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()


class _Undecryptable(Exception):
    """A trunk's stored password cannot be decrypted (the key file changed)."""


def registrar_target(trunk: Trunk) -> tuple[str, int | None]:
    """The (host, port or None) the trunk's REGISTERs go to: its proxy, else its domain
    (checked when the trunk was added; the same parser as then)."""
    return trunkpresets.check_host_port(trunk.proxy or trunk.domain, f"trunk {trunk.name}")


def registrar_address(trunk: Trunk) -> Address | str | None:
    """The registrar's address when the trunk gives one, None when its host is a name (to
    be located), or the reason pbx cannot register the trunk yet."""
    transport = trunk.transport.upper()
    if transport != "UDP":
        return f"{trunk.transport.upper()} trunks are not supported yet (use udp)"
    host, port = registrar_target(trunk)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return Address(transport, host, port or 5060)


class TrunkRegistrations:
    """Registrations of the stored trunks; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        decrypt: Callable[[str], str],
        user_agent: str = "pbx",
        locator: Callable[[], SipLocator] | None = None,
        ping_interval: float = 0.0,
    ) -> None:
        """``locator()`` gives the RFC 3263 locator, made on first need (trunks whose
        registrar is a name); without it such trunks say that they cannot be resolved.
        ``ping_interval``: seconds between OPTIONS to every trunk's server (0: none)."""
        self._ping_interval = ping_interval
        self._reactor = reactor
        self._client = client
        self._decrypt = decrypt
        self._user_agent = user_agent
        self._make_locator = locator
        self._locator: SipLocator | None = None
        self._entries: dict[str, _Entry] = {}

    def sync(self, stored: Iterable[Trunk]) -> None:
        wanted = {t.name: t for t in stored if t.enabled}
        for name in list(self._entries):
            entry = self._entries[name]
            trunk = wanted.get(name)
            if trunk is None or trunk.updated_at != entry.trunk.updated_at:
                self._remove(name)
        for name, trunk in wanted.items():
            if name not in self._entries:
                self._entries[name] = self._start(trunk)

    def stop(self) -> None:
        for name in list(self._entries):
            self._remove(name)

    def digest_for(self, name: str) -> DigestClient | None:
        """The trunk's own digest client (answers its provider's 401/407), if it has
        credentials."""
        entry = self._entries.get(name)
        if entry is None or not entry.trunk.username:
            return None
        if entry.registration is not None:
            return entry.registration.digest
        if entry.digest is None:
            try:
                password = self._password(entry.trunk)
            except _Undecryptable as exc:
                log.warning("trunk %s: %s", entry.trunk.name, exc)
                return None
            entry.digest = DigestClient(Credentials(entry.trunk.username, password))
        return entry.digest

    def addresses_for(self, name: str) -> Any:
        """Deferred list of the addresses requests through the trunk go to (its proxy, else
        its domain; located when a name); empty when it has none pbx can use."""
        entry = self._entries.get(name)
        if entry is None:
            return defer.succeed([])
        target = registrar_address(entry.trunk)
        if isinstance(target, Address):
            return defer.succeed([target])
        if target is None and self._make_locator is not None:
            return self._locate_for(entry.trunk)()
        return defer.succeed([])

    def _password(self, trunk: Trunk) -> str:
        """The trunk's password in the clear; _Undecryptable (saying so) after a key change."""
        try:
            return self._decrypt(trunk.password_enc) if trunk.password_enc else ""
        except Exception as exc:  # noqa: BLE001 - a key that changed: say so, do not crash
            raise _Undecryptable(
                f"the stored password cannot be decrypted ({type(exc).__name__})"
            ) from None

    def trunk(self, name: str) -> Trunk | None:
        entry = self._entries.get(name)
        return None if entry is None else entry.trunk

    def trunk_for_source(self, host: str) -> str | None:
        """The enabled trunk whose provider ``host`` is: in an IP-authenticated trunk's
        networks, or an address of a registering trunk's registrar (given or located).
        Nothing else makes a request a provider's. Asked for every INVITE."""
        if not self._entries:
            return None
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return None
        for name, entry in sorted(self._entries.items()):
            trunk = entry.trunk
            if not trunk.register:
                if any(address in network for network in entry.networks):
                    return name
            elif entry.registration is not None:
                hosts = {t.host for t in entry.registration.targets}
                if host in hosts:
                    return name
        return None

    def status(self, name: str) -> RegistrationStatus | None:
        """The registration state of a registering trunk (None for the others)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        return entry.blocked or (entry.registration.status if entry.registration else None)

    def snapshot(self) -> list[dict[str, Any]]:
        """One row per enabled trunk: its registration state (``ip-authenticated`` for a
        trunk that does not register) and whether its server answers OPTIONS."""
        out = []
        for name in sorted(self._entries):
            entry = self._entries[name]
            status = self.status(name)
            row: dict[str, Any] = (
                {"name": name, **status.as_dict()}
                if status is not None
                else {"name": name, "state": "ip-authenticated", "since": entry.since,
                      "reason": "", "expires": None, "retry_in": None}
            )  # fmt: skip
            ping = entry.ping.status if entry.ping is not None else None
            row["reachable"] = ping.state.value if ping is not None else None
            row["rtt_ms"] = ping.rtt_ms if ping is not None else None
            out.append(row)
        return out

    # -- one trunk ---------------------------------------------------------------------------

    def _start(self, trunk: Trunk) -> _Entry:
        entry = self._register(trunk) if trunk.register else _Entry(trunk, None)
        entry.since = self._reactor.seconds()
        entry.networks = tuple(ipaddress.ip_network(n, strict=False) for n in trunk.allow_from)
        entry.ping = self._pinger(trunk)
        if entry.ping is not None:
            entry.ping.start()
        return entry

    def _pinger(self, trunk: Trunk) -> OptionsPing | None:
        target = registrar_address(trunk)
        if self._ping_interval <= 0 or isinstance(target, str):
            return None
        if target is None and self._make_locator is None:
            return None
        return OptionsPing(
            self._reactor, self._client, trunk.domain, self._ping_interval,
            target=target, locate=None if target is not None else self._locate_for(trunk),
            user_agent=self._user_agent,
        )  # fmt: skip

    def _register(self, trunk: Trunk) -> _Entry:
        target = registrar_address(trunk)
        if target is None and self._make_locator is None:
            target = "the registrar is a host name and pbx has no DNS resolver here"
        if isinstance(target, str):
            log.warning("trunk %s cannot register: %s", trunk.name, target)
            blocked = RegistrationStatus(RegistrationState.FAILED, self._reactor.seconds(), target)
            return _Entry(trunk, None, blocked)
        try:
            password = self._password(trunk)
        except _Undecryptable as exc:
            return _Entry(
                trunk,
                None,
                RegistrationStatus(RegistrationState.FAILED, self._reactor.seconds(), str(exc)),
            )
        digest = DigestClient(Credentials(trunk.username, password))
        config = RegistrationConfig(
            user=trunk.username, domain=trunk.domain, registrar=target,
            expires=trunk.expires, user_agent=self._user_agent,
        )  # fmt: skip
        registration = OutboundRegistration(
            self._reactor, self._client, config, digest, on_change=self._reporter(trunk.name),
            locate=None if target is not None else self._locate_for(trunk),
        )  # fmt: skip
        where = target or "%s (DNS)" % (trunk.proxy or trunk.domain)
        log.info("trunk %s registers %s@%s at %s", trunk.name, trunk.username, trunk.domain, where)
        registration.start()
        return _Entry(trunk, registration)

    def _locate_for(self, trunk: Trunk) -> Callable[[], Any]:
        host, port = registrar_target(trunk)

        def locate() -> Any:
            if self._locator is None:
                assert self._make_locator is not None
                self._locator = self._make_locator()
            return self._locator.locate(host, port, trunk.transport.upper())

        return locate

    def _reporter(self, name: str) -> Callable[[RegistrationStatus], None]:
        def changed(status: RegistrationStatus) -> None:
            if status.state is RegistrationState.REGISTERED:
                log.info("trunk %s registered (expires %s s)", name, status.expires)
            elif status.state is RegistrationState.FAILED:
                log.warning("trunk %s not registered: %s", name, status.reason)

        return changed

    def _remove(self, name: str) -> None:
        entry = self._entries.pop(name)
        if entry.registration is not None:
            entry.registration.stop()
        if entry.ping is not None:
            entry.ping.stop()
