"""An in-memory network and a fake reactor for in-process tests of the call core.

No sockets and no real time: SIP messages and RTP packets travel between endpoints bound on a
:class:`Network` (pbx's SIP stack, each phone's SIP stack, every media port) and are delivered
on a ``task.Clock`` after a fixed latency, optionally dropped by a loss rule. Owns:

- :class:`Network`: ``bind``/``unbind`` (host, port) receivers, ``send`` (records every
  datagram in ``log``, applies ``loss``, schedules delivery);
- :class:`FakeReactor`: a ``MemoryReactorClock`` whose ``listenUDP`` binds the protocol on the
  network (what :class:`pbx.media.relay.PortPool` and the media code need), with its delayed
  calls in a heap (``task.Clock`` sorts its whole list on every ``callLater`` and every call
  it runs: with a few hundred calls in a test, that sort was nearly all of the run time);
- :class:`MemoryTransports`: stands in for :class:`pbx.sip.transport.Transports` of one SIP
  host (``send``, ``local_address``; received datagrams go to ``sink``).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet.base import DelayedCall
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.testing import MemoryReactorClock

from pbx.sip.transport import Address, Source

HostPort = tuple[str, int]
Receiver = Callable[[bytes, HostPort], None]
LossRule = Callable[[bytes, HostPort, HostPort], bool]


@dataclass(frozen=True, slots=True)
class Datagram:
    at: float
    src: HostPort
    dst: HostPort
    data: bytes

    @property
    def is_sip(self) -> bool:
        return self.data[:1].isalpha()  # a method or "SIP/2.0"; RTP starts with 0x80


class Network:
    """Datagrams between bound endpoints, delivered ``latency`` seconds later on ``clock``."""

    def __init__(self, clock: Any, latency: float = 0.002) -> None:
        self.clock = clock
        self.latency = latency
        self.endpoints: dict[HostPort, Receiver] = {}
        self.loss: LossRule | None = None
        self.log: list[Datagram] = []
        self.keep_media_log = False  # RTP is not logged unless a test asks (memory)

    def bind(self, address: HostPort, receiver: Receiver) -> None:
        if address in self.endpoints:
            raise CannotListenError(address[0], address[1], OSError("address in use"))
        self.endpoints[address] = receiver

    def unbind(self, address: HostPort) -> None:
        self.endpoints.pop(address, None)

    def send(self, data: bytes, src: HostPort, dst: HostPort) -> None:
        datagram = Datagram(self.clock.seconds(), src, dst, bytes(data))
        if self.keep_media_log or datagram.is_sip:
            self.log.append(datagram)
        if self.loss is not None and self.loss(datagram.data, src, dst):
            return
        self.clock.callLater(self.latency, self._deliver, datagram)

    def _deliver(self, datagram: Datagram) -> None:
        receiver = self.endpoints.get(datagram.dst)
        if receiver is not None:
            receiver(datagram.data, datagram.src)

    def sip(self, src_host: str | None = None, dst_host: str | None = None) -> list[Datagram]:
        """SIP datagrams sent so far, optionally only from/to a host."""
        return [
            d
            for d in self.log
            if d.is_sip
            and (src_host is None or d.src[0] == src_host)
            and (dst_host is None or d.dst[0] == dst_host)
        ]


class FakeUdpPort:
    """A listening UDP port on the network: the protocol's transport and its IListeningPort."""

    maxThroughput = 256 * 1024  # noqa: N815 - Twisted's attribute name

    def __init__(self, network: Network, address: HostPort, protocol: Any) -> None:
        self.network = network
        self.address = address
        self.protocol = protocol
        self.listening = True
        self.written = 0
        network.bind(address, self._receive)

    def _receive(self, data: bytes, src: HostPort) -> None:
        if self.listening:
            self.protocol.datagramReceived(data, src)

    def write(self, data: bytes, addr: HostPort) -> None:
        if self.listening:
            self.written += 1
            self.network.send(data, self.address, (addr[0], addr[1]))

    def stopListening(self) -> None:  # noqa: N802 - Twisted's name
        if self.listening:
            self.listening = False
            self.network.unbind(self.address)
            self.protocol.doStop()

    def getHost(self) -> Any:  # noqa: N802
        return self.address


def _ignore(call: DelayedCall) -> None:
    """A cancelled call's heap entry is skipped when it comes up."""


class FakeReactor(MemoryReactorClock):
    """A fake clock whose ``listenUDP`` binds on the memory network (default host ``host``)."""

    def __init__(self, network_latency: float = 0.002, host: str = "127.0.0.1") -> None:
        super().__init__()
        self.network = Network(self, network_latency)
        self.host = host
        self.ports: dict[HostPort, FakeUdpPort] = {}
        # (time, serial, call): a call reset to an earlier time is pushed again (the resetter),
        # one reset or delayed to a later time is pushed again when its old entry comes up, and
        # an entry of a cancelled call, or of one that ran, is skipped
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._serial = itertools.count()

    def callLater(  # noqa: N802
        self, delay: float, callable: Callable[..., object], *args: object, **kw: object
    ) -> IDelayedCall:
        call = DelayedCall(
            self.seconds() + delay, callable, args, kw, _ignore, self._push, self.seconds
        )
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._serial), call))

    def getDelayedCalls(self) -> Sequence[IDelayedCall]:  # noqa: N802
        live = {id(c): c for _, _, c in self._heap if c.active()}
        return sorted(live.values(), key=lambda c: c.getTime())

    def advance(self, amount: float) -> None:
        self.rightNow += amount
        heap = self._heap
        while heap and heap[0][0] <= self.rightNow:
            at, _, call = heapq.heappop(heap)
            if call.cancelled or call.called:
                continue
            if at != call.getTime():  # delayed later (DelayedCall.reset/delay do not say so)
                call.activate_delay()
                self._push(call)
                continue
            call.called = 1
            call.func(*call.args, **call.kw)

    def listenUDP(  # noqa: N802
        self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192  # noqa: N803
    ) -> FakeUdpPort:
        address = (interface or self.host, port)
        listening = FakeUdpPort(self.network, address, protocol)
        self.ports[address] = listening
        protocol.makeConnection(listening)
        return listening

    def open_media_ports(self) -> int:
        return sum(1 for p in self.ports.values() if p.listening)


class MemoryTransports:
    """pbx.sip.transport.Transports for one SIP host on the network (UDP only)."""

    def __init__(self, network: Network, address: Address) -> None:
        self.network = network
        self.address = address
        self.sink: Callable[[bytes, Source], None] | None = None
        network.bind((address.host, address.port), self._receive)

    def _receive(self, data: bytes, src: HostPort) -> None:
        if self.sink is not None:
            self.sink(data, Source(Address("UDP", src[0], src[1]), self.address))

    def send(self, data: bytes, target: Address, source: Source | None = None) -> bool:
        self.network.send(data, (self.address.host, self.address.port), (target.host, target.port))
        return True

    def local_address(self, target: Address) -> tuple[str, int]:
        return self.address.host, self.address.port

    def listening(self) -> list[Address]:
        return [self.address]

    def connection_count(self) -> int:
        return 0
