"""Anchored media: RTP/RTCP sockets per call leg and the untouched relay between two legs.

A :class:`MediaLeg` owns one RTP and one RTCP socket (a pair from :class:`PortPool`) facing one
phone. Packets are relayed to the other leg's phone as they are (no parsing on this path:
one counter increment and one ``sendto`` per packet, which is what keeps a Python relay
near the ~11 µs per packet a bare Twisted ``listenUDP`` relay costs here). Legs that need work
per packet set hooks on their sockets: ``unwrap``/``wrap`` (SRTP, pbx.media.srtp) and ``tap``
(the transcoding bridge, pbx.media.transcode, which then sends with :meth:`RelaySocket.send`).

Packets leave through the socket's own ``sendto``, not Twisted's ``Port.write``: that checks
the address with ``isIPAddress`` three times per datagram, ~1.5-2 µs of a ~10 µs packet (bench/moh
through-pbx). The addresses are always IP literals here (a latched source, or an SDP address
that :func:`pbx.calls.anchor.remote` accepted only as one), so ``sendto`` never resolves a name;
a failed send (full buffer, unreachable network) drops the packet and counts it in
``send_errors``, as a lost datagram would be. A transport without a socket (the in-memory
network of the tests) is written to as before.

Symmetric RTP with latching: the address from the SDP is a first guess; the first packet from
the phone decides where its media really comes from (a phone behind NAT), and media for that
phone is sent there from then on. Until a packet arrives, media goes to the SDP address.
Only a packet from an IP the phone is known by may latch: its signalling source or its SDP
address (:meth:`MediaLeg.expect`); anything else is dropped, so a third party cannot take the
stream over by sending first ("RTP bleed"). A leg silent for ``relatch_after`` seconds may
latch anew, but only from the same IP (a NAT that gave the phone a new port). A new SDP
address (re-INVITE) starts over. ``latch_any`` (``[rtp] latch_any_address``) lets any source
latch, for phones behind NATs whose media leaves from another address than their signalling.

Streams that stop are found by :class:`StreamWatch`, which compares packet counters every few
seconds instead of reading the clock per packet.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol, task
from twisted.internet.error import CannotListenError

log = logging.getLogger(__name__)

Address = tuple[str, int]


class NoPortsAvailable(Exception):
    """Every port pair of the configured range is in use."""


class RelaySocket(protocol.DatagramProtocol):
    """One UDP socket of a leg (its RTP or its RTCP), relaying to the peer leg's phone."""

    noisy = False  # no "Starting protocol" log line per port

    def __init__(self, leg: MediaLeg, rtcp: bool) -> None:
        # a proxy, not a reference: the leg owns its sockets, and without the cycle an ended
        # call's media is freed by reference counting, not by a garbage-collector pass
        self.leg: MediaLeg = weakref.proxy(leg)
        self.rtcp = rtcp
        self.remote: Address | None = None  # where this leg's phone is (latched or from SDP)
        self.offered: Address | None = None  # the address its SDP gave
        self.latched = False
        self.peer: RelaySocket | None = None  # the same-kind socket of the other leg
        # processing hooks, all None on the untouched path:
        # unwrap: packet from this leg's phone -> plain packet, None to drop (SRTP unprotect)
        # wrap: plain packet -> packet for this leg's phone (SRTP protect)
        # tap: takes the plain packet instead of the peer (transcoding, DTMF interworking)
        self.unwrap: Callable[[bytes], bytes | None] | None = None
        self.wrap: Callable[[bytes], bytes] | None = None
        self.tap: Callable[[bytes], None] | None = None
        self.received = 0
        self.forwarded = 0
        self.dropped = 0
        self.send_errors = 0
        self._transport: Any = None
        # (packet, address) -> None: the socket's sendto, else the transport's write
        self._sendto: Callable[[bytes, Address], Any] | None = None

    @property
    def transport(self) -> Any:
        return self._transport

    @transport.setter
    def transport(self, transport: Any) -> None:
        # set by listenUDP (makeConnection) with the socket already bound, None at stop
        self._transport = transport
        sock = getattr(transport, "socket", None)
        if sock is not None:
            self._sendto = sock.sendto
        elif transport is not None:
            self._sendto = transport.write
        else:
            self._sendto = None

    def datagramReceived(self, data: bytes, addr: Address) -> None:  # noqa: N802
        moved = addr != self.remote or not self.latched
        if moved and not self.leg.may_latch(self, addr):
            self.dropped += 1
            return
        if self.unwrap is not None:
            plain = self.unwrap(data)
            if plain is None:  # SRTP: only an authenticated packet may latch (RFC 3711 §3.3)
                self.dropped += 1
                return
            data = plain
        if moved:
            self._latch(addr)
        self.received += 1
        if self.tap is not None:
            self.tap(data)
            return
        peer = self.peer
        if peer is not None and peer.remote is not None:
            if peer.wrap is not None:
                data = peer.wrap(data)
                if not data:  # SRTP could not protect it
                    return
            sendto = peer._sendto
            if sendto is None:
                return
            try:
                sendto(data, peer.remote)
            except OSError:
                peer.send_errors += 1
                return
            self.forwarded += 1

    def _latch(self, addr: Address) -> None:
        if self.remote != addr:
            log.debug(
                "media %s latched to %s:%d (SDP said %s)",
                self.leg.name,
                addr[0],
                addr[1],
                self.remote,
            )
        self.remote = addr
        self.latched = True

    def send(self, data: bytes) -> None:
        """Send our own plain packet (played audio, transcoded media, generated DTMF) to this
        leg's phone, protected by ``wrap`` when the leg has one."""
        sendto = self._sendto
        if self.remote is not None and sendto is not None:
            if self.wrap is not None:
                data = self.wrap(data)
                if not data:
                    return
            try:
                sendto(data, self.remote)
            except OSError:
                self.send_errors += 1


