"""The call-event feed: typed, immutable events with a global sequence number.

Every change the call layer makes is published here after it is complete (Asterisk's Stasis,
FreeSWITCH's Event-Sequence, sippy's event queue): a leg ringing, answered, held, retrieved or
ended; a leg joining or leaving a bridge and the bridge's media changing; a call transferred,
parked, unparked or picked up; a digit received; a call starting and ending. The dashboard, the
call records, the CTI socket and webhooks are all plain subscribers of one :class:`EventFeed`.

Rules the feed keeps (and the in-process tests check on every scenario):

- ``seq`` is global and strictly increasing; ``at`` is the reactor's clock;
- events are published in causal order, each once the change it reports is complete: an
  operation opens a :meth:`EventFeed.batch`, queues what it does, and the batch is delivered
  when the outermost operation returns, so no subscriber sees a half-changed call and no
  subscriber callback re-enters a mutation in progress;
- subscribers run in subscription order; one that raises is logged and skipped;
- a bounded replay buffer lets a client that reconnects ask for what it missed
  (:meth:`EventFeed.since`).

Events name calls (``call``: the conversation id), legs and bridges by id, never by object, so
they can be serialised as they are (:meth:`Event.as_dict`). Must not import pbx.sip, pbx.media,
pbx.store.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

log = logging.getLogger(__name__)

REPLAY = 2000  # events kept for clients that reconnect


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: its sequence number, when, and which call (conversation)."""

    name: ClassVar[str] = "event"
    seq: int = 0
    at: float = 0.0
    call: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["event"] = self.name
        return data


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStarted(Event):
    """A new call (conversation): its first leg arrived or was originated."""

    name: ClassVar[str] = "call_started"
    caller: str
    caller_name: str = ""
    dialled: str = ""
    sip_call_id: str = ""
    direction: str = "internal"  # or "inbound": the caller is outside (a trunk's call)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallEnded(Event):
    """The last leg of the call ended. ``disposition`` as in the call record."""

    name: ClassVar[str] = "call_ended"
    disposition: str
    cause: str
    side: str = "pbx"
    callee: str = ""  # the extension the call was for


@dataclass(frozen=True, slots=True, kw_only=True)
class LegCreated(Event):
    """A leg exists: ``direction`` "in" (a phone called pbx), "out" (pbx calls a phone) or
    "local" (pbx itself is the far end)."""

    name: ClassVar[str] = "leg_created"
    leg: str
    party: str
    party_name: str = ""
    direction: str = "in"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRinging(Event):
    name: ClassVar[str] = "leg_ringing"
    leg: str
    early_media: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class LegAnswered(Event):
    name: ClassVar[str] = "leg_answered"
    leg: str
    codec: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class LegHeld(Event):
    """``by`` "phone" (the phone put its call on hold) or "pbx" (a command)."""

    name: ClassVar[str] = "leg_held"
    leg: str
    by: str = "phone"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegRetrieved(Event):
    name: ClassVar[str] = "leg_retrieved"
    leg: str
    by: str = "phone"


@dataclass(frozen=True, slots=True, kw_only=True)
class LegEnded(Event):
    """The leg is gone; no later event names it. ``cause`` is specific (BYE, cancelled,
    lost_race, picked_up, replaced, transferred, no_answer, a SIP status…)."""

    name: ClassVar[str] = "leg_ended"
    leg: str
    cause: str
    answered: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DigitReceived(Event):
    name: ClassVar[str] = "digit_received"
    leg: str
    digit: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeJoined(Event):
    """``leg`` entered ``bridge``; ``members`` is the bridge's legs after the change."""

    name: ClassVar[str] = "bridge_joined"
    bridge: str
    leg: str
    members: tuple[str, ...] = ()
    kind: str = "mix"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeLeft(Event):
    name: ClassVar[str] = "bridge_left"
    bridge: str
    leg: str
    members: tuple[str, ...] = ()
    kind: str = "mix"


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeMediaChanged(Event):
    """How the bridge's media flows now (relay, event_relay, transcode, mix, held, none)."""

    name: ClassVar[str] = "bridge_media_changed"
    bridge: str
    media: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Transferred(Event):
    """``leg`` (the transferee) was handed to ``target`` by ``by`` (the transferor's leg);
    ``kind`` "blind" or "attended"; ``outcome`` "connected", "recalled" or "failed"."""

    name: ClassVar[str] = "transferred"
    leg: str
    by: str
    target: str
    kind: str = "blind"
    outcome: str = "connected"


