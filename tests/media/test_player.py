"""Playback: frames of PCM and tones, the state table, and the done Deferred."""

from __future__ import annotations

from array import array

import pytest

from pbx.media.dtmf import goertzel_power
from pbx.media.pcm import FRAME_BYTES
from pbx.media.player import (
    TRANSITIONS,
    Playback,
    PlaybackError,
    PlaybackOp,
    PlaybackState,
    Sequence,
)
from pbx.media.tones import Tone, ToneSource, plan_for
from tests.media.source_helpers import sine


def pull(source: Playback, limit: int = 10_000) -> list[bytes]:
    out = []
    for _ in range(limit):
        frame = source.next_frame()
        if frame is None:
            break
        out.append(frame)
    return out


def outcome(playback: Playback) -> list[str]:
    seen: list[str] = []
    playback.done.addCallback(seen.append)
    return seen


def test_pcm_plays_in_320_byte_frames_the_last_zero_padded_then_done() -> None:
    pcm = sine(1000, 50)  # 2.5 frames
    playback = Playback(pcm, playback_id="p1")
    seen = outcome(playback)
    assert playback.state is PlaybackState.QUEUED and playback.id == "p1"
    chunk = pull(playback)
    assert [len(f) for f in chunk] == [FRAME_BYTES] * 3
    assert b"".join(chunk)[: len(pcm)] == pcm
    assert chunk[-1][len(pcm) - 2 * FRAME_BYTES :] == bytes(FRAME_BYTES // 2)
    assert playback.state is PlaybackState.DONE and playback.finished
    assert seen == ["done"]
    assert playback.next_frame() is None and seen == ["done"]  # fired once
    samples = array("h", b"".join(chunk))
    assert goertzel_power(samples, 1000, 8000) > 1000 * goertzel_power(samples, 1500, 8000)


def test_the_first_pull_starts_a_queued_playback() -> None:
    playback = Playback(sine(500, 40))
    assert playback.next_frame() is not None
    assert playback.state is PlaybackState.PLAYING
    with pytest.raises(PlaybackError):
        playback.start()


def test_pause_gives_nothing_and_resume_goes_on_where_it_was() -> None:
    pcm = bytes(range(256)) * 5  # 1280 bytes: 4 frames, each different
    playback = Playback(pcm)
    first = playback.next_frame()
    playback.pause()
    assert playback.next_frame() is None and playback.state is PlaybackState.PAUSED
    assert not playback.finished
    playback.resume()
    assert first == pcm[:FRAME_BYTES]
    assert playback.next_frame() == pcm[FRAME_BYTES : 2 * FRAME_BYTES]
    assert playback.frames_played == 2 and playback.position_ms == 40


def test_stop_fires_stopped_once_and_further_ops_raise() -> None:
    playback = Playback(sine(500, 200))
    seen = outcome(playback)
    playback.next_frame()
    playback.stop()
    assert seen == ["stopped"] and playback.state is PlaybackState.STOPPED
    assert playback.next_frame() is None
    for op in (playback.stop, playback.pause, playback.resume, playback.start):
        with pytest.raises(PlaybackError):
            op()
    assert seen == ["stopped"]


def test_a_queued_playback_can_be_stopped_before_it_plays() -> None:
    playback = Playback(sine(500, 200))
    seen = outcome(playback)
    playback.stop()
    assert seen == ["stopped"] and playback.next_frame() is None


@pytest.mark.parametrize("state", list(PlaybackState))
@pytest.mark.parametrize("op", list(PlaybackOp))
def test_every_state_and_operation_follows_the_table(state: PlaybackState, op: PlaybackOp) -> None:
    playback = Playback(sine(500, 200))
    playback.state = state
    expected = TRANSITIONS.get((state, op))
    if expected is None:
        with pytest.raises(PlaybackError):
            playback.apply(op)
        assert playback.state is state
    else:
        assert playback.apply(op) is expected


def test_loop_runs_across_the_end_without_padding_until_stopped() -> None:
    pcm = bytes(range(200)) * 2  # 400 bytes: 1.25 frames
    playback = Playback(pcm, loop=True)
    chunk = [playback.next_frame() for _ in range(8)]
    assert all(f is not None and len(f) == FRAME_BYTES for f in chunk)
    assert b"".join(f for f in chunk if f) == (pcm * 7)[: 8 * FRAME_BYTES]
    seen = outcome(playback)
    playback.stop()
    assert seen == ["stopped"]


def test_an_empty_playback_is_done_at_once() -> None:
    playback = Playback(b"")
    seen = outcome(playback)
    assert playback.next_frame() is None and seen == ["done"]
    with pytest.raises(ValueError):
        Playback(b"", loop=True)
    with pytest.raises(ValueError):
        Playback(b"\x00")


def test_a_tone_plays_until_stopped_or_for_max_ms() -> None:
    ring = Playback.of_tone(ToneSource(plan_for("49", Tone.RINGBACK)), playback_id="ring")
    assert len(pull(ring, 1000)) == 1000 and not ring.finished
    ring.stop()
    busy = Playback.of_tone(ToneSource(plan_for("49", Tone.BUSY)), max_ms=1000)
    seen = outcome(busy)
    assert len(pull(busy)) == 50 and seen == ["done"]


def test_a_sequence_plays_its_parts_one_after_the_other() -> None:
    prompt = sine(1000, 100)
    tone = Playback.of_tone(ToneSource(plan_for("1", Tone.BUSY)), max_ms=60)
    playback = Playback.sequence([prompt, tone, sine(500, 30)])
    chunk = pull(playback)
    assert len(chunk) == 5 + 3 + 2
    assert b"".join(chunk[:5]) == prompt
    assert tone.finished and playback.finished
    assert len(pull(Playback.of_source(Sequence([])))) == 0