class MediaLeg:
    """The media of one call leg: an RTP/RTCP socket pair facing one phone."""

    def __init__(self, name: str, relatch_after: float = 5.0, latch_any: bool = False) -> None:
        self.name = name
        self.rtp = RelaySocket(self, rtcp=False)
        self.rtcp = RelaySocket(self, rtcp=True)
        self.local_ports: tuple[int, int] = (0, 0)
        self.relatch_after = relatch_after
        self.latch_any = latch_any
        self.known_hosts: set[str] = set()  # IPs the phone is known by (signalling, SDP)
        self._silent_checks = 0
        self._last_received = 0
        self.listening: list[Any] = []

    @property
    def local_rtp_port(self) -> int:
        return self.local_ports[0]

    def expect(self, host: str) -> None:
        """Media from ``host`` may latch (the phone's signalling source address)."""
        self.known_hosts.add(host)

    def set_remote(self, host: str, rtp_port: int, rtcp_port: int | None = None) -> None:
        """The phone's media address from its SDP (RFC 3605 a=rtcp, else RTP port + 1).

        A new address (a re-INVITE moved the stream) starts latching over: media goes to the
        new SDP address until a packet from one of the phone's addresses arrives."""
        self.known_hosts.add(host)
        rtcp = rtcp_port if rtcp_port is not None else rtp_port + 1
        for sock, port in ((self.rtp, rtp_port), (self.rtcp, rtcp)):
            offered = (host, port)
            if sock.latched and sock.offered is not None and sock.offered != offered:
                sock.latched = False
            sock.offered = offered
            if not sock.latched:
                sock.remote = offered

    def may_latch(self, sock: RelaySocket, addr: Address) -> bool:
        """Whether a packet from ``addr`` may (re)latch ``sock``: first from a known IP of the
        phone; once latched, only from the same IP and after the leg went silent."""
        if not sock.latched:
            return self.latch_any or addr[0] in self.known_hosts
        if not self.latch_any and (sock.remote is None or addr[0] != sock.remote[0]):
            return False
        return self._silent_checks * StreamWatch.interval >= self.relatch_after

    def observe(self) -> int:
        """Called by StreamWatch: returns for how many checks in a row no RTP arrived (0 while
        none has arrived at all: a call without media is not a dead call)."""
        if self.rtp.received == 0:
            return 0
        if self.rtp.received == self._last_received:
            self._silent_checks += 1
        else:
            self._silent_checks = 0
            self._last_received = self.rtp.received
        return self._silent_checks


def bridge(a: MediaLeg, b: MediaLeg) -> None:
    """Relay a's phone to b's phone and back, RTP and RTCP each on its own socket."""
    a.rtp.peer, b.rtp.peer = b.rtp, a.rtp
    a.rtcp.peer, b.rtcp.peer = b.rtcp, a.rtcp


