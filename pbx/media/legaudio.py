"""One leg's media terminated in pbx: RTP from the phone to PCM, PCM to RTP for the phone.

Owns :class:`LegAudio`, the audio port a mixing group (pbx.media.mixgroup) reads and writes
for one SIP leg: what the phone sends is reordered by the jitter buffer, decoded to the
internal PCM format (pbx.media.pcm: 8 kHz, 20 ms frames) and returned by :meth:`read`, its
digits (RFC 4733 events, or in-band tones found by the Goertzel detector when it has no
telephone-event) go to ``on_digit``; what :meth:`write` gets is encoded in the phone's codec
and sent as pbx's own RTP stream (RFC 3550 §5.1: random SSRC, sequence and timestamp; a tick
without audio sends nothing and the next packet carries the marker bit). Digits for the
phone (:meth:`queue_digit`) go as RFC 4733 events when it has telephone-event, else in-band.

It sits on the relay sockets' ``tap`` hooks, so SRTP (``unwrap``/``wrap``) composes with it,
and it does nothing by itself: the group that owns it calls read/write once per 20 ms tick.
Must not import: pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pbx.media.pcm import RATE
from pbx.media.relay import MediaLeg
from pbx.media.transcode import (
    PREFETCH,
    DirectionStats,
    Format,
    InboundStream,
    OutboundStream,
)

log = logging.getLogger(__name__)


class LegAudio:
    """The media of ``leg`` (facing one phone that speaks ``fmt``) as PCM frames."""

    def __init__(self, leg: MediaLeg, fmt: Format, prefetch: int = PREFETCH) -> None:
        self.leg = leg
        self.fmt = fmt
        self.stats_in = DirectionStats()
        self.stats_out = DirectionStats()
        self._in = InboundStream(fmt, RATE, self.stats_in, prefetch)
        self._out = OutboundStream(fmt, RATE, leg, self.stats_out)
        self.on_digit: Callable[[str, int], None] | None = None
        self.running = False

    def start(self) -> None:
        if self.running:
            return
        self.running = True
        self.leg.rtp.peer = None
        self.leg.rtcp.peer = None
        self.leg.rtp.tap = self._receive
        self.leg.rtcp.tap = self._drop

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        if self.leg.rtp.tap == self._receive:
            self.leg.rtp.tap = None
        if self.leg.rtcp.tap == self._drop:
            self.leg.rtcp.tap = None

    def read(self) -> bytes | None:
        """This tick's 20 ms from the phone (None while nothing plays: buffering, silence)."""
        for digit, duration in self._in.idle():
            self._digit(digit, duration)
        pcm = self._in.next_pcm()
        if pcm is not None and self._in.detector is not None:
            for digit in self._in.detect(pcm):
                self._digit(digit, 100)
        return pcm

    def write(self, pcm: bytes | None) -> None:
        """This tick's 20 ms for the phone (None: nothing to send)."""
        self._out.tick(pcm)

    def queue_digit(self, digit: str, duration_ms: int = 160) -> None:
        self._out.queue_digit(digit.upper(), duration_ms)

    def _receive(self, data: bytes) -> None:
        for digit, duration in self._in.receive(data):
            self._digit(digit, duration)

    def _drop(self, data: bytes) -> None:
        self.stats_in.rtcp_dropped += 1

    def _digit(self, digit: str, duration_ms: int) -> None:
        self.stats_in.digits += 1
        if self.on_digit is not None:
            self.on_digit(digit, duration_ms)


__all__ = ["LegAudio"]
