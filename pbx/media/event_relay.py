"""One direction of a relayed call whose phones share the audio codec but not telephone-event.

Owns :class:`EventRelay`. Audio packets pass untouched (the bytes the phone sent, one
``sendto``); only RFC 4733 telephone-event packets are changed:

- the receiving phone negotiated telephone-event under another payload type: the packet is
  relayed with that type (RFC 4733 §2.1: the type is bound per session, nothing else differs);
- the receiving phone has no telephone-event: each event packet becomes an audio packet of
  the same sequence number carrying that stretch of the digit's Q.23 tone pair, encoded in the
  call's codec (RFC 4733 §2.6: events replace the audio they stand for, so the sender's
  sequence has exactly one slot per event packet). Its timestamp is where that stretch lies in
  the event (event timestamp + duration - one packet). The repeated final packets of an event
  (§2.5.1.4) and duplicates carry no new audio and are dropped: the receiver sees a short gap.

Every digit is reported once to ``on_digit`` (features collect DTMF through it). This keeps
the common case (same codec, one phone without telephone-event) off the transcoding bridge:
per packet, one payload-type check in Python before the relay's own send.

Must not import: pbx.calls, pbx.store.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable

from pbx.media.codecs import get_encoder
from pbx.media.dtmf import EventReceiver, Phase, TelephoneEvent, dtmf_tone, event_to_digit
from pbx.media.relay import RelaySocket

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
TONE_SECONDS = 2  # tone samples made per digit; longer digits repeat them


class EventRelay:
    """The ``tap`` of ``source`` (a phone's RTP socket) relaying to ``target``'s phone."""

    def __init__(
        self,
        source: RelaySocket,
        target: RelaySocket,
        event_pt: int,
        target_event_pt: int | None,
        codec: str,
        audio_pt: int,
        clock_rate: int,
        ptime_ms: int = 20,
    ) -> None:
        self.source = source
        self.target = target
        self.event_pt = event_pt
        self.target_event_pt = target_event_pt
        self.audio_pt = audio_pt
        self.on_digit: Callable[[str], None] | None = None
        self._receiver = EventReceiver()
        self._encoder = None if target_event_pt is not None else get_encoder(codec)
        self._clock_rate = clock_rate
        self._ticks = clock_rate * ptime_ms // 1000
        self._tones: dict[str, bytes] = {}
        self._played: set[tuple[int, int]] = set()  # (event timestamp, duration) sent as audio
        self.events = 0
        self.tone_packets = 0

    def start(self) -> None:
        self.source.tap = self.tap

    def stop(self) -> None:
        if self.source.tap == self.tap:
            self.source.tap = None

    def tap(self, data: bytes) -> None:
        if len(data) < 12 or data[1] & 0x7F != self.event_pt:
            self.target.send(data)
            return
        first, second, sequence, timestamp, ssrc = _HEADER.unpack_from(data)
        offset = 12 + 4 * (first & 0x0F)
        if first & 0x10 and len(data) >= offset + 4:  # header extension (RFC 3550 §5.3.1)
            offset += 4 + 4 * int.from_bytes(data[offset + 2 : offset + 4], "big")
        payload = data[offset:]
        try:
            event = TelephoneEvent.parse(payload)
            changes = self._receiver.feed(timestamp, payload)
        except ValueError:
            return  # not a telephone-event payload: nothing to relay
        self.events += 1
        for change in changes:
            if change.phase is Phase.BEGIN and self.on_digit is not None:
                self.on_digit(change.digit)
        if self.target_event_pt is not None:
            self.target.send(data[:1] + bytes([(second & 0x80) | self.target_event_pt]) + data[2:])
            return
        self._send_tone(sequence, timestamp, ssrc, event)

    def _send_tone(self, sequence: int, timestamp: int, ssrc: int, event: TelephoneEvent) -> None:
        key = (timestamp, event.duration)
        if key in self._played or event.event > 15:
            return
        if len(self._played) > 64:
            self._played.clear()
        self._played.add(key)
        encoder = self._encoder
        assert encoder is not None
        digit = event_to_digit(event.event)
        start = max(0, event.duration - self._ticks)
        rate = encoder.sample_rate
        samples = self._ticks * rate // self._clock_rate
        first_sample = start * rate // self._clock_rate
        tone = self._tones.get(digit)
        if tone is None:
            tone = self._tones[digit] = dtmf_tone(digit, TONE_SECONDS * 1000, sample_rate=rate)
        begin = 2 * (first_sample % (len(tone) // 2 - samples))
        pcm = tone[begin : begin + 2 * samples]
        header = _HEADER.pack(
            0x80,
            self.audio_pt | (0x80 if start == 0 else 0),  # marker: a talkspurt begins
            sequence,
            (timestamp + start) & 0xFFFFFFFF,
            ssrc,
        )
        self.target.send(header + encoder.encode(pcm))
        self.tone_packets += 1
