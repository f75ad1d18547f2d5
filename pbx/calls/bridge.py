"""Bridges: sets of legs whose media pbx connects, and how that media is chosen.

A :class:`Bridge` holds 1..N legs (a leg is in at most one bridge; only
pbx.calls.control changes membership). Its ``kind`` says what it is for: ``MIX`` (the
members talk to each other), ``HOLDING`` (members wait and each hears music or silence, like
Asterisk's holding bridge), ``PARKING`` (a holding bridge for one parked call). Its
:class:`BridgePolicy` says what happens when one leg is left alone (hang it up, keep it, give
it music) and whether members may be moved or transferred.

The bridge's media is always derived, never set: :func:`choose_media` is one pure function of
the members (answered or with early media, on hold either way, their formats, their media
sources) and the bridge's own sources, called after every change (Asterisk's
``smart_bridge_operation``):

- ``RELAY``: exactly two talking SIP legs with the same codec, payload type, clock and ptime
  and the same telephone-event: packets pass untouched (one counter and one ``sendto``);
- ``EVENT_RELAY``: the same audio but a different telephone-event: audio untouched, events
  rewritten or turned into tones (pbx.media.event_relay); also for relayable legs whose
  digits pbx must see (a digit collector, pbx.calls.digits);
- ``TRANSCODE``: two talking legs otherwise, or two whose streams pbx must write into (a
  digit from SIP INFO, ``inject``): pbx.media.transcode;
- ``MIX``: three or more talkers, a local leg, or any source that must be heard or hear
  (playback, recording): each member hears the sum of the others (pbx.media.mixer);
- ``NONE``: fewer than two talkers, and holding and parking bridges.

Per leg, :func:`leg_role` says what it hears: its bridge (``TALK``), music on hold
(``MUSIC``: pbx holds it, or every other member holds its call, or it waits in a holding
bridge), its own sources (``SOLO``: an announcement or ringback to it alone), or nothing
(``SILENT``: its phone holds the call, so pbx must not send to it).
Must not import pbx.sip, pbx.store.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pbx.calls.negotiate import StreamFormat

if TYPE_CHECKING:
    from pbx.calls.model import Leg

log = logging.getLogger(__name__)


class BridgeKind(enum.Enum):
    MIX = "mix"
    HOLDING = "holding"
    PARKING = "parking"


class Alone(enum.Enum):
    """What happens to the last leg left in a bridge."""

    HANG_UP = "hang_up"  # a two-party call: the other party hung up, so does this one
    KEEP = "keep"  # stays, hearing silence or its sources (a conference waiting)
    HOLD_MUSIC = "hold_music"  # stays and hears music on hold


class Media(enum.Enum):
    NONE = "none"
    RELAY = "relay"
    EVENT_RELAY = "event_relay"
    TRANSCODE = "transcode"
    MIX = "mix"


class Role(enum.Enum):
    """What one leg hears."""

    TALK = "talk"
    MUSIC = "music"
    SOLO = "solo"
    SILENT = "silent"


@dataclass(frozen=True, slots=True)
class BridgePolicy:
    when_alone: Alone = Alone.HANG_UP
    movable: bool = True
    transferable: bool = True


class Bridge:
    """A set of legs; see the module docstring."""

    def __init__(
        self, bridge_id: str, kind: BridgeKind = BridgeKind.MIX, policy: BridgePolicy | None = None
    ) -> None:
        self.id = bridge_id
        self.kind = kind
        self.policy = policy or BridgePolicy()
        self.legs: list[Leg] = []
        self.media = Media.NONE
        self.sources: list[Any] = []  # playbacks and recordings of the whole bridge
        self.inject = False  # pbx writes into the members' streams (INFO digits)
        self.destroyed = False

    def __repr__(self) -> str:
        return f"<Bridge {self.id} {self.kind.value} {[leg.id for leg in self.legs]}>"

    @property
    def members(self) -> tuple[str, ...]:
        return tuple(leg.id for leg in self.legs)

    def other(self, leg: Leg) -> Leg | None:
        """The one other member of a two-leg bridge."""
        others = [member for member in self.legs if member is not leg]
        return others[0] if len(others) == 1 else None


def media_ready(leg: Leg) -> bool:
    """The leg has negotiated media that may flow (answered, or early media)."""
    if leg.ended or leg.format is None and leg.direction != "local":
        return False
    return leg.up or bool(getattr(leg, "early", False))


def is_talker(leg: Leg) -> bool:
    return media_ready(leg) and not leg.silent


def needs_audio(sources: list[Any]) -> bool:
    """Sources that hear or speak audio (all but digit collectors on RFC 4733 legs)."""
    return any(getattr(source, "audio", True) for source in sources)


def _listens(sources: list[Any]) -> bool:
    """A source that must see the leg's RFC 4733 digits (a digit collector)."""
    return any(hasattr(source, "add") and not getattr(source, "audio", True) for source in sources)


