"""Call-progress tones: plans per country, and the frequencies and cadence of ToneSource."""

from __future__ import annotations

import math
from array import array

import numpy as np
import pytest

from pbx.media.dtmf import goertzel_power, level_to_amplitude
from pbx.media.pcm import FRAME_BYTES
from pbx.media.tones import EU_DEFAULT, Tone, TonePlan, ToneSource, plan_for


def frames(source: ToneSource, count: int) -> list[bytes]:
    return [source.next_frame() for _ in range(count)]


def on_frames(chunk: list[bytes]) -> list[bool]:
    return [any(array("h", f)) for f in chunk]


def test_germany_ringback_busy_and_congestion() -> None:
    assert plan_for("49", Tone.RINGBACK) == TonePlan((425.0,), (1000, 4000), -13.0)
    assert plan_for("49", Tone.BUSY).cadence == (480, 480)
    assert plan_for("49", Tone.CONGESTION).cadence == (240, 240)


def test_north_america_uses_the_precise_tone_plan() -> None:
    ring = plan_for("1", Tone.RINGBACK)
    assert ring.frequencies == (440.0, 480.0) and ring.cadence == (2000, 4000)
    busy = plan_for("1", Tone.BUSY)
    assert busy.frequencies == (480.0, 620.0) and busy.cadence == (500, 500)
    reorder = plan_for("+1", Tone.CONGESTION)
    assert reorder.frequencies == (480.0, 620.0) and reorder.cadence == (250, 250)


@pytest.mark.parametrize("code", ["43", "32", "39", "", "999", "7"])
def test_other_and_unknown_codes_get_the_etsi_default(code: str) -> None:
    for tone in Tone:
        assert plan_for(code, tone) == EU_DEFAULT[tone]
    assert EU_DEFAULT[Tone.RINGBACK] == TonePlan((425.0,), (1000, 4000), -13.0)
    assert EU_DEFAULT[Tone.BUSY].cadence == (500, 500)
    assert EU_DEFAULT[Tone.CONGESTION].cadence == (250, 250)


def test_the_longest_known_code_wins() -> None:
    assert plan_for("4930", Tone.BUSY) == plan_for("49", Tone.BUSY)
    assert plan_for("1212", Tone.RINGBACK) == plan_for("1", Tone.RINGBACK)


def test_frames_are_20_ms_and_the_german_ringback_is_425_hz_1_s_on_4_s_off() -> None:
    source = ToneSource(plan_for("49", Tone.RINGBACK))
    chunk = frames(source, 500)  # two cycles of 5 s
    assert all(len(f) == FRAME_BYTES for f in chunk)
    assert on_frames(chunk) == ([True] * 50 + [False] * 200) * 2
    tone = array("h", b"".join(chunk[:50]))
    assert goertzel_power(tone, 425, 8000) > 1000 * goertzel_power(tone, 475, 8000)


def test_us_ringback_holds_both_frequencies_2_s_on_4_s_off() -> None:
    source = ToneSource(plan_for("1", Tone.RINGBACK))
    chunk = frames(source, 300)
    assert on_frames(chunk) == [True] * 100 + [False] * 200
    pcm = np.frombuffer(b"".join(chunk[:100]), dtype="<i2").astype(float)
    spectrum = np.abs(np.fft.rfft(pcm))
    freqs = np.fft.rfftfreq(len(pcm), 1 / 8000)
    top = sorted(freqs[np.argsort(spectrum)[-2:]])
    assert top == [440.0, 480.0]
    # each frequency at -19 dBm0 (ANSI T1.401)
    amplitude = 2 * spectrum[freqs == 440.0][0] / len(pcm)
    assert amplitude == pytest.approx(level_to_amplitude(-19.0), rel=0.01)


@pytest.mark.parametrize(("code", "tone", "on", "off"), [
    ("49", Tone.BUSY, 480, 480),
    ("49", Tone.CONGESTION, 240, 240),
    ("", Tone.BUSY, 500, 500),
    ("", Tone.CONGESTION, 250, 250),
    ("1", Tone.BUSY, 500, 500),
])  # fmt: skip
def test_cadence_timing_to_the_sample(code: str, tone: Tone, on: int, off: int) -> None:
    source = ToneSource(plan_for(code, tone))
    pcm = np.frombuffer(b"".join(frames(source, 3 * (on + off) // 20 + 1)), dtype="<i2")
    sounding = np.abs(pcm) > 0
    # runs of sound and silence: the edges fall every on/off ms (8 samples per ms); a sine
    # crosses zero inside the "on" runs, so look at 2 ms windows
    windows = sounding[: len(sounding) // 16 * 16].reshape(-1, 16).any(axis=1)
    edges = np.flatnonzero(np.diff(windows.astype(int))) + 1
    gaps = np.diff(edges) * 2  # ms
    assert set(gaps.tolist()) <= {on, off}
    assert edges[0] * 2 == on


def test_the_tone_is_phase_continuous_across_frames() -> None:
    source = ToneSource(TonePlan((425.0,), (), -13.0))  # continuous
    pcm = np.frombuffer(b"".join(frames(source, 60)), dtype="<i2").astype(float)
    amplitude = level_to_amplitude(-13.0)
    n = np.arange(len(pcm))
    expected = amplitude * np.sin(2 * math.pi * 425 * n / 8000)
    assert np.max(np.abs(pcm - expected)) <= 1.0  # rounding only: no jump at any frame edge


def test_the_uk_double_ring_has_four_segments() -> None:
    source = ToneSource(plan_for("44", Tone.RINGBACK))
    chunk = frames(source, 150)  # 3 s cycle
    assert on_frames(chunk) == [True] * 20 + [False] * 10 + [True] * 20 + [False] * 100


def test_plans_are_checked() -> None:
    with pytest.raises(ValueError):
        TonePlan((5000.0,), (100, 100), -13.0)
    with pytest.raises(ValueError):
        TonePlan((425.0,), (100,), -13.0)
