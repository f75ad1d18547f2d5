"""DTMF in its three forms: RFC 4733 telephone-events, SIP INFO bodies, and in-band tones.

Owns:
- the telephone-event payload (RFC 4733 §2.3) and its DTMF event codes (§3.2);
- :class:`EventSender`, the packet schedule for one digit (§2.5.1), and :class:`EventReceiver`,
  which turns a lossy, duplicated packet stream into each digit exactly once (§2.5.2);
- the ``application/dtmf-relay`` and ``application/dtmf`` SIP INFO bodies (de-facto formats,
  no RFC; the keys of dtmf-relay are matched case-insensitively);
- :class:`DtmfDetector`, a Goertzel detector over PCM for the ITU-T Q.23 frequencies with the
  Q.24 checks (level, twist, duration), and :func:`dtmf_tone` / :func:`dtmf_sequence`, the
  in-band tone generator.

Sans-IO: packets are data with a send offset in milliseconds; the caller assigns RTP sequence
numbers, SSRC and payload type (the event's own RTP timestamp is set here) and schedules sends.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import array
import logging
import math
import struct
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from pbx.media.rtp import uint32_gt

log = logging.getLogger(__name__)

# RFC 4733 §3.2 table 3: events 0-9, * = 10, # = 11, A-D = 12-15, flash = 16 ("!" here, the
# character Asterisk and others use for hook flash).
EVENT_CHARS = "0123456789*#ABCD!"
FLASH_EVENT = 16
DTMF_RELAY = "application/dtmf-relay"
DTMF = "application/dtmf"

_EVENT = struct.Struct("!BBH")  # event, E|R|volume, duration (RFC 4733 §2.3 figure 1)


def digit_to_event(digit: str) -> int:
    """RFC 4733 event code for ``digit`` (``0``-``9 * # A-D !``; letters in either case)."""
    code = EVENT_CHARS.find(digit.upper()) if len(digit) == 1 else -1
    if code < 0:
        raise ValueError(f"not a DTMF digit: {digit!r}")
    return code


def event_to_digit(event: int) -> str:
    """The character for RFC 4733 event code ``event`` (0-16)."""
    if not 0 <= event < len(EVENT_CHARS):
        raise ValueError(f"not a DTMF event code: {event}")
    return EVENT_CHARS[event]


# --- RFC 4733 payload ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    """One telephone-event payload (RFC 4733 §2.3)."""

    event: int
    end: bool = False
    volume: int = 10  # power level in -dBm0, 0-63 (§2.3.4)
    duration: int = 0  # in RTP timestamp units since the event's timestamp (§2.3.5)

    def __post_init__(self) -> None:
        if not 0 <= self.event <= 255:
            raise ValueError(f"event code out of range: {self.event}")
        if not 0 <= self.volume <= 63:
            raise ValueError(f"volume out of range 0-63: {self.volume}")
        if not 0 <= self.duration <= 0xFFFF:
            raise ValueError(f"duration out of range 0-65535: {self.duration}")

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        """Parse the first 4-byte block; the R bit is ignored as §2.3.3 requires."""
        if len(data) < _EVENT.size:
            raise ValueError(f"telephone-event payload too short: {len(data)} bytes")
        event, flags, duration = _EVENT.unpack_from(data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        return _EVENT.pack(self.event, (0x80 if self.end else 0) | self.volume, self.duration)


@dataclass(frozen=True, slots=True)
class EventPacket:
    """One telephone-event RTP packet to send ``offset_ms`` after the digit starts."""

    offset_ms: int
    marker: bool
    timestamp: int  # the event's start timestamp, the same in every packet of it (§2.5.1.1)
    event: TelephoneEvent

    @property
    def payload(self) -> bytes:
        return self.event.serialize()


class EventSender:
    """Builds the RFC 4733 packet schedule for one digit.

    §2.5.1.2: the first packet carries the marker bit; every ``update_ms`` a new packet with the
    same timestamp reports the duration so far. §2.5.1.4: the final packet, E bit set, "SHOULD
    be sent a total of three times at the interval used by the source for updates".
    Events longer than the 16-bit duration field (§2.5.1.3 segments) are refused.
    """

    def __init__(
        self, clock_rate: int = 8000, update_ms: int = 50, volume: int = 10, end_repeats: int = 3
    ) -> None:
        if update_ms <= 0 or end_repeats <= 0:
            raise ValueError("update_ms and end_repeats must be positive")
        self.clock_rate = clock_rate
        self.update_ms = update_ms
        self.volume = volume
        self.end_repeats = end_repeats

    def packets(self, digit: str, duration_ms: int, timestamp: int) -> list[EventPacket]:
        """Packets for ``digit`` held ``duration_ms``, starting at RTP ``timestamp``."""
        code = digit_to_event(digit)
        total = duration_ms * self.clock_rate // 1000
        step = self.update_ms * self.clock_rate // 1000
        if not 0 < total <= 0xFFFF:
            raise ValueError(f"duration {duration_ms} ms does not fit one event (RFC 4733 §2.3.5)")
        out: list[EventPacket] = []
        while (len(out) + 1) * step < total:
            update = TelephoneEvent(code, False, self.volume, (len(out) + 1) * step)
            out.append(EventPacket(len(out) * self.update_ms, not out, timestamp, update))
        final = TelephoneEvent(code, True, self.volume, total)
        for _ in range(self.end_repeats):
            out.append(EventPacket(len(out) * self.update_ms, not out, timestamp, final))
        return out


class Phase(Enum):
    BEGIN = "begin"
    END = "end"


@dataclass(frozen=True, slots=True)
class DigitEvent:
    """A digit starting or ending, as reported by :class:`EventReceiver`."""

    digit: str
    phase: Phase
    timestamp: int
    duration: int  # RTP timestamp units known so far (final on END)
    volume: int


@dataclass(slots=True)
class _Active:
    timestamp: int
    digit: str
    duration: int
    volume: int

    def report(self, phase: Phase) -> DigitEvent:
        return DigitEvent(self.digit, phase, self.timestamp, self.duration, self.volume)


class EventReceiver:
    """Turns telephone-event packets into one BEGIN and one END per digit, keyed by timestamp.

    RFC 4733 §2.5.2: packets of one event share its RTP timestamp, so the timestamp identifies
    the event. Any packet of a new timestamp begins a digit (the marked first packet may be
    lost); the E bit ends it; the repeated final packets, network duplicates and stragglers of
    finished or older events are dropped. If every final packet is lost, the next event or
    :meth:`flush` ends the digit. Feed it one SSRC's packets; call :meth:`flush` on a change.
    """

    def __init__(self, remember: int = 16) -> None:
        self._current: _Active | None = None
        self._finished: deque[int] = deque(maxlen=remember)

    def feed(self, timestamp: int, payload: bytes) -> list[DigitEvent]:
        """Process one packet's RTP timestamp and payload; returns what it changed."""
        event = TelephoneEvent.parse(payload)
        if timestamp in self._finished or event.event >= len(EVENT_CHARS):
            return []
        current = self._current
        if current is not None and current.timestamp == timestamp:
            current.duration = max(current.duration, event.duration)
            return self._end() if event.end else []
        if self._is_stale(timestamp):
            log.debug("dropping telephone-event of an older event (ts=%d)", timestamp)
            return []
        out = self._end() if current is not None else []
        digit = event_to_digit(event.event)
        self._current = _Active(timestamp, digit, event.duration, event.volume)
        out.append(self._current.report(Phase.BEGIN))
        return out + (self._end() if event.end else [])

    def flush(self) -> list[DigitEvent]:
        """End the digit in progress, if any (stream stopped, SSRC changed, timeout)."""
        return self._end() if self._current is not None else []

    def _is_stale(self, timestamp: int) -> bool:
        newest = self._current.timestamp if self._current else None
        if newest is None and self._finished:
            newest = self._finished[-1]
        return newest is not None and uint32_gt(newest, timestamp)

    def _end(self) -> list[DigitEvent]:
        assert self._current is not None
        ended, self._current = self._current, None
        self._finished.append(ended.timestamp)
        return [ended.report(Phase.END)]


# --- SIP INFO bodies -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InfoDigit:
    """The digit carried by a SIP INFO body; ``duration_ms`` is None when not given."""

    digit: str
    duration_ms: int | None = None


def _signal_to_digit(value: str) -> str:
    value = value.strip()
    if value.isdigit() and len(value) > 1:  # some phones send event codes: "10" = *, "11" = #
        return event_to_digit(int(value))
    digit_to_event(value)
    return value.upper()


def parse_info_body(content_type: str, body: bytes | str) -> InfoDigit:
    """Parse an INFO body of ``application/dtmf-relay`` or ``application/dtmf``.

    dtmf-relay is ``Signal=5\\r\\nDuration=160\\r\\n`` (Duration in milliseconds); LF-only lines,
    spaces around ``=`` and any key case are accepted. application/dtmf is the digit alone.
    """
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == DTMF:
        return InfoDigit(_signal_to_digit(text))
    if kind != DTMF_RELAY:
        raise ValueError(f"not a DTMF INFO content type: {content_type!r}")
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            fields[key.strip().lower()] = value.strip()
    if "signal" not in fields:
        raise ValueError("dtmf-relay body has no Signal line")
    duration = fields.get("duration", "")
    return InfoDigit(
        _signal_to_digit(fields["signal"]), int(duration) if duration.isdigit() else None
    )


def format_info_body(content_type: str, digit: str, duration_ms: int = 160) -> bytes:
    """An INFO body announcing ``digit`` in the given content type."""
    digit_to_event(digit)
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind == DTMF:
        return digit.upper().encode()
    if kind == DTMF_RELAY:
        return f"Signal={digit.upper()}\r\nDuration={duration_ms}\r\n".encode()
    raise ValueError(f"not a DTMF INFO content type: {content_type!r}")


# --- in-band tones (ITU-T Q.23 frequencies, Q.24 reception checks) -------------------------

ROW_FREQS = (697.0, 770.0, 852.0, 941.0)  # low group, Hz (Q.23 §2)
COL_FREQS = (1209.0, 1336.0, 1477.0, 1633.0)  # high group, Hz
KEYPAD = ("123A", "456B", "789C", "*0#D")
TONES = {
    key: (ROW_FREQS[r], COL_FREQS[c]) for r, keys in enumerate(KEYPAD) for c, key in enumerate(keys)
}
DBM0_PEAK = 22_700  # int16 peak of a 0 dBm0 sine (+3.17 dBm0 is the G.711 overload point)
BLOCK_MS = 12.75  # 102 samples at 8 kHz: bins ~78 Hz apart, short enough for 40 ms tones


def level_to_amplitude(dbm0: float) -> float:
    """Peak int16 amplitude of a sine at ``dbm0``."""
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def goertzel_power(x: Sequence[int], freq: float, sample_rate: int) -> float:
    """|X(f)|² of ``x`` at ``freq`` by the Goertzel recurrence (a single-bin DFT)."""
    coeff = 2 * math.cos(2 * math.pi * freq / sample_rate)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _ratio(db: float) -> float:
    return 10 ** (db / 10)


class DtmfDetector:
    """Finds DTMF digits in int16 PCM; each press is reported once.

    Audio is analysed in windows of ``BLOCK_MS`` (102 samples at 8 kHz) that start every half
    window. A window is a hit for a digit when the strongest row and column each reach
    ``min_level_dbm0``, stand ``min_peak_db`` above the rest of their group, differ by no more
    than the twist limits, and together hold ``min_fraction`` of the window's energy (which
    rejects speech and noise). ``hits`` consecutive hit windows report the digit: with the
    defaults a tone of 38 ms or more always counts and one of 26 ms or less never does (Q.24
    asks for 40 ms accepted). ``releases`` windows of anything else re-arm it, so a short
    dropout inside a long tone does not report it twice.
    """

    def __init__(
        self,
        sample_rate: int = 8000,
        min_level_dbm0: float = -30.0,
        max_low_over_high_db: float = 8.0,
        max_high_over_low_db: float = 4.0,
        min_peak_db: float = 6.0,
        min_fraction: float = 0.5,
        hits: int = 5,
        releases: int = 4,
    ) -> None:
        self.sample_rate = sample_rate
        self.block = round(sample_rate * BLOCK_MS / 1000)
        self.hop = self.block // 2
        self._min_power = (level_to_amplitude(min_level_dbm0) * self.block / 2) ** 2
        self._twist = (_ratio(max_low_over_high_db), _ratio(max_high_over_low_db))
        self._peak = _ratio(min_peak_db)
        self._min_fraction = min_fraction
        self._hits, self._releases = hits, releases
        self._pending = bytearray()
        self._last: str | None = None
        self._run = 0
        self._pressed: str | None = None

    def feed(self, pcm: bytes) -> list[str]:
        """Add PCM (any length) and return the digits newly recognised in it."""
        self._pending += pcm
        size = self.block * 2
        out: list[str] = []
        while len(self._pending) >= size:
            x = array.array("h")
            x.frombytes(self._pending[:size])
            del self._pending[: self.hop * 2]
            out += self._debounce(self.classify(x))
        return out

    def classify(self, x: Sequence[int]) -> str | None:
        """The digit this one block is a hit for, or None."""
        energy = math.fsum(v * v for v in x)
        if energy * len(x) / 2 < 2 * self._min_power:  # too quiet to hold two tones
            return None
        rows = [goertzel_power(x, f, self.sample_rate) for f in ROW_FREQS]
        r = _best(rows, self._peak)
        if r is None:
            return None
        cols = [goertzel_power(x, f, self.sample_rate) for f in COL_FREQS]
        c = _best(cols, self._peak)
        if c is None:
            return None
        row, col = rows[r], cols[c]
        if min(row, col) < self._min_power:
            return None
        if row > col * self._twist[0] or col > row * self._twist[1]:
            return None
        if 2 * (row + col) < self._min_fraction * len(x) * energy:
            return None
        return KEYPAD[r][c]

    def _debounce(self, hit: str | None) -> list[str]:
        self._run = self._run + 1 if hit == self._last else 1
        self._last = hit
        if hit is not None and hit != self._pressed and self._run >= self._hits:
            self._pressed = hit
            return [hit]
        if hit != self._pressed and self._run >= self._releases:
            self._pressed = None
        return []


def _best(powers: list[float], peak: float) -> int | None:
    """Index of the strongest power if it beats every other by ``peak`` times, else None."""
    best = max(range(len(powers)), key=powers.__getitem__)
    others = [p for i, p in enumerate(powers) if i != best]
    return best if all(powers[best] >= peak * p for p in others) else None


def dtmf_tone(
    digit: str, duration_ms: int = 100, amplitude: float = 7000.0, sample_rate: int = 8000
) -> bytes:
    """int16 PCM of ``digit``'s Q.23 row + column tones, each of peak ``amplitude``.

    The default 7000 is about -10 dBm0 per tone; the sum peaks below 2 × ``amplitude``.
    """
    digit_to_event(digit)
    if digit.upper() not in TONES:
        raise ValueError(f"{digit!r} has no in-band tone")
    low, high = TONES[digit.upper()]
    wl, wh = 2 * math.pi * low / sample_rate, 2 * math.pi * high / sample_rate
    count = sample_rate * duration_ms // 1000
    samples = (amplitude * (math.sin(wl * n) + math.sin(wh * n)) for n in range(count))
    return array.array("h", (max(-32768, min(32767, round(s))) for s in samples)).tobytes()


def dtmf_sequence(
    digits: str,
    tone_ms: int = 100,
    gap_ms: int = 60,
    amplitude: float = 7000.0,
    sample_rate: int = 8000,
) -> bytes:
    """Tones for each of ``digits`` separated by ``gap_ms`` of silence (and one at the end)."""
    gap = bytes(2 * (sample_rate * gap_ms // 1000))
    return b"".join(dtmf_tone(d, tone_ms, amplitude, sample_rate) + gap for d in digits)
