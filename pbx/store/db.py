"""The one SQLite database of the pbx: connections, the writer thread and transactions.

Owns every connection to the database file; nobody else opens it. Must not import twisted
(see pbx.store.deferred) or anything outside pbx.store.

Concurrency model (datasette's pattern):

* ONE writer thread owns the only read-write connection. ``write``/``write_async`` queue a job
  ``fn(db, *args, **kw)``. The writer takes every queued job (at most ``BATCH_MAX``), runs
  ``BEGIN IMMEDIATE``, each job inside its own ``SAVEPOINT`` (a failing job rolls back only its
  own changes and gets its exception), ``COMMIT``s, and only then resolves the futures (group
  commit). A resolved future therefore means "committed".
* Jobs and read functions must return materialised values (not lazy generators or cursors)
  and must not issue BEGIN/COMMIT/ROLLBACK themselves.
* Reads run on per-thread read-only connections (``threading.local``) in a deferred
  transaction, so one ``read`` sees one consistent WAL snapshot, and every write whose future
  resolved before the read started.  ``read_async`` runs reads on a pool of two threads.

Durability: the database runs in WAL mode with ``synchronous=NORMAL``. A committed transaction
has been written to the WAL file (the OS page cache) before COMMIT returns, so it survives the
process being killed (SIGKILL, crash, OOM). It is NOT guaranteed to survive power loss or an OS
crash: the last transactions may then roll back, but the database stays consistent. That is the
trade-off we want: thousands of REGISTERs per second without an fsync per commit.

The database file is created with mode 0600 (it holds password-equivalent digest hashes);
SQLite gives the -wal and -shm files the same mode.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlite_utils import Database

from pbx.store.errors import StoreError
from pbx.store.migrations import migrate

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

BATCH_MAX = 500
READER_THREADS = 2
BUSY_TIMEOUT_MS = 5000
_SAVEPOINT = "pbx_job"


@dataclass(eq=False)
class _Job:
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any] = field(default_factory=Future)


class _Stop:
    """Queue sentinel: everything queued before it is written, then the writer exits."""


class _Reader:
    """A thread's read-only connection; closed when the thread dies or the store closes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def close(self) -> None:
        self.db.close()

    def __del__(self) -> None:
        try:
            self.db.close()
        except sqlite3.Error:
            pass


def _connect(path: Path, *, check_same_thread: bool) -> Database:
    # isolation_level=None: the driver never opens transactions behind our back; the writer
    # and read() issue BEGIN themselves.
    conn = sqlite3.connect(
        str(path),
        isolation_level=None,
        check_same_thread=check_same_thread,
        timeout=BUSY_TIMEOUT_MS / 1000,
    )
    db = Database(conn, execute_plugins=False)
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys=ON")
    return db


def _create_private_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    os.close(fd)


