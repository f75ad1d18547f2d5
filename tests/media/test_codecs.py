"""Codec wrappers: G.711, G.722, Opus round trips, frame sizes, chains and the resampler.

Every codec encodes a 1 kHz sine frame by frame; the decoded audio must have its dominant
component at 1 kHz and a tone-to-everything-else ratio above the floor stated per codec.
A 1 kHz tone at 8 kHz sampling makes G.711 quantisation error periodic, so the G.711 figures
are higher than the ~38 dB textbook value.
"""

from __future__ import annotations

import pytest

from pbx.media.codecs import (
    CODECS,
    UnsupportedCodec,
    get_decoder,
    get_encoder,
    parse_fmtp,
)
from pbx.media.codecs.base import rtp_ticks
from pbx.media.codecs.opus import OpusDecoder, OpusEncoder
from pbx.media.codecs.resample import Rechunker, Resampler
from tests.media.audio_helpers import dominant_frequency, samples, sine, tone_snr_db

FRAMES = 25  # 500 ms
WARMUP = 5  # frames skipped before measuring (codec delay, adaptation)

# (encoding name, PCM rate, SNR floor in dB, payload bytes per 20 ms or None if variable)
ROUND_TRIPS = [
    ("PCMU", 8000, 35.0, 160),
    ("PCMA", 8000, 35.0, 160),
    ("G722", 16000, 35.0, 160),
    ("G722", 8000, 35.0, 160),
    ("opus", 48000, 12.0, None),
    ("opus", 16000, 30.0, None),
    ("opus", 8000, 20.0, None),
]


def round_trip(name: str, rate: int) -> tuple[bytes, list[int]]:
    encoder = get_encoder(name, sample_rate=rate)
    decoder = get_decoder(name, sample_rate=rate)
    frame = encoder.frame_samples * 2
    pcm = sine(1000, rate, encoder.frame_samples * FRAMES)
    out, sizes = bytearray(), []
    for k in range(FRAMES):
        payload = encoder.encode(pcm[k * frame : (k + 1) * frame])
        sizes.append(len(payload))
        out += decoder.decode(payload)
    return bytes(out), sizes


@pytest.mark.parametrize(("name", "rate", "floor", "size"), ROUND_TRIPS)
def test_round_trip_keeps_a_1khz_tone(name: str, rate: int, floor: float, size: int | None) -> None:
    out, sizes = round_trip(name, rate)
    frame_samples = rate // 50
    assert len(out) == FRAMES * frame_samples * 2
    assert dominant_frequency(out, rate, skip=WARMUP * frame_samples) == 1000
    assert tone_snr_db(out, rate, 1000, skip=WARMUP * frame_samples) > floor
    if size is not None:
        assert set(sizes) == {size}


def test_opus_20ms_packets_stay_under_200_bytes() -> None:
    _, sizes = round_trip("opus", 48000)
    assert max(sizes) < 200


def test_registry_facts_follow_rfc_3551_and_7587() -> None:
    assert (CODECS["PCMU"].payload_type, CODECS["PCMA"].payload_type) == (0, 8)
    assert (CODECS["G722"].payload_type, CODECS["G722"].clock_rate) == (9, 8000)
    assert CODECS["G722"].sample_rate == 16000
    assert (CODECS["opus"].clock_rate, CODECS["opus"].channels) == (48000, 2)
    assert CODECS["opus"].payload_type is None


def test_encoder_reports_rtp_clock_separately_from_audio_rate() -> None:
    g722 = get_encoder("g722")  # names are case-insensitive (RFC 4855 §3)
    assert (g722.name, g722.sample_rate, g722.clock_rate, g722.frame_samples) == (
        "G722",
        16000,
        8000,
        320,
    )
    assert rtp_ticks(g722.frame_samples, g722.sample_rate, g722.clock_rate) == 160
    opus = get_encoder("OPUS", sample_rate=8000)
    assert rtp_ticks(opus.frame_samples, opus.sample_rate, opus.clock_rate) == 960


def test_unknown_codec_and_unsupported_rate_are_refused() -> None:
    with pytest.raises(UnsupportedCodec):
        get_encoder("GSM")
    with pytest.raises(ValueError, match="8000"):
        get_decoder("PCMU", sample_rate=16000)


def test_odd_byte_count_pcm_is_rejected() -> None:
    with pytest.raises(ValueError, match="odd"):
        get_encoder("PCMU").encode(b"\x00\x01\x02")


def test_opus_rejects_frame_sizes_libopus_cannot_code() -> None:
    with pytest.raises(ValueError, match="cannot code"):
        get_encoder("opus").encode(bytes(2 * 1000))


def test_corrupt_opus_payload_raises_value_error() -> None:
    with pytest.raises(ValueError, match="Opus decoder error"):
        OpusDecoder().decode(b"\xff\xff\xff")


def test_g711_concealment_repeats_then_fades_to_silence() -> None:
    decoder = get_decoder("PCMA")
    good = decoder.decode(get_encoder("PCMA").encode(sine(1000, 8000, 160)))
    levels = [max(map(abs, samples(decoder.decode_missing()))) for _ in range(4)]
    peak = max(map(abs, samples(good)))
    assert levels[0] == pytest.approx(peak / 2, rel=0.01)
    assert levels[1] == pytest.approx(peak / 4, rel=0.01)
    assert levels[3] == 0
    assert decoder.decode(get_encoder("PCMA").encode(sine(1000, 8000, 160))) == good


