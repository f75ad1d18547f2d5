"""The call-control model every feature uses: legs, bridges, calls, events, commands.

pbx anchors every call's signalling and media, so call control is a small set of objects and
operations, as in Asterisk's bridges and ARI or FreeSWITCH's originate/uuid_bridge:

- A **leg** (:class:`Leg`) is one party's side as pbx sees it: a SIP dialog with a phone or a
  trunk (pbx.calls.sipleg), or a local leg where pbx itself is the far end (play, record,
  collect digits; pbx.calls.localleg). A leg lives on its own: it has an ``id``, a ``state``
  moving along :data:`TRANSITIONS`, a ``party`` (number and name), its negotiated stream
  ``format``, at most one ``bridge``, and the call (``conversation``) it belongs to. Its
  operations: ``answer``, ``hang_up(cause)``, ``hold``/``retrieve`` (a re-INVITE when pbx
  starts it; when the phone starts it, the leg's ``holding`` mirrors the phone's choice and
  its bridge partners hear music), ``send_digits``. What happens to a leg is reported to its
  owner (:class:`LegOwner`, the call control), which publishes the events.
- A **bridge** (pbx.calls.bridge) holds 1..N legs. Its media is derived, never set: two legs
  sharing a codec are relayed untouched, two that differ only in telephone-event get an event
  relay, two others are transcoded, three or more are mixed (each hears everyone but itself),
  and a leg on hold hears music. A leg joins, leaves or moves between bridges without any SIP
  message (pbx anchors the media, so the phone sees no change). A leg in no bridge hears
  silence or a media source.
- A **call** (:class:`Conversation`) groups the legs that belong together for records and
  events (Asterisk's linkedid): after a transfer or a pickup it is still one call.
- **Media sources** for a leg or a bridge: playback of a file, the shared music-on-hold
  stream, ringback and busy tones per site country, recording to WAV, digit collection
  (pbx.calls.patchbay wires them, pbx.media implements them).
- **Events** (pbx.calls.events): every change published once it is complete, with a global
  sequence number.
- **Commands** (pbx.calls.control.CallControl): the one facade features, the REST API and the
  CTI socket use: originate, answer, hang up, hold, retrieve, blind and attended transfer,
  park, pickup, send digits, play, record, bridge. Each returns a result or raises a
  :class:`CallError` (``NotFound``/``Gone`` -> 404, ``WrongState`` -> 409, ``Refused`` -> 409).

Everything runs on the reactor thread. Must not import pbx.store or pbx.service.
"""

from __future__ import annotations

import enum
import itertools
import logging
import secrets
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from pbx.calls.bridge import Bridge
    from pbx.calls.negotiate import StreamFormat
    from pbx.media.relay import MediaLeg

log = logging.getLogger(__name__)


class LegState(enum.Enum):
    """Life of one leg (for SIP: the INVITE dialog usage, RFC 3261 §13-15)."""

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

UP = frozenset({LegState.ANSWERED, LegState.CONFIRMED})


class CallError(Exception):
    """A call operation that cannot be done; ``status`` is the HTTP status to map it to."""

    status = 400
    error_id = "call_error"


class NotFound(CallError):
    """No such leg, bridge or call."""

    status = 404
    error_id = "not_found"


class Gone(NotFound):
    """The leg or call has ended (commands on it are refused)."""

    error_id = "gone"


class WrongState(CallError):
    """Not possible in the object's current state (answer an answered leg, a second
    transfer of the same leg…)."""

    status = 409
    error_id = "wrong_state"


class Refused(CallError):
    """pbx cannot do it now (no free park slot, nothing to pick up, no media ports…)."""

    status = 409
    error_id = "refused"


@dataclass(frozen=True, slots=True)
class Party:
    """Who is on a leg: a number (an extension, later an external number) and a name."""

    number: str
    name: str = ""

    def __str__(self) -> str:
        return f'"{self.name}" <{self.number}>' if self.name else self.number


_RUN = secrets.token_hex(3)  # this process's run: ids stay unique across restarts
_SERIAL = itertools.count(1)


def new_id(prefix: str) -> str:
    """A short unique id for a leg ("l-…"), bridge ("b-…") or call ("c-…").

    The run's random part and a serial number: unique without a random draw per id (ids
    name objects in events and the API, they are no secret; the API checks permissions).
    """
    return f"{prefix}-{_RUN}{next(_SERIAL):x}"


class LegOwner(Protocol):
    """What a leg reports to (the call control); every method runs on the reactor."""

    def leg_ringing(self, leg: Leg, early_media: bool) -> None: ...

    def leg_answered(self, leg: Leg) -> None: ...

    def leg_ended(self, leg: Leg, cause: str, by_peer: bool) -> None: ...

    def leg_hold_changed(self, leg: Leg) -> None: ...

    def leg_format_changed(self, leg: Leg) -> None: ...

    def leg_digit(self, leg: Leg, digit: str, duration_ms: int) -> None: ...


