"""SIP transaction state machines, sans-IO (RFC 3261 §17, updated by RFC 6026).

Owns the four transaction machines (INVITE / non-INVITE, client / server), their timers
and the transaction matching keys (§17.1.3, §17.2.3).  Every input is a method call and
every output is a list of effect dataclasses (``Send``, ``StartTimer``, ``CancelTimer``,
``Deliver``, ``Timeout``, ``TransportError``, ``Terminated``) that the caller carries out:
the machines never touch a socket or a clock.  The driver must schedule each
``StartTimer`` and call ``fire(name)`` when it expires, unless a ``CancelTimer`` for it
came first; ``fire`` of a timer that is not running is a ``LocalProtocolError``.

Each machine keeps a transition table ``{(state, input): (action, next_state)}``.  Inputs
coming from the network in a state where the RFC says to absorb them are in the table
with a no-op action; anything not in the table (TU misuse, a driver bug, any input after
TERMINATED) raises ``LocalProtocolError``.

100 Trying (§17.2.1): ``InviteServer(auto_trying_after=0.2)`` starts a "trying" timer and
sends a 100 when it fires if the TU has not responded yet; ``0`` sends the 100 at once
with the delivery of the INVITE; ``None`` leaves it to the TU (the stack then calls
``send_response`` with its own 100).

Must not import twisted, socket, sqlite3, pbx.store or anything else that does I/O.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

from pbx.sip.errors import LocalProtocolError
from pbx.sip.message import Headers, Message, Request, Response, make_response

log = logging.getLogger(__name__)

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """RFC 3261 §17.1.1.1 / table 4 timer base values in seconds (tests may shorten them).

    ``d`` is timer D for unreliable transports ("at least 32 seconds", §17.1.1.2).
    """

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    d: float = 32.0

    def __post_init__(self) -> None:
        if min(self.t1, self.t2, self.t4, self.d) <= 0:
            raise LocalProtocolError("timer values must be positive")

    @property
    def long(self) -> float:
        """64*T1: timers B, F, H, J, L and M."""
        return 64 * self.t1


class State(enum.Enum):
    """States as named in RFC 3261 figures 5-8 and RFC 6026 (INITIAL = before any input)."""

    INITIAL = "initial"
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class Input(enum.Enum):
    START = "request from TU"
    PROVISIONAL = "1xx received"
    SUCCESS = "2xx received"
    FAILURE = "300-699 received"
    REQUEST = "request received"
    ACK = "ACK received"
    TU_PROVISIONAL = "1xx from TU"
    TU_SUCCESS = "2xx from TU"
    TU_FAILURE = "300-699 from TU"
    TRANSPORT_ERROR = "transport error"
    TIMER_A = "timer A"
    TIMER_B = "timer B"
    TIMER_D = "timer D"
    TIMER_E = "timer E"
    TIMER_F = "timer F"
    TIMER_G = "timer G"
    TIMER_H = "timer H"
    TIMER_I = "timer I"
    TIMER_J = "timer J"
    TIMER_K = "timer K"
    TIMER_L = "timer L"
    TIMER_M = "timer M"
    TIMER_TRYING = "timer trying"


TIMER_NAMES = ("A", "B", "D", "E", "F", "G", "H", "I", "J", "K", "L", "M", "trying")
_TIMER_INPUTS = {name: Input[f"TIMER_{name.upper()}"] for name in TIMER_NAMES}


# --- effects ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Hand ``message`` to the transport (first transmission or retransmission)."""

    message: Message


@dataclass(frozen=True, slots=True)
class StartTimer:
    """(Re)start timer ``name`` to fire after ``delay`` seconds (0 = as soon as possible)."""

    name: str
    delay: float


