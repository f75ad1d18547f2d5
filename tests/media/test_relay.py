"""Media relay: latching, symmetric RTP, injection refused, port pairs, stream timeout."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from twisted.internet import task
from twisted.internet.error import CannotListenError

from pbx.media.relay import MediaLeg, NoPortsAvailable, PortPool, StreamWatch, bridge


class FakeUdp:
    """Stands in for a listening UDP port: records what is written."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


def legs() -> tuple[MediaLeg, MediaLeg, FakeUdp, FakeUdp]:
    a, b = MediaLeg("a"), MediaLeg("b")
    ta, tb = FakeUdp(), FakeUdp()
    a.rtp.transport, b.rtp.transport = ta, tb
    a.rtcp.transport, b.rtcp.transport = FakeUdp(), FakeUdp()
    a.set_remote("127.0.0.10", 4000)
    b.set_remote("127.0.0.20", 6000)
    bridge(a, b)
    return a, b, ta, tb


def test_packets_are_relayed_untouched_to_the_sdp_address_before_latching() -> None:
    a, b, ta, tb = legs()
    a.rtp.datagramReceived(b"rtp-from-a", ("127.0.0.10", 4000))
    assert tb.written == [(b"rtp-from-a", ("127.0.0.20", 6000))]


def test_latching_learns_the_real_source_behind_nat() -> None:
    a, b, ta, tb = legs()
    b.expect("127.0.0.99")  # b's signalling came from its NAT's address, not its SDP's
    b.rtp.datagramReceived(b"from-b-nat", ("127.0.0.99", 31000))  # not what its SDP said
    a.rtp.datagramReceived(b"from-a", ("127.0.0.10", 4000))
    assert tb.written[-1] == (b"from-a", ("127.0.0.99", 31000))
    assert ta.written == [(b"from-b-nat", ("127.0.0.10", 4000))]


def test_only_a_known_address_of_the_phone_may_latch_first() -> None:
    a, b, ta, tb = legs()
    b.rtp.datagramReceived(b"first-from-stranger", ("127.0.0.66", 6000))
    assert ta.written == [] and b.rtp.dropped == 1 and not b.rtp.latched
    a.rtp.datagramReceived(b"from-a", ("127.0.0.10", 4000))
    assert tb.written == [(b"from-a", ("127.0.0.20", 6000))]  # still to b's SDP address


def test_a_silent_leg_latches_again_only_from_the_same_ip() -> None:
    a, b, ta, tb = legs()
    a.rtp.datagramReceived(b"phone", ("127.0.0.10", 4000))
    a._silent_checks = 3  # 6 s without RTP (StreamWatch counts)
    a.rtp.datagramReceived(b"stranger", ("127.0.0.66", 4000))
    a.rtp.datagramReceived(b"new-port", ("127.0.0.10", 4444))
    assert [d for d, _ in tb.written] == [b"phone", b"new-port"]
    assert a.rtp.remote == ("127.0.0.10", 4444)


def test_any_source_may_latch_when_configured_for_odd_nats() -> None:
    a, b, ta, tb = legs()
    b.latch_any = True
    b.rtp.datagramReceived(b"elsewhere", ("10.1.2.3", 7000))
    assert ta.written == [(b"elsewhere", ("127.0.0.10", 4000))]


def test_a_new_sdp_address_starts_latching_over() -> None:
    a, b, ta, tb = legs()
    a.rtp.datagramReceived(b"phone", ("127.0.0.10", 4000))
    a.set_remote("127.0.0.30", 5000)  # re-INVITE: the phone moved its stream
    assert a.rtp.remote == ("127.0.0.30", 5000) and not a.rtp.latched


def test_a_third_party_cannot_inject_media_into_a_latched_leg() -> None:
    a, b, ta, tb = legs()
    a.rtp.datagramReceived(b"phone", ("127.0.0.10", 4000))
    a.rtp.datagramReceived(b"attacker", ("127.0.0.66", 4000))
    assert [d for d, _ in tb.written] == [b"phone"]
    assert a.rtp.dropped == 1


def test_rtcp_goes_to_rtp_port_plus_one_or_the_sdp_rtcp_port() -> None:
    a = MediaLeg("a")
    a.set_remote("127.0.0.10", 4000)
    assert a.rtcp.remote == ("127.0.0.10", 4001)
    b = MediaLeg("b")
    b.set_remote("127.0.0.10", 4000, rtcp_port=4100)
    assert b.rtcp.remote == ("127.0.0.10", 4100)


class UdpReactor:
    """Records listenUDP calls; port 20004 is taken by another program."""

    def listenUDP(self, port: int, proto: object, interface: str = "") -> FakeListening:  # noqa: N802
        if port == 20008:
            raise CannotListenError(interface, port, OSError("in use"))
        return FakeListening()


