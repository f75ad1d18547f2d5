"""In-dialog requests of a SIP leg: re-INVITE/ACK, glare (491), dialog gone (pbx.calls.sipleg)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet import task

from pbx.calls.model import CallError, LegState, Party
from pbx.calls.sdpsession import SdpSession
from pbx.calls.sipleg import SipLeg, SipSettings, glare_delay
from pbx.media.relay import MediaLeg
from pbx.sip.client import ClientTransactions
from pbx.sip.dialog import Dialog
from pbx.sip.message import Request, Response, make_response, parse_message
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address, Source
from pbx.sip.uri import parse_uri

PHONE = Address("UDP", "127.0.0.7", 5070)
LOCAL = Address("UDP", "127.0.0.1", 5060)
SDP_BODY = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"


@dataclass
class FakeNetwork:
    sent: list[bytes] = field(default_factory=list)

    def send(self, data: bytes, target: Address, source: Source | None = None) -> bool:
        self.sent.append(data)
        return True

    def requests(self, method: str | None = None) -> list[Request]:
        out = [m for m in map(parse_message, self.sent) if isinstance(m, Request)]
        return [m for m in out if method is None or m.method == method]


class RecordingOwner:
    """A LegOwner that records what the leg reports."""

    def __init__(self) -> None:
        self.ended: list[tuple[str, bool]] = []

    def leg_ended(self, leg: Any, cause: str, by_peer: bool) -> None:
        self.ended.append((cause, by_peer))

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def make_leg(owner: bool = False) -> tuple[task.Clock, FakeNetwork, ClientTransactions, SipLeg]:
    clock, net = task.Clock(), FakeNetwork()
    client = ClientTransactions(clock, net, TimerConfig(), lambda target: ("127.0.0.1", 5060))  # type: ignore[arg-type]
    media = MediaLeg("test")
    media.local_ports = (20000, 20001)
    leg = SipLeg(
        "l-1", Party("1001"), client, PHONE, SdpSession(media, "127.0.0.1", False), clock,
        SipSettings(),
    )
    leg.owner = RecordingOwner()  # type: ignore[assignment]
    leg.owns_call_id = owner
    leg.rng = random.Random(7)
    leg.dialog = Dialog(
        call_id="call-1",
        local_tag="pbx",
        remote_tag="phone",
        local_uri=parse_uri("sip:2002@127.0.0.1"),
        remote_uri=parse_uri("sip:1001@127.0.0.1"),
        local_seq=10,
        remote_seq=1,
        remote_target=parse_uri("sip:1001@127.0.0.7:5070"),
    )
    leg.state = LegState.CONFIRMED
    return clock, net, client, leg


def reply(client: ClientTransactions, request: Request, status: int) -> None:
    response = make_response(request, status, to_tag="phone")
    response.headers.add("Contact", "<sip:1001@127.0.0.7:5071>")
    client.receive_response(response, Source(PHONE, LOCAL))


def collect(d: Any) -> list[Any]:
    got: list[Any] = []
    d.addBoth(got.append)
    return got


def test_reinvite_2xx_is_acked_with_its_cseq_and_fires_the_deferred() -> None:
    _, net, client, leg = make_leg()
    got = collect(leg.send_request("INVITE", SDP_BODY, [("Supported", "timer")]))
    (invite,) = net.requests("INVITE")
    assert invite.cseq.seq == 11 and invite.body == SDP_BODY
    assert invite.headers.get("Supported") == "timer"
    assert leg.uac_invite_pending
    reply(client, invite, 200)
    (ack,) = net.requests("ACK")
    assert ack.cseq.seq == 11 and ack.cseq.method == "ACK"
    assert [r.status for r in got] == [200] and not leg.uac_invite_pending
    assert leg.dialog is not None
    assert str(leg.dialog.remote_target) == "sip:1001@127.0.0.7:5071"
    # a retransmitted 2xx (its transaction is gone) is ACKed again
    leg.stray_2xx(make_response(invite, 200, to_tag="phone"))
    assert len(net.requests("ACK")) == 2


@pytest.mark.parametrize(("owner", "low", "high"), [(True, 2.1, 4.0), (False, 0.0, 2.0)])
def test_491_is_retried_after_the_section_14_1_delay(owner: bool, low: float, high: float) -> None:
    clock, net, client, leg = make_leg(owner)
    got = collect(leg.send_request("INVITE", SDP_BODY))
    reply(client, net.requests("INVITE")[0], 491)
    assert got == [] and not leg.uac_invite_pending
    delay = glare_delay(owner, random.Random(7))
    assert low <= delay <= high and round(delay * 100) == delay * 100
    clock.advance(delay - 0.001)
    assert len(net.requests("INVITE")) == 1
    clock.advance(0.001)
    first, second = net.requests("INVITE")
    assert second.cseq.seq > first.cseq.seq and second.body == SDP_BODY
    reply(client, second, 200)
    assert [r.status for r in got] == [200]


def test_glare_gives_up_after_the_retries_with_the_491() -> None:
    clock, net, client, leg = make_leg()
    got = collect(leg.send_request("UPDATE", SDP_BODY))
    for _ in range(4):
        reply(client, net.requests("UPDATE")[-1], 491)
        clock.advance(4.1)
    assert [r.status for r in got] == [491] and len(net.requests("UPDATE")) == 4


@pytest.mark.parametrize("status", [408, 481])
def test_408_or_481_ends_the_leg_after_the_deferred(status: int) -> None:
    _, net, client, leg = make_leg()
    events: list[Any] = []
    leg.send_request("INFO").addCallback(lambda r: events.append(("final", r.status, leg.ended)))
    reply(client, net.requests("INFO")[0], status)
    assert events == [("final", status, False)]
    assert leg.ended and leg.owner.ended == [(str(status), False)]  # type: ignore[union-attr]
    assert len(net.requests("BYE")) == 1  # for good measure (RFC 5057 §5.1)


def test_a_request_that_times_out_is_a_408_and_ends_the_leg() -> None:
    clock, _, _, leg = make_leg()
    got = collect(leg.send_request("UPDATE"))
    clock.advance(33)  # timer F = 64*T1
    assert [r.status for r in got] == [408]
    assert leg.owner.ended == [("408", False)]  # type: ignore[union-attr]


def test_no_second_reinvite_while_one_is_pending_and_none_without_a_dialog() -> None:
    _, _, _, leg = make_leg()
    leg.send_request("INVITE", SDP_BODY)
    failed = collect(leg.send_request("INVITE", SDP_BODY))
    assert isinstance(failed[0].value, CallError)
    leg.dialog = None
    assert isinstance(collect(leg.send_request("INFO"))[0].value, CallError)


class FakeIncoming:
    def __init__(self, request: Request) -> None:
        self.request = request
        self.call_id = request.call_id
        self.sent: list[Response] = []
        self.retransmitted: list[Response] = []

    def send(self, response: Response) -> None:
        self.sent.append(response)

    def retransmit(self, response: Response) -> None:
        self.retransmitted.append(response)


def incoming_reinvite(cseq: int = 2) -> FakeIncoming:
    message = parse_message(
        b"INVITE sip:pbx@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.7:5070;branch=z9hG4bKx\r\n"
        b"From: <sip:1001@127.0.0.1>;tag=phone\r\nTo: <sip:2002@127.0.0.1>;tag=pbx\r\n"
        b"Call-ID: call-1\r\nCSeq: " + str(cseq).encode() + b" INVITE\r\nMax-Forwards: 70\r\n"
        b"Content-Length: 0\r\n\r\n"
    )
    assert isinstance(message, Request)
    return FakeIncoming(message)


def test_a_reinvite_2xx_is_retransmitted_until_its_ack() -> None:
    clock, _, _, leg = make_leg()
    leg.t1 = 0.5
    incoming = incoming_reinvite()
    leg.uas_invite_pending = True
    ok = make_response(incoming.request, 200, to_tag="pbx")
    leg.answer_in_dialog(incoming, ok)  # type: ignore[arg-type]
    clock.pump([0.5, 1.0])
    assert len(incoming.retransmitted) == 2 and leg.uas_invite_pending
    ack = Request("ACK", incoming.request.uri, incoming.request.headers.copy())
    ack.headers.set("CSeq", "2 ACK")
    leg.acked(ack)
    clock.advance(10)
    assert len(incoming.retransmitted) == 2 and not leg.uas_invite_pending


def test_a_reinvite_2xx_never_acked_ends_the_leg() -> None:
    clock, _, _, leg = make_leg()
    incoming = incoming_reinvite()
    leg.answer_in_dialog(incoming, make_response(incoming.request, 200, to_tag="pbx"))  # type: ignore[arg-type]
    clock.pump([0.5] * 63)  # step by step: Clock.advance runs new calls at the end time
    assert leg.owner.ended == []  # type: ignore[union-attr]
    clock.pump([0.5])
    assert leg.owner.ended == [("no ACK", True)]  # type: ignore[union-attr]
