"""Uploaded audio files to pbx's internal format, and internal-format WAV files to PCM.

Owns :func:`convert_upload` (an admin's MP3, WAV, FLAC or OGG file, as bytes, to an 8 kHz
mono 16-bit WAV file), :func:`read_wav_pcm`, :func:`pcm_to_wav` and :class:`AudioFileError`,
whose messages are meant to be shown to the user as they are.

Decoding is done by ``soundfile`` (libsndfile, bundled with MP3 support in its wheel): pbx
does not parse audio formats itself. Stereo (or more channels) is mixed down by averaging
the channels. Resampling to 8000 Hz is a numpy polyphase resampler (:class:`Resampler`): a
Kaiser-windowed sinc low-pass (cut-off 0.45 of the lower of the two rates, 3.6 kHz for
8 kHz output; 24 zero crossings each side; Kaiser beta 5.65, about 60 dB of stop-band
attenuation) evaluated at the exact rational phase of every output sample, streamed block by
block so a 30-minute 44.1 kHz stereo file never sits in memory whole. (``audioop.ratecv``,
which pbx.media.codecs.resample uses for live audio, interpolates linearly without an
anti-alias filter: fine for 20 ms frames of speech already band-limited, audibly aliased for
music.) The result is peak-limited: if its peak exceeds :data:`PEAK_LIMIT` (-1 dBFS), the
whole file is scaled down to it (never up), so nothing clips and the music keeps its
dynamics.

Limits: :data:`MAX_BYTES` (50 MB) of input and :data:`MAX_SECONDS` (30 minutes) of audio.
Everything here blocks (decoding a long file takes seconds): call it from a thread, never
from the reactor thread.

Must not import: twisted, pbx.calls, pbx.store, pbx.service, web.
"""

from __future__ import annotations

import io
import logging
import math
import wave
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile

from pbx.media.pcm import CHANNELS, RATE, SAMPLE_WIDTH

log = logging.getLogger(__name__)

MAX_BYTES = 50 * 1024 * 1024
MAX_SECONDS = 30 * 60
PEAK_LIMIT = 10 ** (-1 / 20)  # -1 dBFS
BLOCK_FRAMES = 1 << 16  # input frames decoded at a time
ZERO_CROSSINGS = 24  # of the sinc kernel, each side
KAISER_BETA = 5.65  # 0.1102 * (60 dB - 8.7): about 60 dB stop band
CUTOFF = 0.45  # of the lower rate: 3.6 kHz at 8 kHz

READABLE = "MP3, WAV, FLAC, OGG"


class AudioFileError(ValueError):
    """The file cannot be used; the message says why, in words for the user."""


