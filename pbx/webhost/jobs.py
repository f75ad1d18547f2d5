"""Background upkeep for the web UI's data: the devices table from REGISTERs and the daily
call-record retention job. Both run on the reactor and hand the work to the store's writer.
Must not import pbx.service.
"""

import logging
import time
from typing import Any

from twisted.internet import defer, task

from pbx.store import cdr, devices, registrations, settings
from pbx.store.db import Store
from pbx.store.deferred import as_deferred

log = logging.getLogger(__name__)


DEVICE_FLUSH = 5.0
RETENTION_INTERVAL = 86400.0
RETENTION_DEFAULT_DAYS = 180


class DeviceTracker:
    """Keeps the devices table up to date from REGISTERs: coalesced, one write per interval."""

    def __init__(self, reactor: Any, store: Store) -> None:
        self._reactor = reactor
        self._store = store
        self._pending: dict[tuple[str, str, str | None], devices.Sighting] = {}
        self._loop: task.LoopingCall | None = None

    def observe(self, extension: str, upserts: list[registrations.Binding]) -> None:
        for b in upserts:
            self._pending[(extension, b.user_agent, b.instance_id)] = devices.Sighting(
                extension,
                b.user_agent,
                f"{b.source_host}:{b.source_port}",
                b.updated_at or time.time(),
                b.instance_id,
            )

    def start(self) -> None:
        self._loop = task.LoopingCall(self.flush)
        self._loop.clock = self._reactor
        self._loop.start(DEVICE_FLUSH, now=False)

    def stop(self) -> defer.Deferred[Any] | None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return self.flush()

    def flush(self) -> defer.Deferred[Any] | None:
        if not self._pending:
            return None
        batch, self._pending = list(self._pending.values()), {}
        d = as_deferred(self._store.write_async(devices.record_sightings, batch), self._reactor)
        d.addErrback(lambda f: log.warning("devices not updated: %s", f.getErrorMessage()))
        return d


class RetentionJob:
    """Deletes call records older than the ``calls.retention_days`` setting (default 180
    days) at start-up and then every 24 hours."""

    def __init__(self, reactor: Any, store: Store) -> None:
        self._reactor = reactor
        self._store = store
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self.run)
        self._loop.clock = self._reactor
        self._loop.start(RETENTION_INTERVAL, now=True)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    @defer.inlineCallbacks
    def run(self) -> Any:
        try:
            days = yield as_deferred(
                self._store.read_async(
                    settings.get_setting, "calls.retention_days", RETENTION_DEFAULT_DAYS
                ),
                self._reactor,
            )
            if isinstance(days, bool) or not isinstance(days, int | float) or days < 1:
                log.warning("calls.retention_days %r is not a number of days; using 180", days)
                days = RETENTION_DEFAULT_DAYS
            cutoff = time.time() - float(days) * 86400.0
            deleted = yield as_deferred(
                self._store.write_async(cdr.purge_before, cutoff), self._reactor
            )
            if deleted:
                log.info("deleted %d call record(s) older than %g days", deleted, days)
        except Exception:  # keep the daily loop alive whatever one run hit
            log.exception("call record retention failed")
