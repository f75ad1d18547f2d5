"""Encoder/Decoder seams for audio codecs, and the concealment used by codecs without PLC.

Owns: the :class:`Encoder` and :class:`Decoder` protocols every codec module implements, the
RTP-clock arithmetic (:func:`rtp_ticks`) and :class:`FadeConcealment`, the "repeat the last
frame, fading" packet-loss concealment for G.711 and G.722, whose libraries have none.

PCM convention, everywhere in pbx.media: mono, signed 16-bit samples in native byte order
(little-endian on every platform we ship on), as ``bytes``. One frame is 20 ms (RFC 3551 §4.2
default packetisation) unless a codec says otherwise.

The RTP clock rate is not always the audio sample rate: G.722 samples at 16 kHz but its RTP
clock runs at 8000 Hz "for historical reasons" (RFC 3551 §4.5.2), and Opus always uses a
48000 Hz RTP clock whatever rate it is decoded at (RFC 7587 §4.1).

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
from typing import Protocol

from ._audioop import audioop

log = logging.getLogger(__name__)

FRAME_MS = 20
SAMPLE_WIDTH = 2  # bytes per int16 sample


class Encoder(Protocol):
    """Turns one packet's worth of PCM into one RTP payload."""

    @property
    def name(self) -> str:
        """SDP encoding name as written in a=rtpmap (RFC 4566 §6), e.g. ``"PCMU"``."""
        ...

    @property
    def sample_rate(self) -> int:
        """Rate of the PCM this encoder takes, in Hz."""
        ...

    @property
    def clock_rate(self) -> int:
        """RTP timestamp clock rate, in Hz (may differ from :attr:`sample_rate`)."""
        ...

    @property
    def frame_samples(self) -> int:
        """PCM samples in one 20 ms frame at :attr:`sample_rate`."""
        ...

    def encode(self, pcm: bytes) -> bytes:
        """Encode ``pcm`` (int16, normally :attr:`frame_samples` long) into one payload."""
        ...


class Decoder(Protocol):
    """Turns RTP payloads back into PCM, and conceals payloads that never arrived."""

    @property
    def name(self) -> str: ...

    @property
    def sample_rate(self) -> int:
        """Rate of the PCM this decoder returns, in Hz."""
        ...

    @property
    def clock_rate(self) -> int: ...

    @property
    def frame_samples(self) -> int: ...

    def decode(self, payload: bytes) -> bytes:
        """Decode one RTP payload into int16 PCM at :attr:`sample_rate`."""
        ...

    def decode_missing(self) -> bytes:
        """PCM to play in place of one lost packet (packet loss concealment)."""
        ...


def rtp_ticks(samples: int, sample_rate: int, clock_rate: int) -> int:
    """RTP timestamp increment for ``samples`` PCM samples (RFC 3550 §5.1 timestamp field)."""
    return samples * clock_rate // sample_rate


def frame_samples_for(sample_rate: int, frame_ms: int = FRAME_MS) -> int:
    """Samples in one ``frame_ms`` frame at ``sample_rate``."""
    return sample_rate * frame_ms // 1000


def check_pcm(pcm: bytes) -> None:
    """Raise ``ValueError`` unless ``pcm`` is a whole number of int16 samples."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM has an odd byte count ({len(pcm)}); expected int16 samples")


class FadeConcealment:
    """Packet-loss concealment by repetition: the last good frame, 6 dB quieter each time.

    After ``max_repeats`` consecutive losses it returns silence, so a long gap does not turn
    into a buzzing loop (the approach G.711 Appendix I improves on with pitch tracking).
    """

    def __init__(self, frame_bytes: int, max_repeats: int = 3) -> None:
        self._silence = bytes(frame_bytes)
        self._last = self._silence
        self._max_repeats = max_repeats
        self._missing = 0

    def good(self, pcm: bytes) -> bytes:
        """Remember a correctly decoded frame and return it unchanged."""
        self._last = pcm
        self._missing = 0
        return pcm

    def missing(self) -> bytes:
        """The frame to play for one lost packet."""
        self._missing += 1
        if self._missing > self._max_repeats:
            return bytes(len(self._last)) if self._last else self._silence
        return audioop.mul(self._last, SAMPLE_WIDTH, 0.5**self._missing)