@dataclass(frozen=True, slots=True)
class CancelTimer:
    name: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Pass ``message`` up to the transaction user."""

    message: Message


@dataclass(frozen=True, slots=True)
class Timeout:
    """Transaction timeout (timer B, F or H): the TU treats it as a 408 (§8.1.3.1)."""

    timer: str = ""


@dataclass(frozen=True, slots=True)
class TransportError:
    """The transport failed to send (§17.1.4, §17.2.4)."""


@dataclass(frozen=True, slots=True)
class Terminated:
    """The transaction is over; the driver drops it from its table."""


Effect: TypeAlias = (
    Send | StartTimer | CancelTimer | Deliver | Timeout | TransportError | Terminated
)
Action: TypeAlias = Callable[[Any, Any], list[Effect]]
Table: TypeAlias = Mapping[tuple[State, Input], tuple[Action, State]]
TransactionKey: TypeAlias = tuple[str | int | None, ...]


# --- keys (§17.1.3, §17.2.3) -------------------------------------------------------------


def server_key(request: Request) -> TransactionKey:
    """Server transaction key, RFC 3261 §17.2.3 (ACK is matched against its INVITE).

    Branch with the magic cookie: (branch, sent-by, method).  Otherwise the RFC 2543
    fallback: (Request-URI, From tag, Call-ID, CSeq number, top Via, method).
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        sent_by = via.host.lower() if via.port is None else f"{via.host.lower()}:{via.port}"
        return (branch, sent_by, method)
    return (
        str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


def client_key(message: Message) -> TransactionKey:
    """Client transaction key, RFC 3261 §17.1.3: (top Via branch, CSeq method).

    Works on the request being sent (to register the transaction) and on responses.
    """
    return (message.top_via.branch or "", message.cseq.method)


def build_ack(request: Request, response: Response) -> Request:
    """ACK for a non-2xx final response to ``request``, RFC 3261 §17.1.1.3."""
    headers = Headers()
    headers.add("Via", str(request.top_via))
    headers.add("Max-Forwards", "70")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    headers.add("From", _header(request, "From"))
    headers.add("To", _header(response, "To"))
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq.seq} ACK")
    return Request("ACK", request.uri, headers)


def _header(message: Message, name: str) -> str:
    value = message.headers.get(name)
    if value is None:
        raise LocalProtocolError(f"message has no {name} header")
    return value


def _response_input(response: Response, *, from_tu: bool) -> Input:
    status = response.status
    if not 100 <= status <= 699:
        raise LocalProtocolError(f"status {status} out of range")
    if status < 200:
        return Input.TU_PROVISIONAL if from_tu else Input.PROVISIONAL
    if status < 300:
        return Input.TU_SUCCESS if from_tu else Input.SUCCESS
    return Input.TU_FAILURE if from_tu else Input.FAILURE


def _absorb(_machine: object, _message: object) -> list[Effect]:
    return []


def _same_state(
    action: Action, states: Iterable[State], inputs: Iterable[Input]
) -> dict[tuple[State, Input], tuple[Action, State]]:
    """Table rows that run ``action`` and stay in the same state."""
    inputs = tuple(inputs)
    return {(state, inp): (action, state) for state in states for inp in inputs}


_RESPONSES = (Input.PROVISIONAL, Input.SUCCESS, Input.FAILURE)
S = State
I = Input  # noqa: E741


# --- common machinery -------------------------------------------------------------------


