"""pbx.service's reactor-side store glue: credentials and callee look-ups, REGISTER commits.

A real PbxServer (nothing listening: start() is not called) on a task.Clock whose
callFromThread queues the call until the test runs it, as the reactor thread would, and a real
Store on a temporary file.
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task
from twisted.python.failure import Failure

from pbx.calls.directory import Callee
from pbx.config import Config
from pbx.service import PbxServer
from pbx.sip.registrar import RegisterRefused
from pbx.store import credentials as store_credentials
from pbx.store import registrations, users
from pbx.store.db import Store
from pbx.store.registrations import Binding


class ThreadedClock(task.Clock):
    """task.Clock plus callFromThread: calls from other threads wait in a queue."""

    def __init__(self) -> None:
        super().__init__()
        self.from_threads: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        self.from_threads.put((f, args))

    def run_one(self) -> None:
        f, args = self.from_threads.get(timeout=5)
        f(*args)


def result_of(reactor: ThreadedClock, d: defer.Deferred[Any]) -> Any:
    """Run what other threads hand to the reactor until ``d`` fired; its result or Failure."""
    out: list[Any] = []
    d.addBoth(out.append)
    while not out:
        reactor.advance(0)
        if not out:
            reactor.run_one()
    return out[0]


@pytest.fixture
def reactor() -> ThreadedClock:
    return ThreadedClock()


@pytest.fixture
def server(tmp_path: Path, reactor: ThreadedClock) -> Iterator[PbxServer]:
    store = Store(tmp_path / "pbx.sqlite")
    store.open()
    for ext in ("1001", "1002"):
        store.write(users.add_user, ext, ext, static_contact="sip:127.0.0.1:5099")
        store.write(
            store_credentials.set_credentials,
            store_credentials.Credentials(ext, "pbx", "enc", "a" * 32, "b" * 64, 0.0),
        )
    yield PbxServer(Config(data_dir=tmp_path), reactor, store)
    store.close()


def binding(extension: str, contact: str, expires_at: float = 4e9) -> Binding:
    return Binding(
        extension, contact, expires_at, "cid", 1, "UDP", "127.0.0.1", 5062, "ua", None, None,
        (), None, 0.0,
    )  # fmt: skip


def changes(extension: str, contact: str) -> dict[str, Any]:
    return {
        "upserts": [binding(extension, contact)],
        "removes": [],
        "remove_all": False,
        "now": 1.0,
    }


# -- disabled extensions -----------------------------------------------------------------------


def test_calls_to_a_disabled_extension_find_it_unregistered(
    server: PbxServer, reactor: ThreadedClock
) -> None:
    enabled = result_of(reactor, server.switch.directory.callee("1001"))
    assert enabled.exists and [b.contact for b in enabled.bindings] == ["sip:127.0.0.1:5099"]
    server.store.write(users.set_user_enabled, "1001", False)
    # exists, no contacts: the switch answers 480 Not Registered, as for an idle extension
    disabled = result_of(reactor, server.switch.directory.callee("1001"))
    assert disabled.exists and disabled.bindings == []
    assert result_of(reactor, server.switch.directory.callee("4040")) == Callee(False, [])


def test_a_disabled_extension_has_no_credentials(server: PbxServer, reactor: ThreadedClock) -> None:
    server.store.write(users.set_user_enabled, "1002", False)
    assert result_of(reactor, server._lookup_credentials("1002")) is None
    assert result_of(reactor, server._lookup_credentials("1001")) is not None


def test_a_register_committed_after_its_user_was_disabled_is_refused(
    server: PbxServer, reactor: ThreadedClock
) -> None:
    """Credentials are cached for 2 s: a REGISTER authenticated just before the user was
    disabled reaches the store afterwards; it gets 403 and binds nothing."""
    server.store.write(users.set_user_enabled, "1001", False)
    outcome = result_of(reactor, server._commit_bindings("1001", **changes("1001", "sip:a@h")))
    assert isinstance(outcome, Failure) and isinstance(outcome.value, RegisterRefused)
    assert outcome.value.status == 403
    assert server.store.read(registrations.list_bindings, now=0.0) == []


# -- REGISTER commits: one store hand-off per batch ----------------------------------------------


@pytest.fixture
def write_jobs(server: PbxServer, monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every job handed to the store's writer thread: (function, args)."""
    jobs: list[tuple[Any, ...]] = []
    real = server.store.write_async

    def spy(fn: Any, *args: Any, **kwargs: Any) -> Any:
        jobs.append((fn, args))
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(server.store, "write_async", spy)
    return jobs


