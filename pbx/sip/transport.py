"""SIP transports on the Twisted reactor: UDP, TCP and TLS (RFC 3261 §18).

Owns the listening sockets and the stream connections, and nothing else: bytes come in and are
handed to a sink together with a :class:`Source` (which transport, which peer, which flow);
bytes go out through :meth:`Transports.send` on the flow a request came in on (responses,
§18.2.2) or on a listening UDP socket / an existing connection to the target (requests).

Stream framing (Content-Length, CRLF keep-alive of RFC 5626 §3.5.1) is done by the sans-IO
:class:`pbx.sip.framing.StreamFramer`; a framing error closes the connection. Idle connections
are closed after ``idle_timeout``. Parsing and policy live in pbx.sip.stack.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import protocol
from twisted.protocols.policies import TimeoutMixin

from pbx.sip.errors import RemoteProtocolError
from pbx.sip.framing import KeepAlive, StreamFramer
from pbx.sip.message import Limits

log = logging.getLogger(__name__)

CRLF = b"\r\n"
# Bytes one UDP socket reads per reactor turn (Twisted's default is 256 kB: hundreds of SIP
# datagrams in one go, which shows up as loop lag). It always reads at least one datagram;
# 1 kB is about two typical requests per turn, measured best for loop lag at 1,600 REGISTER/s.
UDP_READ_BUDGET = 1024
ROUTE_CACHE_SIZE = 4096  # destinations whose local route source is remembered


@dataclass(frozen=True, slots=True)
class Address:
    """A transport address: ``transport`` is "UDP", "TCP" or "TLS"."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport.lower()}:{host}:{self.port}"


@dataclass(slots=True)
class Source:
    """Where a message came from, and the flow to answer on."""

    remote: Address
    local: Address
    flow: StreamConnection | None = field(default=None, repr=False)

    @property
    def reliable(self) -> bool:
        return self.remote.transport != "UDP"


Sink = Callable[[bytes, Source], None]


class UdpEndpoint(protocol.DatagramProtocol):
    """One listening UDP socket; every datagram is one SIP message (or a keep-alive)."""

    transport: Any  # Twisted's IUDPTransport (zope interfaces do not type-check well)

    def __init__(self, sink: Sink, host: str, port: int) -> None:
        self._sink = sink
        self.local = Address("UDP", host, port)
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET

    def datagramReceived(self, data: bytes, addr: tuple[str, int]) -> None:  # noqa: N802
        if len(data) <= 4 and not data.strip(b"\r\n\x00 "):
            return  # CRLF / NUL keep-alive pings over UDP carry no message
        try:
            self._sink(data, Source(Address("UDP", addr[0], addr[1]), self.local))
        except Exception:  # never let one bad packet reach the reactor
            log.exception("unexpected error on a datagram from %s:%s", addr[0], addr[1])

    def send(self, data: bytes, host: str, port: int) -> bool:
        """False when the datagram cannot go there (an IPv6 address on an IPv4 socket, no
        route): the caller treats it as a transport error."""
        transport = self.transport
        if transport is None:
            return False
        # the socket's own sendto: Twisted's Port.write checks the address three times per
        # datagram (isIPAddress). One inet_pton keeps its promise that a host name is never
        # resolved (that would block the reactor): the target must be an address literal.
        try:
            socket.inet_pton(self._family, host)
        except OSError:
            log.warning("UDP send to %s:%s failed: not an address of this socket", host, port)
            return False
        try:
            transport.socket.sendto(data, (host, port))
        except OSError as exc:
            log.warning("UDP send to %s:%s failed: %s", host, port, exc)
            return False
        return True


