"""The patchbay: applies what bridges and legs should hear to their media, and nothing else.

pbx.calls.bridge decides (``choose_media`` for a bridge, ``leg_role`` for a leg); the
:class:`Patchbay` makes it so, and is the only code that sets the hooks of the legs' media
sockets (pbx.media.relay): relay peers, taps for the event relay, the transcoding bridge, a
mixing group or a music-on-hold listener. :meth:`Patchbay.update` is called after every change
of membership, hold, format or sources and does nothing when nothing changed, so a call keeps
its untouched relay while the events around it come and go.

Per bridge, one technology at a time:

- relay: the two media legs point at each other (pbx.media.relay.bridge);
- event relay: relay plus an :class:`~pbx.media.event_relay.EventRelay` per direction that
  needs events rewritten;
- transcode: a :class:`~pbx.media.transcode.TranscodingBridge` (also used to write digits
  into a relayed call: the bridge's ``inject``);
- mix: a :class:`~pbx.media.mixgroup.MixGroup` of the talkers (a SIP leg through a
  :class:`~pbx.media.legaudio.LegAudio`, a local leg through its own port), with the
  bridge's and the members' sources and recorders.

Per leg that does not talk in its bridge: music (a listener of the shared hold-music stream
of its site, pbx.media.moh), solo (a mixing group of just that leg and its own sources:
ringback, an announcement) or silent (no hooks: what the phone sends is counted and dropped).

Changes are applied in a safe order: per-leg attachments and bridge technologies that go away
are stopped first (restoring the hooks), then the new ones start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from pbx.calls.bridge import Bridge, Media, Role, choose_media, is_talker, leg_role
from pbx.calls.digits import DigitCollector
from pbx.calls.model import Leg
from pbx.media.codecs import UnsupportedCodec
from pbx.media.event_relay import EventRelay
from pbx.media.legaudio import LegAudio
from pbx.media.mixgroup import MixGroup
from pbx.media.relay import bridge as relay_bridge
from pbx.media.relay import unbridge
from pbx.media.transcode import PlayoutClock, TranscodingBridge

log = logging.getLogger(__name__)

DigitReport = Callable[[Leg, str, int], None]
MusicFor = Callable[[Leg], Any]


def speaking(sources: Iterable[Any]) -> list[Any]:
    """The sources a leg or bridge plays (they have ``next_frame``)."""
    return [s for s in sources if hasattr(s, "next_frame")]


def sinks(sources: Iterable[Any]) -> list[Any]:
    """The recorders of a leg or bridge (they take frames with ``write``)."""
    return [s for s in sources if hasattr(s, "write") and not hasattr(s, "next_frame")]


class _Tech:
    """What currently carries one bridge's media, and the key it was built for."""

    def __init__(self, key: tuple[Any, ...], legs: list[Leg]) -> None:
        self.key = key
        self.legs = legs
        self.parts: list[Any] = []
        self.mix: MixGroup | None = None
        self.transcoder: TranscodingBridge | None = None
        self.audio: dict[str, LegAudio] = {}

    def stop(self) -> None:
        for part in self.parts:
            part.stop()
        if self.mix is not None:
            self.mix.stop()
        if self.transcoder is not None:
            self.transcoder.stop()
        if len(self.legs) == 2:
            a, b = (leg.media for leg in self.legs)
            if a is not None and b is not None and a.rtp.peer is b.rtp:
                unbridge(a, b)


class _Attachment:
    """What one leg hears outside its bridge's technology (music or its own sources)."""

    def __init__(self, key: tuple[Any, ...], part: Any) -> None:
        self.key = key
        self.part = part

    def stop(self) -> None:
        self.part.stop()


