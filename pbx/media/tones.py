"""Call-progress tones by country: ringback, busy and congestion, as 20 ms PCM frames.

Owns :class:`Tone`, :class:`TonePlan` (frequencies, on/off cadence, level), the plans per
E.164 country calling code (:func:`plan_for`) and :class:`ToneSource`, an endless frame
source of one plan (a :class:`pbx.media.player.FrameSource`; wrap it in
``Playback.of_tone`` to give it a state and an end).

Sources of the plans:

- ITU-T E.180 (03/1998) "Technical characteristics of tones for the telephone service" and
  its Supplement 2, "Various tones used in national networks" (the per-country table; the
  German, French and UK entries below are taken from it, as also found in Asterisk's
  ``indications.conf``).
- ETSI ES 201 970 "Public Switched Telephone Network (PSTN); Harmonized specification of
  physical and electrical characteristics at a 2-wire analogue presented NTP", annex on
  tones (from CEPT Recommendation T/CS 20-15): 425 Hz, ringing 1 s on / 4 s off, busy
  0.5 s / 0.5 s, congestion 0.25 s / 0.25 s. This is pbx's default for every code it has no
  own entry for (the rest of Europe and unknown codes).
- ANSI T1.401 "Interface between Carriers and Customer Installations - Analog Voicegrade
  Switched Access Lines Using Loop-Start and Ground-Start Signaling" (the North American
  precise tone plan): audible ringing 440+480 Hz, 2 s on / 4 s off, at -19 dBm0 per
  frequency; line busy 480+620 Hz, 0.5 s / 0.5 s, and reorder 480+620 Hz, 0.25 s / 0.25 s,
  at -24 dBm0 per frequency.

Levels: ``level_dbm0`` is the level of *each* frequency (two-frequency tones are the sum).
E.180 and ES 201 970 leave the exact level to each network; pbx plays the single-frequency
European tones at -13 dBm0.

Sans-IO. Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.calls, pbx.store.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass

import numpy as np

from pbx.media.dtmf import level_to_amplitude
from pbx.media.pcm import FRAME_SAMPLES, RATE

log = logging.getLogger(__name__)


class Tone(enum.Enum):
    RINGBACK = "ringback"
    BUSY = "busy"
    CONGESTION = "congestion"  # "reorder" in North America: all circuits busy, no route


@dataclass(frozen=True, slots=True)
class TonePlan:
    """``frequencies`` in Hz played together; ``cadence`` in ms, on and off alternating and
    starting with on (empty: a continuous tone); ``level_dbm0`` per frequency."""

    frequencies: tuple[float, ...]
    cadence: tuple[int, ...]
    level_dbm0: float

    def __post_init__(self) -> None:
        if not self.frequencies or any(not 0 < f < RATE / 2 for f in self.frequencies):
            raise ValueError(f"tone frequencies must be between 0 and {RATE // 2} Hz")
        if any(ms <= 0 for ms in self.cadence) or len(self.cadence) % 2:
            raise ValueError("a cadence is pairs of positive on/off durations in ms")

    @property
    def cycle_ms(self) -> int:
        return sum(self.cadence)


EU_LEVEL = -13.0  # dBm0 (see the module docstring)

# ETSI ES 201 970 / CEPT T/CS 20-15: the default for Europe and for codes pbx does not know
EU_DEFAULT: dict[Tone, TonePlan] = {
    Tone.RINGBACK: TonePlan((425.0,), (1000, 4000), EU_LEVEL),
    Tone.BUSY: TonePlan((425.0,), (500, 500), EU_LEVEL),
    Tone.CONGESTION: TonePlan((425.0,), (250, 250), EU_LEVEL),
}

# Germany, ITU-T E.180 Suppl. 2 (Deutsche Telekom 1 TR 110): Freiton, Besetztton, Gassenbesetztton
GERMANY: dict[Tone, TonePlan] = {
    Tone.RINGBACK: TonePlan((425.0,), (1000, 4000), EU_LEVEL),
    Tone.BUSY: TonePlan((425.0,), (480, 480), EU_LEVEL),
    Tone.CONGESTION: TonePlan((425.0,), (240, 240), EU_LEVEL),
}

# France, ITU-T E.180 Suppl. 2: 440 Hz; ringing 1.5 s on / 3.5 s off
FRANCE: dict[Tone, TonePlan] = {
    Tone.RINGBACK: TonePlan((440.0,), (1500, 3500), EU_LEVEL),
    Tone.BUSY: TonePlan((440.0,), (500, 500), EU_LEVEL),
    Tone.CONGESTION: TonePlan((440.0,), (250, 250), EU_LEVEL),
}

# United Kingdom, ITU-T E.180 Suppl. 2 (BT SIN 350): double ring 400+450 Hz, 400 ms busy 400 Hz
UNITED_KINGDOM: dict[Tone, TonePlan] = {
    Tone.RINGBACK: TonePlan((400.0, 450.0), (400, 200, 400, 2000), -19.0),
    Tone.BUSY: TonePlan((400.0,), (375, 375), EU_LEVEL),
    Tone.CONGESTION: TonePlan((400.0,), (400, 350, 225, 525), EU_LEVEL),
}

# North American Numbering Plan (calling code 1), ANSI T1.401 precise tones
NANP: dict[Tone, TonePlan] = {
    Tone.RINGBACK: TonePlan((440.0, 480.0), (2000, 4000), -19.0),
    Tone.BUSY: TonePlan((480.0, 620.0), (500, 500), -24.0),
    Tone.CONGESTION: TonePlan((480.0, 620.0), (250, 250), -24.0),  # reorder
}

PLANS: dict[str, dict[Tone, TonePlan]] = {
    "1": NANP,
    "33": FRANCE,
    "44": UNITED_KINGDOM,
    "49": GERMANY,
}


def plan_for(country_code: str, tone: Tone) -> TonePlan:
    """The plan of ``tone`` for a site whose E.164 calling code is ``country_code``
    ("49", "1", "+43", "" for unknown): the longest known code it starts with, else the
    ETSI/CEPT default."""
    digits = country_code.strip().lstrip("+")
    for length in range(min(len(digits), 3), 0, -1):
        plans = PLANS.get(digits[:length])
        if plans is not None:
            return plans[tone]
    return EU_DEFAULT[tone]


class ToneSource:
    """Endless 20 ms frames of ``plan``: the cadence loops, the sine runs on without phase
    jumps from frame to frame (the phase is a function of the absolute sample count)."""

    def __init__(self, plan: TonePlan, rate: int = RATE) -> None:
        self.plan = plan
        self.rate = rate
        self._samples = 0  # samples produced so far
        self._amplitude = level_to_amplitude(plan.level_dbm0)
        self._omegas = np.array([2 * math.pi * f / rate for f in plan.frequencies])
        self._frame = rate * FRAME_SAMPLES // RATE
        # cadence edges in samples: [on_end, off_end, on_end, ...] within one cycle
        self._edges = np.cumsum([ms * rate // 1000 for ms in plan.cadence], dtype=np.int64)
        self._cycle = int(self._edges[-1]) if len(self._edges) else 0
        self._whole = all(float(f).is_integer() for f in plan.frequencies)

    def next_frame(self) -> bytes:
        n = np.arange(self._samples, self._samples + self._frame, dtype=np.int64)
        self._samples += self._frame
        if self._cycle:
            phase = np.searchsorted(self._edges, n % self._cycle, side="right")
            gate = (phase % 2 == 0).astype(np.float64)  # even segments are "on"
            if not gate.any():
                return bytes(self._frame * 2)
        else:
            gate = np.ones(self._frame)
        # integer frequencies repeat every second: wrapping n there keeps the angles small
        phase_n = n % self.rate if self._whole else n
        angles = phase_n.astype(np.float64)[:, np.newaxis] * self._omegas
        wave = np.sin(angles).sum(axis=1) * self._amplitude * gate
        return np.clip(np.rint(wave), -32768, 32767).astype("<i2").tobytes()

    @property
    def position_ms(self) -> int:
        """Where in the cadence cycle the next frame starts."""
        if not self._cycle:
            return 0
        return (self._samples % self._cycle) * 1000 // self.rate
