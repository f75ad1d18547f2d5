"""Signal helpers for the media tests: sine generation and single-bin DFT measurements.

Measurements are plain DFT projections over a whole number of periods, so they do not depend
on codec delay or phase. No codec logic here.
"""

from __future__ import annotations

import array
import math
import random


def samples(pcm: bytes) -> array.array[int]:
    out = array.array("h")
    out.frombytes(pcm)
    return out


def sine(freq: float, rate: int, count: int, amplitude: float = 8000.0) -> bytes:
    """``count`` int16 samples of a sine at ``freq`` Hz."""
    step = 2 * math.pi * freq / rate
    return array.array("h", [round(amplitude * math.sin(step * i)) for i in range(count)]).tobytes()


def noise(count: int, rms: float, seed: int = 7) -> bytes:
    """Deterministic white Gaussian noise."""
    rng = random.Random(seed)
    return array.array(
        "h", [max(-32768, min(32767, round(rng.gauss(0.0, rms)))) for _ in range(count)]
    ).tobytes()


def _projection(x: array.array[int], rate: int, freq: float) -> float:
    step = 2 * math.pi * freq / rate
    re = sum(v * math.cos(step * i) for i, v in enumerate(x))
    im = sum(v * math.sin(step * i) for i, v in enumerate(x))
    return 2 * math.hypot(re, im) / len(x)  # amplitude of the component


def tone_snr_db(pcm: bytes, rate: int, freq: float, skip: int = 0) -> float:
    """Power of the ``freq`` component over everything else (DC removed), in dB."""
    x = samples(pcm)[skip:]
    period = round(rate / math.gcd(rate, round(freq)))
    x = x[: len(x) // period * period]
    amp = _projection(x, rate, freq)
    tone = amp * amp / 2
    mean = sum(x) / len(x)
    total = sum(v * v for v in x) / len(x) - mean * mean
    return 10 * math.log10(tone / max(total - tone, 1e-9))


def dominant_frequency(pcm: bytes, rate: int, skip: int = 0, top: int = 3950) -> int:
    """Strongest 50 Hz-spaced component between 100 Hz and ``top`` over one 20 ms window."""
    x = samples(pcm)[skip : skip + rate // 50]
    return max(range(100, top + 1, 50), key=lambda f: _projection(x, rate, f))


def mix(a: bytes, b: bytes) -> bytes:
    """Sample-wise sum of two int16 signals (clipped), as long as the shorter one."""
    return array.array(
        "h", [max(-32768, min(32767, p + q)) for p, q in zip(samples(a), samples(b), strict=False)]
    ).tobytes()


def speech_like(seconds: float, rate: int = 8000, peak: float = 20000.0) -> bytes:
    """A vowel /a/-like buzz: harmonics of a gliding 100-180 Hz pitch through three formants.

    Its harmonics sweep across the DTMF rows and columns, the classic talk-off hazard.
    """
    formants = ((730.0, 80.0), (1090.0, 90.0), (2440.0, 120.0))
    phases = [0.0] * 40
    out: list[float] = []
    for i in range(int(rate * seconds)):
        f0 = 140 + 40 * math.sin(2 * math.pi * 1.3 * i / rate)
        value = 0.0
        for h in range(1, int(3800 / f0)):
            phases[h] += 2 * math.pi * f0 * h / rate
            gain = sum(1 / (1 + ((f0 * h - f) / bw) ** 2) for f, bw in formants)
            value += gain * math.sin(phases[h])
        out.append(value)
    scale = peak / max(map(abs, out))
    return array.array("h", [round(v * scale) for v in out]).tobytes()
