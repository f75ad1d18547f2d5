"""Transcoding and DTMF interworking between the two media legs of a call.

Owns: :class:`TranscodingBridge` (per direction: RTP in, jitter buffer, decode or conceal,
DTMF in its three forms, encode, RTP out with pbx's own SSRC) and :class:`PlayoutClock`, the
one 20 ms clock that plays out every bridge of a reactor. Used when the two legs do not share
a codec (see :func:`pbx.calls.negotiate.plan`), and mid-call when a digit must reach a phone
without telephone-event in-band; calls that share everything are relayed untouched by
:mod:`pbx.media.relay` instead.

The bridge sits on the relay sockets' ``tap`` hooks (the plain packet from a phone comes to
the bridge instead of the peer relay) and sends with :meth:`RelaySocket.send`, so SRTP
(``unwrap``/``wrap``) composes with it. :meth:`TranscodingBridge.stop` removes the taps, so a
call bridged for relay goes back to it.

Per direction, on each tick: pop packets from the :class:`~pbx.media.jitter.JitterBuffer`
until 20 ms of PCM is decoded (a gap is concealed with ``decode_missing``), then substitute a
DTMF tone if one is due, rechunk to the receiver's ptime, encode, and send with our SSRC,
sequence and timestamp (RFC 3550 §5.1: random initial values; marker bit on the first packet
and after silence, RFC 3551 §4.1). Both sides decode and encode at a PCM rate both codecs
support (8 kHz for anything with G.711), so no resampler runs on the usual paths.

DTMF (RFC 4733, SIP INFO, in-band): events from a side are turned into digits by
:class:`~pbx.media.dtmf.EventReceiver` and reported when they END, so each digit counts once
with its real duration (repeated end packets are dropped by the receiver). A digit goes to the
other side as RFC 4733 (:class:`~pbx.media.dtmf.EventSender`, audio suppressed meanwhile) when
it negotiated telephone-event, else as an in-band tone substituted for its audio, or to
:attr:`TranscodingBridge.on_info` once :meth:`~TranscodingBridge.deliver_as_info` was called
for it. Audio from a side without telephone-event runs through
:class:`~pbx.media.dtmf.DtmfDetector`; when its digits leave as events or INFO, that audio is
delayed by :data:`DETECT_DELAY_FRAMES` and muted while the tone lasts, so the far end does not
get the digit twice.

RTCP: the two legs' SSRCs differ, so relaying reports across would describe a stream the far
phone never saw. They are dropped (counted); pbx sends no RTCP of its own yet.

Must not import: pbx.calls (formats are taken by shape, see :class:`Format`), pbx.store.
"""

from __future__ import annotations

import logging
import random
import struct
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Protocol

from twisted.internet import task

from pbx.media.codecs import CODECS, UnsupportedCodec, get_decoder, get_encoder
from pbx.media.codecs.resample import Rechunker, Resampler
from pbx.media.dtmf import (
    DtmfDetector,
    EventPacket,
    EventReceiver,
    EventSender,
    Phase,
    digit_to_event,
    dtmf_tone,
)
from pbx.media.jitter import JitterBuffer
from pbx.media.relay import MediaLeg
from pbx.media.rtp import RtpPacket, peek_header

log = logging.getLogger(__name__)

TICK_MS = 20
SIDES = ("A", "B")
PREFETCH = 3  # packets buffered before playout starts: 60 ms of jitter absorbed
DRIFT_SLACK = 4  # more packets held than prefetch + this: drop one (sender clock is faster)
MAX_CATCHUP = 5  # ticks run back to back after the reactor was late; older ones are lost
EVENT_TIMEOUT_TICKS = 50  # a telephone-event with no packet for 1 s has ended (lost E bits)
EVENT_UPDATE_MS = TICK_MS  # RFC 4733 §2.5.1.2 update interval of the events we send
EVENT_GAP_TICKS = 2  # pause between two events we send
MIN_EVENT_MS, MAX_EVENT_MS = 40, 8000  # 8000 ms fits the 16-bit duration at 8 kHz
MIN_TONE_MS, TONE_GAP_MS = 80, 80  # in-band: long enough for any Q.24 receiver to re-arm
DETECTED_DIGIT_MS = 100  # duration announced for a digit found in-band
DETECT_DELAY_FRAMES = 3  # audio held back so a tone found by the detector can be muted whole
OPUS_PTIMES = (10, 20, 40, 60)

