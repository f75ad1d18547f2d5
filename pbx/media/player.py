"""Playback: a media source that plays PCM (or any frame source) with a state and an end.

Owns :class:`FrameSource` (anything with ``next_frame()``: a :class:`Playback`, a
:class:`~pbx.media.tones.ToneSource`, a :class:`Sequence`), :class:`Playback` with its
state table (:data:`TRANSITIONS`) and :class:`PlaybackError`. A playback is pulled, one
20 ms frame of the internal format (:mod:`pbx.media.pcm`) per tick, by whatever owns it (a
leg's endpoint, a bridge's mixer); it never schedules anything itself, so it runs the same
under a fake clock.

States: QUEUED -> PLAYING (``start``, or the first ``next_frame``) -> DONE (``finish``: the
audio ran out) or STOPPED (``stop``); PLAYING <-> PAUSED (``pause``/``resume``). Any
operation not in the table raises :class:`PlaybackError` (REST maps it to 409), so a client
learns at once that its playback already ended. ``done`` fires once, with the final state's
value ("done" or "stopped"), synchronously inside the call that ended it.

``next_frame`` returns None when there is nothing to play this tick: while PAUSED, and for
good once DONE or STOPPED (tell them apart with :attr:`Playback.finished`). A queued
playback starts on its first ``next_frame``, so an owner may simply start pulling.

Must not import: pbx.calls, pbx.store, pbx.service, web.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterable
from typing import Protocol

from twisted.internet import defer

from pbx.media.pcm import FRAME_BYTES, FRAME_MS, check, pad

log = logging.getLogger(__name__)


class FrameSource(Protocol):
    """A source of 20 ms internal-format frames; None when it has nothing (more) to give."""

    def next_frame(self) -> bytes | None: ...


class PlaybackError(Exception):
    """An operation the playback's state does not allow (it already ended, is not paused...)."""


class PlaybackState(enum.Enum):
    QUEUED = "queued"
    PLAYING = "playing"
    PAUSED = "paused"
    DONE = "done"
    STOPPED = "stopped"


class PlaybackOp(enum.Enum):
    START = "start"
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    FINISH = "finish"


S, Op = PlaybackState, PlaybackOp
TRANSITIONS: dict[tuple[PlaybackState, PlaybackOp], PlaybackState] = {
    (S.QUEUED, Op.START): S.PLAYING,
    (S.QUEUED, Op.STOP): S.STOPPED,
    (S.PLAYING, Op.PAUSE): S.PAUSED,
    (S.PLAYING, Op.STOP): S.STOPPED,
    (S.PLAYING, Op.FINISH): S.DONE,
    (S.PAUSED, Op.RESUME): S.PLAYING,
    (S.PAUSED, Op.STOP): S.STOPPED,
}
FINAL = frozenset({S.DONE, S.STOPPED})


class PcmFrames:
    """Frames of one PCM buffer, the last one zero-padded; ``loop`` plays it round and round
    (frames then run across the end without padding)."""

    def __init__(self, pcm: bytes, loop: bool = False) -> None:
        check(pcm)
        if loop and not pcm:
            raise ValueError("nothing to loop: the PCM is empty")
        self._pcm = pcm
        self._loop = loop
        self._pos = 0

    def next_frame(self) -> bytes | None:
        pcm, pos = self._pcm, self._pos
        if pos + FRAME_BYTES <= len(pcm):
            self._pos = pos + FRAME_BYTES
            if self._loop and self._pos == len(pcm):
                self._pos = 0
            return pcm[pos : pos + FRAME_BYTES]
        if not self._loop:
            if pos >= len(pcm):
                return None
            self._pos = len(pcm)
            return pad(pcm[pos:])
        frame = bytearray(pcm[pos:])
        while len(frame) < FRAME_BYTES:  # a loop shorter than one frame repeats within it
            frame += pcm[: FRAME_BYTES - len(frame)]
        self._pos = (pos + FRAME_BYTES) % len(pcm)
        return bytes(frame)


