"""G.711 µ-law (PCMU) and A-law (PCMA) encoder and decoder, wrapping ``audioop``.

Owns: the PCMU/PCMA codec objects. The companding itself is done by ``audioop`` (stdlib on
Python 3.11/3.12, the ``audioop-lts`` package on 3.13+): we never hand-roll codec tables.
RTP: 8000 Hz sample and clock rate, one byte per sample, static payload types 0 (PCMU) and 8
(PCMA) (RFC 3551 §4.5.14, table 4). G.711 has no concealment of its own, so lost packets
are covered by :class:`~pbx.media.codecs.base.FadeConcealment`.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ._audioop import audioop
from .base import SAMPLE_WIDTH, FadeConcealment, check_pcm, frame_samples_for

log = logging.getLogger(__name__)

SAMPLE_RATE = 8000
CLOCK_RATE = 8000
SAMPLES_PER_FRAME = frame_samples_for(SAMPLE_RATE)  # 160 samples = 160 bytes per 20 ms


@dataclass(frozen=True, slots=True)
class Law:
    """One companding law: its SDP name, static payload type and ``audioop`` functions."""

    name: str
    payload_type: int
    compress: Callable[[bytes, int], bytes]
    expand: Callable[[bytes, int], bytes]


LAWS: dict[str, Law] = {
    "PCMU": Law("PCMU", 0, audioop.lin2ulaw, audioop.ulaw2lin),
    "PCMA": Law("PCMA", 8, audioop.lin2alaw, audioop.alaw2lin),
}


def _law(name: str) -> Law:
    try:
        return LAWS[name.upper()]
    except KeyError:
        raise ValueError(f"not a G.711 encoding name: {name!r}") from None


class G711Encoder:
    """PCM (8 kHz int16) to PCMU or PCMA bytes; any whole number of samples is accepted."""

    sample_rate = SAMPLE_RATE
    clock_rate = CLOCK_RATE
    frame_samples = SAMPLES_PER_FRAME

    def __init__(self, name: str = "PCMU") -> None:
        self._law = _law(name)
        self.name = self._law.name
        self.payload_type = self._law.payload_type

    def encode(self, pcm: bytes) -> bytes:
        check_pcm(pcm)
        return self._law.compress(pcm, SAMPLE_WIDTH)


class G711Decoder:
    """PCMU or PCMA bytes to 8 kHz int16 PCM, with fade-out repetition for lost packets."""

    sample_rate = SAMPLE_RATE
    clock_rate = CLOCK_RATE
    frame_samples = SAMPLES_PER_FRAME

    def __init__(self, name: str = "PCMU") -> None:
        self._law = _law(name)
        self.name = self._law.name
        self.payload_type = self._law.payload_type
        self._plc = FadeConcealment(SAMPLES_PER_FRAME * SAMPLE_WIDTH)

    def decode(self, payload: bytes) -> bytes:
        return self._plc.good(self._law.expand(payload, SAMPLE_WIDTH))

    def decode_missing(self) -> bytes:
        return self._plc.missing()