_RTP_HEADER = struct.Struct("!BBHII")


class Format(Protocol):
    """A side's stream format; :class:`pbx.calls.negotiate.StreamFormat` fits."""

    @property
    def codec(self) -> str: ...
    @property
    def payload_type(self) -> int: ...
    @property
    def clock_rate(self) -> int: ...
    @property
    def fmtp(self) -> Mapping[str, str]: ...
    @property
    def ptime(self) -> int: ...
    @property
    def telephone_event(self) -> int | None: ...
    @property
    def telephone_event_rate(self) -> int: ...


@dataclass(slots=True)
class DirectionStats:
    """Counters of one direction, named after the side the media comes from."""

    packets_in: int = 0  # RTP packets taken from this side's phone
    packets_out: int = 0  # RTP packets sent to the other phone (audio and events)
    concealed: int = 0  # frames played by packet loss concealment
    dropped: int = 0  # packets of an unexpected type, malformed, or dropped for drift
    digits: int = 0  # DTMF digits seen from this side
    rtcp_dropped: int = 0  # RTCP packets from this side not relayed

    def __str__(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self))


@dataclass(slots=True)
class _Frame:
    """What the jitter buffer holds (its ``Packet`` protocol)."""

    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes


def _payload(data: bytes) -> bytes:
    if data[0] & 0x3F == 0:  # no padding, no extension, no CSRC: the common case
        return data[12:]
    return RtpPacket.parse(data).payload


def _common_rate(decode_name: str, encode_name: str) -> tuple[int, int]:
    """(decoder PCM rate, encoder PCM rate): the highest rate both support, to skip resampling."""
    infos = [CODECS.get(name) for name in (decode_name, encode_name)]
    if infos[0] is None or infos[1] is None:
        raise UnsupportedCodec(f"cannot transcode {decode_name} <-> {encode_name}")
    dec, enc = infos[0].sample_rates, infos[1].sample_rates
    shared = [rate for rate in dec if rate in enc]
    if shared:
        return max(shared), max(shared)
    return dec[0], enc[0]


class Tickable(Protocol):
    """What the clock plays out: a bridge or an endpoint (pbx.media.endpoint)."""

    def tick(self) -> None: ...

    def stop(self) -> None: ...


class PlayoutClock:
    """One LoopingCall every 20 ms that plays out every registered bridge.

    One clock for all bridges keeps the reactor's timer heap small and the ticks of all calls
    together (one wake-up per 20 ms, not one per call). A late reactor runs the missed ticks
    back to back (at most :data:`MAX_CATCHUP`), counted in ``late_ticks`` (a tick is late when
    the next one is already due: more than half an interval behind).
    """

    def __init__(
        self, reactor: Any, interval: float = TICK_MS / 1000, record_lag: bool = False
    ) -> None:
        self.interval = interval
        self.ticks = 0
        self.late_ticks = 0
        self.lost_ticks = 0
        self.lags: list[float] | None = [] if record_lag else None  # s behind schedule per run
        self._reactor = reactor
        self._intervals = 0
        self._bridges: dict[int, Tickable] = {}
        self._loop = task.LoopingCall(self._run)
        self._loop.clock = reactor

    def __len__(self) -> int:
        return len(self._bridges)

    def add(self, bridge: Tickable) -> None:
        self._bridges[id(bridge)] = bridge
        if not self._loop.running:
            self._intervals = 0
            self._loop.start(self.interval, now=False)

    def discard(self, bridge: Tickable) -> None:
        self._bridges.pop(id(bridge), None)
        if not self._bridges and self._loop.running:
            self._loop.stop()

    def _run(self) -> None:
        # Ticks owed are counted from the wall clock, not LoopingCall.withCount: a timer that
        # fires a hair early must not look like a skipped interval followed by a double one.
        assert self._loop.starttime is not None
        elapsed = (self._reactor.seconds() - self._loop.starttime) / self.interval
        owed = int(elapsed + 0.5) - self._intervals
        if owed <= 0:
            return
        if self.lags is not None:
            self.lags.append((elapsed - self._intervals - 1) * self.interval)
        self._intervals += owed
        if owed > 1:
            self.late_ticks += owed - 1
            self.lost_ticks += max(0, owed - MAX_CATCHUP)
        for _ in range(min(owed, MAX_CATCHUP)):
            self.ticks += 1
            for bridge in list(self._bridges.values()):
                try:
                    bridge.tick()
                except Exception:  # one broken call must not stop every other call's audio
                    log.exception("transcoding bridge failed: stopped")
                    bridge.stop()


