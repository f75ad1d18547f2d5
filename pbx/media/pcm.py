"""The internal PCM format of pbx's media sources, in one place.

Owns the constants every source, mixer and sink shares: 16-bit signed little-endian mono
samples at 8000 Hz, in 20 ms frames of :data:`FRAME_BYTES` (320) bytes (the PCM convention
of :mod:`pbx.media.codecs.base` at the narrowband rate every codec pbx has can code), and a
few helpers to cut PCM into frames. Tones, playback, mixing, recording and music on hold
all speak this format; audio from elsewhere is converted once on the way in
(:mod:`pbx.media.audiofile`).

Sans-IO. Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

log = logging.getLogger(__name__)

RATE = 8000  # samples per second
SAMPLE_WIDTH = 2  # bytes per int16 sample
CHANNELS = 1
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000  # 160
FRAME_BYTES = FRAME_SAMPLES * SAMPLE_WIDTH  # 320
SILENCE = bytes(FRAME_BYTES)


def check(pcm: bytes) -> None:
    """Raise ``ValueError`` unless ``pcm`` is a whole number of 16-bit samples."""
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM must be whole 16-bit samples, got {len(pcm)} bytes")


def frame_count(pcm: bytes) -> int:
    """Frames ``pcm`` fills, the last one partly."""
    return -(-len(pcm) // FRAME_BYTES)


def pad(pcm: bytes) -> bytes:
    """``pcm`` zero-padded to a whole number of frames."""
    rest = len(pcm) % FRAME_BYTES
    return pcm + bytes(FRAME_BYTES - rest) if rest else pcm


def frames(pcm: bytes) -> Iterator[bytes]:
    """``pcm`` in 20 ms frames, the last one zero-padded."""
    check(pcm)
    for start in range(0, len(pcm), FRAME_BYTES):
        yield pad(pcm[start : start + FRAME_BYTES])


def silence(ms: int) -> bytes:
    """``ms`` milliseconds of silence."""
    return bytes(RATE * ms // 1000 * SAMPLE_WIDTH)


def duration_ms(pcm: bytes) -> int:
    return len(pcm) // SAMPLE_WIDTH * 1000 // RATE
