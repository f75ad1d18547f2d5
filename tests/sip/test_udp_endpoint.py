"""UDP sending of SIP messages (pbx.sip.transport.UdpEndpoint.send): straight to the socket,
only to address literals (a host name is never resolved on the reactor)."""

from __future__ import annotations

from pbx.sip.transport import Source, UdpEndpoint


class RecordingSocket:
    def __init__(self, error: OSError | None = None) -> None:
        self.sent: list[tuple[bytes, tuple[str, int]]] = []
        self.error = error

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        if self.error is not None:
            raise self.error
        self.sent.append((data, addr))
        return len(data)


class ListeningPort:
    """What listenUDP gives the protocol: the port with its bound socket; write() unused."""

    def __init__(self, sock: RecordingSocket) -> None:
        self.socket = sock
        self.written: list[object] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


def endpoint(sock: RecordingSocket, host: str = "127.0.0.1") -> UdpEndpoint:
    received: list[tuple[bytes, Source]] = []
    udp = UdpEndpoint(lambda data, source: received.append((data, source)), host, 5060)
    udp.transport = ListeningPort(sock)
    return udp


def test_a_message_goes_straight_to_the_socket() -> None:
    sock = RecordingSocket()
    udp = endpoint(sock)
    assert udp.send(b"OPTIONS sip:x SIP/2.0\r\n\r\n", "127.0.0.2", 5070)
    assert sock.sent == [(b"OPTIONS sip:x SIP/2.0\r\n\r\n", ("127.0.0.2", 5070))]
    assert udp.transport.written == []


def test_a_host_name_or_an_address_of_the_other_family_is_refused_without_sending() -> None:
    sock = RecordingSocket()
    udp = endpoint(sock)
    assert not udp.send(b"x", "phone.invalid", 5060)  # never resolved
    assert not udp.send(b"x", "::1", 5060)  # an IPv6 target on an IPv4 socket
    assert not udp.send(b"x", "127.1", 5060)  # not a full dotted quad
    assert sock.sent == []
    v6 = RecordingSocket()
    assert endpoint(v6, "::").send(b"x", "::1", 5060) and v6.sent == [(b"x", ("::1", 5060))]


def test_a_failed_send_is_a_transport_error_not_an_exception() -> None:
    udp = endpoint(RecordingSocket(BlockingIOError(11, "Resource temporarily unavailable")))
    assert not udp.send(b"x", "127.0.0.2", 5060)
    udp.transport = None  # stopped listening
    assert not udp.send(b"x", "127.0.0.2", 5060)
