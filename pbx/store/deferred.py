"""Bridge from the store's concurrent futures to Twisted Deferreds.

Owns ``as_deferred``; the only module of pbx.store that imports twisted. Must not import
sqlite3 or sqlite_utils.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future
from typing import Any, Protocol, TypeVar

from twisted.internet.defer import CancelledError, Deferred

log = logging.getLogger(__name__)

T = TypeVar("T")


class ThreadCaller(Protocol):
    """The part of IReactorThreads we need."""

    def callFromThread(self, f: Any, *args: Any, **kwargs: Any) -> None: ...  # noqa: N802


def as_deferred(future: Future[T], reactor: ThreadCaller) -> Deferred[T]:
    """A Deferred fired on the reactor thread (via ``callFromThread``) when ``future`` is done.

    Cancelling the Deferred cancels the future if it has not started yet; a cancelled future
    errbacks with twisted's ``CancelledError``.
    """

    def cancel(_d: Deferred[T]) -> None:
        future.cancel()

    d: Deferred[T] = Deferred(cancel)

    def fire(done: Future[T]) -> None:
        if d.called:  # cancelled by the caller meanwhile
            return
        if done.cancelled():
            d.errback(CancelledError())
            return
        exc = done.exception()
        if exc is not None:
            d.errback(exc)
        else:
            d.callback(done.result())

    future.add_done_callback(lambda done: reactor.callFromThread(fire, done))
    return d