_shared_clocks: dict[int, PlayoutClock] = {}


def shared_clock(reactor: Any = None) -> PlayoutClock:
    """The reactor's one :class:`PlayoutClock` (the global reactor when none is given)."""
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    clock = _shared_clocks.get(id(reactor))
    if clock is None:
        clock = _shared_clocks[id(reactor)] = PlayoutClock(reactor)
    return clock


class InboundStream:
    """RTP from one phone: reorder, decode or conceal, and read DTMF (events or tones)."""

    def __init__(self, fmt: Format, rate: int, stats: DirectionStats, prefetch: int) -> None:
        self.fmt = fmt
        self.stats = stats
        self.decoder = get_decoder(fmt.codec, fmt.fmtp, sample_rate=rate)
        ticks = fmt.clock_rate * fmt.ptime // 1000
        self.buffer = JitterBuffer(prefetch=prefetch, ticks_per_packet=ticks)
        self._prefetch = prefetch
        self._need = rate * TICK_MS // 1000 * 2
        self._pcm = bytearray()
        self.events = EventReceiver()
        self._event_ssrc: int | None = None
        self._event_idle = 0
        self._ticks = 0  # playout ticks so far, to check event durations against
        self._event_began = 0  # tick the current event began at
        self.detector: DtmfDetector | None = None
        self._to_8k: Resampler | None = None
        self.narrowband = b""  # the last frame given to the detector, at 8 kHz
        if fmt.telephone_event is None:
            self.detector = DtmfDetector()
            self._to_8k = Resampler(rate, 8000) if rate != 8000 else None

    def receive(self, data: bytes) -> list[tuple[str, int]]:
        """Take one packet; returns the digits (with ms durations) whose events it ended."""
        try:
            pt, _, sequence, timestamp, ssrc = peek_header(data)
            payload = _payload(data)
        except ValueError:
            self.stats.dropped += 1
            return []
        self.stats.packets_in += 1
        if pt == self.fmt.payload_type and payload:
            self.buffer.add(_Frame(sequence, timestamp, ssrc, payload))
            return []
        if pt == self.fmt.telephone_event and self.fmt.telephone_event is not None:
            return self._event(ssrc, timestamp, payload)
        self.stats.dropped += 1  # comfort noise, a codec we did not pick, garbage
        return []

    def _event(self, ssrc: int, timestamp: int, payload: bytes) -> list[tuple[str, int]]:
        ended = []
        if ssrc != self._event_ssrc:
            ended = self.events.flush()  # RFC 4733 §2.5.2: one receiver per source
            self._event_ssrc = ssrc
        self._event_idle = 0
        try:
            ended += self.events.feed(timestamp, payload)
        except ValueError:
            self.stats.dropped += 1
        return self._digits(ended)

    def _digits(self, events: list[Any]) -> list[tuple[str, int]]:
        """END events as (digit, ms). The duration is bounded by the time the event's packets
        really took: some phones count it in their audio clock (baresip with Opus: 48 kHz
        units under telephone-event/8000), which would stretch every digit six times."""
        rate = self.fmt.telephone_event_rate
        out = []
        for event in events:
            if event.phase is Phase.BEGIN:
                self._event_began = self._ticks
                continue
            seen_ms = (self._ticks - self._event_began) * TICK_MS + 100  # + jitter
            out.append((event.digit, min(event.duration * 1000 // rate, seen_ms)))
        return out

    def idle(self) -> list[tuple[str, int]]:
        """Called every tick: ends an event whose end packets were all lost."""
        self._ticks += 1
        self._event_idle += 1
        if self._event_idle == EVENT_TIMEOUT_TICKS:
            return self._digits(self.events.flush())
        return []

    def next_pcm(self) -> bytes | None:
        """20 ms of decoded PCM, or None while nothing is playing (buffering, silence)."""
        buf = self._pcm
        while len(buf) < self._need:
            playout = self.buffer.pop()
            if playout is None:
                return None
            buf += self._decode(playout.packet)
        if self.buffer.held > self._prefetch + DRIFT_SLACK:
            playout = self.buffer.pop()  # the sender's clock runs fast: skip one packet
            if playout is not None:
                self._decode(playout.packet)
                self.stats.dropped += 1
        out = bytes(buf[: self._need])
        del buf[: self._need]
        return out

    def _decode(self, packet: Any) -> bytes:
        if packet is not None:
            try:
                return self.decoder.decode(packet.payload)
            except ValueError:
                self.stats.dropped += 1
        self.stats.concealed += 1
        return self.decoder.decode_missing()

    def detect(self, pcm: bytes) -> list[str]:
        """Run the in-band detector over this frame (kept at 8 kHz in ``narrowband``)."""
        assert self.detector is not None
        self.narrowband = self._to_8k.convert(pcm) if self._to_8k is not None else pcm
        return self.detector.feed(self.narrowband)


class OutboundStream:
    """RTP to one phone: our SSRC, sequence and timestamps; audio, events and tones."""

    def __init__(self, fmt: Format, rate: int, leg: MediaLeg, stats: DirectionStats) -> None:
        self.fmt = fmt
        self.leg = leg
        self.stats = stats
        self.rate = rate
        self.encoder = get_encoder(fmt.codec, fmt.fmtp, sample_rate=rate)
        ptime = fmt.ptime if 10 <= fmt.ptime <= 60 else TICK_MS
        if fmt.codec == "opus" and ptime not in OPUS_PTIMES:
            ptime = TICK_MS
        self.rechunker = Rechunker(rate * ptime // 1000)
        self.frame_ticks = fmt.clock_rate * ptime // 1000
        self.tick_ticks = fmt.clock_rate * TICK_MS // 1000
        self.ssrc = random.getrandbits(32)
        self.sequence = random.getrandbits(16)
        self.timestamp = random.getrandbits(32)
        self.marker = True  # first packet of the stream (RFC 3551 §4.1)
        self.info = False
        self.digits: deque[tuple[str, int]] = deque()
        self._sender = EventSender(fmt.telephone_event_rate, EVENT_UPDATE_MS)
        self._event: list[EventPacket] = []
        self._event_tick = 0
        self._pause = 0
        self._tone = bytearray()

    def queue_digit(self, digit: str, duration_ms: int) -> None:
        """Play ``digit`` to this phone: as RFC 4733 when it has telephone-event, else a tone."""
        if self.fmt.telephone_event is not None:
            self.digits.append((digit, max(MIN_EVENT_MS, min(duration_ms, MAX_EVENT_MS))))
            return
        tone_ms = max(MIN_TONE_MS, min(duration_ms, MAX_EVENT_MS))
        self._tone += dtmf_tone(digit, tone_ms, sample_rate=self.rate)
        self._tone += bytes(self.rate * TONE_GAP_MS // 1000 * 2)

    def tick(self, pcm: bytes | None) -> None:
        """Send what this 20 ms tick holds for the phone: an event, a tone or ``pcm``."""
        if self._event or self._pause or self.digits:
            self._events()
            return
        if self._tone:
            size = len(pcm) if pcm else self.rate * TICK_MS // 1000 * 2
            pcm = bytes(self._tone[:size]).ljust(size, b"\0")
            del self._tone[:size]
        if pcm is None:
            self._silence()
            return
        for frame in self.rechunker.push(pcm):
            self._send(self.fmt.payload_type, self.timestamp, self.encoder.encode(frame))
            self.timestamp = (self.timestamp + self.frame_ticks) & 0xFFFFFFFF

    def _silence(self) -> None:
        """Nothing to send this tick: time goes on, and the next packet starts a talkspurt."""
        pending = self.rechunker.pending_samples * self.fmt.clock_rate // self.rate
        if pending:
            self.rechunker = Rechunker(self.rechunker.frame_bytes // 2)
        self.timestamp = (self.timestamp + pending + self.tick_ticks) & 0xFFFFFFFF
        self.marker = True

    def _events(self) -> None:
        """RFC 4733 §2.5.1: one event at a time, packets due by now, audio suppressed."""
        if not self._event and not self._pause:
            digit, duration = self.digits.popleft()
            self._event = self._sender.packets(digit, duration, self.timestamp)
            self._event_tick = 0
        elapsed = self._event_tick * TICK_MS
        self._event_tick += 1
        te = self.fmt.telephone_event
        assert te is not None
        while self._event and self._event[0].offset_ms <= elapsed:
            packet = self._event.pop(0)
            self._send(te, packet.timestamp, packet.payload, packet.marker)
            if not self._event:
                self._pause = EVENT_GAP_TICKS + 1
        if self._pause:
            self._pause -= 1
        self._silence()

    def _send(self, pt: int, timestamp: int, payload: bytes, marker: bool | None = None) -> None:
        if marker is None:
            marker, self.marker = self.marker, False
        second = pt | 0x80 if marker else pt
        packet = _RTP_HEADER.pack(0x80, second, self.sequence, timestamp, self.ssrc) + payload
        self.sequence = (self.sequence + 1) & 0xFFFF
        self.leg.rtp.send(packet)
        self.stats.packets_out += 1


class _Mute:
    """Holds a side's audio back a few frames so a detected tone can be muted whole."""

    def __init__(self, inbound: InboundStream) -> None:
        self._inbound = inbound
        self._held: deque[bytes | None] = deque()
        self._quiet = 0  # frames without a tone since muting began; 2 ends it
        self.muting = False

    def push(self, pcm: bytes | None, detected: bool) -> bytes | None:
        if detected:
            self.muting = True
            self._quiet = 0
            self._held = deque(None if p is None else bytes(len(p)) for p in self._held)
        elif self.muting and pcm is not None:
            assert self._inbound.detector is not None
            block = self._inbound.narrowband[: self._inbound.detector.block * 2]
            samples = memoryview(block).cast("h").tolist()
            self._quiet = 0 if self._inbound.detector.classify(samples) else self._quiet + 1
            self.muting = self._quiet < 2
        if self.muting and pcm is not None:
            pcm = bytes(len(pcm))
        self._held.append(pcm)
        return self._held.popleft() if len(self._held) > DETECT_DELAY_FRAMES else None


class TranscodingBridge:
    """Media between leg ``a`` (the caller's phone, side "A") and ``b`` (the callee's, "B").

    ``on_digit(side_from, digit)`` hears every digit pbx sees from a side (RFC 4733 or
    in-band; not those given to :meth:`send_digit`); ``on_info(side_to, digit, duration_ms)``
    takes the digits for a side switched to SIP INFO with :meth:`deliver_as_info`.
    Raises :class:`pbx.media.codecs.UnsupportedCodec` for a codec pbx cannot transcode.
    """

    def __init__(
        self,
        a: MediaLeg,
        b: MediaLeg,
        a_format: Format,
        b_format: Format,
        *,
        reactor: Any = None,
        clock: PlayoutClock | None = None,
        prefetch: int = PREFETCH,
    ) -> None:
        self.clock = clock if clock is not None else shared_clock(reactor)
        self.legs = {"A": a, "B": b}
        self.formats = {"A": a_format, "B": b_format}
        self.stats = {"A": DirectionStats(), "B": DirectionStats()}
        self.on_digit: Callable[[str, str], None] | None = None
        self.on_info: Callable[[str, str, int], None] | None = None
        self.running = False
        self._in: dict[str, InboundStream] = {}
        self._out: dict[str, OutboundStream] = {}
        self._resample: dict[str, Resampler | None] = {}
        self._mute: dict[str, _Mute | None] = {"A": None, "B": None}
        for src, dst in (("A", "B"), ("B", "A")):
            dec_rate, enc_rate = _common_rate(self.formats[src].codec, self.formats[dst].codec)
            self._in[src] = InboundStream(self.formats[src], dec_rate, self.stats[src], prefetch)
            self._out[dst] = OutboundStream(
                self.formats[dst], enc_rate, self.legs[dst], self.stats[src]
            )
            self._resample[src] = None if dec_rate == enc_rate else Resampler(dec_rate, enc_rate)
            self._update_mute(src)

    @staticmethod
    def other(side: str) -> str:
        return "B" if side == "A" else "A"

    def start(self) -> None:
        """Take both legs' packets (also legs that were relaying untouched) and play out."""
        if self.running:
            return
        self.running = True
        for side, leg in self.legs.items():
            leg.rtp.tap = self._rtp_tap(side)
            leg.rtcp.tap = self._rtcp_tap(side)
        self.clock.add(self)
        log.info(
            "transcoding %s/%s <-> %s/%s",
            self.formats["A"].codec,
            self.formats["A"].payload_type,
            self.formats["B"].codec,
            self.formats["B"].payload_type,
        )

    def stop(self) -> None:
        """Give the legs back to the relay (untouched relaying resumes if they are bridged)."""
        if not self.running:
            return
        self.running = False
        self.clock.discard(self)
        for leg in self.legs.values():
            leg.rtp.tap = None
            leg.rtcp.tap = None
        log.info("transcoding stopped: A: %s; B: %s", self.stats["A"], self.stats["B"])

    def send_digit(self, side: str, digit: str, duration_ms: int = 160) -> None:
        """Play ``digit`` (e.g. from a SIP INFO) to ``side``'s phone: RFC 4733 or in-band."""
        digit_to_event(digit)
        self._out[self._side(side)].queue_digit(digit.upper(), duration_ms)

    def deliver_as_info(self, side: str) -> None:
        """From now on digits for ``side`` go to :attr:`on_info` instead of its RTP."""
        self._out[self._side(side)].info = True
        self._update_mute(self.other(side))

    def _side(self, side: str) -> str:
        if side not in SIDES:
            raise ValueError(f"side must be 'A' or 'B', not {side!r}")
        return side

    def _update_mute(self, src: str) -> None:
        """Mute src's in-band tones when its digits leave as events or INFO (never twice)."""
        out = self._out[self.other(src)]
        inband_out = out.fmt.telephone_event is None and not out.info
        needed = self._in[src].detector is not None and not inband_out
        if needed and self._mute[src] is None:
            self._mute[src] = _Mute(self._in[src])
        elif not needed:
            self._mute[src] = None

    def _rtp_tap(self, side: str) -> Callable[[bytes], None]:
        inbound = self._in[side]

        def tap(data: bytes) -> None:
            for digit, duration in inbound.receive(data):
                self._digit_from(side, digit, duration)

        return tap

    def _rtcp_tap(self, side: str) -> Callable[[bytes], None]:
        stats = self.stats[side]

        def tap(data: bytes) -> None:
            stats.rtcp_dropped += 1

        return tap

    def _digit_from(self, src: str, digit: str, duration_ms: int, inband: bool = False) -> None:
        self.stats[src].digits += 1
        log.debug("digit %s from %s (%d ms)", digit, src, duration_ms)
        if self.on_digit is not None:
            self.on_digit(src, digit)
        dst = self.other(src)
        out = self._out[dst]
        if out.info:
            if self.on_info is not None:
                self.on_info(dst, digit, duration_ms)
            else:
                log.warning("digit %s for %s dropped: INFO delivery without on_info", digit, dst)
        elif not (inband and out.fmt.telephone_event is None):
            out.queue_digit(digit, duration_ms)  # an in-band tone to in-band passes as audio

    def tick(self) -> None:
        """One 20 ms playout step for both directions (called by the PlayoutClock)."""
        for src in SIDES:
            inbound = self._in[src]
            for digit, duration in inbound.idle():
                self._digit_from(src, digit, duration)
            pcm = inbound.next_pcm()
            found = inbound.detect(pcm) if pcm is not None and inbound.detector else []
            for digit in found:
                self._digit_from(src, digit, DETECTED_DIGIT_MS, inband=True)
            mute = self._mute[src]
            if mute is not None:
                pcm = mute.push(pcm, bool(found))
            resampler = self._resample[src]
            if pcm is not None and resampler is not None:
                pcm = resampler.convert(pcm)
            self._out[self.other(src)].tick(pcm)
