"""Locating a SIP server from a host name (RFC 3263 §4), sans-IO: which records to ask for and
in which order to try what they give.

pbx.sip.dns asks the DNS and feeds the answers in here as plain records:

- :func:`naptr_services`: NAPTR records of the domain -> (transport, SRV name) pairs in NAPTR
  order and preference, only the SIP services pbx speaks (``SIP+D2U``, ``SIP+D2T``,
  ``SIPS+D2T``) and only terminal ``s`` records (RFC 3263 §4.1);
- :func:`srv_names`: the SRV names to try without NAPTR (§4.1: ``_sip._udp``, ``_sip._tcp``,
  ``_sips._tcp``, for the transports allowed);
- :func:`srv_order`: SRV records in RFC 2782 order: lowest priority first, and within one
  priority a weighted random order (a weight-0 record is only picked when nothing else is
  left); a ``.`` target means "no service here" and is dropped.

No I/O, no Twisted: must not import twisted, socket or the store.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass

#: NAPTR service field -> transport (RFC 3263 §4.1, RFC 3261 §26.2 for SIPS)
SERVICES = {"SIP+D2U": "UDP", "SIP+D2T": "TCP", "SIPS+D2T": "TLS"}
#: transport -> SRV name prefix
SRV_PREFIXES = {"UDP": "_sip._udp.", "TCP": "_sip._tcp.", "TLS": "_sips._tcp."}
DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061}


@dataclass(frozen=True, slots=True)
class Naptr:
    order: int
    preference: int
    flags: str
    service: str
    replacement: str


@dataclass(frozen=True, slots=True)
class Srv:
    priority: int
    weight: int
    port: int
    target: str


def naptr_services(records: Iterable[Naptr], transports: Iterable[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) of the usable NAPTR records, best first."""
    allowed = {t.upper() for t in transports}
    usable = [
        r
        for r in records
        if r.flags.lower() == "s"
        and SERVICES.get(r.service.upper()) in allowed
        and r.replacement not in ("", ".")
    ]
    usable.sort(key=lambda r: (r.order, r.preference))
    out: list[tuple[str, str]] = []
    for record in usable:
        pair = (SERVICES[record.service.upper()], record.replacement.rstrip("."))
        if pair not in out:
            out.append(pair)
    return out


def srv_names(domain: str, transports: Iterable[str]) -> list[tuple[str, str]]:
    """(transport, SRV name) to query when the domain has no usable NAPTR records."""
    name = domain.rstrip(".")
    return [(t.upper(), SRV_PREFIXES[t.upper()] + name) for t in transports if t.upper() in SRV_PREFIXES]


def srv_order(records: Iterable[Srv], rng: Callable[[], float] = random.random) -> list[Srv]:
    """The records in the order a client tries them (RFC 2782)."""
    usable = [r for r in records if r.target.rstrip(".")]
    out: list[Srv] = []
    for priority in sorted({r.priority for r in usable}):
        group = [r for r in usable if r.priority == priority]
        # zero weights first, so that they are only picked when the rest has been (RFC 2782)
        group.sort(key=lambda r: r.weight != 0)
        while group:
            total = sum(r.weight for r in group)
            if total == 0:
                out.extend(group)
                break
            pick = rng() * total
            running = 0
            for index, record in enumerate(group):
                running += record.weight
                if running > pick and record.weight > 0:
                    out.append(group.pop(index))
                    break
            else:  # rounding at the very end of the range
                out.append(group.pop())
    return out


__all__ = [
    "DEFAULT_PORTS",
    "SERVICES",
    "Naptr",
    "Srv",
    "naptr_services",
    "srv_names",
    "srv_order",
]
