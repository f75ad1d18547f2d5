"""RFC 3261 §17 / RFC 6026 transaction machines driven by a fake clock."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip import transaction as tx
from pbx.sip.errors import LocalProtocolError
from pbx.sip.message import Request, Response, make_response, parse_message, serialize
from pbx.sip.transaction import (
    CancelTimer,
    Deliver,
    InviteClient,
    InviteServer,
    NonInviteClient,
    NonInviteServer,
    Send,
    StartTimer,
    State,
    Terminated,
    Timeout,
    TimerConfig,
    TransportError,
)


def request(
    method: str = "INVITE",
    branch: str = "z9hG4bK776asdhds",
    sent_by: str = "127.0.0.1:5070",
    cseq: int = 314159,
    cseq_method: str | None = None,
) -> Request:
    raw = (
        f"{method} sip:bob@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch}\r\n"
        "Via: SIP/2.0/UDP 127.0.0.3:5060;branch=z9hG4bKother\r\n"
        "Max-Forwards: 70\r\n"
        "Route: <sip:127.0.0.2;lr>\r\n"
        "Route: <sip:127.0.0.4;lr>\r\n"
        "To: Bob <sip:bob@127.0.0.1>\r\n"
        "From: Alice <sip:alice@127.0.0.1>;tag=1928301774\r\n"
        "Call-ID: a84b4c76e66710@127.0.0.1\r\n"
        f"CSeq: {cseq} {cseq_method or method}\r\n"
        "Contact: <sip:alice@127.0.0.1:5070>\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int) -> Response:
    return make_response(req, status, to_tag=None if status < 101 else "a6c85cf")


M = TypeVar("M", bound=tx.Transaction)


def state(machine: tx.Transaction) -> State:
    """The current state (a call, so mypy does not keep narrowing it across inputs)."""
    return machine.state


@dataclass
class Clock(Generic[M]):
    """Fake time: schedules StartTimer effects and fires them in deadline order."""

    machine: M
    now: float = 0.0
    deadlines: dict[str, float] = field(default_factory=dict)
    log: list[tuple[float, tx.Effect]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.deadlines = dict(self.machine.active_timers)  # running timers restart from now

    def apply(self, effects: list[tx.Effect]) -> list[tx.Effect]:
        for effect in effects:
            self.log.append((self.now, effect))
            if isinstance(effect, StartTimer):
                self.deadlines[effect.name] = self.now + effect.delay
            elif isinstance(effect, CancelTimer):
                del self.deadlines[effect.name]
        assert set(self.deadlines) == set(self.machine.active_timers)
        return effects

    def advance(self, until: float) -> None:
        while self.deadlines:
            name, when = min(self.deadlines.items(), key=lambda item: item[1])
            if when > until + 1e-9:
                break
            del self.deadlines[name]
            self.now = when
            self.apply(self.machine.fire(name))
        self.now = max(self.now, until)

    def sent_at(self) -> list[float]:
        return [round(t, 6) for t, e in self.log if isinstance(e, Send)]

    def of_type(self, kind: type) -> list[tuple[float, tx.Effect]]:
        return [(round(t, 6), e) for t, e in self.log if isinstance(e, kind)]


# --- timers -------------------------------------------------------------------------------


def test_timer_config_defaults_are_rfc_values_and_scale() -> None:
    assert TimerConfig() == TimerConfig(t1=0.5, t2=4.0, t4=5.0)
    assert TimerConfig().long == 32.0
    assert TimerConfig(t1=0.01).long == pytest.approx(0.64)
    with pytest.raises(LocalProtocolError):
        TimerConfig(t1=0)


# --- INVITE client (§17.1.1) ---------------------------------------------------------------


def test_invite_client_retransmits_with_doubling_timer_a_until_timer_b() -> None:
    clock = Clock(InviteClient(request()))
    clock.apply(clock.machine.start())
    assert state(clock.machine) is State.CALLING
    clock.advance(100)
    assert clock.sent_at() == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert [t for t, _ in clock.of_type(Timeout)] == [32.0]
    assert clock.of_type(Timeout)[0][1] == Timeout("B")
    assert clock.log[-1] == (32.0, Terminated())
    assert state(clock.machine) is State.TERMINATED
    assert not clock.machine.active_timers


def test_invite_client_over_reliable_transport_sends_once_and_times_out() -> None:
    clock = Clock(InviteClient(request(), reliable=True))
    effects = clock.apply(clock.machine.start())
    assert effects == [Send(clock.machine.request), StartTimer("B", 32.0)]
    clock.advance(100)
    assert clock.sent_at() == [0]
    assert [t for t, _ in clock.of_type(Timeout)] == [32.0]


def test_invite_client_provisional_stops_retransmission_and_timer_b() -> None:
    req = request()
    clock = Clock(InviteClient(req))
    clock.apply(clock.machine.start())
    clock.advance(0.7)
    ringing = response(req, 180)
    effects = clock.apply(clock.machine.receive_response(ringing))
    assert effects == [CancelTimer("A"), CancelTimer("B"), Deliver(ringing)]
    assert state(clock.machine) is State.PROCEEDING
    clock.advance(1000)
    assert clock.sent_at() == [0, 0.5]
    assert state(clock.machine) is State.PROCEEDING  # waits for the final response
    assert clock.apply(clock.machine.receive_response(ringing)) == [Deliver(ringing)]


def test_invite_client_builds_ack_for_non_2xx_final() -> None:
    req = request()
    machine = InviteClient(req)
    machine.start()
    busy = response(req, 486)
    effects = machine.receive_response(busy)
    assert state(machine) is State.COMPLETED
    ack = machine.ack
    assert ack is not None
    assert effects == [
        CancelTimer("A"),
        CancelTimer("B"),
        Send(ack),  # before the TU acts on the failure (e.g. re-INVITEs with credentials)
        Deliver(busy),
        StartTimer("D", 32.0),
    ]
    # §17.1.1.3: same Request-URI, Call-ID, From, CSeq number; one Via (the original top
    # one); To of the response; the original Route headers; no body.
    assert ack.method == "ACK"
    assert ack.uri == req.uri
    assert ack.call_id == req.call_id
    assert ack.headers.get("From") == req.headers.get("From")
    assert ack.to.tag == "a6c85cf"
    assert (ack.cseq.seq, ack.cseq.method) == (314159, "ACK")
    assert [str(v) for v in ack.vias] == [str(req.top_via)]
    assert ack.headers.get_all("Route") == req.headers.get_all("Route")
    assert ack.body == b""
    reparsed = parse_message(serialize(ack))
    assert isinstance(reparsed, Request) and reparsed.method == "ACK"
    assert tx.server_key(ack) == tx.server_key(req)


def test_invite_client_resends_ack_on_each_retransmitted_final_then_timer_d() -> None:
    req = request()
    clock = Clock(InviteClient(req))
    clock.apply(clock.machine.start())
    busy = response(req, 486)
    clock.apply(clock.machine.receive_response(busy))
    ack = clock.machine.ack
    assert ack is not None
    assert clock.apply(clock.machine.receive_response(busy)) == [Send(ack)]
    assert clock.apply(clock.machine.receive_response(response(req, 180))) == []
    clock.advance(31.9)
    assert state(clock.machine) is State.COMPLETED
    clock.advance(32.0)
    assert state(clock.machine) is State.TERMINATED
    assert len(clock.of_type(Deliver)) == 1


def test_invite_client_reliable_completed_uses_zero_timer_d() -> None:
    req = request()
    machine = InviteClient(req, reliable=True)
    machine.start()
    effects = machine.receive_response(response(req, 603))
    assert effects[-1] == StartTimer("D", 0.0)
    assert machine.fire("D") == [Terminated()]


def test_invite_client_2xx_goes_to_accepted_and_passes_retransmissions_up() -> None:
    req = request()
    clock = Clock(InviteClient(req, timers=TimerConfig(t1=0.1)))
    clock.apply(clock.machine.start())
    ok = response(req, 200)
    effects = clock.apply(clock.machine.receive_response(ok))
    assert effects == [CancelTimer("A"), CancelTimer("B"), Deliver(ok), StartTimer("M", 6.4)]
    assert state(clock.machine) is State.ACCEPTED
    assert clock.apply(clock.machine.receive_response(ok)) == [Deliver(ok)]  # TU re-ACKs
    assert clock.apply(clock.machine.receive_response(response(req, 486))) == []
    assert not any(isinstance(e, Send) and e.message is not req for _, e in clock.log)
    clock.advance(6.4)
    assert state(clock.machine) is State.TERMINATED


def test_invite_client_transport_failure_informs_tu_and_terminates() -> None:
    machine = InviteClient(request())
    machine.start()
    assert machine.transport_failed() == [
        TransportError(),
        CancelTimer("A"),
        CancelTimer("B"),
        Terminated(),
    ]
    assert state(machine) is State.TERMINATED


def test_client_misuse_raises_local_protocol_error() -> None:
    req = request()
    machine = InviteClient(req)
    with pytest.raises(LocalProtocolError):
        machine.receive_response(response(req, 180))  # not started
    machine.start()
    with pytest.raises(LocalProtocolError):
        machine.start()
    with pytest.raises(LocalProtocolError):
        machine.fire("D")  # not running
    machine.fire("B")
    with pytest.raises(LocalProtocolError):
        machine.receive_response(response(req, 200))  # terminated
    with pytest.raises(LocalProtocolError):
        InviteClient(request("OPTIONS"))
    with pytest.raises(LocalProtocolError):
        NonInviteClient(req)


# --- non-INVITE client (§17.1.2) -----------------------------------------------------------


def test_non_invite_client_timer_e_doubles_up_to_t2_until_timer_f() -> None:
    clock = Clock(NonInviteClient(request("OPTIONS")))
    effects = clock.apply(clock.machine.start())
    assert effects == [Send(clock.machine.request), StartTimer("E", 0.5), StartTimer("F", 32.0)]
    assert state(clock.machine) is State.TRYING
    clock.advance(100)
    assert clock.sent_at() == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert clock.of_type(Timeout) == [(32.0, Timeout("F"))]
    assert state(clock.machine) is State.TERMINATED


def test_non_invite_client_proceeding_retransmits_every_t2() -> None:
    req = request("BYE")
    clock = Clock(NonInviteClient(req))
    clock.apply(clock.machine.start())
    clock.advance(0.2)
    trying = response(req, 100)
    assert clock.apply(clock.machine.receive_response(trying)) == [Deliver(trying)]
    assert state(clock.machine) is State.PROCEEDING
    clock.advance(10)
    assert clock.sent_at() == [0, 0.5, 4.5, 8.5]


def test_non_invite_client_final_absorbs_retransmissions_and_waits_timer_k() -> None:
    req = request("REGISTER")
    clock = Clock(NonInviteClient(req))
    clock.apply(clock.machine.start())
    ok = response(req, 200)
    effects = clock.apply(clock.machine.receive_response(ok))
    assert effects == [CancelTimer("E"), CancelTimer("F"), Deliver(ok), StartTimer("K", 5.0)]
    assert state(clock.machine) is State.COMPLETED
    assert clock.apply(clock.machine.receive_response(ok)) == []
    assert clock.apply(clock.machine.receive_response(response(req, 500))) == []
    clock.advance(5.0)
    assert state(clock.machine) is State.TERMINATED


def test_non_invite_client_reliable_has_no_timer_e_and_zero_timer_k() -> None:
    req = request("OPTIONS")
    machine = NonInviteClient(req, reliable=True)
    assert machine.start() == [Send(req), StartTimer("F", 32.0)]
    effects = machine.receive_response(response(req, 404))
    assert effects[-1] == StartTimer("K", 0.0)
    assert machine.fire("K") == [Terminated()]


# --- INVITE server (§17.2.1, RFC 6026) ------------------------------------------------------


def test_invite_server_sends_100_trying_when_tu_is_slow() -> None:
    req = request()
    clock = Clock(InviteServer(req))
    assert clock.apply(clock.machine.receive_request(req)) == [
        Deliver(req),
        StartTimer("trying", 0.2),
    ]
    assert state(clock.machine) is State.PROCEEDING
    assert clock.apply(clock.machine.receive_request(req)) == []  # nothing to repeat yet
    clock.advance(0.2)
    [(when, send)] = clock.of_type(Send)
    assert when == 0.2 and isinstance(send, Send)
    assert isinstance(send.message, Response) and send.message.status == 100
    assert clock.apply(clock.machine.receive_request(req)) == [Send(send.message)]


def test_invite_server_tu_response_cancels_automatic_trying() -> None:
    req = request()
    machine = InviteServer(req)
    machine.receive_request(req)
    ringing = response(req, 180)
    assert machine.send_response(ringing) == [CancelTimer("trying"), Send(ringing)]
    assert machine.receive_request(req) == [Send(ringing)]  # last provisional repeated


def test_invite_server_trying_immediately_or_never() -> None:
    req = request()
    now = InviteServer(req, auto_trying_after=0)
    effects = now.receive_request(req)
    assert effects[0] == Deliver(req)
    assert isinstance(effects[1], Send) and isinstance(effects[1].message, Response)
    assert effects[1].message.status == 100
    never = InviteServer(req, auto_trying_after=None)
    assert never.receive_request(req) == [Deliver(req)]
    assert not never.active_timers


def test_invite_server_non_2xx_retransmits_with_timer_g_until_timer_h() -> None:
    req = request()
    clock = Clock(InviteServer(req, auto_trying_after=None))
    clock.apply(clock.machine.receive_request(req))
    busy = response(req, 486)
    effects = clock.apply(clock.machine.send_response(busy))
    assert effects == [Send(busy), StartTimer("G", 0.5), StartTimer("H", 32.0)]
    assert state(clock.machine) is State.COMPLETED
    clock.advance(5)
    assert clock.apply(clock.machine.receive_request(req)) == [Send(busy)]
    clock.advance(100)
    assert clock.sent_at() == [0, 0.5, 1.5, 3.5, 5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert clock.of_type(Timeout) == [(32.0, Timeout("H"))]
    assert state(clock.machine) is State.TERMINATED


def test_invite_server_ack_confirms_and_absorbs_until_timer_i() -> None:
    req = request()
    ack = request("ACK")
    clock = Clock(InviteServer(req, auto_trying_after=None))
    clock.apply(clock.machine.receive_request(req))
    clock.apply(clock.machine.send_response(response(req, 404)))
    clock.advance(0.6)
    effects = clock.apply(clock.machine.receive_ack(ack))
    assert effects == [CancelTimer("G"), CancelTimer("H"), StartTimer("I", 5.0)]
    assert state(clock.machine) is State.CONFIRMED
    assert clock.apply(clock.machine.receive_ack(ack)) == []
    assert clock.apply(clock.machine.receive_request(req)) == []
    clock.advance(5.6)
    assert state(clock.machine) is State.TERMINATED
    assert clock.sent_at() == [0, 0.5]


def test_invite_server_reliable_has_no_timer_g_and_zero_timer_i() -> None:
    req = request()
    machine = InviteServer(req, reliable=True, auto_trying_after=None)
    machine.receive_request(req)
    busy = response(req, 486)
    assert machine.send_response(busy) == [Send(busy), StartTimer("H", 32.0)]
    assert machine.receive_ack(request("ACK")) == [CancelTimer("H"), StartTimer("I", 0.0)]
    assert machine.fire("I") == [Terminated()]


def test_invite_server_2xx_goes_through_accepted_with_timer_l() -> None:
    req = request()
    machine = InviteServer(req, auto_trying_after=None)
    machine.receive_request(req)
    ok = response(req, 200)
    assert machine.send_response(ok) == [Send(ok), StartTimer("L", 32.0)]
    assert state(machine) is State.ACCEPTED
    assert machine.receive_request(req) == []  # RFC 6026: INVITE retransmission absorbed
    assert machine.send_response(ok) == [Send(ok)]  # the TU's own 2xx retransmission
    ack = request("ACK")
    assert machine.receive_ack(ack) == [Deliver(ack)]
    assert machine.transport_failed() == [TransportError()]
    assert state(machine) is State.ACCEPTED
    with pytest.raises(LocalProtocolError):
        machine.send_response(response(req, 486))
    assert machine.fire("L") == [Terminated()]


def test_invite_server_misuse_raises() -> None:
    req = request()
    machine = InviteServer(req, auto_trying_after=None)
    with pytest.raises(LocalProtocolError):
        machine.send_response(response(req, 180))  # before the request arrived
    machine.receive_request(req)
    with pytest.raises(LocalProtocolError):
        machine.receive_request(request("BYE"))
    with pytest.raises(LocalProtocolError):
        machine.receive_ack(req)
    machine.send_response(response(req, 486))
    with pytest.raises(LocalProtocolError):
        machine.send_response(response(req, 200))
    with pytest.raises(LocalProtocolError):
        InviteServer(request("BYE"))


def test_invite_server_transport_error_while_completed_terminates() -> None:
    req = request()
    machine = InviteServer(req, auto_trying_after=None)
    machine.receive_request(req)
    machine.send_response(response(req, 500))
    assert machine.transport_failed() == [
        TransportError(),
        CancelTimer("G"),
        CancelTimer("H"),
        Terminated(),
    ]


# --- non-INVITE server (§17.2.2) -----------------------------------------------------------


def test_non_invite_server_absorbs_retransmission_in_trying_and_repeats_responses() -> None:
    req = request("OPTIONS")
    machine = NonInviteServer(req)
    assert machine.receive_request(req) == [Deliver(req)]
    assert state(machine) is State.TRYING
    assert machine.receive_request(req) == []
    trying = response(req, 100)
    assert machine.send_response(trying) == [Send(trying)]
    assert state(machine) is State.PROCEEDING
    assert machine.receive_request(req) == [Send(trying)]
    ok = response(req, 200)
    assert machine.send_response(ok) == [Send(ok), StartTimer("J", 32.0)]
    assert state(machine) is State.COMPLETED
    assert machine.receive_request(req) == [Send(ok)]
    assert machine.send_response(response(req, 500)) == []  # discarded (§17.2.2)
    with pytest.raises(LocalProtocolError):
        machine.send_response(response(req, 180))
    assert machine.fire("J") == [Terminated()]
    assert state(machine) is State.TERMINATED


def test_non_invite_server_reliable_zero_timer_j() -> None:
    req = request("BYE")
    machine = NonInviteServer(req, reliable=True)
    machine.receive_request(req)
    ok = response(req, 200)
    assert machine.send_response(ok) == [Send(ok), StartTimer("J", 0.0)]
    with pytest.raises(LocalProtocolError):
        NonInviteServer(request("ACK", cseq_method="ACK"))


# --- keys (§17.1.3, §17.2.3) ---------------------------------------------------------------


def test_server_key_matches_ack_to_invite_but_not_cancel_or_other_sent_by() -> None:
    invite = request()
    assert tx.server_key(request("ACK")) == tx.server_key(invite)
    assert tx.server_key(request("CANCEL")) != tx.server_key(invite)
    assert tx.server_key(request(sent_by="127.0.0.9:5070")) != tx.server_key(invite)
    assert tx.server_key(request(branch="z9hG4bKdifferent")) != tx.server_key(invite)
    assert tx.server_key(invite) == ("z9hG4bK776asdhds", "127.0.0.1:5070", "INVITE")


def test_server_key_falls_back_to_rfc2543_matching_without_magic_cookie() -> None:
    invite = request(branch="old1")
    key = tx.server_key(invite)
    assert len(key) == 6
    assert tx.server_key(request("ACK", branch="old1")) == key
    assert tx.server_key(request(branch="old1", cseq=2)) != key
    assert tx.server_key(request("BYE", branch="old1")) != key


def test_client_key_is_branch_and_cseq_method_for_request_and_response() -> None:
    req = request("BYE")
    assert tx.client_key(req) == ("z9hG4bK776asdhds", "BYE")
    assert tx.client_key(response(req, 200)) == tx.client_key(req)
    assert tx.client_key(response(request("CANCEL"), 200)) != tx.client_key(req)
    assert NonInviteClient(req).key == tx.client_key(req)


# --- random walks ---------------------------------------------------------------------------

MACHINES = ("invite_client", "non_invite_client", "invite_server", "non_invite_server")
STATUSES = (100, 180, 200, 486)
# Weighted towards inputs that make progress; "stray_fire" fires a (mostly) idle timer.
CLIENT_OPS = ("start", "response", "response", "fire", "fire", "stray_fire", "transport")
NETWORK_OPS = ("response", "request", "ack", "transport")
SERVER_OPS = ("request", "send_response", "send_response", "ack", "fire", "stray_fire", "transport")


def make_machine(kind: str, reliable: bool) -> tx.Transaction:
    timers = TimerConfig(t1=0.01, t2=0.08, t4=0.1, d=0.64)
    if kind == "invite_client":
        return InviteClient(request(), reliable=reliable, timers=timers)
    if kind == "non_invite_client":
        return NonInviteClient(request("BYE"), reliable=reliable, timers=timers)
    if kind == "invite_server":
        return InviteServer(request(), reliable=reliable, timers=timers)
    return NonInviteServer(request("BYE"), reliable=reliable, timers=timers)


def operate(machine: tx.Transaction, op: str, status: int, timer: str) -> list[tx.Effect]:
    req = machine.request
    if op == "start" and isinstance(machine, (InviteClient, NonInviteClient)):
        return machine.start()
    if op == "response" and isinstance(machine, (InviteClient, NonInviteClient)):
        return machine.receive_response(response(req, status))
    if op == "send_response" and isinstance(machine, (InviteServer, NonInviteServer)):
        return machine.send_response(response(req, status))
    if op == "request" and isinstance(machine, (InviteServer, NonInviteServer)):
        return machine.receive_request(req)
    if op == "ack" and isinstance(machine, InviteServer):
        return machine.receive_ack(request("ACK"))
    if op in ("fire", "stray_fire"):
        return machine.fire(timer)
    if op == "transport":
        return machine.transport_failed()
    return []


def finish(clock: Clock[tx.Transaction]) -> None:
    """Play the TU/peer until the machine is done, firing timers in time order."""
    machine = clock.machine
    for _ in range(500):
        if machine.state is State.TERMINATED:
            return
        if clock.deadlines:
            clock.advance(min(clock.deadlines.values()))
        elif machine.state is State.INITIAL:
            clock.apply(operate(machine, "start", 0, ""))
            clock.apply(operate(machine, "request", 0, ""))
        elif isinstance(machine, (InviteClient, NonInviteClient)):
            clock.apply(machine.receive_response(response(machine.request, 486)))
        else:
            clock.apply(machine.send_response(response(machine.request, 486)))


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    kind=st.sampled_from(MACHINES),
    reliable=st.booleans(),
)
def test_random_inputs_only_raise_local_errors_and_always_terminate(
    data: st.DataObject, kind: str, reliable: bool
) -> None:
    ops = CLIENT_OPS if kind.endswith("client") else SERVER_OPS
    step = st.tuples(
        st.sampled_from(ops), st.sampled_from(STATUSES), st.sampled_from(tx.TIMER_NAMES)
    )
    machine = make_machine(kind, reliable)
    clock = Clock(machine)
    clock.apply(operate(machine, "start", 0, ""))
    clock.apply(operate(machine, "request", 0, ""))
    for op, status, timer in data.draw(st.lists(step, min_size=2, max_size=30)):
        if op == "fire" and machine.active_timers:
            # a running timer always has a row in the table
            running = sorted(machine.active_timers)
            name = running[tx.TIMER_NAMES.index(timer) % len(running)]
            clock.deadlines.pop(name, None)
            clock.apply(machine.fire(name))
            continue
        if op == "stray_fire" and timer in machine.active_timers:
            del clock.deadlines[timer]  # a legitimate firing after all
        before = machine.state
        try:
            clock.apply(operate(machine, op, status, timer))
        except LocalProtocolError:
            assert op not in NETWORK_OPS or before is State.TERMINATED
    finish(clock)
    assert state(machine) is State.TERMINATED
    assert not machine.active_timers
    assert [e for _, e in clock.log].count(Terminated()) == 1
    assert clock.log[-1][1] == Terminated()


RETRANSMIT_TIMERS = {tx.Input.TIMER_A, tx.Input.TIMER_E, tx.Input.TIMER_G}


def table_input(op: str, status: int, timer: str) -> tx.Input:
    """The table input an ``operate`` call feeds the machine."""
    if op == "fire":
        return tx.Input[f"TIMER_{timer.upper()}"]
    kind = {1: "PROVISIONAL", 2: "SUCCESS"}.get(status // 100, "FAILURE")
    if op in ("response", "send_response"):
        return tx.Input[kind if op == "response" else f"TU_{kind}"]
    return {"transport": tx.Input.TRANSPORT_ERROR}.get(op) or tx.Input[op.upper()]


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize("kind", MACHINES)
def test_exhaustive_walk_reaches_every_row_absorbs_network_input_and_can_terminate(
    kind: str, reliable: bool
) -> None:
    if kind.endswith("client"):
        ops: tuple[str, ...] = ("start", "response", "transport")
    else:
        ops = ("request", "send_response", "transport", "ack")[
            : 4 if kind == "invite_server" else 3
        ]
    inputs = [(op, status, "") for op in ops for status in STATUSES]
    inputs += [("fire", 0, name) for name in tx.TIMER_NAMES]
    fresh = make_machine(kind, reliable)
    frontier = [fresh]
    visited = {(fresh.state, frozenset(fresh.active_timers))}
    rows: set[tuple[State, tx.Input]] = set()
    while frontier:
        machine = frontier.pop()
        done = copy.deepcopy(machine)
        finish(Clock(done))
        assert state(done) is State.TERMINATED
        for op, status, timer in inputs:
            clone = copy.deepcopy(machine)
            before = clone.state
            try:
                operate(clone, op, status, timer)
            except LocalProtocolError:
                # whatever the network sends mid-transaction is never a local error
                assert op not in NETWORK_OPS or before in (State.INITIAL, State.TERMINATED)
                continue
            rows.add((before, table_input(op, status, timer)))
            signature = (clone.state, frozenset(clone.active_timers))
            if signature not in visited:
                visited.add(signature)
                frontier.append(clone)
    expected = set(type(fresh).TABLE)
    if reliable:  # no retransmission timers over reliable transports
        expected = {row for row in expected if row[1] not in RETRANSMIT_TIMERS}
    assert rows == expected