class FakeListening:
    def stopListening(self) -> None:  # noqa: N802
        pass


class RefusingSocket:
    """A bound socket whose every send fails, as with a full send buffer."""

    def __init__(self) -> None:
        self.tries = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self.tries += 1
        raise BlockingIOError(11, "Resource temporarily unavailable")


class PortWithSocket(FakeUdp):
    """A listening port with its socket: the relay sends through the socket, not write()."""

    def __init__(self, sock: object) -> None:
        super().__init__()
        self.socket = sock


def test_packets_leave_through_the_socket_and_a_failed_send_drops_only_that_packet() -> None:
    a, b, ta, tb = legs()
    refusing = RefusingSocket()
    port = PortWithSocket(refusing)
    b.rtp.transport = port
    a.rtp.datagramReceived(b"to-b", ("127.0.0.10", 4000))  # relayed to b
    b.rtp.send(b"played-to-b")  # pbx's own packet to b
    assert refusing.tries == 2 and port.written == []  # Port.write was not used
    assert b.rtp.send_errors == 2 and a.rtp.forwarded == 0
    b.rtp.datagramReceived(b"to-a", ("127.0.0.20", 6000))  # the other direction still works
    assert ta.written == [(b"to-a", ("127.0.0.10", 4000))]
    b.rtp.transport = None  # the port stopped listening
    b.rtp.send(b"late")
    a.rtp.datagramReceived(b"late", ("127.0.0.10", 4000))
    assert refusing.tries == 2


def test_port_pool_hands_out_even_odd_pairs_and_reuses_them_last() -> None:
    reactor = UdpReactor()
    pool = PortPool(reactor, 20001, 20009)
    assert pool.size == 4  # 20002, 20004, 20006, 20008 (the last one is taken)
    first, second = MediaLeg("1"), MediaLeg("2")
    pool.open(first)
    pool.open(second)
    assert first.local_ports == (20002, 20003) and second.local_ports == (20004, 20005)
    pool.close(first)
    third, fourth = MediaLeg("3"), MediaLeg("4")
    pool.open(third)
    pool.open(fourth)
    assert third.local_ports == (20006, 20007) and fourth.local_ports == (20002, 20003)
    try:
        pool.open(MediaLeg("5"))
    except NoPortsAvailable:
        pass
    else:
        raise AssertionError("the pool should be empty")


def test_stream_watch_reports_a_leg_whose_rtp_stopped() -> None:
    clock = task.Clock()
    stopped: list[str] = []
    watch = StreamWatch(clock, timeout=6.0, on_timeout=lambda leg: stopped.append(leg.name))
    a, b, _, _ = legs()
    silent = MediaLeg("never-sent")  # a call without media is not a dead call
    watch.add(a)
    watch.add(b)
    watch.add(silent)
    watch.start()
    b.rtp.datagramReceived(b"x", ("127.0.0.20", 6000))
    for _ in range(5):
        a.rtp.datagramReceived(b"x", ("127.0.0.10", 4000))
        clock.advance(2.0)
    assert stopped == ["b"]


def test_real_sockets_relay_both_ways_on_the_asyncio_reactor() -> None:
    """Two plain UDP sockets talk through a relay on 127.0.0.1 with the real reactor."""
    script = textwrap.dedent(
        """
        import asyncio, socket
        loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)
        from twisted.internet import asyncioreactor; asyncioreactor.install(loop)
        from twisted.internet import reactor
        from pbx.media.relay import MediaLeg, PortPool, bridge
        pool = PortPool(reactor, 24000, 24100, "127.0.0.1")
        a, b = MediaLeg("a"), MediaLeg("b")
        pool.open(a); pool.open(b)
        pa, pb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        pa.bind(("127.0.0.1", 0)); pb.bind(("127.0.0.1", 0)); pa.settimeout(2); pb.settimeout(2)
        a.set_remote(*pa.getsockname()); b.set_remote(*pb.getsockname()); bridge(a, b)
        got = []
        def run():
            for i in range(50):
                pa.sendto(b"a%d" % i, ("127.0.0.1", a.local_rtp_port))
                pb.sendto(b"b%d" % i, ("127.0.0.1", b.local_rtp_port))
            reactor.callLater(0.3, finish)
        def finish():
            for _ in range(50):
                got.append(pb.recvfrom(100)[0]); got.append(pa.recvfrom(100)[0])
            reactor.stop()
        reactor.callWhenRunning(run); reactor.run()
        print(len(got), sorted(got)[:2], a.rtp.forwarded, b.rtp.forwarded)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "100"
    assert out.stdout.strip().endswith("50 50")
