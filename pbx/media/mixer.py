"""Mixing one tick of PCM frames: mix-minus for a bridge's members, and the full mix.

Owns :func:`mix_minus` (each member hears the sum of everyone else, never itself: the
"mix-minus" of broadcast desks and of Asterisk's softmix) and :func:`mix` (everyone summed,
for recording a bridge). Frames are the internal format of :mod:`pbx.media.pcm`; any equal
length of whole samples is accepted. A ``None`` frame means "this member said nothing this
tick" and contributes nothing; a ``None`` result means "nothing to hear" and the caller sends
nothing (the RTP stream pauses, RFC 3551 §4.1), which is cheaper than sending silence.

The sum is taken in int32 over all speakers once, each member's own frame is subtracted
from it, and every result is clipped to int16 once, at the end (clipping partial sums would
make the result depend on the order of the members). numpy does the arithmetic for all
members at once.

Sans-IO. Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import TypeVar

import numpy as np

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

_INT16_MIN, _INT16_MAX = -32768, 32767


def _speakers(frames: Mapping[K, bytes | None]) -> tuple[list[K], np.ndarray]:
    """The keys that spoke and their frames as rows of an int32 matrix."""
    keys = [key for key, frame in frames.items() if frame is not None]
    if not keys:
        return keys, np.zeros((0, 0), dtype=np.int32)
    data = [frames[key] for key in keys]
    size = len(data[0] or b"")
    for frame in data:
        assert frame is not None
        if len(frame) != size or size % 2:
            raise ValueError("frames to mix must be whole 16-bit samples of one length")
    joined = b"".join(frame for frame in data if frame is not None)
    rows = np.frombuffer(joined, dtype="<i2").reshape(len(keys), size // 2)
    return keys, rows.astype(np.int32)


def _clip(samples: np.ndarray) -> np.ndarray:
    return np.clip(samples, _INT16_MIN, _INT16_MAX).astype("<i2")


def mix_minus(
    frames: Mapping[K, bytes | None], hears: Mapping[K, bool] | None = None
) -> dict[K, bytes | None]:
    """For every key, the sum of every *other* key's frame (None when no other key spoke).

    A key whose ``hears`` is False (a muted-to-them member, one that is being played an
    announcement instead) gets None; keys missing from ``hears`` hear.
    """
    keys, rows = _speakers(frames)
    if not keys:
        return dict.fromkeys(frames, None)
    total = rows.sum(axis=0)
    everyone = _clip(total).tobytes()  # what a member that said nothing hears
    minus = _clip(total[np.newaxis, :] - rows) if len(keys) > 1 else None
    own = {key: i for i, key in enumerate(keys)}
    out: dict[K, bytes | None] = {}
    for key in frames:
        index = own.get(key)
        if hears is not None and not hears.get(key, True):
            out[key] = None
        elif index is None:
            out[key] = everyone
        elif minus is None:  # the only speaker: nobody else to hear
            out[key] = None
        else:
            out[key] = minus[index].tobytes()
    return out


def mix(frames: Mapping[K, bytes | None]) -> bytes | None:
    """Everyone's frames summed (clipped once), None when nobody spoke."""
    keys, rows = _speakers(frames)
    if not keys:
        return None
    return _clip(rows.sum(axis=0)).tobytes()
