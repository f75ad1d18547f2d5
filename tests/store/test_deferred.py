"""as_deferred: a future's outcome reaches a Deferred through reactor.callFromThread."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from twisted.internet.defer import CancelledError
from twisted.python.failure import Failure

from pbx.store.deferred import as_deferred


class FakeReactor:
    """Records each callFromThread call, then runs it (as the reactor thread would)."""

    def __init__(self) -> None:
        self.calls: list[Callable[..., Any]] = []

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:  # noqa: N802
        self.calls.append(f)
        f(*args, **kw)


def test_result_is_delivered_through_call_from_thread() -> None:
    reactor, fut = FakeReactor(), Future[int]()
    results: list[int] = []
    d = as_deferred(fut, reactor)
    d.addCallback(results.append)
    assert results == [] and reactor.calls == []
    fut.set_result(7)
    assert results == [7]
    assert len(reactor.calls) == 1


def test_exception_becomes_errback() -> None:
    reactor, fut = FakeReactor(), Future[int]()
    failures: list[Failure] = []
    as_deferred(fut, reactor).addErrback(failures.append)
    fut.set_exception(KeyError("x"))
    assert len(failures) == 1 and isinstance(failures[0].value, KeyError)
    assert len(reactor.calls) == 1


def test_already_done_future_fires_immediately() -> None:
    reactor, fut = FakeReactor(), Future[str]()
    fut.set_result("done")
    results: list[str] = []
    as_deferred(fut, reactor).addCallback(results.append)
    assert results == ["done"]


def test_cancelling_the_deferred_cancels_a_pending_future() -> None:
    reactor, fut = FakeReactor(), Future[int]()
    d = as_deferred(fut, reactor)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    d.cancel()
    assert fut.cancelled()
    assert len(failures) == 1  # fired once, not again when the future's callback runs
    assert isinstance(failures[0].value, CancelledError)


def test_cancelled_future_errbacks_with_cancelled_error() -> None:
    reactor, fut = FakeReactor(), Future[int]()
    d = as_deferred(fut, reactor)
    failures: list[Failure] = []
    d.addErrback(failures.append)
    fut.cancel()
    assert len(failures) == 1 and isinstance(failures[0].value, CancelledError)
