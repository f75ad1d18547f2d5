"""The one call model every feature uses: Call, Leg, Bridge and their events.

A call is two or more legs. A *leg* is one party's side of a call as pbx sees it: a SIP dialog
today (pbx.calls.sipleg), later an H.323 or WebRTC session. Features (voicemail, queues, IVR,
conference, CTI) work only through this API, never through SIP messages:

- ``Leg``: ``state`` (LegState), ``answer(...)``, ``hang_up(cause)``; events ``LegRinging``,
  ``LegAnswered``, ``LegEnded``.
- Bridges connect the media of two legs, all behind one switch: untouched relay when the
  phones share a codec, an event relay when they differ only in telephone-event, a transcoding
  bridge otherwise (pbx.calls.mediapath.MediaPath: ``start()``/``stop()`` bridge and unbridge,
  ``send_digit(side, digit)``, ``on_digit`` for every digit seen), as Asterisk's bridge
  technologies sit behind one interface.
- A leg answered by pbx itself gets a media endpoint (pbx.media.endpoint.MediaEndpoint):
  ``play(pcm)`` -> Deferred fired when played, ``stop_playing()``, ``on_audio`` (record: every
  20 ms of decoded audio), ``collect_dtmf(max_digits, timeout, terminators)`` -> Deferred[str],
  ``send_digit``. A feature is a function (call, endpoint, hang_up) registered in
  pbx.calls.local.FEATURES and reached by a service number (the echo test is the first).
- ``Call``: the legs of one call, its call id for logs and records, its timestamps.
- ``CallEvents``: publish/subscribe of call events (dashboard, CTI, webhooks subscribe).

Events are delivered after a state change is complete (sippy's event queue idea), so a
subscriber never sees a half-changed call. All of this runs on the reactor thread.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


class LegState(enum.Enum):
    """Life of one leg (a SIP dialog's INVITE usage, RFC 3261 §13-15)."""

    NEW = "new"  # created, nothing sent or answered yet
    CALLING = "calling"  # outbound INVITE sent
    RINGING = "ringing"  # 180/183 seen (outbound) or sent (inbound)
    ANSWERED = "answered"  # 2xx sent/received, waiting for / sent ACK
    CONFIRMED = "confirmed"  # ACK exchanged: the media flows
    ENDED = "ended"


# state -> states it may move to; anything else is a programming error
TRANSITIONS: dict[LegState, frozenset[LegState]] = {
    LegState.NEW: frozenset(
        {LegState.CALLING, LegState.RINGING, LegState.ANSWERED, LegState.ENDED}
    ),
    LegState.CALLING: frozenset({LegState.RINGING, LegState.ANSWERED, LegState.ENDED}),
    LegState.RINGING: frozenset({LegState.RINGING, LegState.ANSWERED, LegState.ENDED}),
    LegState.ANSWERED: frozenset({LegState.CONFIRMED, LegState.ENDED}),
    LegState.CONFIRMED: frozenset({LegState.CONFIRMED, LegState.ENDED}),
    LegState.ENDED: frozenset(),
}


class CallError(Exception):
    """A call operation that cannot be done (wrong state, unknown call)."""


@dataclass(frozen=True, slots=True)
class CallEvent:
    """Base of every event: which call, which leg (name), when."""

    call_id: str
    leg: str
    at: float


@dataclass(frozen=True, slots=True)
class CallStarted(CallEvent):
    caller: str
    dialled: str


@dataclass(frozen=True, slots=True)
class LegRinging(CallEvent):
    pass


@dataclass(frozen=True, slots=True)
class LegAnswered(CallEvent):
    codec: str


@dataclass(frozen=True, slots=True)
class LegEnded(CallEvent):
    cause: str


@dataclass(frozen=True, slots=True)
class CallEnded(CallEvent):
    disposition: str
    cause: str


class CallEvents:
    """Publish/subscribe of call events; subscribers run after the change is complete."""

    def __init__(self) -> None:
        self._subscribers: list[Callable[[CallEvent], None]] = []

    def subscribe(self, callback: Callable[[CallEvent], None]) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def publish(self, event: CallEvent) -> None:
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                log.exception(
                    "[%s] call event subscriber failed on %s", event.call_id, type(event).__name__
                )


@dataclass(eq=False)
class Leg:
    """One party of a call. Subclasses implement the signalling (SIP in pbx.calls.sipleg)."""

    name: str
    party: str  # extension or number of this party
    state: LegState = LegState.NEW
    codec: str = ""
    call: Call | None = None

    def move(self, new: LegState) -> None:
        """Change state along TRANSITIONS (raises CallError otherwise)."""
        if new not in TRANSITIONS[self.state]:
            raise CallError(f"leg {self.name}: {self.state.value} -> {new.value} not allowed")
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is LegState.ENDED

    def hang_up(self, cause: str = "normal") -> None:
        raise NotImplementedError


@dataclass(eq=False)
class Call:
    """The legs of one call and its times (the record written by pbx.calls.cdr)."""

    call_id: str
    caller: str
    dialled: str
    caller_name: str = ""
    started_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    legs: list[Leg] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    record_id: int | None = None  # the committed row of an answered call
    record_close: dict[str, Any] | None = None  # how it ended, while the row is not committed

    def add(self, leg: Leg) -> Leg:
        leg.call = self
        self.legs.append(leg)
        return leg

    def other(self, leg: Leg) -> Leg | None:
        """The answered leg on the other side (two-party calls)."""
        for candidate in self.legs:
            if candidate is not leg and candidate.state in (LegState.ANSWERED, LegState.CONFIRMED):
                return candidate
        return None

    @property
    def duration(self) -> float:
        if self.answered_at is None:
            return 0.0
        return (self.ended_at or time.time()) - self.answered_at