class StreamConnection(protocol.Protocol, TimeoutMixin):
    """One TCP or TLS connection carrying SIP messages framed by Content-Length."""

    factory: StreamFactory
    transport: Any  # ITCPTransport / TLS transport

    def __init__(self, factory: StreamFactory) -> None:
        self.factory = factory
        self._framer = StreamFramer(factory.limits)
        self.remote: Address | None = None
        self.local: Address | None = None
        self.closed = False

    def connectionMade(self) -> None:  # noqa: N802
        peer = self.transport.getPeer()
        host = self.transport.getHost()
        name = self.factory.transport_name
        self.remote = Address(name, peer.host, peer.port)
        self.local = Address(name, host.host, self.factory.listen_port or host.port)
        self.factory.connections[(self.remote.host, self.remote.port)] = self
        self.setTimeout(self.factory.idle_timeout)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        self.resetTimeout()
        try:
            items = self._framer.feed(data)
        except RemoteProtocolError as exc:
            log.info("closing %s: %s", self.remote, exc)
            self.transport.loseConnection()
            return
        for item in items:
            if isinstance(item, KeepAlive):
                self.transport.write(CRLF)
                continue
            assert self.remote is not None and self.local is not None
            try:
                self.factory.sink(item, Source(self.remote, self.local, self))
            except Exception:
                log.exception("unexpected error on a message from %s", self.remote)

    def send(self, data: bytes) -> None:
        if not self.closed:
            self.transport.write(data)

    def timeoutConnection(self) -> None:  # noqa: N802
        log.debug("closing idle connection %s", self.remote)
        self.transport.loseConnection()

    def connectionLost(self, reason: Any = None) -> None:  # noqa: N802
        self.closed = True
        self.setTimeout(None)
        if self.remote is not None:
            key = (self.remote.host, self.remote.port)
            if self.factory.connections.get(key) is self:
                del self.factory.connections[key]


class StreamFactory(protocol.ServerFactory):
    """Builds :class:`StreamConnection`s for one TCP or TLS listening port."""

    def __init__(
        self, sink: Sink, transport_name: str, limits: Limits, idle_timeout: float
    ) -> None:
        self.sink = sink
        self.transport_name = transport_name
        self.limits = limits
        self.idle_timeout = idle_timeout
        self.listen_port = 0
        self.connections: dict[tuple[str, int], StreamConnection] = {}

    def buildProtocol(self, addr: Any) -> StreamConnection:  # type: ignore[override]  # noqa: N802
        return StreamConnection(self)


SIP_RECEIVE_BUFFER = 4 << 20  # bytes; the kernel caps it at net.core.rmem_max


