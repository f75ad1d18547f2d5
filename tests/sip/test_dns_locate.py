"""RFC 3263 server location: record selection (sans-IO) and SipLocator over a fake resolver
that answers like twisted.names (RRHeader lists; a failing query raises)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from twisted.internet import defer
from twisted.names import dns, error

from pbx.sip.dns import SipLocator
from pbx.sip.locate import Naptr, Srv, naptr_services, srv_names, srv_order
from pbx.sip.transport import Address


def test_naptr_records_give_sip_services_in_order_and_preference() -> None:
    records = [
        Naptr(20, 10, "s", "SIP+D2U", "_sip._udp.example.net."),
        Naptr(10, 20, "s", "SIPS+D2T", "_sips._tcp.example.net."),
        Naptr(10, 10, "s", "SIP+D2T", "_sip._tcp.example.net."),
        Naptr(5, 10, "u", "SIP+D2U", "!^.*$!sip:x@y!"),  # not terminal-s: skipped
        Naptr(5, 10, "s", "SIP+D2S", "_sip._sctp.example.net."),  # SCTP: not spoken
    ]
    assert naptr_services(records, ["UDP", "TCP", "TLS"]) == [
        ("TCP", "_sip._tcp.example.net"),
        ("TLS", "_sips._tcp.example.net"),
        ("UDP", "_sip._udp.example.net"),
    ]
    assert naptr_services(records, ["UDP"]) == [("UDP", "_sip._udp.example.net")]
    assert srv_names("example.net.", ["UDP", "TLS"]) == [
        ("UDP", "_sip._udp.example.net"), ("TLS", "_sips._tcp.example.net"),
    ]  # fmt: skip


def test_srv_order_is_priority_first_then_weighted() -> None:
    records = [
        Srv(20, 0, 5060, "backup.example.net"),
        Srv(10, 60, 5060, "a.example.net"),
        Srv(10, 40, 5060, "b.example.net"),
        Srv(10, 0, 5060, "c.example.net"),
        Srv(5, 0, 5060, "."),  # "no service": dropped
    ]
    low = srv_order(records, rng=lambda: 0.0)
    assert [r.target for r in low] == [
        "a.example.net",
        "b.example.net",
        "c.example.net",
        "backup.example.net",
    ]
    high = srv_order(records, rng=lambda: 0.99)
    assert [r.target for r in high] == [
        "b.example.net",
        "a.example.net",
        "c.example.net",
        "backup.example.net",
    ]
    counts = {"a.example.net": 0, "b.example.net": 0}
    draws: Iterator[float] = (i / 1000 for i in itertools.cycle(range(1000)))
    for _ in range(1000):
        counts[srv_order(records[1:3], rng=lambda: next(draws))[0].target] += 1
    assert 550 <= counts["a.example.net"] <= 650  # weight 60 of 100


class FakeResolver:
    """Answers from a zone dict: (name, type) -> list of record payloads."""

    def __init__(self, zone: dict[tuple[str, int], list[Any]]) -> None:
        self.zone = zone
        self.queries: list[tuple[str, int]] = []

    def _lookup(self, kind: int) -> Any:
        def lookup(name: str) -> defer.Deferred[Any]:
            self.queries.append((name, kind))
            payloads = self.zone.get((name, kind))
            if payloads is None:
                return defer.fail(error.DNSNameError(name))
            answers = [dns.RRHeader(name=name, type=kind, payload=p) for p in payloads]
            return defer.succeed((answers, [], []))

        return lookup

    def __getattr__(self, name: str) -> Any:
        kinds = {
            "lookupNamingAuthorityPointer": dns.NAPTR, "lookupService": dns.SRV,
            "lookupAddress": dns.A, "lookupIPV6Address": dns.AAAA,
        }  # fmt: skip
        if name in kinds:
            return self._lookup(kinds[name])
        raise AttributeError(name)


ZONE: dict[tuple[str, int], list[Any]] = {
    ("provider.example", dns.NAPTR): [
        dns.Record_NAPTR(10, 10, b"s", b"SIP+D2U", b"", b"_sip._udp.provider.example"),
        dns.Record_NAPTR(20, 10, b"s", b"SIP+D2T", b"", b"_sip._tcp.provider.example"),
    ],
    ("_sip._udp.provider.example", dns.SRV): [
        dns.Record_SRV(10, 0, 5070, b"edge1.provider.example"),
        dns.Record_SRV(20, 0, 5080, b"edge2.provider.example"),
    ],
    ("edge1.provider.example", dns.A): [dns.Record_A("127.0.0.41")],
    ("edge2.provider.example", dns.A): [dns.Record_A("127.0.0.42")],
    ("edge2.provider.example", dns.AAAA): [dns.Record_AAAA("::1")],
    ("nosrv.example", dns.A): [dns.Record_A("127.0.0.43")],
    ("_sip._udp.srvonly.example", dns.SRV): [dns.Record_SRV(0, 0, 5099, b"edge1.provider.example")],
}


def _located(*args: Any) -> list[Address]:
    result: list[list[Address]] = []
    SipLocator(FakeResolver(ZONE)).locate(*args).addCallback(result.append)
    assert result, "the fake resolver answers synchronously"
    return result[0]


def test_naptr_then_srv_then_addresses_in_order() -> None:
    assert _located("provider.example", None, "UDP") == [
        Address("UDP", "127.0.0.41", 5070),
        Address("UDP", "127.0.0.42", 5080),
        Address("UDP", "::1", 5080),
    ]


def test_without_naptr_srv_is_tried_then_the_address_on_the_default_port() -> None:
    assert _located("srvonly.example", None, "UDP") == [Address("UDP", "127.0.0.41", 5099)]
    assert _located("nosrv.example", None, "UDP") == [Address("UDP", "127.0.0.43", 5060)]
    assert _located("nowhere.example", None, "UDP") == []


def test_a_port_means_addresses_only_and_an_ip_literal_is_itself() -> None:
    resolver = FakeResolver(ZONE)
    result: list[Any] = []
    SipLocator(resolver).locate("provider.example", 5062, "UDP").addCallback(result.append)
    assert result == [[]]  # no A record for the domain itself
    assert {kind for _, kind in resolver.queries} == {dns.A, dns.AAAA}
    assert _located("edge1.provider.example", 5062, "UDP") == [Address("UDP", "127.0.0.41", 5062)]
    assert _located("192.0.2.5", None, "UDP") == [Address("UDP", "192.0.2.5", 5060)]
    assert _located("[2001:db8::1]", 5070, "UDP") == [Address("UDP", "2001:db8::1", 5070)]