class _Transaction:
    TABLE: ClassVar[Table]
    METHODS: ClassVar[frozenset[str] | None] = None  # None: any method but INVITE and ACK
    TIMEOUT_TIMER: ClassVar[str] = ""

    def __init__(
        self, request: Request, *, reliable: bool = False, timers: TimerConfig = TimerConfig()
    ) -> None:
        if not self._takes(request.method):
            raise LocalProtocolError(f"{type(self).__name__} cannot handle {request.method}")
        self.request = request
        self.state = State.INITIAL
        self.reliable = reliable
        self.timers = timers
        self._active: dict[str, float] = {}
        self._interval: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.name} timers={sorted(self._active)}>"

    @classmethod
    def _takes(cls, method: str) -> bool:
        if cls.METHODS is None:
            return method not in ("INVITE", "ACK")
        return method in cls.METHODS

    @property
    def active_timers(self) -> Mapping[str, float]:
        """Running timers: name -> delay it was started with."""
        return MappingProxyType(self._active)

    def fire(self, timer: str) -> list[Effect]:
        """Timer ``timer`` expired."""
        if timer not in self._active:
            raise LocalProtocolError(f"{self!r}: timer {timer!r} is not running")
        del self._active[timer]
        return self._step(_TIMER_INPUTS[timer])

    def transport_failed(self) -> list[Effect]:
        """The transport reported a failure for this transaction (§17.1.4, §17.2.4)."""
        return self._step(Input.TRANSPORT_ERROR)

    def _step(self, inp: Input, message: Message | None = None) -> list[Effect]:
        try:
            action, next_state = self.TABLE[(self.state, inp)]
        except KeyError:
            raise LocalProtocolError(
                f"{type(self).__name__}: {inp.value} not allowed in state {self.state.name}"
            ) from None
        previous, self.state = self.state, next_state
        effects = action(self, message)
        if next_state is State.TERMINATED and previous is not State.TERMINATED:
            effects += self._cancel(*self._active)
            effects.append(Terminated())
        if previous is not next_state:
            log.debug(
                "%s: %s -> %s on %s", type(self).__name__, previous.name, next_state.name, inp.value
            )
        return effects

    def _start(self, name: str, delay: float) -> StartTimer:
        self._active[name] = delay
        self._interval[name] = delay
        return StartTimer(name, delay)

    def _cancel(self, *names: str) -> list[Effect]:
        return [
            CancelTimer(name) for name in list(names) if self._active.pop(name, None) is not None
        ]

    def _deliver(self, message: Message) -> list[Effect]:
        return [Deliver(message)]

    def _transport_error(self, _message: None) -> list[Effect]:
        return [TransportError()]

    def _terminate(self, _message: None) -> list[Effect]:
        return []  # _step cancels the remaining timers and appends Terminated()

    def _timeout(self, _message: None) -> list[Effect]:
        return [Timeout(self.TIMEOUT_TIMER)]


# --- client transactions (§17.1) ------------------------------------------------------


class _Client(_Transaction):
    RETRANSMIT_TIMER: ClassVar[str]

    @property
    def key(self) -> TransactionKey:
        return client_key(self.request)

    def start(self) -> list[Effect]:
        """Send the request for the first time."""
        return self._step(Input.START)

    def receive_response(self, response: Response) -> list[Effect]:
        """A response matched to this transaction by ``client_key``."""
        return self._step(_response_input(response, from_tu=False), response)

    def _send_request(self, _message: None) -> list[Effect]:
        # §17.1.1.2 timers A/B, §17.1.2.2 timers E/F; no retransmission over reliable ones.
        effects: list[Effect] = [Send(self.request)]
        if not self.reliable:
            effects.append(self._start(self.RETRANSMIT_TIMER, self.timers.t1))
        effects.append(self._start(self.TIMEOUT_TIMER, self.timers.long))
        return effects


