"""convert_upload and read_wav_pcm: real files made with soundfile, checked by their spectra."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile

from pbx.media.audiofile import (
    PEAK_LIMIT,
    AudioFileError,
    Resampler,
    convert_upload,
    pcm_to_wav,
    read_wav_pcm,
)


def tones(rate: int, seconds: float, *freqs: float, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    out = np.zeros(len(t))
    for f in freqs:
        out += amplitude * np.sin(2 * np.pi * f * t)
    return out.astype(np.float32)


def encode(samples: np.ndarray, rate: int, fmt: str, subtype: str | None = None) -> bytes:
    out = io.BytesIO()
    soundfile.write(out, samples, rate, format=fmt, subtype=subtype)
    return out.getvalue()


def decoded(wav_bytes: bytes) -> np.ndarray:
    with wave.open(io.BytesIO(wav_bytes), "rb") as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2").astype(float)


def level(pcm: np.ndarray, freq: float) -> float:
    """Amplitude of the ``freq`` component (full scale 1.0), over the steady middle."""
    middle = pcm[len(pcm) // 4 : 3 * len(pcm) // 4]
    middle = middle[: len(middle) // 8000 * 8000]  # whole seconds: 1 Hz bins
    spectrum = np.abs(np.fft.rfft(middle)) * 2 / len(middle) / 32767
    return float(spectrum[int(round(freq * len(middle) / 8000))])


def test_an_mp3_becomes_8_khz_mono_wav_with_the_same_tone() -> None:
    stereo = np.stack([tones(44100, 3, 1000)] * 2, axis=1)
    mp3 = encode(stereo, 44100, "MP3")
    assert mp3[:3] == b"ID3" or mp3[0] == 0xFF  # really an MP3 stream
    pcm = decoded(convert_upload(mp3, "music.mp3"))
    assert abs(len(pcm) / 8000 - 3.0) < 0.1  # codec padding only
    assert level(pcm, 1000) == pytest.approx(0.3, rel=0.1)
    assert level(pcm, 1000) > 100 * level(pcm, 1500)


def test_a_44_1_khz_stereo_wav_is_mixed_down_and_resampled() -> None:
    left, right = tones(44100, 2, 500), tones(44100, 2, 1500)
    wav = encode(np.stack([left, right], axis=1), 44100, "WAV", "PCM_16")
    pcm = decoded(convert_upload(wav, "stereo.wav"))
    assert len(pcm) == 16000
    assert level(pcm, 500) == pytest.approx(0.15, rel=0.05)  # each channel at half
    assert level(pcm, 1500) == pytest.approx(0.15, rel=0.05)


def test_a_16_khz_wav_keeps_the_band_and_does_not_alias() -> None:
    wav = encode(tones(16000, 2, 1000, 6000), 16000, "WAV", "PCM_16")
    pcm = decoded(convert_upload(wav))
    assert len(pcm) == 16000
    assert level(pcm, 1000) == pytest.approx(0.3, rel=0.05)
    # 6 kHz is above 4 kHz: it must be filtered, not folded down to 2 kHz
    assert level(pcm, 2000) < 0.3 * 10 ** (-50 / 20)


@pytest.mark.parametrize(("fmt", "subtype"), [("FLAC", None), ("OGG", "VORBIS")])
def test_flac_and_ogg_are_read(fmt: str, subtype: str | None) -> None:
    data = encode(tones(48000, 2, 800), 48000, fmt, subtype)
    pcm = decoded(convert_upload(data, f"x.{fmt.lower()}"))
    assert level(pcm, 800) == pytest.approx(0.3, rel=0.1)


def test_loud_audio_is_peak_limited_not_clipped() -> None:
    loud = np.clip(tones(8000, 1, 440, amplitude=1.4), -1, 1)  # a clipped, full-scale file
    pcm = decoded(convert_upload(encode(loud, 8000, "WAV", "FLOAT")))
    assert np.max(np.abs(pcm)) <= PEAK_LIMIT * 32767 + 1
    assert np.max(np.abs(pcm)) > 0.95 * PEAK_LIMIT * 32767  # scaled to the limit, not below


def test_8_khz_internal_audio_passes_through_unchanged() -> None:
    samples = (np.arange(-4000, 4000, dtype=np.int16) * 3).astype("<i2")
    wav = pcm_to_wav(samples.tobytes())
    assert decoded(convert_upload(wav)).astype(np.int16).tobytes() == samples.tobytes()


@pytest.mark.parametrize(
    "data", [b"garbage" * 1000, b"RIFF\x00\x00\x00\x00WAVEjunk", bytes(5000)], ids=str
)
def test_anything_else_is_refused_with_a_message_for_the_user(data: bytes) -> None:
    with pytest.raises(AudioFileError) as caught:
        convert_upload(data, "notes.txt")
    assert str(caught.value) == (
        '"notes.txt" is not an audio file pbx can read (MP3, WAV, FLAC, OGG)'
    )


def test_an_empty_file_is_refused() -> None:
    with pytest.raises(AudioFileError, match="empty"):
        convert_upload(b"", "empty.mp3")
    no_frames = encode(np.zeros((0,), dtype=np.float32), 8000, "WAV", "PCM_16")
    with pytest.raises(AudioFileError, match="empty"):
        convert_upload(no_frames)


def test_more_than_30_minutes_is_refused_before_decoding() -> None:
    # 30 min 1 s at 1000 Hz, 8-bit: under 2 MB, but too long
    long = encode(np.zeros(1801 * 1000, dtype=np.float32), 1000, "WAV", "PCM_U8")
    with pytest.raises(AudioFileError, match="longer than 30 minutes"):
        convert_upload(long)


def test_more_than_50_mb_is_refused() -> None:
    with pytest.raises(AudioFileError, match="larger than 50 MB"):
        convert_upload(bytes(50 * 1024 * 1024 + 1))


def test_the_resampler_streams_block_by_block_like_all_at_once() -> None:
    x = tones(44100, 1, 700, 2900)
    whole = Resampler(44100, 8000)
    at_once = np.concatenate([whole.push(x), whole.flush()])
    pieces = Resampler(44100, 8000)
    streamed = np.concatenate(
        [pieces.push(x[i : i + 777]) for i in range(0, len(x), 777)] + [pieces.flush()]
    )
    assert len(at_once) == len(streamed) == 8000
    assert np.allclose(at_once, streamed, atol=1e-5)


def test_read_wav_pcm_takes_only_the_internal_format(tmp_path: Path) -> None:
    good = tmp_path / "good.wav"
    good.write_bytes(pcm_to_wav(b"\x01\x02" * 800))
    assert read_wav_pcm(good) == b"\x01\x02" * 800
    wide = tmp_path / "wide.wav"
    wide.write_bytes(encode(tones(16000, 0.1, 440), 16000, "WAV", "PCM_16"))
    with pytest.raises(AudioFileError, match="16000 Hz"):
        read_wav_pcm(wide)
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not a wav at all")
    with pytest.raises(AudioFileError):
        read_wav_pcm(junk)
