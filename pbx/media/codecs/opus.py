"""Opus encoder and decoder, wrapping ``opuslib`` (ctypes binding of the system libopus0).

Owns: the Opus codec objects. RTP facts (RFC 7587): encoding name "opus", dynamic payload
type, always written ``opus/48000/2`` in SDP and always a 48000 Hz RTP clock (§4.1, §7) no
matter the rate the audio is coded or decoded at. We send mono (the "stereo" fmtp parameter
is only a receiver preference, §6.1); a mono decoder also plays a stereo stream (downmixed by
libopus). libopus codes and decodes at 8, 12, 16, 24 or 48 kHz natively, so a bridge to
G.711 can ask for 8 kHz PCM and skip the resampler.

Packet loss: :meth:`OpusDecoder.decode_missing` runs libopus PLC (``opus_decode`` with no
data); :meth:`OpusDecoder.decode_fec` rebuilds a lost frame from the in-band FEC carried by
the next packet (RFC 7587 §3.3) when the sender enabled it.

fmtp (RFC 7587 §6.1) applied to the encoder: ``maxaveragebitrate``, ``useinbandfec``,
``cbr``. Others are ignored for now.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Mapping

import opuslib
import opuslib.api.ctl
import opuslib.api.decoder
import opuslib.api.encoder
import opuslib.exceptions

from .base import SAMPLE_WIDTH, check_pcm, frame_samples_for

log = logging.getLogger(__name__)

NAME = "opus"
CLOCK_RATE = 48000  # RFC 7587 §4.1
SDP_CHANNELS = 2  # RFC 7587 §7: the rtpmap always says opus/48000/2
SAMPLE_RATES = (48000, 24000, 16000, 12000, 8000)
FRAME_DURATIONS_US = (2500, 5000, 10000, 20000, 40000, 60000)  # what libopus accepts
MAX_PACKET_MS = 120  # RFC 6716 §3.2.5: one packet carries at most 120 ms
MIN_BITRATE, MAX_BITRATE = 6000, 510000  # RFC 7587 §6.1 maxaveragebitrate range


def _check_rate(sample_rate: int) -> None:
    if sample_rate not in SAMPLE_RATES:
        raise ValueError(f"Opus PCM rate must be one of {SAMPLE_RATES}, not {sample_rate}")


COMPLEXITY = 5  # libopus encoder complexity, 0-10


class OpusEncoder:
    """Mono PCM (int16 at ``sample_rate``) to Opus packets, one packet per call."""

    name = NAME
    clock_rate = CLOCK_RATE

    def __init__(
        self,
        sample_rate: int = 48000,
        fmtp: Mapping[str, str] | None = None,
        application: str = "voip",
    ) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples_for(sample_rate)
        self._valid_sizes = {sample_rate * us // 1_000_000 for us in FRAME_DURATIONS_US}
        self._codec = opuslib.Encoder(sample_rate, 1, application)
        # libopus defaults to complexity 10 (~230 µs per 20 ms frame here); 5 costs ~140 µs
        # and is the usual VoIP choice: speech quality differs little, transcoding capacity a lot
        self._codec.complexity = COMPLEXITY
        self._apply_fmtp(fmtp or {})

    def _apply_fmtp(self, fmtp: Mapping[str, str]) -> None:
        bitrate = fmtp.get("maxaveragebitrate")
        if bitrate is not None and bitrate.isdigit():
            self._codec.bitrate = min(max(int(bitrate), MIN_BITRATE), MAX_BITRATE)
        if fmtp.get("useinbandfec") == "1":
            # opuslib 3.0.1's ``inband_fec`` setter drops its argument: call the CTL directly
            set_fec = opuslib.api.ctl.set_inband_fec
            opuslib.api.encoder.encoder_ctl(self._codec.encoder_state, set_fec, 1)
            self._codec.packet_loss_perc = 10
        if fmtp.get("cbr") == "1":
            self._codec.vbr = 0

    def encode(self, pcm: bytes) -> bytes:
        """Encode 2.5, 5, 10, 20, 40 or 60 ms of PCM into one Opus packet."""
        check_pcm(pcm)
        samples = len(pcm) // SAMPLE_WIDTH
        if samples not in self._valid_sizes:
            raise ValueError(f"Opus cannot code {samples} samples at {self.sample_rate} Hz")
        packet: bytes = self._codec.encode(pcm, samples)
        return packet


class OpusDecoder:
    """Opus packets to mono PCM at ``sample_rate``; libopus PLC and FEC for lost packets."""

    name = NAME
    clock_rate = CLOCK_RATE

    def __init__(self, sample_rate: int = 48000) -> None:
        _check_rate(sample_rate)
        self.sample_rate = sample_rate
        self.frame_samples = frame_samples_for(sample_rate)
        self._max_samples = sample_rate * MAX_PACKET_MS // 1000
        self._last_samples = self.frame_samples
        self._codec = opuslib.Decoder(sample_rate, 1)
        # opuslib's own decode() copies samples through a Python list; decoding into one
        # reused ctypes buffer with libopus's opus_decode is about five times faster.
        self._buffer = (ctypes.c_int16 * self._max_samples)()
        self._pointer = ctypes.cast(self._buffer, opuslib.api.c_int16_pointer)

    def _decode(self, data: bytes | None, samples: int, fec: bool = False) -> bytes:
        state = self._codec.decoder_state
        size = len(data) if data else 0
        count: int = opuslib.api.decoder.libopus_decode(
            state, data, size, self._pointer, samples, int(fec)
        )
        if count < 0:
            raise ValueError(f"Opus decoder error: {opuslib.exceptions.OpusError(count)}")
        return ctypes.string_at(self._buffer, count * SAMPLE_WIDTH)

    def decode(self, payload: bytes) -> bytes:
        if not payload:
            raise ValueError("empty Opus payload")
        pcm = self._decode(payload, self._max_samples)
        self._last_samples = len(pcm) // SAMPLE_WIDTH
        return pcm

    def decode_missing(self) -> bytes:
        """libopus packet loss concealment for one packet of the last seen duration."""
        return self._decode(None, self._last_samples)

    def decode_fec(self, next_payload: bytes) -> bytes:
        """Rebuild the lost packet that precedes ``next_payload`` from its in-band FEC.

        Call it for the gap, then :meth:`decode` ``next_payload`` itself as usual. Without FEC
        data in the packet libopus falls back to concealment.
        """
        return self._decode(next_payload, self._last_samples, fec=True)