class Sequence:
    """Several parts (PCM or frame sources) played one after the other, e.g. a prompt and
    then a tone; each PCM part ends on a whole frame (zero-padded)."""

    def __init__(self, parts: Iterable[bytes | FrameSource]) -> None:
        self._parts: list[FrameSource] = [
            PcmFrames(part) if isinstance(part, bytes | bytearray) else part for part in parts
        ]

    def next_frame(self) -> bytes | None:
        while self._parts:
            frame = self._parts[0].next_frame()
            if frame is not None:
                return frame
            self._parts.pop(0)
        return None


class Playback:
    """``pcm`` (internal format) as a media source with a state, an id and an end."""

    def __init__(self, pcm: bytes, *, loop: bool = False, playback_id: str | None = None) -> None:
        self._init(PcmFrames(pcm, loop), playback_id)

    def _init(self, source: FrameSource, playback_id: str | None) -> None:
        self.id = playback_id if playback_id is not None else uuid.uuid4().hex
        self.state = PlaybackState.QUEUED
        self.frames_played = 0
        self.done: defer.Deferred[str] = defer.Deferred()
        self._source = source

    @classmethod
    def of_source(cls, source: FrameSource, *, playback_id: str | None = None) -> Playback:
        """A playback of any frame source; it is DONE when the source returns None."""
        playback = cls.__new__(cls)
        playback._init(source, playback_id)
        return playback

    @classmethod
    def of_tone(
        cls,
        tone: FrameSource,
        *,
        playback_id: str | None = None,
        max_ms: int | None = None,
    ) -> Playback:
        """A tone (an endless source) until stopped, or for at most ``max_ms``."""
        source: FrameSource = tone if max_ms is None else _Limited(tone, max_ms)
        return cls.of_source(source, playback_id=playback_id)

    @classmethod
    def sequence(
        cls, parts: Iterable[bytes | FrameSource], *, playback_id: str | None = None
    ) -> Playback:
        return cls.of_source(Sequence(parts), playback_id=playback_id)

    def __repr__(self) -> str:
        return f"<Playback {self.id} {self.state.value} at frame {self.frames_played}>"

    @property
    def finished(self) -> bool:
        return self.state in FINAL

    @property
    def position_ms(self) -> int:
        return self.frames_played * FRAME_MS

    # -- operations ------------------------------------------------------------------------

    def apply(self, op: PlaybackOp) -> PlaybackState:
        """Apply ``op`` by the table; raises :class:`PlaybackError` if it is not allowed."""
        new = TRANSITIONS.get((self.state, op))
        if new is None:
            raise PlaybackError(f"playback {self.id} is {self.state.value}: cannot {op.value}")
        log.debug("playback %s: %s -> %s (%s)", self.id, self.state.value, new.value, op.value)
        self.state = new
        if new in FINAL:
            self._source = _EMPTY
            self.done.callback(new.value)
        return new

    def start(self) -> None:
        self.apply(PlaybackOp.START)

    def pause(self) -> None:
        self.apply(PlaybackOp.PAUSE)

    def resume(self) -> None:
        self.apply(PlaybackOp.RESUME)

    def stop(self) -> None:
        self.apply(PlaybackOp.STOP)

    # -- the frame source ------------------------------------------------------------------

    def next_frame(self) -> bytes | None:
        """The next 20 ms frame; None while paused and once finished. The first call starts a
        queued playback; the call that finds the audio used up finishes it (DONE)."""
        state = self.state
        if state is not PlaybackState.PLAYING:
            if state is not PlaybackState.QUEUED:
                return None
            self.apply(PlaybackOp.START)
        frame = self._source.next_frame()
        if frame is None:
            self.apply(PlaybackOp.FINISH)
            return None
        self.frames_played += 1
        return frame


class _Empty:
    def next_frame(self) -> bytes | None:
        return None


_EMPTY = _Empty()


class _Limited:
    """At most ``max_ms`` of another source."""

    def __init__(self, source: FrameSource, max_ms: int) -> None:
        self._source = source
        self._left = -(-max_ms // FRAME_MS)

    def next_frame(self) -> bytes | None:
        if self._left <= 0:
            return None
        self._left -= 1
        return self._source.next_frame()