def unbridge(a: MediaLeg, b: MediaLeg) -> None:
    for sock in (a.rtp, b.rtp, a.rtcp, b.rtcp):
        sock.peer = None


def _direct_reads(reactor: Any, listening: Any) -> None:
    """On the asyncio reactor, let the event loop call the port's ``doRead`` directly.

    Twisted registers every reader with ``callWithLogger(reader, _readOrWrite, ...)``: a log
    context pushed and popped and a file-descriptor check per wake-up, which for a media
    socket (one wake-up per packet) costs about as much as the relay itself. The port stays a
    Twisted ``listenUDP`` port in the reactor's books (stopListening removes the fd as usual);
    a UDP port's doRead handles its socket errors itself and logs protocol exceptions.
    """
    loop = getattr(reactor, "_asyncioEventloop", None)
    readers = getattr(reactor, "_readers", None)
    if loop is None or readers is None or listening not in readers:
        return
    try:
        loop.add_reader(listening.fileno(), listening.doRead)
    except (OSError, ValueError) as exc:  # keep Twisted's registration
        log.debug("direct reads not set up: %s", exc)


class PortPool:
    """RTP/RTCP port pairs (RTP even, RTCP = RTP + 1, RFC 3550 §11) from the configured range.

    Freed pairs go to the back of the queue, so a port is not reused while late packets of the
    previous call may still arrive.
    """

    def __init__(
        self, reactor: Any, low: int, high: int, bind: str = "", latch_any: bool = False
    ) -> None:
        self._reactor = reactor
        self._bind = bind
        self.latch_any = latch_any  # legs opened here latch to any source (odd NATs)
        first = low + (low % 2)
        self._free: deque[int] = deque(range(first, high, 2))
        self.size = len(self._free)

    @property
    def available(self) -> int:
        return len(self._free)

    def open(self, leg: MediaLeg) -> None:
        """Bind a free pair for ``leg``; skips pairs another program holds."""
        leg.latch_any = leg.latch_any or self.latch_any
        for _ in range(len(self._free)):
            port = self._free.popleft()
            try:
                rtp = self._reactor.listenUDP(port, leg.rtp, interface=self._bind)
            except CannotListenError:
                self._free.append(port)
                continue
            try:
                rtcp = self._reactor.listenUDP(port + 1, leg.rtcp, interface=self._bind)
            except CannotListenError:
                rtp.stopListening()
                self._free.append(port)
                continue
            leg.local_ports = (port, port + 1)
            leg.listening = [rtp, rtcp]
            for listening in leg.listening:
                # one datagram per wake-up: a media socket gets one packet every 20 ms, and
                # Twisted's default read loop pays a second recvfrom (EAGAIN, raised and caught)
                # for every packet; a socket with more queued is simply readable again
                listening.maxThroughput = 1
                _direct_reads(self._reactor, listening)
            return
        raise NoPortsAvailable(f"no free RTP port pair ({self.size} in the range)")

    def close(self, leg: MediaLeg) -> None:
        """Stop the leg's sockets and give its pair back."""
        for listening in leg.listening:
            listening.stopListening()
        if leg.listening:
            self._free.append(leg.local_ports[0])
        leg.listening = []


class StreamWatch:
    """Finds legs whose RTP stopped: every ``interval`` seconds, compares packet counters."""

    interval = 2.0

    def __init__(
        self, reactor: Any, timeout: float, on_timeout: Callable[[MediaLeg], None]
    ) -> None:
        self._legs: set[MediaLeg] = set()
        self._timeout_checks = max(1, round(timeout / self.interval))
        self._on_timeout = on_timeout
        self._loop = task.LoopingCall(self._check)
        self._loop.clock = reactor

    def start(self) -> None:
        self._loop.start(self.interval, now=False)

    def stop(self) -> None:
        if self._loop.running:
            self._loop.stop()

    def add(self, leg: MediaLeg) -> None:
        self._legs.add(leg)

    def discard(self, leg: MediaLeg) -> None:
        self._legs.discard(leg)

    def _check(self) -> None:
        for leg in list(self._legs):
            if leg.observe() >= self._timeout_checks:
                self._legs.discard(leg)
                log.info(
                    "media %s: no RTP for %.0f s", leg.name, self._timeout_checks * self.interval
                )
                self._on_timeout(leg)