class Leg:
    """One party of a call. Subclasses implement the signalling (SIP in pbx.calls.sipleg,
    pbx itself in pbx.calls.localleg)."""

    direction = "in"  # "in": the party called pbx; "out": pbx called it; "local"

    # slots: a SIP leg has ~40 attributes, past the 30 that CPython's shared-key instance
    # dicts hold, so each leg paid a ~1.6 kB dict of its own for every call held
    __slots__ = (
        "id",
        "party",
        "state",
        "owner",
        "conversation",
        "bridge",
        "media",
        "format",
        "holding",
        "held",
        "site_id",
        "answered_at",
        "ended_at",
        "cause",
        "sources",
        "moving",
        "__dict__",  # subclasses without slots of their own (local legs) keep a dict
    )

    def __init__(self, leg_id: str, party: Party) -> None:
        self.id = leg_id
        self.party = party
        self.state = LegState.NEW
        self.owner: LegOwner | None = None
        self.conversation: Conversation | None = None
        self.bridge: Bridge | None = None
        self.media: MediaLeg | None = None  # the anchored RTP/RTCP sockets (SIP legs)
        self.format: StreamFormat | None = None  # what the phone sends and takes
        self.holding = False  # the phone put its call on hold (sendonly/inactive offer)
        self.held = False  # pbx holds this leg (it hears music, a command did it)
        self.site_id: int | None = None
        self.answered_at: float | None = None
        self.ended_at: float | None = None
        self.cause = ""
        self.sources: list[Any] = []  # media sources attached to this leg (pbx.calls.patchbay)
        self.moving = False  # inside a feature's transition: policy does not end it

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.id} {self.party.number} {self.state.value}>"

    @property
    def call_id(self) -> str:
        """For log lines: the conversation's SIP Call-ID, else the leg id."""
        conversation = self.conversation
        return conversation.sip_call_id if conversation is not None else self.id

    def move(self, new: LegState) -> None:
        """Change state along TRANSITIONS (raises WrongState otherwise)."""
        if new not in TRANSITIONS[self.state]:
            raise WrongState(f"leg {self.id}: {self.state.value} -> {new.value} not allowed")
        self.state = new

    @property
    def ended(self) -> bool:
        return self.state is LegState.ENDED

    @property
    def up(self) -> bool:
        """Answered (media may flow)."""
        return self.state in UP

    @property
    def codec(self) -> str:
        return self.format.codec if self.format is not None else ""

    @property
    def silent(self) -> bool:
        """Neither speaks to nor hears its bridge (on hold either way)."""
        return self.holding or self.held

    # -- operations (subclasses) -------------------------------------------------------

    def hang_up(self, cause: str = "normal") -> None:
        raise NotImplementedError

    def hold(self) -> None:
        raise NotImplementedError

    def retrieve(self) -> None:
        raise NotImplementedError

    def send_digits(self, digits: str, duration_ms: int = 160) -> None:
        raise NotImplementedError

    def release(self) -> None:
        """Drop what an ended leg no longer needs (see :meth:`Conversation.release`)."""
        self.sources = []


@dataclass(eq=False)
class Conversation:
    """The legs of one call and its times: what events and the call record are about."""

    id: str
    sip_call_id: str
    caller: Party
    dialled: str
    started_at: float
    legs: list[Leg] = field(default_factory=list)
    answered_at: float | None = None
    ended_at: float | None = None
    site_id: int | None = None
    callee: str = ""  # the extension it was for (the record names it even when unanswered)
    country: str = ""  # the calling code of its site: which ringback and busy tones
    direction: str = "internal"  # "inbound": from a trunk, the caller is not a user

    def add(self, leg: Leg) -> Leg:
        leg.conversation = self
        self.legs.append(leg)
        return leg

    def remove(self, leg: Leg) -> None:
        if leg in self.legs:
            self.legs.remove(leg)

    @property
    def live_legs(self) -> list[Leg]:
        return [leg for leg in self.legs if not leg.ended]

    def release(self) -> None:
        """Once ended and reported: break the call's reference cycles (it and its legs,
        each leg and its SIP transaction), so that reference counting frees the whole graph
        at once instead of the garbage collector's older generations walking it later."""
        legs, self.legs = self.legs, []
        for leg in legs:
            leg.release()


__all__ = [
    "TRANSITIONS",
    "UP",
    "CallError",
    "Conversation",
    "Gone",
    "Leg",
    "LegOwner",
    "LegState",
    "NotFound",
    "Party",
    "Refused",
    "WrongState",
    "new_id",
]