def choose_media(bridge: Bridge) -> Media:
    """How ``bridge``'s media flows now (see the module docstring)."""
    if bridge.kind is not BridgeKind.MIX:
        return Media.NONE
    talkers = [leg for leg in bridge.legs if is_talker(leg)]
    sourced = needs_audio(bridge.sources) or any(needs_audio(leg.sources) for leg in talkers)
    if len(talkers) >= 3 or (talkers and sourced):
        return Media.MIX
    if any(leg.direction == "local" for leg in talkers):
        return Media.MIX if len(talkers) == 2 else Media.NONE
    if len(talkers) != 2:
        return Media.NONE
    a, b = talkers
    fa, fb = a.format, b.format
    assert fa is not None and fb is not None
    if bridge.inject:
        return Media.TRANSCODE if fa.transcodable and fb.transcodable else Media.RELAY
    if _relayable(fa, fb):
        listening = any(_listens(leg.sources) for leg in talkers)
        return Media.EVENT_RELAY if listening else Media.RELAY
    if _same_audio(fa, fb):
        return Media.EVENT_RELAY
    if fa.transcodable and fb.transcodable:
        return Media.TRANSCODE
    log.warning(
        "bridge %s: %s <-> %s cannot be transcoded: relaying untouched", bridge.id, fa.codec,
        fb.codec,
    )
    return Media.RELAY


def leg_role(leg: Leg) -> Role:
    """What ``leg`` hears (see the module docstring)."""
    if leg.ended:
        return Role.SILENT
    if leg.holding:
        return Role.SILENT
    if leg.held:
        return Role.MUSIC
    bridge = leg.bridge
    has_sources = needs_audio(leg.sources) or (bridge is None and _listens(leg.sources))
    if bridge is None:
        return Role.SOLO if has_sources else Role.SILENT
    if bridge.kind is not BridgeKind.MIX:
        return Role.SOLO if has_sources else Role.MUSIC
    if not media_ready(leg):
        return Role.SILENT
    others = [other for other in bridge.legs if other is not leg and not other.ended]
    if others and all(other.holding for other in others):
        return Role.SOLO if has_sources else Role.MUSIC  # the other party holds the call
    talkers = [other for other in others if is_talker(other)]
    if not talkers and not needs_audio(bridge.sources):
        if bridge.policy.when_alone is Alone.HOLD_MUSIC:
            return Role.SOLO if has_sources else Role.MUSIC
        return Role.SOLO if has_sources else Role.SILENT
    return Role.TALK


def _relayable(a: StreamFormat, b: StreamFormat) -> bool:
    return (
        a.codec.casefold() == b.codec.casefold()
        and a.payload_type == b.payload_type
        and a.clock_rate == b.clock_rate
        and a.ptime == b.ptime
        and a.telephone_event == b.telephone_event
    )


def _same_audio(a: StreamFormat, b: StreamFormat) -> bool:
    """Both phones send and take the very same audio packets (telephone-event aside)."""
    return (
        a.codec.casefold() == b.codec.casefold()
        and a.payload_type == b.payload_type
        and a.clock_rate == b.clock_rate
        and a.channels == b.channels
    )


__all__ = [
    "Alone",
    "Bridge",
    "BridgeKind",
    "BridgePolicy",
    "Media",
    "Role",
    "choose_media",
    "is_talker",
    "leg_role",
    "media_ready",
]
