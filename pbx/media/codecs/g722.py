"""G.722 encoder and decoder, wrapping the ``g722`` package (import name ``G722``, libg722).

Owns: the G.722 codec objects. RTP facts (RFC 3551 §4.5.2): static payload type 9, encoding
name "G722", audio sampled at 16 kHz but an RTP clock of 8000 Hz, so a 20 ms frame is 320
samples, 160 timestamp ticks and (at 64 kbit/s) 160 bytes.

Library pitfall: ``G722.encode`` reads a ``bytes`` argument as 8-bit samples; it must be given
an int16 buffer, so PCM is passed as ``memoryview(pcm).cast("h")`` (no copy). ``decode``
returns an int16 array (``array.array`` or a numpy array when numpy is present); both offer
``tobytes()``. The codec delays audio by 22 samples. The library's "8000" mode takes 8 kHz
PCM directly, which spares a resampler when bridging to G.711. It has no concealment, so
:class:`~pbx.media.codecs.base.FadeConcealment` covers lost packets.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging

import G722

from .base import SAMPLE_WIDTH, FadeConcealment, check_pcm, frame_samples_for

log = logging.getLogger(__name__)

NAME = "G722"
PAYLOAD_TYPE = 9
CLOCK_RATE = 8000  # RFC 3551 §4.5.2: the clock rate is 8000 Hz although audio is 16 kHz
SAMPLE_RATES = (16000, 8000)
BITRATE = 64000  # SDP cannot signal the 56/48 kbit/s modes (RFC 3551 §4.5.2)


def _codec(sample_rate: int) -> G722.G722:
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"G.722 PCM rate must be one of {SAMPLE_RATES}, not {sample_rate}")
    return G722.G722(sample_rate, BITRATE)


class G722Encoder:
    """PCM (16 kHz int16, or 8 kHz in narrowband mode) to G.722 payloads."""

    name = NAME
    clock_rate = CLOCK_RATE
    payload_type = PAYLOAD_TYPE

    def __init__(self, sample_rate: int = 16000) -> None:
        self._codec = _codec(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples_for(sample_rate)

    def encode(self, pcm: bytes) -> bytes:
        check_pcm(pcm)
        payload: bytes = bytes(self._codec.encode(memoryview(pcm).cast("h")))
        return payload


class G722Decoder:
    """G.722 payloads to PCM at 16 kHz (or 8 kHz), with fade-out repetition for losses."""

    name = NAME
    clock_rate = CLOCK_RATE
    payload_type = PAYLOAD_TYPE

    def __init__(self, sample_rate: int = 16000) -> None:
        self._codec = _codec(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples_for(sample_rate)
        self._plc = FadeConcealment(self.frame_samples * SAMPLE_WIDTH)

    def decode(self, payload: bytes) -> bytes:
        pcm: bytes = self._codec.decode(payload).tobytes()
        return self._plc.good(pcm)

    def decode_missing(self) -> bytes:
        return self._plc.missing()
