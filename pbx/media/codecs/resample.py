"""Sample-rate conversion between 8, 16 and 48 kHz, and re-framing of PCM into fixed frames.

Owns: :class:`Resampler` (``audioop.ratecv`` with its filter state kept per stream, so 20 ms
frames join without clicks) and :class:`Rechunker` (``ratecv`` output length can differ by a
sample from call to call; codecs want exact frames).

``ratecv`` interpolates linearly without an anti-alias filter, so downsampling folds energy
above the new Nyquist frequency back into the band. Prefer decoders that produce the wanted
rate natively (Opus at 8 kHz, G.722 in its 8 kHz mode) and use this only where none does.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging

from ._audioop import audioop
from .base import SAMPLE_WIDTH, check_pcm

log = logging.getLogger(__name__)

_RatecvState = tuple[int, tuple[tuple[int, int], ...]]


class Resampler:
    """Converts one mono int16 stream from ``from_rate`` to ``to_rate``, chunk by chunk."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError(f"sample rates must be positive: {from_rate} -> {to_rate}")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._state: _RatecvState | None = None

    def convert(self, pcm: bytes) -> bytes:
        """Resample the next chunk of the stream (output length may vary by one sample)."""
        check_pcm(pcm)
        if self.from_rate == self.to_rate:
            return pcm
        out, self._state = audioop.ratecv(
            pcm, SAMPLE_WIDTH, 1, self.from_rate, self.to_rate, self._state
        )
        return out

    def reset(self) -> None:
        """Forget the filter state (after a stream restart or SSRC change)."""
        self._state = None


class Rechunker:
    """Accumulates PCM and hands it out in frames of exactly ``frame_samples`` samples."""

    def __init__(self, frame_samples: int) -> None:
        if frame_samples <= 0:
            raise ValueError("frame_samples must be positive")
        self.frame_bytes = frame_samples * SAMPLE_WIDTH
        self._pending = bytearray()

    def push(self, pcm: bytes) -> list[bytes]:
        """Add ``pcm`` and return every complete frame now available, oldest first."""
        check_pcm(pcm)
        self._pending += pcm
        count = len(self._pending) // self.frame_bytes
        frames = [
            bytes(self._pending[i * self.frame_bytes : (i + 1) * self.frame_bytes])
            for i in range(count)
        ]
        del self._pending[: count * self.frame_bytes]
        return frames

    @property
    def pending_samples(self) -> int:
        return len(self._pending) // SAMPLE_WIDTH