class Resampler:
    """Streaming band-limited resampling of mono float samples from ``from_rate`` to
    ``to_rate`` (a polyphase bank of windowed-sinc filters, one per output phase)."""

    def __init__(self, from_rate: int, to_rate: int) -> None:
        if from_rate <= 0 or to_rate <= 0:
            raise ValueError("sample rates must be positive")
        ratio = Fraction(to_rate, from_rate)
        self.up, self.down = ratio.numerator, ratio.denominator  # output k sits at k*down/up
        cutoff = CUTOFF * min(from_rate, to_rate) / from_rate  # in cycles per input sample
        self.half = math.ceil(ZERO_CROSSINGS / (2 * cutoff))
        taps = np.arange(-self.half + 1, self.half + 1)  # input offsets around the position
        phases = np.arange(self.up) / self.up  # fractional position of each output phase
        delta = taps[np.newaxis, :] - phases[:, np.newaxis]  # input index - exact position
        # Kaiser window evaluated at the exact offsets (not only at whole samples)
        window = np.i0(KAISER_BETA * np.sqrt(np.clip(1 - (delta / self.half) ** 2, 0, 1)))
        kernel = np.sinc(2 * cutoff * delta) * window / np.i0(KAISER_BETA)
        self.bank = (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)
        self.offsets = taps
        self._buf = np.zeros(self.half, dtype=np.float32)  # zeros before the first sample
        self._base = -self.half  # input index of _buf[0]
        self._k = 0  # next output sample
        self._consumed = 0  # input samples pushed

    def push(self, x: np.ndarray) -> np.ndarray:
        """Take the next input samples; returns every output sample now computable."""
        self._consumed += len(x)
        self._buf = np.concatenate([self._buf, x.astype(np.float32, copy=False)])
        end = self._base + len(self._buf)  # first input index not yet here
        # output k needs inputs up to floor(k*down/up) + half
        last = ((end - self.half) * self.up - 1) // self.down  # highest k with window inside
        return self._run(last + 1)

    def flush(self) -> np.ndarray:
        """The remaining output (the stream's end padded with zeros)."""
        self._buf = np.concatenate([self._buf, np.zeros(self.half + 1, dtype=np.float32)])
        total = -(-self._consumed * self.up // self.down)  # ceil(consumed * to / from)
        return self._run(total)

    def _run(self, stop: int) -> np.ndarray:
        if stop <= self._k:
            return np.zeros(0, dtype=np.float32)
        k = np.arange(self._k, stop, dtype=np.int64)
        position = k * self.down
        centre, phase = position // self.up, position % self.up
        index = centre[:, np.newaxis] + self.offsets[np.newaxis, :] - self._base
        out = np.einsum("ij,ij->i", self._buf[index], self.bank[phase])
        self._k = stop
        keep_from = (stop * self.down) // self.up - self.half + 1 - self._base
        if keep_from > 0:
            self._buf = self._buf[keep_from:]
            self._base += keep_from
        return out.astype(np.float32, copy=False)


def _fail_unreadable(filename: str) -> AudioFileError:
    name = f'"{filename}"' if filename else "the file"
    return AudioFileError(f"{name} is not an audio file pbx can read ({READABLE})")


def _decode(data: bytes, filename: str) -> np.ndarray:
    """Mono float samples at 8000 Hz of the audio in ``data``."""
    try:
        source = soundfile.SoundFile(io.BytesIO(data))
    except (soundfile.SoundFileError, RuntimeError, TypeError, ValueError) as exc:
        log.info("upload %r not decoded: %s", filename, exc)
        raise _fail_unreadable(filename) from None
    with source:
        rate = source.samplerate
        if rate <= 0 or source.channels <= 0:
            raise _fail_unreadable(filename)
        if source.frames > MAX_SECONDS * rate:
            raise AudioFileError("the file is longer than 30 minutes")
        resampler = Resampler(rate, RATE) if rate != RATE else None
        parts: list[np.ndarray] = []
        frames = 0
        try:
            for block in source.blocks(BLOCK_FRAMES, dtype="float32", always_2d=True):
                frames += len(block)
                if frames > MAX_SECONDS * rate:
                    raise AudioFileError("the file is longer than 30 minutes")
                mono = block.mean(axis=1, dtype=np.float32)
                parts.append(resampler.push(mono) if resampler is not None else mono)
        except (soundfile.SoundFileError, RuntimeError) as exc:
            log.info("upload %r: decoding failed after %d frames: %s", filename, frames, exc)
            raise _fail_unreadable(filename) from None
        if resampler is not None:
            parts.append(resampler.flush())
    if frames == 0:
        raise AudioFileError("the file is empty: it contains no audio")
    return np.concatenate(parts)


def _to_int16(samples: np.ndarray) -> bytes:
    peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
    gain = PEAK_LIMIT / peak if peak > PEAK_LIMIT else 1.0
    scaled = np.rint(samples * (gain * 32767.0))
    return np.clip(scaled, -32768, 32767).astype("<i2").tobytes()


def pcm_to_wav(pcm: bytes) -> bytes:
    """Internal-format PCM as the bytes of a WAV file."""
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return out.getvalue()


def convert_upload(data: bytes, filename: str = "") -> bytes:
    """An uploaded audio file (MP3, WAV, FLAC, OGG, ...) as an 8 kHz mono 16-bit WAV file.

    Raises :class:`AudioFileError` with a message for the user when the file is empty,
    larger than 50 MB, longer than 30 minutes or not audio pbx can decode.
    """
    if not data:
        raise AudioFileError("the file is empty")
    if len(data) > MAX_BYTES:
        raise AudioFileError("the file is larger than 50 MB")
    samples = _decode(data, filename)
    log.info("upload %r converted: %.1f s", filename, len(samples) / RATE)
    return pcm_to_wav(_to_int16(samples))


def read_wav_pcm(path: Path) -> bytes:
    """The PCM of a WAV file in the internal format (8 kHz mono 16-bit); AudioFileError for
    anything else (convert it with :func:`convert_upload` first)."""
    try:
        with wave.open(str(path), "rb") as wav:
            shape = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
            if shape != (RATE, CHANNELS, SAMPLE_WIDTH) or wav.getcomptype() != "NONE":
                raise AudioFileError(
                    f"{path.name} is not 8 kHz mono 16-bit PCM "
                    f"({shape[0]} Hz, {shape[1]} channels, {8 * shape[2]}-bit)"
                )
            return wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise AudioFileError(f"{path.name} is not a WAV file pbx can read: {exc}") from None