def test_opus_concealment_continues_the_tone() -> None:
    encoder, decoder = OpusEncoder(16000), OpusDecoder(16000)
    pcm = sine(1000, 16000, 320 * 10)
    for k in range(10):
        decoder.decode(encoder.encode(pcm[k * 640 : (k + 1) * 640]))
    concealed = decoder.decode_missing()
    assert len(concealed) == 640
    assert dominant_frequency(concealed, 16000) == 1000


def test_opus_fec_rebuilds_a_lost_packet_from_the_next() -> None:
    encoder = OpusEncoder(16000, parse_fmtp("useinbandfec=1; maxaveragebitrate=24000"))
    decoder = OpusDecoder(16000)
    pcm = sine(1000, 16000, 320 * 12)
    packets = [encoder.encode(pcm[k * 640 : (k + 1) * 640]) for k in range(12)]
    for packet in packets[:10]:
        decoder.decode(packet)
    recovered = decoder.decode_fec(packets[11])  # packets[10] was lost
    assert len(recovered) == 640
    assert dominant_frequency(recovered, 16000) == 1000


def test_opus_maxaveragebitrate_shrinks_packets() -> None:
    pcm = sine(1000, 48000, 960 * 10)

    def mean_size(encoder: OpusEncoder) -> float:
        sizes = [len(encoder.encode(pcm[k * 1920 : (k + 1) * 1920])) for k in range(10)]
        return sum(sizes[2:]) / 8

    default, small = OpusEncoder(48000), OpusEncoder(48000, {"maxaveragebitrate": "12000"})
    assert mean_size(small) < mean_size(default) / 2


def test_parse_fmtp_splits_and_lowercases() -> None:
    assert parse_fmtp("MaxAverageBitrate=20000; useinbandfec=1;stereo") == {
        "maxaveragebitrate": "20000",
        "useinbandfec": "1",
        "stereo": "",
    }


def test_chain_opus_to_pcmu_keeps_the_tone() -> None:
    opus_enc, opus_dec = get_encoder("opus"), get_decoder("opus")
    to_8k, pcmu_enc, pcmu_dec = Resampler(48000, 8000), get_encoder("PCMU"), get_decoder("PCMU")
    pcm, out = sine(1000, 48000, 960 * FRAMES), bytearray()
    for k in range(FRAMES):
        wide = opus_dec.decode(opus_enc.encode(pcm[k * 1920 : (k + 1) * 1920]))
        out += pcmu_dec.decode(pcmu_enc.encode(to_8k.convert(wide)))
    assert len(out) == FRAMES * 320
    assert dominant_frequency(bytes(out), 8000, skip=800) == 1000
    assert tone_snr_db(bytes(out), 8000, 1000, skip=800) > 12.0


def test_chain_pcma_to_g722_keeps_the_tone() -> None:
    pcma_enc, pcma_dec = get_encoder("PCMA"), get_decoder("PCMA")
    to_16k, frames = Resampler(8000, 16000), Rechunker(320)
    g722_enc, g722_dec = get_encoder("G722"), get_decoder("G722")
    pcm, out = sine(1000, 8000, 160 * FRAMES), bytearray()
    for k in range(FRAMES):
        narrow = pcma_dec.decode(pcma_enc.encode(pcm[k * 320 : (k + 1) * 320]))
        for frame in frames.push(to_16k.convert(narrow)):
            out += g722_dec.decode(g722_enc.encode(frame))
    assert len(out) >= (FRAMES - 1) * 640
    assert dominant_frequency(bytes(out), 16000, skip=1600) == 1000
    assert tone_snr_db(bytes(out), 16000, 1000, skip=1600) > 22.0


@pytest.mark.parametrize(
    ("from_rate", "to_rate", "floor"),
    [(8000, 16000, 25.0), (16000, 48000, 25.0), (8000, 48000, 25.0), (48000, 8000, 40.0)],
)
def test_resampler_keeps_frequency_across_frames(
    from_rate: int, to_rate: int, floor: float
) -> None:
    resampler = Resampler(from_rate, to_rate)
    pcm, frame = sine(1000, from_rate, from_rate // 50 * 10), from_rate // 50 * 2
    out = b"".join(resampler.convert(pcm[k * frame : (k + 1) * frame]) for k in range(10))
    # ratecv holds back at most one input sample's worth of output; it never drifts
    assert 0 <= to_rate // 5 - len(out) // 2 <= max(1, to_rate // from_rate)
    assert dominant_frequency(out, to_rate, skip=to_rate // 50) == 1000
    assert tone_snr_db(out, to_rate, 1000, skip=to_rate // 50) > floor


def test_rechunker_hands_out_exact_frames() -> None:
    chunker = Rechunker(160)
    assert chunker.push(bytes(318)) == []
    frames = chunker.push(bytes(2 + 320 + 10))
    assert [len(f) for f in frames] == [320, 320]
    assert chunker.pending_samples == 5
