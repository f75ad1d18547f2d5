"""A small authoritative DNS server for tests (twisted.names), on 127.0.0.1 only.

Run as ``python -m tests.interop.harness.dns_server PORT ZONE.json``; the zone file maps
``"name TYPE"`` to a list of records: A/AAAA ``"addr"``, SRV ``[priority, weight, port,
"target"]``, NAPTR ``[order, preference, "flags", "service", "replacement"]``. Names not in
the zone get NXDOMAIN. Prints ``ready`` once it listens. Tests start it and stop it by pid.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import defer, reactor
from twisted.names import dns, error, server
from twisted.names.common import ResolverBase

TYPES = {"A": dns.A, "AAAA": dns.AAAA, "SRV": dns.SRV, "NAPTR": dns.NAPTR}


def _record(kind: str, value: Any) -> Any:
    if kind == "A":
        return dns.Record_A(value, ttl=60)
    if kind == "AAAA":
        return dns.Record_AAAA(value, ttl=60)
    if kind == "SRV":
        priority, weight, port, target = value
        return dns.Record_SRV(priority, weight, port, target.encode(), ttl=60)
    order, preference, flags, service, replacement = value
    return dns.Record_NAPTR(
        order, preference, flags.encode(), service.encode(), b"", replacement.encode(), ttl=60
    )


class ZoneAuthority(ResolverBase):
    def __init__(self, zone: dict[str, list[Any]]) -> None:
        super().__init__()
        self.records: dict[tuple[bytes, int], list[Any]] = {}
        for key, values in zone.items():
            name, kind = key.rsplit(" ", 1)
            self.records[(name.lower().encode(), TYPES[kind])] = [_record(kind, v) for v in values]
        self.names = {name for name, _ in self.records}

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any = None) -> Any:
        key = (name.lower(), type)
        if key in self.records:
            answers = [
                dns.RRHeader(name=name, type=type, cls=cls, ttl=60, payload=r, auth=True)
                for r in self.records[key]
            ]
            return defer.succeed((answers, [], []))
        if name.lower() in self.names:
            return defer.succeed(([], [], []))  # the name exists, not this type
        return defer.fail(error.DomainError(name))


def main() -> None:
    port, zone_path = int(sys.argv[1]), sys.argv[2]
    with open(zone_path, encoding="utf-8") as handle:
        zone = json.load(handle)
    factory = server.DNSServerFactory(authorities=[ZoneAuthority(zone)])
    reactor.listenUDP(port, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
