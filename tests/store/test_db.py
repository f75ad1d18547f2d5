"""Store: writer thread, group commit, savepoint isolation, readers, lifecycle."""

from __future__ import annotations

import os
import stat
import threading
from concurrent.futures import Future
from pathlib import Path

import pytest
from sqlite_utils import Database

from pbx.store.db import Store
from pbx.store.errors import StoreError
from pbx.store.settings import all_settings, get_setting, set_setting


def _block_writer(store: Store) -> tuple[threading.Event, Future[None]]:
    """Occupy the writer so that everything queued next lands in one batch."""
    started, release = threading.Event(), threading.Event()

    def blocker(db: Database) -> None:
        started.set()
        release.wait(10)

    fut = store.write_async(blocker)
    assert started.wait(10)
    return release, fut


def test_open_creates_parent_dir_and_private_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "pbx.sqlite3"
    with Store(path) as s:
        assert s.integrity_check() == "ok"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_connections_use_wal_and_foreign_keys(store: Store) -> None:
    assert store.read(lambda db: db.execute("PRAGMA journal_mode").fetchone()[0]) == "wal"
    assert store.read(lambda db: db.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
    assert store.write(lambda db: db.execute("PRAGMA foreign_keys").fetchone()[0]) == 1
    assert store.write(lambda db: db.execute("PRAGMA synchronous").fetchone()[0]) == 1  # NORMAL


def test_memory_path_is_refused() -> None:
    with pytest.raises(ValueError):
        Store(":memory:")


def test_write_returns_value_and_read_sees_it(store: Store) -> None:
    store.write(set_setting, "greeting", {"text": "hello"})
    assert store.read(get_setting, "greeting") == {"text": "hello"}


def test_concurrent_write_async_jobs_from_four_threads_all_land(store: Store) -> None:
    futures: list[Future[None]] = []
    lock = threading.Lock()

    def submit(thread_no: int) -> None:
        mine = [store.write_async(set_setting, f"k{thread_no}-{i}", i) for i in range(500)]
        with lock:
            futures.extend(mine)

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in futures:
        f.result(timeout=30)
    settings = store.read(all_settings)
    assert len(futures) == 2000
    assert len(settings) == 2000
    assert settings["k3-499"] == 499


def test_failing_job_gets_its_exception_and_others_commit(store: Store) -> None:
    def bad(db: Database) -> None:
        set_setting(db, "bad", 1)
        raise RuntimeError("job failed")

    release, blocker = _block_writer(store)
    before = store.write_async(set_setting, "before", 1)
    failing = store.write_async(bad)
    after = store.write_async(set_setting, "after", 2)
    release.set()
    blocker.result(10)
    with pytest.raises(RuntimeError, match="job failed"):
        failing.result(10)
    before.result(10)
    after.result(10)
    assert store.read(all_settings) == {"before": 1, "after": 2}


def test_job_that_destroys_the_transaction_does_not_lose_the_others(store: Store) -> None:
    store.write(lambda db: db.execute("CREATE TABLE boom (x)"))
    store.write(
        lambda db: db.execute(
            "CREATE TRIGGER boom_rollback BEFORE INSERT ON boom "
            "BEGIN SELECT RAISE(ROLLBACK, 'boom'); END"
        )
    )
    release, blocker = _block_writer(store)
    first = store.write_async(set_setting, "first", 1)
    boom = store.write_async(lambda db: db.execute("INSERT INTO boom VALUES (1)"))
    last = store.write_async(set_setting, "last", 2)
    release.set()
    blocker.result(10)
    with pytest.raises(Exception, match="boom"):
        boom.result(10)
    assert first.result(10) is None
    assert last.result(10) is None
    assert store.read(all_settings) == {"first": 1, "last": 2}


def test_future_resolves_only_after_commit(store: Store) -> None:
    """A read on another connection, run when the future resolves, already sees the write."""
    seen: list[object] = []
    done = threading.Event()

    def on_done(_f: Future[None]) -> None:
        seen.append(store.read_async(get_setting, "k").result(10))
        done.set()

    store.write_async(set_setting, "k", "v").add_done_callback(on_done)
    assert done.wait(10)
    assert seen == ["v"]


def test_read_right_after_write_on_other_thread_sees_it(store: Store) -> None:
    for i in range(50):
        store.write(set_setting, "counter", i)
        assert store.read(get_setting, "counter") == i
        assert store.read_async(get_setting, "counter").result(10) == i


def test_read_connection_is_read_only(store: Store) -> None:
    with pytest.raises(Exception, match="readonly|read-only|query_only"):
        store.read(set_setting, "x", 1)


def test_read_sees_one_snapshot(store: Store) -> None:
    store.write(set_setting, "v", 1)

    def two_reads(db: Database) -> tuple[object, object]:
        first = get_setting(db, "v")
        store.write(set_setting, "v", 2)  # committed by the writer in between
        return first, get_setting(db, "v")

    assert store.read(two_reads) == (1, 1)
    assert store.read(get_setting, "v") == 2


def test_write_from_inside_a_job_is_refused(store: Store) -> None:
    with pytest.raises(StoreError, match="deadlock"):
        store.write(lambda db: store.write(set_setting, "x", 1))


def test_close_drains_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    s = Store(path)
    s.open()
    futures = [s.write_async(set_setting, f"k{i}", i) for i in range(300)]
    s.close()
    assert all(f.done() and f.exception() is None for f in futures)
    with Store(path) as again:
        assert len(again.read(all_settings)) == 300


def test_closed_store_refuses_work(tmp_path: Path) -> None:
    s = Store(tmp_path / "pbx.sqlite3")
    with pytest.raises(StoreError):
        s.write_async(set_setting, "x", 1)
    s.open()
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError):
        s.write(set_setting, "x", 1)
    with pytest.raises(StoreError):
        s.read_async(get_setting, "x")


def test_store_can_be_reopened_and_keeps_data(tmp_path: Path) -> None:
    s = Store(tmp_path / "pbx.sqlite3")
    s.open()
    s.write(set_setting, "x", [1, 2])
    assert s.read(get_setting, "x") == [1, 2]
    s.close()
    s.open()
    assert s.read(get_setting, "x") == [1, 2]  # fresh reader connection after reopen
    s.close()


def test_cancelled_future_is_not_run(store: Store) -> None:
    release, blocker = _block_writer(store)
    cancelled = store.write_async(set_setting, "never", 1)
    assert cancelled.cancel()
    kept = store.write_async(set_setting, "kept", 1)
    release.set()
    blocker.result(10)
    kept.result(10)
    assert store.read(all_settings) == {"kept": 1}
