"""Client transactions on a fake clock and network (pbx.sip.client)."""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet import task

from pbx.sip.client import ClientTransactions
from pbx.sip.message import Headers, Request, Response, make_response, parse_message
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address, Source
from pbx.sip.uri import parse_uri

PHONE = Address("UDP", "127.0.0.7", 5070)
LOCAL = Address("UDP", "127.0.0.1", 5060)


@dataclass
class FakeNetwork:
    sent: list[tuple[bytes, Address]] = field(default_factory=list)
    up: bool = True

    def send(self, data: bytes, target: Address, source: Source | None = None) -> bool:
        if self.up:
            self.sent.append((data, target))
        return self.up

    def requests(self) -> list[Request]:
        out = []
        for data, _ in self.sent:
            msg = parse_message(data)
            assert isinstance(msg, Request)
            out.append(msg)
        return out


def make(method: str = "OPTIONS") -> Request:
    headers = Headers()
    for name, value in (
        ("Max-Forwards", "70"),
        ("From", "<sip:pbx@127.0.0.1>;tag=abc"),
        ("To", "<sip:1001@127.0.0.7>"),
        ("Call-ID", "call-1"),
        ("CSeq", f"1 {method}"),
        ("Contact", "<sip:pbx@127.0.0.1:5060>"),
    ):
        headers.add(name, value)
    return Request(method, parse_uri("sip:1001@127.0.0.7:5070"), headers)


def setup() -> tuple[task.Clock, FakeNetwork, ClientTransactions, list[Response]]:
    clock = task.Clock()
    net = FakeNetwork()
    client = ClientTransactions(clock, net, TimerConfig(), lambda target: ("127.0.0.1", 5060))  # type: ignore[arg-type]
    return clock, net, client, []


def answer(request: Request, status: int) -> Response:
    return make_response(request, status, to_tag="t1")


def test_options_gets_via_with_branch_and_rport_and_its_response() -> None:
    clock, net, client, got = setup()
    client.send(make(), PHONE, got.append)
    [sent] = net.requests()
    via = sent.top_via
    assert via.host == "127.0.0.1" and via.port == 5060 and via.rport == ""
    assert via.branch and via.branch.startswith("z9hG4bK")
    assert client.receive_response(answer(sent, 200), Source(PHONE, LOCAL))
    assert [r.status for r in got] == [200]
    clock.advance(5.1)  # timer K
    assert client.count == 0


def test_unanswered_request_is_retransmitted_then_408() -> None:
    clock, net, client, got = setup()
    client.send(make(), PHONE, got.append)
    for _ in range(80):
        clock.advance(0.5)
    times = len(net.sent)
    assert 10 <= times <= 12  # timer E doubling to T2 over 32 s
    assert [r.status for r in got] == [408]
    assert client.count == 0


def test_transport_error_comes_back_as_503() -> None:
    clock, net, client, got = setup()
    net.up = False
    client.send(make(), Address("TCP", "127.0.0.7", 5070), got.append)
    assert [r.status for r in got] == [503]


def test_invite_failure_is_acked_and_delivered() -> None:
    clock, net, client, got = setup()
    client.send(make("INVITE"), PHONE, got.append)
    [invite] = net.requests()
    client.receive_response(answer(invite, 180), Source(PHONE, LOCAL))
    client.receive_response(answer(invite, 486), Source(PHONE, LOCAL))
    assert [r.status for r in got] == [180, 486]
    ack = net.requests()[-1]
    assert ack.method == "ACK" and ack.cseq.seq == 1
    assert ack.top_via.branch == invite.top_via.branch
    # a retransmitted 486 is absorbed and re-ACKed, not delivered again
    client.receive_response(answer(invite, 486), Source(PHONE, LOCAL))
    assert [r.status for r in got] == [180, 486]
    assert net.requests()[-1].method == "ACK"


def test_cancel_waits_for_a_provisional_response() -> None:
    clock, net, client, got = setup()
    outgoing = client.send(make("INVITE"), PHONE, got.append)
    [invite] = net.requests()
    client.cancel(outgoing)
    assert len(net.sent) == 1  # RFC 3261 §9.1: not before a provisional response
    client.receive_response(answer(invite, 180), Source(PHONE, LOCAL))
    cancel = net.requests()[-1]
    assert cancel.method == "CANCEL"
    assert cancel.cseq.seq == 1 and cancel.cseq.method == "CANCEL"
    assert cancel.top_via.branch == invite.top_via.branch
    assert cancel.uri == invite.uri


def test_stray_2xx_to_invite_goes_to_the_dialog_layer() -> None:
    clock, net, client, got = setup()
    strays: list[Response] = []
    client.on_stray_2xx = lambda resp, source: strays.append(resp)
    client.send(make("INVITE"), PHONE, got.append)
    [invite] = net.requests()
    ok = answer(invite, 200)
    client.receive_response(ok, Source(PHONE, LOCAL))
    assert [r.status for r in got] == [200]
    clock.advance(40)  # timer M ends the transaction
    client.receive_response(ok, Source(PHONE, LOCAL))
    assert [r.status for r in strays] == [200]


def test_an_accepted_invite_keeps_no_request_and_hands_on_2xx_retransmissions() -> None:
    """RFC 6026 §8.4 Accepted: 2xx retransmissions go to the transaction user (it ACKs each),
    a late non-2xx is absorbed, a CANCEL is not sent, timer M ends it; the INVITE is not kept."""
    clock, net, client, got = setup()
    outgoing = client.send(make("INVITE"), PHONE, got.append)
    [invite] = net.requests()
    ok = answer(invite, 200)
    client.receive_response(ok, Source(PHONE, LOCAL))
    assert outgoing.request is None and outgoing.call_id == "call-1"
    assert client.count == 1
    client.receive_response(ok, Source(PHONE, LOCAL))
    client.receive_response(answer(invite, 486), Source(PHONE, LOCAL))
    client.cancel(outgoing)
    assert [r.status for r in got] == [200, 200] and len(net.sent) == 1
    clock.advance(31.9)
    assert client.count == 1
    clock.advance(0.2)
    assert client.count == 0
