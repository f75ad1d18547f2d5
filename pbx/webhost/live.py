"""Live state of the running server for the web app: :class:`ServerLive` (web.backend.Live)
and the once-a-second :class:`HealthSampler` behind it and the dashboard's health events.

Live methods run on WSGI threads: registrations are read from the store on the calling
thread's own read connection, active calls are fetched on the reactor with
``blockingCallFromThread``, health is the latest sample, the feature-code table comes from the
callable the server injects (by default it is loaded from the data directory). The call
commands (click-to-call, hang up, transfer) run on the reactor through the injected
``call_commands`` object, with ``blockingCallFromThread``; an error it raises that carries
``status`` and ``error_id`` becomes web.backend.CallCommandError. Must not import pbx.service
or pbx.calls.
"""

import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import task, threads
from twisted.python import threadable

from pbx import featurecodes
from pbx.health import LoopLagMonitor, histogram_percentile
from pbx.store import registrations
from pbx.store.db import Store
from web.backend import CallCommandError

log = logging.getLogger(__name__)


LAG_WINDOW = 10  # seconds of loop-lag history behind health's loop_lag_p99_ms


def registration_rows(bindings: list[registrations.Binding], now: float) -> list[dict[str, Any]]:
    """Live.registrations() rows from active bindings."""
    return [
        {
            "extension": b.extension,
            "contact": b.contact,
            "user_agent": b.user_agent,
            "address": f"{b.source_host}:{b.source_port}",
            "transport": b.transport,
            "expires_in": max(0, int(b.expires_at - now)),
        }
        for b in bindings
    ]


class HealthSampler:
    """Samples process health once a second on the reactor (cheap syscalls only)."""

    def __init__(
        self, reactor: Any, data_dir: Path, db_path: Path, started_at: float, loop_lag: Any
    ) -> None:
        self._reactor = reactor
        self._data_dir = data_dir
        self._db_path = db_path
        self._started_at = started_at
        self._loop_lag: LoopLagMonitor | None = loop_lag
        self._cpu = (time.monotonic(), time.process_time())
        self._lag_history: list[list[int]] = []
        self._loop: task.LoopingCall | None = None
        self.latest: dict[str, Any] = {}
        self.sample()

    def start(self) -> None:
        self._loop = task.LoopingCall(self.sample)
        self._loop.clock = self._reactor
        self._loop.start(1.0, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()

    def sample(self) -> dict[str, Any]:
        wall, cpu = time.monotonic(), time.process_time()
        elapsed = wall - self._cpu[0]
        cpu_percent = 100.0 * (cpu - self._cpu[1]) / elapsed if elapsed > 0 else 0.0
        self._cpu = (wall, cpu)
        self.latest = {
            "uptime_s": round(time.time() - self._started_at, 1),
            "cpu_percent": round(cpu_percent, 1),
            "memory_rss": _rss_bytes(),
            "loop_lag_p99_ms": self._lag_p99(),
            "disk_free": _disk_free(self._data_dir),
            "db_size": _file_sizes(self._db_path),
        }
        return self.latest

    def _lag_p99(self) -> float:
        """p99 loop lag of the last LAG_WINDOW seconds (difference of histogram snapshots)."""
        if self._loop_lag is None:
            return 0.0
        hist = list(self._loop_lag.hist)
        self._lag_history.append(hist)
        del self._lag_history[: -LAG_WINDOW - 1]
        oldest = self._lag_history[0]
        window = [now - then for now, then in zip(hist, oldest, strict=True)]
        return histogram_percentile(window if sum(window) else hist, 0.99)


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource as rusage

        return rusage.getrusage(rusage.RUSAGE_SELF).ru_maxrss * 1024


def _disk_free(path: Path) -> int:
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return 0


def _file_sizes(db_path: Path) -> int:
    total = 0
    for suffix in ("", "-wal"):
        try:
            total += os.stat(f"{db_path}{suffix}").st_size
        except OSError:
            pass
    return total


class ServerLive:
    """web.backend.Live for the running server; every method is called from WSGI threads."""

    def __init__(
        self,
        reactor: Any,
        store: Store,
        health: HealthSampler,
        active_calls: Callable[[], list[dict[str, Any]]],
        on_settings_changed: Callable[[], object],
        *,
        feature_codes: Callable[[], list[dict[str, Any]]] | None = None,
        data_dir: Path | None = None,
        on_music_changed: Callable[[int], object] | None = None,
        call_commands: Any = None,
        trunks: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``trunks`` returns the trunk registrations' states (on the reactor).
        ``feature_codes`` returns the running table's rows (FeatureCodes.describe());
        without it they are loaded from ``data_dir`` (default: the database's folder).
        ``on_music_changed(site_id)`` runs on the reactor after a site's hold music file
        changed (e.g. MusicLibrary.reload of class site-<id>). ``call_commands`` has
        ``originate(from_extension, to)``, ``hang_up_call(call_id)`` and
        ``transfer_call(call_id, to, leg_id)``, called on the reactor (results or Deferreds)."""
        self._reactor = reactor
        self._store = store
        self._health = health
        self._active_calls = active_calls
        self._on_settings_changed = on_settings_changed
        folder = store.path.parent if data_dir is None else data_dir
        self._feature_codes = feature_codes or (lambda: featurecodes.load(folder).describe())
        self._on_music_changed = on_music_changed
        self._call_commands = call_commands
        self._trunks = trunks or (lambda: [])

    def registrations(self) -> list[dict[str, Any]]:
        now = time.time()
        return registration_rows(self._store.read(registrations.list_bindings, now=now), now)

    def active_calls(self) -> list[dict[str, Any]]:
        if threadable.isInIOThread():
            return self._active_calls()
        calls: list[dict[str, Any]] = threads.blockingCallFromThread(
            self._reactor, self._active_calls
        )
        return calls

    def health(self) -> dict[str, Any]:
        return dict(self._health.latest)

    def trunks(self) -> list[dict[str, Any]]:
        if threadable.isInIOThread():
            return self._trunks()
        rows: list[dict[str, Any]] = threads.blockingCallFromThread(self._reactor, self._trunks)
        return rows

    def settings_changed(self) -> None:
        self._reactor.callFromThread(self._on_settings_changed)

    def feature_codes(self) -> list[dict[str, Any]]:
        return [dict(row) for row in self._feature_codes()]

    def music_changed(self, site_id: int) -> None:
        if self._on_music_changed is None:
            log.info("site %d hold music changed; nothing to tell (no music library)", site_id)
            return
        self._reactor.callFromThread(self._on_music_changed, site_id)

    def originate(self, from_extension: str, to: str) -> dict[str, Any]:
        return dict(self._command("originate", from_extension, to))

    def hang_up_call(self, call_id: str) -> None:
        self._command("hang_up_call", call_id)

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict[str, Any]:
        return dict(self._command("transfer_call", call_id, to, leg_id) or {})

    def _command(self, name: str, *args: Any) -> Any:
        """Run call command ``name`` on the reactor and wait for its result."""
        command = getattr(self._call_commands, name, None)
        if command is None:
            raise CallCommandError(409, "refused", "call control is not available")
        try:
            if threadable.isInIOThread():
                return command(*args)
            return threads.blockingCallFromThread(self._reactor, command, *args)
        except CallCommandError:
            raise
        except Exception as exc:
            status, error_id = getattr(exc, "status", None), getattr(exc, "error_id", None)
            if isinstance(status, int) and isinstance(error_id, str):
                raise CallCommandError(status, error_id, str(exc) or error_id) from exc
            raise