class InviteClient(_Client):
    """INVITE client transaction, RFC 3261 §17.1.1 with the RFC 6026 "Accepted" state."""

    METHODS = frozenset({"INVITE"})
    RETRANSMIT_TIMER, TIMEOUT_TIMER = "A", "B"
    ack: Request | None = None  # built on the first non-2xx final response

    def _retransmit(self, _message: None) -> list[Effect]:
        # §17.1.1.2: timer A doubles each time, with no upper bound.
        return [Send(self.request), self._start("A", 2 * self._interval["A"])]

    def _proceed(self, response: Response) -> list[Effect]:
        return [*self._cancel("A", "B"), Deliver(response)]

    def _accept(self, response: Response) -> list[Effect]:
        # RFC 6026 §8.4: 2xx -> Accepted; timer M absorbs/forwards 2xx retransmissions.
        return [*self._cancel("A", "B"), Deliver(response), self._start("M", self.timers.long)]

    def _complete(self, response: Response) -> list[Effect]:
        self.ack = build_ack(self.request, response)
        delay = 0.0 if self.reliable else self.timers.d
        # the ACK goes out before the TU hears of the failure: what the TU does next (a new
        # INVITE with credentials after a 407) must not reach the server before the ACK
        return [*self._cancel("A", "B"), Send(self.ack), Deliver(response), self._start("D", delay)]

    def _resend_ack(self, _response: Response) -> list[Effect]:
        assert self.ack is not None
        return [Send(self.ack)]

    TABLE: ClassVar[Table] = {
        (S.INITIAL, I.START): (_Client._send_request, S.CALLING),
        (S.CALLING, I.TIMER_A): (_retransmit, S.CALLING),
        (S.CALLING, I.TIMER_B): (_Transaction._timeout, S.TERMINATED),
        (S.CALLING, I.PROVISIONAL): (_proceed, S.PROCEEDING),
        (S.CALLING, I.SUCCESS): (_accept, S.ACCEPTED),
        (S.CALLING, I.FAILURE): (_complete, S.COMPLETED),
        (S.CALLING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.PROCEEDING, I.PROVISIONAL): (_Transaction._deliver, S.PROCEEDING),
        (S.PROCEEDING, I.SUCCESS): (_accept, S.ACCEPTED),
        (S.PROCEEDING, I.FAILURE): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.COMPLETED, I.FAILURE): (_resend_ack, S.COMPLETED),
        (S.COMPLETED, I.TIMER_D): (_Transaction._terminate, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.ACCEPTED, I.SUCCESS): (_Transaction._deliver, S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_M): (_Transaction._terminate, S.TERMINATED),
        # Stray responses after a final one (reordering, forking leftovers) are absorbed.
        **_same_state(_absorb, [S.COMPLETED], [I.PROVISIONAL, I.SUCCESS]),
        **_same_state(_absorb, [S.ACCEPTED], [I.PROVISIONAL, I.FAILURE, I.TRANSPORT_ERROR]),
    }


class NonInviteClient(_Client):
    """Non-INVITE client transaction, RFC 3261 §17.1.2 (figure 6)."""

    RETRANSMIT_TIMER, TIMEOUT_TIMER = "E", "F"

    def _retransmit_trying(self, _message: None) -> list[Effect]:
        # §17.1.2.2: E doubles up to T2.
        delay = min(2 * self._interval["E"], self.timers.t2)
        return [Send(self.request), self._start("E", delay)]

    def _retransmit_proceeding(self, _message: None) -> list[Effect]:
        return [Send(self.request), self._start("E", self.timers.t2)]

    def _complete(self, response: Response) -> list[Effect]:
        delay = 0.0 if self.reliable else self.timers.t4
        return [*self._cancel("E", "F"), Deliver(response), self._start("K", delay)]

    TABLE: ClassVar[Table] = {
        (S.INITIAL, I.START): (_Client._send_request, S.TRYING),
        (S.TRYING, I.TIMER_E): (_retransmit_trying, S.TRYING),
        (S.TRYING, I.TIMER_F): (_Transaction._timeout, S.TERMINATED),
        (S.TRYING, I.PROVISIONAL): (_Transaction._deliver, S.PROCEEDING),
        (S.TRYING, I.SUCCESS): (_complete, S.COMPLETED),
        (S.TRYING, I.FAILURE): (_complete, S.COMPLETED),
        (S.TRYING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.PROCEEDING, I.TIMER_E): (_retransmit_proceeding, S.PROCEEDING),
        (S.PROCEEDING, I.TIMER_F): (_Transaction._timeout, S.TERMINATED),
        (S.PROCEEDING, I.PROVISIONAL): (_Transaction._deliver, S.PROCEEDING),
        (S.PROCEEDING, I.SUCCESS): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.FAILURE): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.COMPLETED, I.TIMER_K): (_Transaction._terminate, S.TERMINATED),
        # §17.1.2.2: response retransmissions in Completed are absorbed.
        **_same_state(_absorb, [S.COMPLETED], [*_RESPONSES, I.TRANSPORT_ERROR]),
    }