@dataclass(frozen=True, slots=True, kw_only=True)
class Parked(Event):
    name: ClassVar[str] = "parked"
    leg: str
    slot: str
    by: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Unparked(Event):
    """``reason`` "retrieved" (``by`` the retriever's leg), "timeout" or "hangup"."""

    name: ClassVar[str] = "unparked"
    leg: str
    slot: str
    reason: str = "retrieved"
    by: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PickedUp(Event):
    """The call ringing at ``ringing`` (a leg, now cancelled) was taken by ``by``."""

    name: ClassVar[str] = "picked_up"
    leg: str
    by: str
    ringing: str = ""


Subscriber = Callable[[Event], None]


class _Batch:
    """``with feed.batch():`` (reentrant: only the outermost exit delivers)."""

    __slots__ = ("_feed",)

    def __init__(self, feed: EventFeed) -> None:
        self._feed = feed

    def __enter__(self) -> None:
        self._feed._enter()

    def __exit__(self, *exc: object) -> None:
        self._feed._exit()


class EventFeed:
    """Publishes events to subscribers in order, after the change is complete."""

    def __init__(self, clock: Callable[[], float], replay: int = REPLAY) -> None:
        self._clock = clock
        self._seq = 0
        self._subscribers: list[Subscriber] = []
        self._queue: deque[Event] = deque()
        self._depth = 0
        self._delivering = False
        self._batch = _Batch(self)
        self.replay: deque[Event] = deque(maxlen=replay)

    @property
    def last_seq(self) -> int:
        return self._seq

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Add a subscriber; returns a function that removes it."""
        self._subscribers.append(callback)

        def unsubscribe() -> None:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

        return unsubscribe

    def batch(self) -> _Batch:
        """Queue what is published inside; deliver when the outermost batch ends (a plain
        context object: every call operation opens one, a generator-based one cost more)."""
        return self._batch

    def _enter(self) -> None:
        self._depth += 1

    def _exit(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._flush()

    def publish(self, event: Event) -> Event:
        """Stamp ``event`` (a new, unpublished one) with the next seq and the time, queue it,
        deliver unless inside a batch. Returns it."""
        self._seq += 1
        # events are frozen for subscribers; the feed stamps the fresh one in place (a
        # dataclasses.replace per event was a visible share of a call's CPU)
        object.__setattr__(event, "seq", self._seq)
        object.__setattr__(event, "at", self._clock())
        self._queue.append(event)
        self.replay.append(event)
        if self._depth == 0:
            self._flush()
        return event

    def since(self, seq: int) -> list[Event]:
        """Events after ``seq`` still in the replay buffer (oldest first)."""
        return [e for e in self.replay if e.seq > seq]

    def _flush(self) -> None:
        if self._delivering:
            return  # a subscriber published: the running loop delivers it next, in order
        self._delivering = True
        try:
            while self._queue:
                event = self._queue.popleft()
                for callback in list(self._subscribers):
                    try:
                        callback(event)
                    except Exception:
                        log.exception(
                            "[%s] event subscriber failed on %s", event.call, event.name
                        )
        finally:
            self._delivering = False


__all__ = [
    "BridgeJoined",
    "BridgeLeft",
    "BridgeMediaChanged",
    "CallEnded",
    "CallStarted",
    "DigitReceived",
    "Event",
    "EventFeed",
    "LegAnswered",
    "LegCreated",
    "LegEnded",
    "LegHeld",
    "LegRetrieved",
    "LegRinging",
    "Parked",
    "PickedUp",
    "Transferred",
    "Unparked",
]