class Store:
    """Owner of the database file: one writer thread, per-thread readers."""

    def __init__(self, path: str | Path) -> None:
        if str(path) == ":memory:":
            raise ValueError("Store needs a file path (':memory:' cannot be shared by threads)")
        self.path = Path(path)
        self._lock = threading.Lock()
        self._is_open = False
        self._queue: queue.SimpleQueue[_Job | _Stop] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._readers: weakref.WeakSet[_Reader] = weakref.WeakSet()
        self._generation = 0

    # -- lifecycle ---------------------------------------------------------------------------

    def open(self) -> None:
        """Create the file if needed, apply migrations, start the writer and reader pool."""
        with self._lock:
            if self._is_open:
                raise StoreError("store is already open")
        _create_private_file(self.path)
        ready: Future[None] = Future()
        writer = threading.Thread(
            target=self._writer_main, args=(ready,), name="pbx-store-writer", daemon=True
        )
        writer.start()
        try:
            ready.result()
        except BaseException:
            writer.join()
            raise
        with self._lock:
            self._writer = writer
            self._pool = ThreadPoolExecutor(READER_THREADS, thread_name_prefix="pbx-store-reader")
            self._generation += 1
            self._is_open = True
        log.info("opened database %s", self.path)

    @property
    def is_open(self) -> bool:
        """True between open() and close()."""
        return self._is_open

    def close(self) -> None:
        """Write everything already queued, stop the writer, close every connection."""
        with self._lock:
            if not self._is_open:
                return
            self._is_open = False
            self._queue.put(_Stop())
            writer, pool = self._writer, self._pool
        if writer is not None:
            writer.join()
        if pool is not None:
            pool.shutdown(wait=True)
        for reader in list(self._readers):
            reader.close()
        self._readers = weakref.WeakSet()
        log.info("closed database %s", self.path)

    def __enter__(self) -> Store:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- writes ------------------------------------------------------------------------------

    def write_async(
        self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kw: P.kwargs
    ) -> Future[T]:
        """Queue ``fn(db, *args, **kw)``; the future resolves after its transaction committed."""
        job = _Job(fn, args, kw)
        with self._lock:
            if not self._is_open:
                raise StoreError("store is not open")
            self._queue.put(job)
        return job.future

    def write(self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(db, *args, **kw)`` on the writer thread; return once committed."""
        if threading.current_thread() is self._writer:
            raise StoreError("write() called from inside a write job (would deadlock)")
        return self.write_async(fn, *args, **kw).result()

    # -- reads -------------------------------------------------------------------------------

    def read(self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kw: P.kwargs) -> T:
        """Run ``fn(db, *args, **kw)`` on this thread's read-only connection, in one snapshot."""
        db = self._reader_db()
        if db.conn.in_transaction:  # nested read() on the same thread: same snapshot
            return fn(db, *args, **kw)
        db.conn.execute("BEGIN")
        try:
            return fn(db, *args, **kw)
        finally:
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")

    def read_async(
        self, fn: Callable[Concatenate[Database, P], T], *args: P.args, **kw: P.kwargs
    ) -> Future[T]:
        """Run ``read(fn, ...)`` on the reader pool."""

        def run() -> T:
            return self.read(fn, *args, **kw)

        with self._lock:
            if not self._is_open or self._pool is None:
                raise StoreError("store is not open")
            return self._pool.submit(run)

    def integrity_check(self) -> str:
        """Return the result of ``PRAGMA integrity_check`` ("ok" when healthy)."""
        rows = self.read(lambda db: db.execute("PRAGMA integrity_check").fetchall())
        return "\n".join(str(row[0]) for row in rows)

    def _reader_db(self) -> Database:
        reader: _Reader | None = getattr(self._local, "reader", None)
        if reader is not None and self._local.generation == self._generation:
            return reader.db
        with self._lock:
            if not self._is_open:
                raise StoreError("store is not open")
            generation = self._generation
        # check_same_thread=False only so close() can close it from another thread; it is
        # otherwise used by its own thread only.
        db = _connect(self.path, check_same_thread=False)
        db.conn.execute("PRAGMA query_only=ON")
        reader = _Reader(db)
        self._readers.add(reader)
        self._local.reader = reader
        self._local.generation = generation
        return db

    # -- the writer thread -------------------------------------------------------------------

    def _writer_main(self, ready: Future[None]) -> None:
        try:
            db = _connect(self.path, check_same_thread=True)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        try:
            mode = db.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise StoreError(f"cannot switch {self.path} to WAL (journal_mode={mode})")
            db.conn.execute("PRAGMA synchronous=NORMAL")
            migrate(db)
        except BaseException as exc:
            db.close()
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            self._writer_loop(db)
        finally:
            db.close()

    def _writer_loop(self, db: Database) -> None:
        stop = False
        while not stop:
            batch: list[_Job] = []
            item = self._queue.get()
            while True:
                if isinstance(item, _Stop):
                    stop = True
                    break
                batch.append(item)
                if len(batch) >= BATCH_MAX:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            if batch:
                self._run_batch_safely(db, batch)

    def _run_batch_safely(self, db: Database, batch: list[_Job]) -> None:
        try:
            self._run_batch(db, [job for job in batch if job.future.set_running_or_notify_cancel()])
        except Exception as exc:  # keep the writer alive whatever happened
            log.exception("writer batch failed")
            if db.conn.in_transaction:
                db.conn.execute("ROLLBACK")
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(exc)

    def _run_batch(self, db: Database, pending: list[_Job]) -> None:
        """Run ``pending`` in one transaction; retry without a job that destroyed it."""
        while pending:
            try:
                db.conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                _fail(pending, exc)
                return
            results: list[tuple[_Job, bool, Any]] = []
            retry: list[_Job] | None = None
            for index, job in enumerate(pending):
                ok, value = _run_in_savepoint(db, job)
                if db.conn.in_transaction:
                    results.append((job, ok, value))
                    continue
                if ok:  # the job ended the transaction itself: all so far is committed
                    _resolve([*results, (job, ok, value)])
                    retry = pending[index + 1 :]
                else:  # the error rolled back the whole transaction: replay the others
                    job.future.set_exception(value)
                    replay = [j for j, j_ok, _ in results if j_ok]
                    _resolve([r for r in results if not r[1]])
                    retry = replay + pending[index + 1 :]
                break
            if retry is not None:
                pending = retry
                continue
            try:
                db.conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.conn.in_transaction:
                    db.conn.execute("ROLLBACK")
                _fail(pending, exc)
                return
            _resolve(results)
            return


def _run_in_savepoint(db: Database, job: _Job) -> tuple[bool, Any]:
    db.conn.execute(f"SAVEPOINT {_SAVEPOINT}")
    try:
        value = job.fn(db, *job.args, **job.kwargs)
    except Exception as exc:
        if db.conn.in_transaction:
            db.conn.execute(f"ROLLBACK TO {_SAVEPOINT}")
            db.conn.execute(f"RELEASE {_SAVEPOINT}")
        return False, exc
    if db.conn.in_transaction:
        db.conn.execute(f"RELEASE {_SAVEPOINT}")
    return True, value


def _resolve(results: list[tuple[_Job, bool, Any]]) -> None:
    for job, ok, value in results:
        if ok:
            job.future.set_result(value)
        else:
            job.future.set_exception(value)


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)
