"""Tones in and out of the peers: G.711 mu-law, sine WAVs, and "who did this phone hear, in
which order" from a recording.

Owns: G.711 mu-law through ``audioop`` as pbx itself does (RFC 3551 4.5.14; the raw phone
sends and decodes PCMU with it, tests decode tcpdump captures of what pbx sent to SIPp with
it), writing a sine WAV (music on hold for pbx's DATA/moh/default/, or a baresip aufile
source), reading a WAV, and labelling a recording window by window with the tone it carries (each party of a test
plays its own frequency, so the label says whose audio it is). The measurements are those of
``tests/media/audio_helpers`` (single-bin DFT projections: ``tone_snr_db`` per candidate,
``dominant_frequency`` for the failure message).

Why labels and not timestamps: baresip's sndfile module writes what it decodes packet by
packet, so silence without packets takes no room in its recording: only the ORDER of what a
phone heard is reliable, not when. :func:`segments` gives that order, e.g.
``["B", "moh", "B"]`` for a phone put on hold and retrieved.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import itertools
import math
import struct
import time
import warnings
import wave
from array import array
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.media.audio_helpers import dominant_frequency, tone_snr_db

with warnings.catch_warnings():  # stdlib on 3.11/3.12 (deprecated), audioop-lts on 3.13+
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

RATE = 8000
WINDOW_S = 0.2  # 1600 samples: a whole number of periods of every tone used (50 Hz grid)
SILENCE_RMS = 150.0
MIN_SNR_DB = 6.0


# -- G.711 mu-law ------------------------------------------------------------------------------


def ulaw_encode(samples: Sequence[int]) -> bytes:
    """int16 samples -> PCMU payload bytes."""
    return audioop.lin2ulaw(array("h", samples).tobytes(), 2)


def ulaw_decode(payload: bytes) -> list[int]:
    """PCMU payload bytes -> int16 samples."""
    out = array("h")
    out.frombytes(audioop.ulaw2lin(payload, 2))
    return list(out)


# -- tones and WAV files ---------------------------------------------------------------------


def sine_samples(freq: float, count: int, start: int = 0, amplitude: float = 8000.0) -> list[int]:
    """``count`` samples of a sine at 8 kHz, from sample number ``start`` (phase continuous)."""
    step = 2 * math.pi * freq / RATE
    return [round(amplitude * math.sin(step * (start + i))) for i in range(count)]


def write_sine_wav(
    path: Path, freq: float, seconds: int = 30, rate: int = RATE, amplitude: int = 8000
) -> Path:
    """8 kHz (or ``rate``) mono 16-bit sine WAV; a whole-number frequency loops seamlessly."""
    one = array(
        "h", [int(amplitude * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate)]
    ).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(one * seconds)
    return path


def read_wav(path: Path, timeout: float = 3.0) -> tuple[list[int], int]:
    """(first-channel samples, rate) of a 16-bit WAV; waits while its writer (baresip's
    sndfile) has not closed it yet (the header is written at close)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with wave.open(str(path), "rb") as src:
                channels, rate = src.getnchannels(), src.getframerate()
                frames = src.readframes(src.getnframes())
            samples = array("h")
            samples.frombytes(frames[: len(frames) // 2 * 2])
            return list(samples[::channels]), rate
        except (wave.Error, EOFError, struct.error):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


# -- what a recording carries ----------------------------------------------------------------


def rms(samples: Sequence[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def label(samples: Sequence[int], tones: Mapping[str, float], rate: int = RATE) -> str:
    """The name of the tone in ``tones`` this window carries, "silence", or "other"."""
    if rms(samples) < SILENCE_RMS:
        return "silence"
    pcm = array("h", samples).tobytes()
    best, best_snr = "other", MIN_SNR_DB
    for name, freq in tones.items():
        snr = tone_snr_db(pcm, rate, freq)
        if snr > best_snr:
            best, best_snr = name, snr
    return best


def labels(
    samples: Sequence[int], tones: Mapping[str, float], rate: int = RATE, window: float = WINDOW_S
) -> list[str]:
    """One label per ``window`` seconds of the recording."""
    size = int(rate * window)
    return [
        label(samples[i : i + size], tones, rate) for i in range(0, len(samples) - size + 1, size)
    ]


def segments(found: Sequence[str], min_windows: int = 3, keep_silence: bool = False) -> list[str]:
    """Run-length order of the labels: runs shorter than ``min_windows`` (transitions, a
    jitter-buffer hiccup) and "other" are dropped, and so is silence unless asked for."""
    order: list[str] = []
    for name, run in itertools.groupby(found):
        if sum(1 for _ in run) < min_windows or name == "other":
            continue
        if name == "silence" and not keep_silence:
            continue
        if not order or order[-1] != name:
            order.append(name)
    return order


def describe(samples: Sequence[int], rate: int = RATE, window: float = WINDOW_S) -> str:
    """Dominant frequency of every window, for assertion messages."""
    size = int(rate * window)
    parts = []
    for i in range(0, len(samples) - size + 1, size):
        chunk = samples[i : i + size]
        if rms(chunk) < SILENCE_RMS:
            parts.append("-")
        else:
            parts.append(str(dominant_frequency(array("h", chunk).tobytes(), rate)))
    return " ".join(parts)


def heard(
    samples: Sequence[int], tones: Mapping[str, float], rate: int = RATE, min_windows: int = 3
) -> list[str]:
    """The order of the tones (names from ``tones``) a recording carries."""
    return segments(labels(samples, tones, rate), min_windows)


def assert_heard(
    who: str,
    samples: Sequence[int],
    tones: Mapping[str, float],
    expected: Sequence[str],
    rate: int = RATE,
    *,
    exact: bool = True,
    min_windows: int = 3,
) -> None:
    """The recording carries the tones ``expected`` in this order (``exact``: and nothing
    else; otherwise as a subsequence)."""
    got = heard(samples, tones, rate, min_windows)
    if exact:
        ok = got == list(expected)
    else:
        it = iter(got)
        ok = all(any(g == e for g in it) for e in expected)
    assert ok, (
        f"{who} heard {got}, expected {list(expected)} ({len(samples) / rate:.1f} s; "
        f"dominant Hz per {WINDOW_S:g} s: {describe(samples, rate)})"
    )
