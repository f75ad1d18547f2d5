"""Where to send requests for a SIP host name: RFC 3263 through Twisted's own resolver.

:class:`SipLocator` turns (host, port, transport) into the transport addresses to try, in
order: an IP literal is itself; a name with a port is looked up as A/AAAA only (§4.2); a name
without one goes NAPTR -> SRV -> A/AAAA (§4.1, selection in pbx.sip.locate), falling back to
SRV without NAPTR and then to A/AAAA on the default port. Each failed query (no such name, no
answer, a timeout) simply yields nothing, so the next step is tried; an empty result means the
name could not be resolved. Answers are cached by the resolver (``twisted.names``' cache
honours the records' TTLs).

:func:`make_resolver` builds the resolver from ``[dns] servers`` (empty: the system's
resolv.conf). pbx resolves names only for its own requests (trunks), never for what a phone
sends.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer
from twisted.names import client, dns

from pbx.sip.locate import (
    DEFAULT_PORTS,
    Naptr,
    Srv,
    naptr_services,
    srv_names,
    srv_order,
)
from pbx.sip.transport import Address

log = logging.getLogger(__name__)


def make_resolver(servers: Iterable[tuple[str, int]]) -> Any:
    """A caching twisted.names resolver asking ``servers`` (none: /etc/resolv.conf)."""
    chosen = list(servers)
    return client.createResolver(servers=chosen or None)


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SipLocator:
    """RFC 3263 server location over a twisted.names resolver."""

    def __init__(self, resolver: Any, rng: Callable[[], float] | None = None) -> None:
        self._resolver = resolver
        self._rng = rng

    @defer.inlineCallbacks
    def locate(
        self, host: str, port: int | None = None, transport: str | None = None
    ) -> Any:  # Deferred[list[Address]]
        """The addresses to try for ``host`` (best first), for ``transport`` or any that pbx
        speaks when None; an empty list when nothing resolves."""
        host = host.strip("[]").rstrip(".")
        transports = [transport.upper()] if transport else ["UDP", "TCP", "TLS"]
        if _is_address(host):
            chosen = transports[0]
            return [Address(chosen, host, port or DEFAULT_PORTS[chosen])]
        if port is not None:
            addresses = yield self._addresses(host)
            return [Address(transports[0], a, port) for a in addresses]
        services = naptr_services((yield self._naptr(host)), transports)
        if not services:
            services = srv_names(host, transports)
        found: list[Address] = []
        for chosen, name in services:
            records = yield self._srv(name)
            if not records:
                continue
            for record in srv_order(records, *(() if self._rng is None else (self._rng,))):
                for address in (yield self._addresses(record.target)):
                    target = Address(chosen, address, record.port)
                    if target not in found:
                        found.append(target)
            if found:
                return found
        chosen = transports[0]
        addresses = yield self._addresses(host)
        return [Address(chosen, a, DEFAULT_PORTS[chosen]) for a in addresses]

    # -- queries -----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _answers(self, lookup: Callable[[str], Any], name: str, kind: int) -> Any:
        try:
            answers, _, _ = yield lookup(name)
        except Exception as exc:  # noqa: BLE001 - NXDOMAIN, timeout, refused: no records
            log.debug("DNS %s %s: %s", dns.QUERY_TYPES.get(kind, kind), name, exc)
            return []
        return [a.payload for a in answers if a.type == kind]

    @defer.inlineCallbacks
    def _naptr(self, name: str) -> Any:
        records = yield self._answers(
            self._resolver.lookupNamingAuthorityPointer, name, dns.NAPTR
        )
        return [
            Naptr(r.order, r.preference, r.flags.string.decode(), r.service.string.decode(),
                  r.replacement.name.decode())
            for r in records
        ]  # fmt: skip

    @defer.inlineCallbacks
    def _srv(self, name: str) -> Any:
        records = yield self._answers(self._resolver.lookupService, name, dns.SRV)
        return [Srv(r.priority, r.weight, r.port, r.target.name.decode()) for r in records]

    @defer.inlineCallbacks
    def _addresses(self, name: str) -> Any:
        v4 = yield self._answers(self._resolver.lookupAddress, name, dns.A)
        v6 = yield self._answers(self._resolver.lookupIPV6Address, name, dns.AAAA)
        out = [r.dottedQuad() for r in v4]
        out += [socket.inet_ntop(socket.AF_INET6, r.address) for r in v6]
        return out
