"""Audio of one or more call legs mixed on the shared 20 ms clock, with sources and sinks.

Owns :class:`MixGroup`: the media of a bridge whose members must be heard by pbx (three or
more parties, a recording, an announcement into a call) or of one leg alone that hears its
own sources (ringback while a transfer target rings, the park slot number). Every tick of the
:class:`~pbx.media.transcode.PlayoutClock`:

1. each member's :class:`AudioPort` is read (a SIP leg's :class:`~pbx.media.legaudio.LegAudio`
   decodes what its phone sent; a local leg gives what pbx says on it);
2. each member gets the sum of every other member (:func:`pbx.media.mixer.mix_minus`) plus
   the group's sources (heard by all) plus its own sources (heard by it alone), and that is
   written to its port (encoded for the phone);
3. sinks are fed: a member's sinks (recording one leg) get what it said mixed with what it
   heard, the group's sinks (recording a bridge) get everything; a sink gets silence when
   nothing was said, so recordings keep time.

Sources are :class:`~pbx.media.player.FrameSource` objects (playbacks, tones); one that has
finished (``finished`` true, or None from a finished playback) is dropped and reported to
``on_source_done``. Must not import: pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pbx.media.mixer import mix, mix_minus
from pbx.media.pcm import SILENCE
from pbx.media.transcode import PlayoutClock

log = logging.getLogger(__name__)


class AudioPort(Protocol):
    """A member's audio: what it says this tick, and what it hears."""

    def read(self) -> bytes | None: ...

    def write(self, pcm: bytes | None) -> None: ...


class Sink(Protocol):
    def write(self, pcm: bytes) -> None: ...


@dataclass(eq=False)
class _Member:
    port: AudioPort
    sources: list[Any] = field(default_factory=list)
    sinks: list[Any] = field(default_factory=list)
    speaks: bool = True
    hears: bool = True


class MixGroup:
    """Members mixed each tick; see the module docstring."""

    def __init__(self, clock: PlayoutClock, name: str = "") -> None:
        self.clock = clock
        self.name = name
        self.members: dict[Hashable, _Member] = {}
        self.sources: list[Any] = []
        self.sinks: list[Any] = []
        self.on_source_done: Callable[[Any], None] | None = None
        self.running = False
        self.ticks = 0

    def add(
        self,
        key: Hashable,
        port: AudioPort,
        *,
        sources: list[Any] | None = None,
        sinks: list[Any] | None = None,
        speaks: bool = True,
        hears: bool = True,
    ) -> None:
        self.members[key] = _Member(port, list(sources or []), list(sinks or []), speaks, hears)

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        for member in self.members.values():
            starter = getattr(member.port, "start", None)
            if starter is not None:
                starter()
        self.clock.add(self)

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.clock.discard(self)
        for member in self.members.values():
            stopper = getattr(member.port, "stop", None)
            if stopper is not None:
                stopper()

    def tick(self) -> None:
        self.ticks += 1
        said: dict[Hashable, bytes | None] = {}
        for key, member in self.members.items():
            pcm = member.port.read()
            said[key] = pcm if member.speaks else None
        group = self._frames(self.sources)
        heard = mix_minus(said)
        for key, member in self.members.items():
            if not member.hears:
                member.port.write(None)
                continue
            parts = [heard[key], *group, *self._frames(member.sources)]
            out = _sum(parts)
            member.port.write(out)
            if member.sinks:
                recorded = _sum([said[key], out]) or SILENCE
                for sink in member.sinks:
                    sink.write(recorded)
        if self.sinks:
            everything = _sum([*said.values(), *group]) or SILENCE
            for sink in self.sinks:
                sink.write(everything)

    def _frames(self, sources: list[Any]) -> list[bytes | None]:
        frames: list[bytes | None] = []
        for source in list(sources):
            frame = source.next_frame()
            if frame is None and getattr(source, "finished", False):
                sources.remove(source)
                if self.on_source_done is not None:
                    self.on_source_done(source)
                continue
            frames.append(frame)
        return frames


def _sum(parts: list[bytes | None]) -> bytes | None:
    present = [p for p in parts if p is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return mix(dict(enumerate(present)))


__all__ = ["AudioPort", "MixGroup", "Sink"]