def test_registers_committed_in_one_reactor_turn_go_to_the_store_as_one_batch(
    server: PbxServer,
    reactor: ThreadedClock,
    write_jobs: list[tuple[Any, ...]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registered: list[str] = []
    monkeypatch.setattr(server.web, "registered", lambda ext, upserts: registered.append(ext))
    seen: dict[str, list[str]] = {}

    def committed_then(ext: str) -> Callable[[list[Binding]], list[Binding]]:
        def check(bindings: list[Binding]) -> list[Binding]:
            # fired only once the change is committed: another connection reads it
            stored = server.store.read(registrations.list_bindings, now=2.0, extension=ext)
            seen[ext] = [b.contact for b in stored]
            return bindings

        return check

    ds = []
    for ext in ("1001", "1002", "1001"):
        contact = f"sip:{ext}-{len(ds)}@127.0.0.1"
        ds.append(
            server._commit_bindings(ext, **changes(ext, contact)).addCallback(committed_then(ext))
        )
    assert write_jobs == []  # nothing handed over yet: the batch waits for the end of the turn
    results = [result_of(reactor, d) for d in ds]
    assert [fn for fn, _ in write_jobs] == [registrations.apply_many]
    assert [ext for ext, _ in write_jobs[0][1][0]] == ["1001", "1002", "1001"]
    assert [[b.contact for b in r] for r in results] == [
        ["sip:1001-0@127.0.0.1"],
        ["sip:1002-1@127.0.0.1"],
        ["sip:1001-0@127.0.0.1", "sip:1001-2@127.0.0.1"],
    ]
    assert seen["1002"] == ["sip:1002-1@127.0.0.1"]
    assert registered == ["1001", "1002", "1001"]  # devices and dashboards, after each commit


def test_registers_arriving_while_a_batch_is_committed_go_as_the_next_batch(
    server: PbxServer, reactor: ThreadedClock, write_jobs: list[tuple[Any, ...]]
) -> None:
    first = server._commit_bindings("1001", **changes("1001", "sip:a@127.0.0.1"))
    reactor.advance(0)  # the end of the turn: the first batch goes
    assert len(write_jobs) == 1
    later = [
        server._commit_bindings("1002", **changes("1002", "sip:b@127.0.0.1")),
        server._commit_bindings("1002", **changes("1002", "sip:c@127.0.0.1")),
    ]
    reactor.advance(0)
    assert len(write_jobs) == 1  # waiting for the batch in flight
    assert [b.contact for b in result_of(reactor, first)] == ["sip:a@127.0.0.1"]
    outcomes = [result_of(reactor, d) for d in later]
    assert len(write_jobs) == 2 and len(write_jobs[1][1][0]) == 2
    assert [len(r) for r in outcomes] == [1, 2]


def test_a_failing_register_in_a_batch_fails_alone(
    server: PbxServer, reactor: ThreadedClock, write_jobs: list[tuple[Any, ...]]
) -> None:
    server.store.write(users.set_user_enabled, "1002", False)
    ok = server._commit_bindings("1001", **changes("1001", "sip:a@127.0.0.1"))
    refused = server._commit_bindings("1002", **changes("1002", "sip:b@127.0.0.1"))
    assert [b.extension for b in result_of(reactor, ok)] == ["1001"]
    outcome = result_of(reactor, refused)
    assert isinstance(outcome, Failure) and isinstance(outcome.value, RegisterRefused)
    assert [fn for fn, _ in write_jobs if fn is not users.set_user_enabled] == [
        registrations.apply_many
    ]


def test_a_batch_the_store_cannot_take_fails_every_register_in_it(
    server: PbxServer, reactor: ThreadedClock
) -> None:
    server.store.close()
    d = server._commit_bindings("1001", **changes("1001", "sip:a@127.0.0.1"))
    outcome = result_of(reactor, d)
    assert isinstance(outcome, Failure)
    server.store.open()
    again = server._commit_bindings("1001", **changes("1001", "sip:a@127.0.0.1"))
    assert [b.extension for b in result_of(reactor, again)] == ["1001"]  # not stuck