# --- server transactions (§17.2) ------------------------------------------------------


class _Server(_Transaction):
    last_response: Response | None = None  # repeated on request retransmissions

    @property
    def key(self) -> TransactionKey:
        return server_key(self.request)

    def receive_request(self, request: Request) -> list[Effect]:
        """The request that created the transaction (first call: delivered to the TU),
        or a retransmission of it."""
        if request.method != self.request.method:
            raise LocalProtocolError(f"{type(self).__name__} cannot take {request.method}")
        return self._step(Input.REQUEST, request)

    def send_response(self, response: Response) -> list[Effect]:
        """A response from the TU."""
        return self._step(_response_input(response, from_tu=True), response)

    def _receive(self, request: Request) -> list[Effect]:
        return [Deliver(request)]

    def _send(self, response: Response) -> list[Effect]:
        self.last_response = response
        return [*self._cancel("trying"), Send(response)]

    def _resend_last(self, _request: Request) -> list[Effect]:
        return [] if self.last_response is None else [Send(self.last_response)]


class InviteServer(_Server):
    """INVITE server transaction, RFC 3261 §17.2.1 with the RFC 6026 "Accepted" state.

    In Accepted the TU retransmits its 2xx itself (§13.3.1.4) through ``send_response``;
    INVITE retransmissions are absorbed and an ACK is passed up (RFC 6026 §8.7).
    A transport error in Accepted is reported but keeps the state, so timer L still
    absorbs INVITE retransmissions.
    """

    METHODS = frozenset({"INVITE"})
    TIMEOUT_TIMER = "H"

    def __init__(
        self,
        request: Request,
        *,
        reliable: bool = False,
        timers: TimerConfig = TimerConfig(),
        auto_trying_after: float | None = 0.2,
    ) -> None:
        super().__init__(request, reliable=reliable, timers=timers)
        self.auto_trying_after = auto_trying_after

    def receive_ack(self, ack: Request) -> list[Effect]:
        """An ACK matched to this transaction by ``server_key``."""
        if ack.method != "ACK":
            raise LocalProtocolError(f"receive_ack got {ack.method}")
        return self._step(Input.ACK, ack)

    def _receive_invite(self, request: Request) -> list[Effect]:
        effects = self._receive(request)
        if self.auto_trying_after == 0:
            effects += self._send(make_response(request, 100))
        elif self.auto_trying_after is not None:
            effects.append(self._start("trying", self.auto_trying_after))
        return effects

    def _send_trying(self, _message: None) -> list[Effect]:
        return self._send(make_response(self.request, 100))

    def _accept(self, response: Response) -> list[Effect]:
        return [*self._send(response), self._start("L", self.timers.long)]

    def _complete(self, response: Response) -> list[Effect]:
        effects = self._send(response)
        if not self.reliable:
            effects.append(self._start("G", self.timers.t1))
        effects.append(self._start("H", self.timers.long))
        return effects

    def _retransmit_final(self, _message: None) -> list[Effect]:
        # §17.2.1: G doubles up to T2.
        assert self.last_response is not None
        delay = min(2 * self._interval["G"], self.timers.t2)
        return [Send(self.last_response), self._start("G", delay)]

    def _confirm(self, _ack: Request) -> list[Effect]:
        delay = 0.0 if self.reliable else self.timers.t4
        return [*self._cancel("G", "H"), self._start("I", delay)]

    TABLE: ClassVar[Table] = {
        (S.INITIAL, I.REQUEST): (_receive_invite, S.PROCEEDING),
        (S.PROCEEDING, I.REQUEST): (_Server._resend_last, S.PROCEEDING),
        (S.PROCEEDING, I.TIMER_TRYING): (_send_trying, S.PROCEEDING),
        (S.PROCEEDING, I.TU_PROVISIONAL): (_Server._send, S.PROCEEDING),
        (S.PROCEEDING, I.TU_SUCCESS): (_accept, S.ACCEPTED),
        (S.PROCEEDING, I.TU_FAILURE): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.COMPLETED, I.REQUEST): (_Server._resend_last, S.COMPLETED),
        (S.COMPLETED, I.TIMER_G): (_retransmit_final, S.COMPLETED),
        (S.COMPLETED, I.TIMER_H): (_Transaction._timeout, S.TERMINATED),
        (S.COMPLETED, I.ACK): (_confirm, S.CONFIRMED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.CONFIRMED, I.TIMER_I): (_Transaction._terminate, S.TERMINATED),
        (S.ACCEPTED, I.TU_SUCCESS): (_Server._send, S.ACCEPTED),
        (S.ACCEPTED, I.ACK): (_Transaction._deliver, S.ACCEPTED),
        (S.ACCEPTED, I.TIMER_L): (_Transaction._terminate, S.TERMINATED),
        (S.ACCEPTED, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.ACCEPTED),
        # An ACK before any final response is meaningless: drop it.
        **_same_state(_absorb, [S.PROCEEDING], [I.ACK]),
        # §17.2.1: ACK and INVITE retransmissions in Confirmed are absorbed;
        # RFC 6026 §8.7: INVITE retransmissions in Accepted are absorbed.
        **_same_state(_absorb, [S.CONFIRMED], [I.ACK, I.REQUEST, I.TRANSPORT_ERROR]),
        **_same_state(_absorb, [S.ACCEPTED], [I.REQUEST]),
    }


