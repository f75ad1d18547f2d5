"""pbx itself as the far end of one call leg's media: play audio, record it, collect DTMF.

Owns :class:`MediaEndpoint`. Where a :class:`~pbx.media.transcode.TranscodingBridge` connects
two phones, an endpoint connects one phone to pbx: what the phone sends is reordered by the
jitter buffer, decoded to 8 kHz PCM and handed to ``on_audio`` (recording, echo, speech
detection later); its digits (RFC 4733 events, or in-band tones found by the Goertzel detector
when it has no telephone-event) go to ``on_digit`` and to pending :meth:`collect_dtmf` calls;
audio queued with :meth:`play` is encoded in the phone's codec and sent as pbx's own RTP
stream (silence is not sent: the stream pauses and the next packet carries the marker bit).

It runs on the same shared 20 ms :class:`~pbx.media.transcode.PlayoutClock` as the bridges and
uses the relay socket's ``tap`` hook, so SRTP (``unwrap``/``wrap``) composes with it.
Features (voicemail, IVR, conference) use it through the call model, never directly.

Must not import: pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from pbx.media.relay import MediaLeg
from pbx.media.transcode import (
    PREFETCH,
    TICK_MS,
    DirectionStats,
    Format,
    InboundStream,
    OutboundStream,
    PlayoutClock,
    shared_clock,
)

log = logging.getLogger(__name__)

RATE = 8000  # PCM rate of the endpoint's audio (narrowband; every codec pbx has can code it)
FRAME_BYTES = RATE * TICK_MS // 1000 * 2


class MediaEndpoint:
    """The media of ``leg`` (facing one phone that speaks ``fmt``) terminated in pbx."""

    def __init__(
        self,
        leg: MediaLeg,
        fmt: Format,
        *,
        reactor: Any = None,
        clock: PlayoutClock | None = None,
        prefetch: int = PREFETCH,
    ) -> None:
        self.clock = clock if clock is not None else shared_clock(reactor)
        self.leg = leg
        self.fmt = fmt
        self.stats_in = DirectionStats()
        self.stats_out = DirectionStats()
        self._in = InboundStream(fmt, RATE, self.stats_in, prefetch)
        self._out = OutboundStream(fmt, RATE, leg, self.stats_out)
        self._playing = bytearray()
        self._played: list[tuple[int, defer.Deferred[None]]] = []  # (bytes left, fired when done)
        self._collectors: list[_Collector] = []
        self.on_audio: Callable[[bytes], None] | None = None
        self.on_digit: Callable[[str], None] | None = None
        self.running = False
        self.held = False  # the phone put the call on hold: nothing is sent to it

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.leg.rtp.tap = self._receive
        self.leg.rtcp.tap = self._drop
        self.clock.add(self)

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.clock.discard(self)
        self.leg.rtp.tap = None
        self.leg.rtcp.tap = None
        self.stop_playing()
        for collector in self._collectors:
            collector.finish()
        self._collectors.clear()

    # -- operations ------------------------------------------------------------------------

    def play(self, pcm: bytes) -> defer.Deferred[None]:
        """Queue 16-bit 8 kHz PCM for the phone; the Deferred fires when it has all been sent
        (or playing was stopped)."""
        if len(pcm) % 2:
            raise ValueError("PCM must be whole 16-bit samples")
        self._playing += pcm
        done: defer.Deferred[None] = defer.Deferred()
        self._played.append((len(self._playing), done))
        return done

    def stop_playing(self) -> None:
        self._playing.clear()
        played, self._played = self._played, []
        for _, done in played:
            done.callback(None)

    def digit_received(self, digit: str) -> None:
        """A digit the phone sent outside the media (SIP INFO): handled like one from RTP."""
        self._digit(digit.upper())

    def send_digit(self, digit: str, duration_ms: int = 160) -> None:
        """A digit to the phone: RFC 4733 when it has telephone-event, else an in-band tone."""
        self._out.queue_digit(digit.upper(), duration_ms)

    def collect_dtmf(
        self, max_digits: int, timeout: float, terminators: str = "#"
    ) -> defer.Deferred[str]:
        """Digits the phone sends from now on, until ``max_digits``, a terminator (not
        included) or ``timeout`` seconds without a digit; fires with what was collected."""
        collector = _Collector(max_digits, terminators, timeout, self.clock.interval)
        self._collectors.append(collector)
        return collector.result

    # -- the 20 ms clock -------------------------------------------------------------------

    def tick(self) -> None:
        for digit, _duration in self._in.idle():
            self._digit(digit)
        pcm = self._in.next_pcm()
        if pcm is not None and self._in.detector is not None:
            for digit in self._in.detect(pcm):
                self._digit(digit)
        if pcm is not None and self.on_audio is not None:
            self.on_audio(pcm)
        frame = self._next_frame()
        self._out.tick(None if self.held else frame)
        for collector in list(self._collectors):
            if collector.tick():
                self._collectors.remove(collector)

    def _next_frame(self) -> bytes | None:
        if not self._playing:
            return None
        frame = bytes(self._playing[:FRAME_BYTES]).ljust(FRAME_BYTES, b"\0")
        del self._playing[:FRAME_BYTES]
        sent = FRAME_BYTES
        played = []
        for left, done in self._played:
            if left - sent <= 0:
                done.callback(None)
            else:
                played.append((left - sent, done))
        self._played = played
        return frame

    def _receive(self, data: bytes) -> None:
        for digit, _duration in self._in.receive(data):
            self._digit(digit)

    def _drop(self, data: bytes) -> None:
        self.stats_in.rtcp_dropped += 1

    def _digit(self, digit: str) -> None:
        self.stats_in.digits += 1
        if self.on_digit is not None:
            self.on_digit(digit)
        for collector in list(self._collectors):
            if collector.add(digit):
                self._collectors.remove(collector)


class _Collector:
    """One pending collect_dtmf: digits so far, ended by count, terminator or silence."""

    def __init__(self, max_digits: int, terminators: str, timeout: float, tick_s: float) -> None:
        self.digits = ""
        self.max_digits = max_digits
        self.terminators = terminators
        self.ticks_left = self.timeout_ticks = max(1, round(timeout / tick_s))
        self.result: defer.Deferred[str] = defer.Deferred()

    def add(self, digit: str) -> bool:
        """True when this digit ends the collection."""
        if digit in self.terminators:
            self.finish()
            return True
        self.digits += digit
        self.ticks_left = self.timeout_ticks
        if len(self.digits) >= self.max_digits:
            self.finish()
            return True
        return False

    def tick(self) -> bool:
        self.ticks_left -= 1
        if self.ticks_left <= 0:
            self.finish()
            return True
        return False

    def finish(self) -> None:
        if not self.result.called:
            self.result.callback(self.digits)
