"""Recording PCM to a WAV file without ever blocking the reactor, and never half-written.

Owns :class:`WavRecorder`, its state table (:data:`TRANSITIONS`) and :class:`RecorderError`.
The reactor thread only appends to a memory buffer (:meth:`WavRecorder.write`); every full
chunk of about one second goes to a thread pool with one thread
(``twisted.internet.threads.deferToThreadPool``), which opens, writes and closes the file, so
the writes of a recording keep their order and a slow disk never stalls media. By default
all recordings share one such pool per reactor (:func:`recording_pool`), stopped at reactor
shutdown.

Crash safety: the file is written under a hidden temporary name in the same directory,
``.<name>.part``, and only :meth:`WavRecorder.close` gives it its name: it writes the rest,
has the stdlib ``wave`` module patch the RIFF and data sizes of the header, ``fsync``\\ s the
file, renames it to the final name (``os.replace``, atomic within a directory) and
``fsync``\\ s the directory so the rename itself survives a power cut. A crash, a kill -9 or
:meth:`WavRecorder.abort` therefore never leaves a partial file under the final name, only
a dot-file: **listings of recording directories must ignore dot-files** (and a janitor may
delete old ``.*.part`` files).

A disk slower than the audio: at most :data:`MAX_PENDING_CHUNKS` chunks wait for the pool;
beyond that chunks are dropped and counted in ``dropped_bytes`` rather than queued without
bound (a slow sink drops, it does not hold media up). A write error (disk full) is kept and
reported by ``close()``, which then removes the temporary file.

Must not import: pbx.calls, pbx.store, pbx.service, web.
"""

from __future__ import annotations

import enum
import logging
import os
import wave
import weakref
from pathlib import Path
from typing import Any, BinaryIO

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool

from pbx.media.pcm import CHANNELS, RATE, SAMPLE_WIDTH, check

log = logging.getLogger(__name__)

CHUNK_BYTES = RATE * SAMPLE_WIDTH  # about 1 s of audio per hand-off to the writer thread
MAX_PENDING_CHUNKS = 30  # 30 s of audio waiting for the disk at most


class RecorderError(Exception):
    """The recording could not be written, or the operation does not fit its state."""


class RecorderState(enum.Enum):
    RECORDING = "recording"
    CLOSING = "closing"
    CLOSED = "closed"
    ABORTED = "aborted"
    FAILED = "failed"


class RecorderOp(enum.Enum):
    CLOSE = "close"
    CLOSED = "closed"
    ABORT = "abort"
    FAIL = "fail"


R, Op = RecorderState, RecorderOp
TRANSITIONS: dict[tuple[RecorderState, RecorderOp], RecorderState] = {
    (R.RECORDING, Op.CLOSE): R.CLOSING,
    (R.RECORDING, Op.ABORT): R.ABORTED,
    (R.CLOSING, Op.CLOSED): R.CLOSED,
    (R.CLOSING, Op.FAIL): R.FAILED,
}


def temporary_path(path: Path) -> Path:
    """Where ``path`` is written until it is complete: ``.<name>.part`` beside it."""
    return path.with_name(f".{path.name}.part")


_pools: weakref.WeakKeyDictionary[Any, ThreadPool] = weakref.WeakKeyDictionary()


def recording_pool(reactor: Any) -> ThreadPool:
    """The reactor's one-thread pool for recordings (started now, stopped at shutdown)."""
    pool = _pools.get(reactor)
    if pool is None:
        pool = _pools[reactor] = ThreadPool(minthreads=1, maxthreads=1, name="recordings")
        pool.start()
        reactor.addSystemEventTrigger("during", "shutdown", pool.stop)
    return pool


