"""WavRecorder: ordered writes in a pool thread, a valid WAV only under the final name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.media import recorder as recorder_module
from pbx.media.recorder import (
    CHUNK_BYTES,
    RecorderError,
    RecorderState,
    WavRecorder,
    recording_pool,
    temporary_path,
)
from tests.media.source_helpers import ThreadedClock, sine

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def reactor() -> Iterator[ThreadedClock]:
    clock = ThreadedClock()
    yield clock
    clock.close()


def record(reactor: ThreadedClock, path: Path, pcm: bytes, piece: int = 320) -> WavRecorder:
    rec = WavRecorder(path, pool=reactor.pool, reactor=reactor)
    for start in range(0, len(pcm), piece):
        rec.write(pcm[start : start + piece])
    return rec


def test_a_recording_round_trips_through_wave(reactor: ThreadedClock, tmp_path: Path) -> None:
    pcm = sine(1000, 2500)  # 2.5 s: two full chunks and a rest
    path = tmp_path / "call.wav"
    rec = record(reactor, path, pcm)
    assert reactor.wait(rec.close()) == path
    assert rec.state is RecorderState.CLOSED
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 8000)
        assert wav.getnframes() == len(pcm) // 2  # the header sizes were fixed
        assert wav.readframes(wav.getnframes()) == pcm
    assert os.listdir(tmp_path) == ["call.wav"]


def test_before_close_only_the_hidden_part_file_exists(
    reactor: ThreadedClock, tmp_path: Path
) -> None:
    path = tmp_path / "call.wav"
    rec = record(reactor, path, sine(500, 1200))  # one chunk handed to the pool
    reactor.drain()  # the chunk was written
    assert rec.temporary_path == temporary_path(path) == tmp_path / ".call.wav.part"
    assert os.listdir(tmp_path) == [".call.wav.part"]
    reactor.wait(rec.close())
    assert os.listdir(tmp_path) == ["call.wav"]


def test_abort_leaves_nothing(reactor: ThreadedClock, tmp_path: Path) -> None:
    rec = record(reactor, tmp_path / "call.wav", sine(500, 1500))
    reactor.drain()
    reactor.wait(rec.abort())
    assert os.listdir(tmp_path) == []
    assert rec.state is RecorderState.ABORTED
    with pytest.raises(RecorderError):
        rec.write(bytes(320))
    with pytest.raises(RecorderError):
        rec.close()


def test_an_empty_recording_is_a_valid_empty_wav(reactor: ThreadedClock, tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    reactor.wait(WavRecorder(path, pool=reactor.pool, reactor=reactor).close())
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() == 0 and wav.getframerate() == 8000


def test_writes_happen_in_the_pool_thread_in_order(
    reactor: ThreadedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: set[int] = set()
    chunks: list[bytes] = []
    original = recorder_module._WavFile.write

    def spy(self: recorder_module._WavFile, pcm: bytes) -> None:
        threads.add(threading.get_ident())
        chunks.append(pcm)
        original(self, pcm)

    monkeypatch.setattr(recorder_module._WavFile, "write", spy)
    pcm = b"".join(bytes([i]) * 320 for i in range(200))  # 4 s, every frame different
    path = tmp_path / "ordered.wav"
    started = time.perf_counter()
    rec = record(reactor, path, pcm)
    assert time.perf_counter() - started < 0.5  # write() only buffers
    reactor.wait(rec.close())
    assert threads and threading.get_ident() not in threads
    assert len(chunks) == len(pcm) // CHUNK_BYTES + 1  # about 1 s per hand-off, then the rest
    assert b"".join(chunks) == pcm
    with wave.open(str(path), "rb") as wav:
        assert wav.readframes(wav.getnframes()) == pcm


def test_a_disk_that_falls_behind_drops_chunks_instead_of_queueing(
    reactor: ThreadedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(recorder_module, "MAX_PENDING_CHUNKS", 2)
    gate = threading.Event()
    original = recorder_module._WavFile.write

    def slow(self: recorder_module._WavFile, pcm: bytes) -> None:
        gate.wait(5)
        original(self, pcm)

    monkeypatch.setattr(recorder_module._WavFile, "write", slow)
    rec = record(reactor, tmp_path / "slow.wav", bytes(CHUNK_BYTES * 5))
    assert rec.dropped_bytes == 3 * CHUNK_BYTES
    gate.set()
    reactor.wait(rec.close())
    with wave.open(str(tmp_path / "slow.wav"), "rb") as wav:
        assert wav.getnframes() * 2 == 2 * CHUNK_BYTES


def test_a_write_error_fails_close_and_removes_the_part_file(
    reactor: ThreadedClock, tmp_path: Path
) -> None:
    directory = tmp_path / "gone"
    directory.mkdir()
    rec = record(reactor, directory / "x.wav", bytes(CHUNK_BYTES))
    reactor.drain()
    os.unlink(directory / ".x.wav.part")
    directory.rmdir()  # rename target directory gone: close must fail, not pretend
    with pytest.raises(RecorderError):
        reactor.wait(rec.close())
    assert rec.state is RecorderState.FAILED
    assert not directory.exists()


def test_the_default_pool_is_one_thread_stopped_at_shutdown(reactor: ThreadedClock) -> None:
    pool = recording_pool(reactor)
    try:
        assert pool.max == 1 and pool is recording_pool(reactor)
        assert [(p, e) for p, e, _ in reactor.triggers] == [("during", "shutdown")]
    finally:
        pool.stop()


CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from twisted.python.threadpool import ThreadPool
    from pbx.media.recorder import WavRecorder

    class Reactor:  # results from the pool are never needed: the process gets killed
        def callFromThread(self, f, *args):
            pass

    pool = ThreadPool(minthreads=1, maxthreads=1)
    pool.start()
    path = Path(sys.argv[1])
    rec = WavRecorder(path, pool=pool, reactor=Reactor())
    for _ in range(150):  # 3 s of audio: chunks are written while we wait
        rec.write(bytes(320))
    part = path.with_name("." + path.name + ".part")
    while not part.exists() or part.stat().st_size < 16000:
        time.sleep(0.01)
    print("writing", flush=True)
    while True:
        rec.write(bytes(320))
        time.sleep(0.02)
    """
)


def test_kill_9_while_recording_leaves_no_file_under_the_final_name(tmp_path: Path) -> None:
    path = tmp_path / "killed.wav"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "writing"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not path.exists()
    assert os.listdir(tmp_path) == [".killed.wav.part"]  # a dot-file listings ignore