class Patchbay:
    """Wires the media of bridges and legs; runs on the reactor thread."""

    def __init__(
        self,
        clock: PlayoutClock,
        music: MusicFor | None = None,
        on_digit: DigitReport | None = None,
    ) -> None:
        self.clock = clock
        self.music = music or (lambda leg: None)
        self.on_digit = on_digit
        self._techs: dict[str, _Tech] = {}
        self._attached: dict[str, _Attachment] = {}
        self.on_source_done: Callable[[Any], None] | None = None

    # -- the one entry point ----------------------------------------------------------------

    def update(self, bridge: Bridge | None, legs: Iterable[Leg] = ()) -> bool:
        """Re-derive ``bridge``'s media and what each of its members and ``legs`` hears.
        Returns True when the bridge's media kind changed."""
        affected = list(dict.fromkeys([*(bridge.legs if bridge else []), *legs]))
        leg_plans = {leg.id: (leg, self._leg_key(leg)) for leg in affected}
        tech_key = self._bridge_key(bridge) if bridge is not None else None
        current = self._techs.get(bridge.id) if bridge is not None else None
        # 1. stop what changes
        for leg_id, (_, key) in leg_plans.items():
            attached = self._attached.get(leg_id)
            if attached is not None and attached.key != key:
                attached.stop()
                del self._attached[leg_id]
        rebuild = bridge is not None and (current is None or current.key != tech_key)
        if rebuild and current is not None and bridge is not None:
            current.stop()
            del self._techs[bridge.id]
        # 2. start what is new
        changed = False
        if bridge is not None and rebuild:
            media = tech_key[0] if tech_key is not None else Media.NONE
            if tech_key is not None and media is not Media.NONE:
                self._techs[bridge.id] = self._start_tech(bridge, tech_key)
            changed = bridge.media is not media
            bridge.media = media
        for leg_id, (leg, key) in leg_plans.items():
            if key is not None and leg_id not in self._attached:
                part = self._start_attachment(leg, key)
                if part is not None:
                    self._attached[leg_id] = _Attachment(key, part)
        return changed

    def release(self, leg: Leg) -> None:
        """An ended leg: stop whatever it had of its own (its bridge is updated apart)."""
        attached = self._attached.pop(leg.id, None)
        if attached is not None:
            attached.stop()

    def forget(self, bridge: Bridge) -> None:
        """A destroyed bridge: stop its technology."""
        tech = self._techs.pop(bridge.id, None)
        if tech is not None:
            tech.stop()
        bridge.media = Media.NONE

    # -- keys: what a bridge's technology and a leg's attachment depend on ------------------

    def _bridge_key(self, bridge: Bridge) -> tuple[Any, ...] | None:
        if bridge.destroyed:
            return None
        media = choose_media(bridge)
        if media is Media.NONE:
            return (media,)
        talkers = [leg for leg in bridge.legs if is_talker(leg)]
        members = tuple(
            (leg.id, leg.format, tuple(map(id, leg.sources))) for leg in talkers
        )
        return (media, members, tuple(map(id, bridge.sources)))

    def _leg_key(self, leg: Leg) -> tuple[Any, ...] | None:
        role = leg_role(leg)
        if role is Role.MUSIC and leg.media is not None and leg.format is not None:
            stream = self.music(leg)
            return None if stream is None else (role, id(stream), leg.format)
        if role is Role.SOLO and (leg.media is not None or leg.direction == "local"):
            return (role, leg.format, tuple(map(id, leg.sources)))
        return None  # TALK (the bridge's technology has it) or SILENT (no hooks)

    # -- starting -----------------------------------------------------------------------

    def _start_tech(self, bridge: Bridge, key: tuple[Any, ...]) -> _Tech:
        media = key[0]
        talkers = [leg for leg in bridge.legs if is_talker(leg)]
        tech = _Tech(key, talkers)
        if media is Media.MIX:
            tech.mix = self._mix_group(bridge.id, talkers, bridge.sources, tech)
            tech.mix.start()
            return tech
        a, b = talkers
        assert a.media is not None and b.media is not None
        assert a.format is not None and b.format is not None
        if media is Media.TRANSCODE:
            transcoder = TranscodingBridge(a.media, b.media, a.format, b.format, clock=self.clock)
            transcoder.on_digit = lambda side, digit: self._digit(a if side == "A" else b, digit)
            tech.transcoder = transcoder
            relay_bridge(a.media, b.media)
            transcoder.start()
            log.info("[%s] bridge %s transcodes %s <-> %s", a.call_id, bridge.id, a.codec, b.codec)
            return tech
        relay_bridge(a.media, b.media)
        if media is Media.EVENT_RELAY:
            for src, dst in ((a, b), (b, a)):
                relay = self._event_relay(src, dst)
                if relay is not None:
                    tech.parts.append(relay)
        return tech

    def _event_relay(self, src: Leg, dst: Leg) -> EventRelay | None:
        source, target = src.format, dst.format
        assert source is not None and target is not None
        assert src.media is not None and dst.media is not None
        collecting = any(isinstance(x, DigitCollector) for x in src.sources)
        if source.telephone_event is None:
            return None
        if source.telephone_event == target.telephone_event and not collecting:
            return None
        try:
            relay = EventRelay(
                src.media.rtp,
                dst.media.rtp,
                source.telephone_event,
                target.telephone_event,
                codec=target.codec,
                audio_pt=target.payload_type,
                clock_rate=target.clock_rate,
                ptime_ms=target.ptime,
            )
        except (UnsupportedCodec, ValueError) as exc:
            log.warning("[%s] DTMF from %s cannot be turned in-band: %s", src.call_id, src.id, exc)
            return None
        relay.on_digit = lambda digit: self._digit(src, digit)
        relay.start()
        return relay

    def _mix_group(
        self, name: str, legs: list[Leg], group_sources: list[Any], tech: _Tech | None
    ) -> MixGroup:
        group = MixGroup(self.clock, name)
        group.sources = speaking(group_sources)
        group.sinks = sinks(group_sources)
        group.on_source_done = self._source_done
        for leg in legs:
            if leg.direction == "local":
                group.add(leg.id, leg.port)  # type: ignore[attr-defined]
                continue
            assert leg.media is not None and leg.format is not None
            audio = LegAudio(leg.media, leg.format)
            audio.on_digit = lambda digit, ms, leg=leg: self._digit(leg, digit, ms)
            if tech is not None:
                tech.audio[leg.id] = audio
            group.add(leg.id, audio, sources=speaking(leg.sources), sinks=sinks(leg.sources))
        return group

    def _start_attachment(self, leg: Leg, key: tuple[Any, ...]) -> Any:
        role = key[0]
        if role is Role.MUSIC:
            stream = self.music(leg)
            if stream is None:
                return None
            return stream.listen(leg.media, leg.format)
        if leg.direction != "local" and (leg.media is None or leg.format is None):
            return None
        group = self._mix_group(f"solo {leg.id}", [leg], [], None)
        group.start()
        return group

    # -- digits -------------------------------------------------------------------------

    def send_digit(self, leg: Leg, digit: str, duration_ms: int = 160) -> bool:
        """Play ``digit`` to ``leg``'s phone (RFC 4733 or in-band); False when its media is
        not terminated or relayed by pbx at all (on hold, silent)."""
        bridge = leg.bridge
        tech = self._techs.get(bridge.id) if bridge is not None else None
        if tech is not None and bridge is not None:
            if tech.transcoder is None and tech.mix is None:
                bridge.inject = True  # a relay has no stream of pbx's own to put it in
                self.update(bridge)
                tech = self._techs.get(bridge.id)
            if tech is not None and tech.transcoder is not None:
                side = "A" if tech.legs[0] is leg else "B"
                tech.transcoder.send_digit(side, digit, duration_ms)
                return True
            if tech is not None and leg.id in tech.audio:
                tech.audio[leg.id].queue_digit(digit, duration_ms)
                return True
        attached = self._attached.get(leg.id)
        if attached is not None and isinstance(attached.part, MixGroup):
            port = attached.part.members.get(leg.id)
            if port is not None and isinstance(port.port, LegAudio):
                port.port.queue_digit(digit, duration_ms)
                return True
        return False

    def _digit(self, leg: Leg, digit: str, duration_ms: int = 100) -> None:
        if self.on_digit is not None:
            self.on_digit(leg, digit, duration_ms)

    def _source_done(self, source: Any) -> None:
        if self.on_source_done is not None:
            self.on_source_done(source)

    # -- for tests and status -----------------------------------------------------------

    def technology(self, bridge: Bridge) -> Any:
        tech = self._techs.get(bridge.id)
        return None if tech is None else (tech.mix or tech.transcoder or tech.key[0])

    def attachment(self, leg: Leg) -> Any:
        attached = self._attached.get(leg.id)
        return None if attached is None else attached.part


__all__ = ["Patchbay", "sinks", "speaking"]