class _WavFile:
    """The file side of a recording; every method runs in the writer thread, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.temp = temporary_path(path)
        self.error: BaseException | None = None
        self._file: BinaryIO | None = None
        self._wav: Any = None

    def _open(self) -> None:
        self._file = open(self.temp, "wb")  # noqa: SIM115 (closed in finish/discard)
        wav = wave.open(self._file, "wb")
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(RATE)
        self._wav = wav

    def write(self, pcm: bytes) -> None:
        if self.error is not None:
            return
        try:
            if self._wav is None:
                self._open()
            self._wav.writeframesraw(pcm)
        except OSError as exc:
            log.error("recording %s: cannot write: %s", self.path, exc)
            self.error = exc

    def finish(self, pcm: bytes) -> Path:
        """Write the rest, fix the header, fsync, rename to the final name, fsync the dir."""
        self.write(pcm)
        if self.error is None:
            try:
                if self._wav is None:
                    self._open()  # an empty recording is still a valid WAV file
                self._wav.close()  # patches the RIFF/data sizes (the file stays open)
                assert self._file is not None
                self._file.flush()
                os.fsync(self._file.fileno())
                self._file.close()
                os.replace(self.temp, self.path)
                _fsync_dir(self.path.parent)
                return self.path
            except OSError as exc:
                self.error = exc
        self.discard()
        raise RecorderError(f"recording {self.path} failed: {self.error}")

    def discard(self) -> None:
        for close in (self._wav, self._file):
            if close is not None:
                try:
                    close.close()
                except OSError:
                    pass
        self._wav = self._file = None
        try:
            self.temp.unlink()
        except FileNotFoundError:
            pass


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class WavRecorder:
    """Records internal-format PCM (8 kHz mono 16-bit) to the WAV file ``path``."""

    def __init__(self, path: Path, *, pool: ThreadPool | None = None, reactor: Any = None) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.path = Path(path)
        self.state = RecorderState.RECORDING
        self.bytes_written = 0  # accepted (handed to the writer or buffered)
        self.dropped_bytes = 0  # lost because the disk fell behind
        self._reactor = reactor
        self._pool = pool if pool is not None else recording_pool(reactor)
        self._file = _WavFile(self.path)
        self._buffer = bytearray()
        self._pending = 0  # chunks handed to the pool and not yet written

    @property
    def temporary_path(self) -> Path:
        return self._file.temp

    def _apply(self, op: RecorderOp) -> None:
        new = TRANSITIONS.get((self.state, op))
        if new is None:
            raise RecorderError(f"recording {self.path} is {self.state.value}: cannot {op.value}")
        self.state = new

    def _in_pool(self, fn: Any, *args: Any) -> defer.Deferred[Any]:
        return threads.deferToThreadPool(self._reactor, self._pool, fn, *args)

    def write(self, pcm: bytes) -> None:
        """Buffer ``pcm``; a full chunk goes to the writer thread. Never blocks."""
        if self.state is not RecorderState.RECORDING:
            raise RecorderError(f"recording {self.path} is {self.state.value}: cannot write")
        check(pcm)
        self._buffer += pcm
        if len(self._buffer) >= CHUNK_BYTES:
            chunk, self._buffer = bytes(self._buffer), bytearray()
            if self._pending >= MAX_PENDING_CHUNKS:
                self.dropped_bytes += len(chunk)
                if self.dropped_bytes == len(chunk):
                    log.warning("recording %s: the disk falls behind, dropping audio", self.path)
                return
            self._pending += 1
            self.bytes_written += len(chunk)
            self._in_pool(self._file.write, chunk).addBoth(self._written)

    def _written(self, result: object) -> object:
        self._pending -= 1
        return None

    def close(self) -> defer.Deferred[Path]:
        """Finish the file under its final name; fires with the path (or RecorderError)."""
        self._apply(RecorderOp.CLOSE)
        rest, self._buffer = bytes(self._buffer), bytearray()
        self.bytes_written += len(rest)
        d: defer.Deferred[Path] = self._in_pool(self._file.finish, rest)

        def closed(path: Path) -> Path:
            self._apply(RecorderOp.CLOSED)
            log.info("recorded %s (%d bytes)", path, self.bytes_written)
            return path

        def failed(failure: Any) -> Any:
            self._apply(RecorderOp.FAIL)
            return failure

        d.addCallbacks(closed, failed)
        return d

    def abort(self) -> defer.Deferred[None]:
        """Throw the recording away: the temporary file is removed, nothing gets the name."""
        self._apply(RecorderOp.ABORT)
        self._buffer = bytearray()
        d: defer.Deferred[None] = self._in_pool(self._file.discard)
        return d