def _grow_receive_buffer(sock: socket.socket) -> None:
    """A large UDP receive buffer: a burst (a phone fleet re-registering after a power cut) or
    a reactor pause is queued by the kernel instead of dropped (each drop costs a 500 ms
    retransmission, which adds to the load). Kamailio and Asterisk do the same."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SIP_RECEIVE_BUFFER)
    except OSError as exc:
        log.warning("cannot enlarge the SIP receive buffer: %s", exc)


class Transports:
    """All SIP listening points of the process and the way out for every message."""

    def __init__(
        self, reactor: Any, sink: Sink, limits: Limits, idle_timeout: float = 600.0
    ) -> None:
        self._reactor = reactor
        self._sink = sink
        self._limits = limits
        self._idle_timeout = idle_timeout
        self._udp: list[tuple[UdpEndpoint, Any]] = []
        self._listening: list[Address] | None = None
        self._streams: dict[str, list[tuple[StreamFactory, Any]]] = {"TCP": [], "TLS": []}
        self._sources: dict[str, str] = {}

    def listen_udp(self, host: str, port: int) -> Address:
        endpoint = UdpEndpoint(self._sink, host or "0.0.0.0", port)
        listening = self._reactor.listenUDP(port, endpoint, interface=host, maxPacketSize=65535)
        listening.maxThroughput = UDP_READ_BUDGET
        _grow_receive_buffer(listening.socket)
        actual = listening.getHost().port
        endpoint.local = Address("UDP", host or "0.0.0.0", actual)
        self._udp.append((endpoint, listening))
        self._listening = None
        return endpoint.local

    def listen_stream(self, name: str, host: str, port: int, tls_context: Any = None) -> Address:
        factory = StreamFactory(self._sink, name, self._limits, self._idle_timeout)
        if name == "TLS":
            listening = self._reactor.listenSSL(port, factory, tls_context, interface=host)
        else:
            listening = self._reactor.listenTCP(port, factory, interface=host, backlog=1024)
        factory.listen_port = listening.getHost().port
        self._streams[name].append((factory, listening))
        self._listening = None
        return Address(name, host or "0.0.0.0", factory.listen_port)

    def listening(self) -> list[Address]:
        """Our listening points (computed once per change: every request asks)."""
        if self._listening is None:
            addresses = [endpoint.local for endpoint, _ in self._udp]
            for name, items in self._streams.items():
                addresses += [
                    Address(name, lp.getHost().host, lp.getHost().port) for _, lp in items
                ]
            self._listening = addresses
        return list(self._listening)

    def local_address(self, target: Address) -> tuple[str, int]:
        """Our sent-by for a request to ``target``: the listening point of its transport, with
        a wildcard bind replaced by the local address the kernel would route from (a connected
        UDP socket; no packet is sent and no name is resolved)."""
        candidates = [a for a in self.listening() if a.transport == target.transport]
        if not candidates:
            candidates = self.listening()
        if not candidates:
            return "127.0.0.1", 5060
        chosen = candidates[0]
        host = chosen.host
        if host in ("0.0.0.0", "::", ""):
            host = self._route_source(target.host)
        return host, chosen.port

    def _route_source(self, destination: str) -> str:
        """The local address the kernel routes from towards ``destination`` (cached: a call
        set-up asks several times, and each probe is three system calls)."""
        cached = self._sources.get(destination)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in destination else socket.AF_INET
        probe = socket.socket(family, socket.SOCK_DGRAM)
        try:
            probe.connect((destination, 9))
            source = str(probe.getsockname()[0])
        except OSError:
            source = "127.0.0.1"
        finally:
            probe.close()
        if len(self._sources) >= ROUTE_CACHE_SIZE:
            self._sources.clear()
        self._sources[destination] = source
        return source

    def connection_count(self) -> int:
        return sum(len(f.connections) for items in self._streams.values() for f, _ in items)

    def find_connection(self, transport: str, host: str, port: int) -> StreamConnection | None:
        for factory, _ in self._streams.get(transport, []):
            conn = factory.connections.get((host, port))
            if conn is not None and not conn.closed:
                return conn
        return None

    def send(self, data: bytes, target: Address, source: Source | None = None) -> bool:
        """Send on the flow of ``source`` when given and open, else to ``target``.

        Returns False when no way to the target exists (a closed stream with no other
        connection to that address); the caller treats that as a transport error.
        """
        if source is not None and source.flow is not None and not source.flow.closed:
            source.flow.send(data)
            return True
        if target.transport == "UDP":
            endpoint = self._udp_for(source)
            if endpoint is None:
                return False
            return endpoint.send(data, target.host, target.port)
        conn = self.find_connection(target.transport, target.host, target.port)
        if conn is None:
            return False
        conn.send(data)
        return True

    def _udp_for(self, source: Source | None) -> UdpEndpoint | None:
        if source is not None:
            for endpoint, _ in self._udp:
                if endpoint.local.port == source.local.port:
                    return endpoint
        return self._udp[0][0] if self._udp else None

    def stop(self) -> list[Any]:
        """Stop listening; returns the Deferreds of the ports being closed."""
        results = []
        for _, listening in self._udp:
            results.append(listening.stopListening())
        for items in self._streams.values():
            for factory, listening in items:
                results.append(listening.stopListening())
                for conn in list(factory.connections.values()):
                    conn.transport.loseConnection()
        return results
