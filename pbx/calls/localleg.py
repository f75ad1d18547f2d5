"""A local leg: pbx itself is the far end (echo test now; voicemail, IVR, fax later).

A :class:`LocalLeg` has no signalling and no sockets. Bridged with a phone's leg, the bridge
mixes (pbx.calls.bridge), and the local leg's :class:`LocalPort` is its member: what pbx says
on the leg (queued PCM with :meth:`LocalLeg.play`, or any frame source in its ``sources``)
is what the phone hears, and what the phone says comes to ``on_audio`` (echo, recording,
speech detection) and to the leg's sinks; the phone's digits come to ``on_digit``. Audio is
the internal format of pbx.media.pcm (8 kHz, 20 ms frames).
Must not import pbx.sip, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from pbx.calls.model import Leg, LegState, Party
from pbx.media.pcm import FRAME_BYTES

log = logging.getLogger(__name__)


class LocalPort:
    """The local leg's audio as a mixing-group member."""

    def __init__(self, leg: LocalLeg) -> None:
        self.leg = leg

    def read(self) -> bytes | None:
        return self.leg._next_frame()

    def write(self, pcm: bytes | None) -> None:
        if pcm is None:
            return
        for sink in [s for s in self.leg.sources if hasattr(s, "write")]:
            sink.write(pcm)
        if self.leg.on_audio is not None:
            self.leg.on_audio(pcm)


class LocalLeg(Leg):
    """pbx as one party of a call."""

    direction = "local"

    def __init__(self, leg_id: str, party: Party, clock: Callable[[], float]) -> None:
        super().__init__(leg_id, party)
        self.port = LocalPort(self)
        self._clock = clock
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_digit: Callable[[str], None] | None = None
        self._queued = bytearray()
        self._played: list[tuple[int, defer.Deferred[None]]] = []

    def answer(self) -> None:
        if self.state is not LegState.NEW:
            return
        self.move(LegState.ANSWERED)
        self.move(LegState.CONFIRMED)
        self.answered_at = self._clock()
        if self.owner is not None:
            self.owner.leg_answered(self)

    def hang_up(self, cause: str = "normal") -> None:
        if self.ended:
            return
        self.move(LegState.ENDED)
        self.cause = cause
        self.ended_at = self._clock()
        self._queued.clear()
        played, self._played = self._played, []
        for _, done in played:
            done.callback(None)
        if self.owner is not None:
            self.owner.leg_ended(self, cause, False)

    def hold(self) -> None:
        self.held = True
        if self.owner is not None:
            self.owner.leg_hold_changed(self)

    def retrieve(self) -> None:
        self.held = False
        if self.owner is not None:
            self.owner.leg_hold_changed(self)

    def send_digits(self, digits: str, duration_ms: int = 160) -> None:
        log.debug("local leg %s: digits %s not sent anywhere", self.id, digits)

    def digit(self, digit: str) -> None:
        """A digit from the party this leg is bridged with."""
        if self.on_digit is not None:
            self.on_digit(digit)

    def play(self, pcm: bytes) -> defer.Deferred[None]:
        """Queue internal-format PCM to say on this leg; fires once it has all been said."""
        if len(pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")
        self._queued += pcm
        done: defer.Deferred[None] = defer.Deferred()
        self._played.append((len(self._queued), done))
        return done

    def _next_frame(self) -> bytes | None:
        frames: list[Any] = [s for s in self.sources if hasattr(s, "next_frame")]
        for source in frames:
            frame = source.next_frame()
            if frame is not None:
                return bytes(frame)
        if not self._queued:
            return None
        frame = bytes(self._queued[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        del self._queued[:FRAME_BYTES]
        left = []
        for remaining, done in self._played:
            if remaining - FRAME_BYTES <= 0:
                done.callback(None)
            else:
                left.append((remaining - FRAME_BYTES, done))
        self._played = left
        return frame


__all__ = ["LocalLeg", "LocalPort"]
