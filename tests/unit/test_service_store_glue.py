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

from pbx.calls.switch import Callee
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
    enabled = result_of(reactor, server._lookup_callee("1001"))
    assert enabled.exists and [b.contact for b in enabled.bindings] == ["sip:127.0.0.1:5099"]
    server.store.write(users.set_user_enabled, "1001", False)
    # exists, no contacts: the switch answers 480 Not Registered, as for an idle extension
    assert result_of(reactor, server._lookup_callee("1001")) == Callee(True, [])
    assert result_of(reactor, server._lookup_callee("4040")) == Callee(False, [])


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
