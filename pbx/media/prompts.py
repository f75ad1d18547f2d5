"""Spoken prompts: digits read one by one ("seven, zero, one"), from Asterisk's sounds.

Owns :class:`Prompts` and :class:`PromptError`. The recordings are Debian's
``asterisk-core-sounds-en-wav`` (Allison Smith's voice, CC-BY-SA-3.0; 8 kHz mono 16-bit
WAV, the internal format), in ``/usr/share/asterisk/sounds/en_US_f_Allison/`` with the
digits in ``digits/0.wav`` ... ``digits/9.wav`` (and ``star.wav``, ``pound.wav``). Used, for
instance, to tell a parker the slot a call was parked in.

The files are read once, in a thread (:meth:`Prompts.load`), and kept in memory (about
110 kB for the twelve digits); :meth:`Prompts.digits` then only joins cached PCM, so it
may run on the reactor thread. A missing package is reported with the package to install.

Must not import: pbx.calls, pbx.store, pbx.service, web.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from pbx.media.audiofile import AudioFileError, read_wav_pcm
from pbx.media.pcm import silence

log = logging.getLogger(__name__)

DEFAULT_SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
PACKAGE = "asterisk-core-sounds-en-wav"
DIGIT_FILES = {**{d: f"{d}.wav" for d in "0123456789"}, "*": "star.wav", "#": "pound.wav"}
PAUSE_MS = 150  # between two digits


class PromptError(Exception):
    """Prompts are missing or not loaded, or a text cannot be spoken."""


class Prompts:
    """The prompts of one voice directory (``sounds_dir``), loaded once and cached."""

    def __init__(self, sounds_dir: Path = DEFAULT_SOUNDS_DIR, pause_ms: int = PAUSE_MS) -> None:
        self.sounds_dir = Path(sounds_dir)
        self.pause = silence(pause_ms)
        self._digits: dict[str, bytes] | None = None
        self._loading = False
        self._waiters: list[defer.Deferred[None]] = []

    @property
    def loaded(self) -> bool:
        return self._digits is not None

    def read(self) -> None:
        """Read the digit files now (blocking: in a thread, or at start-up)."""
        folder = self.sounds_dir / "digits"
        if not folder.is_dir():
            raise PromptError(
                f"no prompts in {self.sounds_dir}: install the Debian package {PACKAGE}"
            )
        digits = {}
        for digit, name in DIGIT_FILES.items():
            try:
                digits[digit] = read_wav_pcm(folder / name)
            except FileNotFoundError:
                raise PromptError(
                    f"prompt {folder / name} is missing: reinstall the Debian package {PACKAGE}"
                ) from None
            except AudioFileError as exc:
                raise PromptError(f"prompt {folder / name} is not usable: {exc}") from None
        self._digits = digits
        log.info("prompts loaded from %s", self.sounds_dir)

    def load(self, reactor: Any = None) -> defer.Deferred[None]:
        """Read the files in the reactor's thread pool, once; fires when they are in memory
        (or fails with :class:`PromptError`). Loading again after a failure tries anew."""
        if self._digits is not None:
            return defer.succeed(None)
        waiter: defer.Deferred[None] = defer.Deferred()
        self._waiters.append(waiter)
        if not self._loading:
            if reactor is None:
                from twisted.internet import reactor as default_reactor

                reactor = default_reactor
            self._loading = True
            d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), self.read)
            d.addCallbacks(self._loaded, self._failed)
        return waiter

    def _loaded(self, _: object) -> None:
        self._loading = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def _failed(self, failure: Any) -> None:
        self._loading = False
        log.error("prompts: %s", failure.getErrorMessage())
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.errback(failure)

    def digits(self, number: str) -> bytes:
        """PCM of ``number``'s digits read one by one with a short pause between them
        (spaces and dashes are skipped: "70-1" is "seven zero one")."""
        if self._digits is None:
            raise PromptError("prompts are not loaded yet (Prompts.load)")
        spoken = [c for c in number if c not in " -"]
        unknown = sorted({c for c in spoken if c not in self._digits})
        if unknown:
            raise PromptError(f"cannot speak {''.join(unknown)!r} in {number!r}")
        return self.pause.join(self._digits[c] for c in spoken)
