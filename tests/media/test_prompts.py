"""Prompts: digits read one by one, loaded once in a thread; a clear error without sounds."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.media import prompts as prompts_module
from pbx.media.audiofile import pcm_to_wav
from pbx.media.pcm import silence
from pbx.media.prompts import DEFAULT_SOUNDS_DIR, DIGIT_FILES, PromptError, Prompts
from tests.media.source_helpers import ThreadedClock


@pytest.fixture
def reactor() -> Iterator[ThreadedClock]:
    clock = ThreadedClock()
    yield clock
    clock.close()


def voice(tmp_path: Path) -> Path:
    """A voice directory whose digit d is d+1 samples of value d+1 (each file recognisable)."""
    digits = tmp_path / "voice" / "digits"
    digits.mkdir(parents=True)
    for i, (_, name) in enumerate(sorted(DIGIT_FILES.items())):
        value = i + 1
        (digits / name).write_bytes(pcm_to_wav(value.to_bytes(2, "little") * value))
    return tmp_path / "voice"


def spoken(sounds: Path, digit: str) -> bytes:
    from pbx.media.audiofile import read_wav_pcm

    return read_wav_pcm(sounds / "digits" / DIGIT_FILES[digit])


def test_digits_are_the_recordings_one_by_one_with_a_pause(
    reactor: ThreadedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sounds = voice(tmp_path)
    threads: list[int] = []
    read = Prompts.read

    def spy(self: Prompts) -> None:
        threads.append(threading.get_ident())
        read(self)

    monkeypatch.setattr(Prompts, "read", spy)
    prompts = Prompts(sounds, pause_ms=100)
    assert not prompts.loaded
    reactor.wait(prompts.load(reactor))
    assert prompts.loaded and threads and threads[0] != threading.get_ident()
    pause = silence(100)
    expected = spoken(sounds, "7") + pause + spoken(sounds, "0") + pause + spoken(sounds, "1")
    assert prompts.digits("701") == expected
    assert prompts.digits("7 0-1") == expected
    assert prompts.digits("*") == spoken(sounds, "*")


def test_loaded_once_and_cached(reactor: ThreadedClock, tmp_path: Path) -> None:
    prompts = Prompts(voice(tmp_path))
    first, second = prompts.load(reactor), prompts.load(reactor)
    reactor.wait(first)
    reactor.wait(second)
    assert reactor.from_threads.empty()  # one read for both callers
    assert prompts.load(reactor).called  # nothing to read any more


def test_a_missing_package_is_named(reactor: ThreadedClock, tmp_path: Path) -> None:
    prompts = Prompts(tmp_path / "nothing-here")
    with pytest.raises(PromptError, match="asterisk-core-sounds-en-wav"):
        reactor.wait(prompts.load(reactor))
    with pytest.raises(PromptError, match="not loaded"):
        prompts.digits("1")


def test_other_characters_are_refused(tmp_path: Path) -> None:
    prompts = Prompts(voice(tmp_path))
    prompts.read()
    with pytest.raises(PromptError, match="'x'"):
        prompts.digits("70x")


@pytest.mark.skipif(
    not (DEFAULT_SOUNDS_DIR / "digits" / "0.wav").exists(),
    reason="Debian package asterisk-core-sounds-en-wav not installed",
)
def test_the_debian_prompts_are_internal_format() -> None:
    prompts = Prompts()
    prompts.read()
    pcm = prompts.digits("701")
    seconds = len(pcm) / 16000
    assert 2.0 < seconds < 4.0  # three digits of about 0.8 s and two pauses
    assert prompts_module.PACKAGE == "asterisk-core-sounds-en-wav"
