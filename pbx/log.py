"""Logging set-up for the pbx process, and the adapter that stamps a call's Call-ID.

Log lines go to stderr (and the service manager's journal) in one plain format. Code that
works on one call uses :func:`call_logger` so every line carries ``[call-id]``.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup(level: str = "INFO") -> None:
    """Configure the root logger once for the process."""
    logging.basicConfig(level=level.upper(), format=FORMAT)
    logging.getLogger("twisted").setLevel(logging.WARNING)


def route_twisted_logs() -> None:
    """Send Twisted's own log events at warning and above to stdlib logging (logger
    "twisted"); drop the rest at the first observer.

    Without an observer Twisted buffers every event (65,536 of them) until someone starts
    logging, and each media port pair of a call adds "starting on"/"Closed" info events: CPU
    per call and memory for nothing. Unhandled errors in Deferreds are critical: they still
    reach the log.
    """
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        LogLevelFilterPredicate,
        STDLibLogObserver,
        globalLogBeginner,
    )

    # zope interfaces are not visible to mypy: the objects provide them at run time
    predicate: Any = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    stdlib: Any = STDLibLogObserver(name="twisted")
    observer: Any = FilteringLogObserver(stdlib, [predicate])
    globalLogBeginner.beginLoggingTo([observer], discardBuffer=True, redirectStandardIO=False)


class CallLogger(logging.LoggerAdapter):  # type: ignore[type-arg,unused-ignore]
    """Prefixes every message with the call's Call-ID."""

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return f"[{self.extra['call_id'] if self.extra else '-'}] {msg}", kwargs


def call_logger(logger: logging.Logger, call_id: str) -> CallLogger:
    return CallLogger(logger, {"call_id": call_id})