class NonInviteServer(_Server):
    """Non-INVITE server transaction, RFC 3261 §17.2.2 (figure 8)."""

    def _complete(self, response: Response) -> list[Effect]:
        delay = 0.0 if self.reliable else self.timers.long
        return [*self._send(response), self._start("J", delay)]

    def _discard_final(self, response: Response) -> list[Effect]:
        log.warning(
            "NonInviteServer: TU sent a second final response %d; discarded", response.status
        )
        return []

    TABLE: ClassVar[Table] = {
        (S.INITIAL, I.REQUEST): (_Server._receive, S.TRYING),
        (S.TRYING, I.TU_PROVISIONAL): (_Server._send, S.PROCEEDING),
        (S.TRYING, I.TU_SUCCESS): (_complete, S.COMPLETED),
        (S.TRYING, I.TU_FAILURE): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.REQUEST): (_Server._resend_last, S.PROCEEDING),
        (S.PROCEEDING, I.TU_PROVISIONAL): (_Server._send, S.PROCEEDING),
        (S.PROCEEDING, I.TU_SUCCESS): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TU_FAILURE): (_complete, S.COMPLETED),
        (S.PROCEEDING, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        (S.COMPLETED, I.REQUEST): (_Server._resend_last, S.COMPLETED),
        (S.COMPLETED, I.TIMER_J): (_Transaction._terminate, S.TERMINATED),
        (S.COMPLETED, I.TRANSPORT_ERROR): (_Transaction._transport_error, S.TERMINATED),
        # §17.2.2: request retransmissions in Trying are discarded, and so are further
        # final responses from the TU in Completed.
        **_same_state(_absorb, [S.TRYING], [I.REQUEST, I.TRANSPORT_ERROR]),
        **_same_state(_discard_final, [S.COMPLETED], [I.TU_SUCCESS, I.TU_FAILURE]),
    }


Transaction: TypeAlias = InviteClient | NonInviteClient | InviteServer | NonInviteServer
