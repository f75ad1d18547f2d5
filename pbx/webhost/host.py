"""HTTPS hosting of the Flask app on the reactor (twisted.web.wsgi), beside ``/events``.

:class:`WebHost` listens on ``[http] port`` with the SIP TLS certificate and the TLS options of
pbx.certs (TLS 1.2+, full chain), sends
``/events`` to the native SSE resource and every other path to the WSGI app on its own thread
pool (started with the server, joined off the reactor thread at stop), optionally answers a
plain-HTTP ``[http] redirect_port`` with 301 to HTTPS only, keeps the web secret key file,
and starts the live-data and upkeep jobs. Must not import pbx.service.
"""

import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads
from twisted.python.threadpool import ThreadPool
from twisted.web import resource, server
from twisted.web.wsgi import WSGIResource

from pbx.calls.events import EventFeed
from pbx.certs import TlsFiles, tls_options
from pbx.config import Config
from pbx.store import registrations
from pbx.store.db import Store
from pbx.webhost.events import EventsResource, EventStream
from pbx.webhost.jobs import DeviceTracker, RetentionJob
from pbx.webhost.live import HealthSampler, ServerLive
from web import app as web_app
from web.backend import WebContext

log = logging.getLogger(__name__)


WEB_THREADS = 8
SECRET_FILE = "web-secret.key"
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)$")


def load_secret_key(data_dir: Path) -> bytes:
    """The key signing web sessions and SSE tokens: DATA/web-secret.key (0600), made once."""
    path = data_dir / SECRET_FILE
    if path.is_file():
        if path.stat().st_mode & 0o077:
            raise PermissionError(f"{path} must not be readable by group or others")
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(os.urandom(32))
    os.replace(tmp, path)
    return path.read_bytes()


class WebRoot(resource.Resource):
    """``/events`` natively, every other path to the WSGI app."""

    def __init__(self, wsgi: Any, events: Any) -> None:
        super().__init__()
        self._wsgi = wsgi
        self.putChild(b"events", events)

    def getChild(self, path: bytes, request: Any) -> resource.Resource:  # noqa: N802 - twisted API
        request.prepath.pop()
        request.postpath.insert(0, path)
        return self._wsgi


class RedirectToHttps(resource.Resource):
    """Plain HTTP: every request gets 301 to the same path on the HTTPS port."""

    isLeaf = True

    def __init__(self, https_port: int, fallback_host: str) -> None:
        super().__init__()
        self._port = https_port
        self._fallback = fallback_host

    def render(self, request: server.Request) -> bytes:
        host = request.getRequestHostname().decode("ascii", "replace")
        if not _HOST.match(host):
            host = self._fallback
        port = "" if self._port == 443 else f":{self._port}"
        path = request.uri.decode("ascii", "replace") if request.uri.startswith(b"/") else "/"
        request.setResponseCode(301)
        request.setHeader(b"location", f"https://{host}{port}{path}".encode())
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"use https\n"


class WebHost:
    """Everything web on the reactor: listening ports, thread pool, live data, jobs."""

    def __init__(
        self,
        reactor: Any,
        config: Config,
        store: Store,
        *,
        started_at: float,
        loop_lag: Any,
        active_calls: Callable[[], list[dict[str, Any]]],
        call_events: EventFeed | None,
        on_settings_changed: Callable[[], object],
        app_factory: Callable[[WebContext], Any] | None = None,
        threads: int = WEB_THREADS,
        feature_codes: Callable[[], list[dict[str, Any]]] | None = None,
        on_music_changed: Callable[[int], object] | None = None,
        call_commands: Any = None,
        trunks: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        """``feature_codes``, ``on_music_changed``, ``call_commands``, ``trunks``: see
        ServerLive."""
        self._reactor = reactor
        self.config = config
        self.store = store
        self.health = HealthSampler(reactor, config.data_dir, store.path, started_at, loop_lag)
        self.live = ServerLive(
            reactor,
            store,
            self.health,
            active_calls,
            on_settings_changed,
            feature_codes=feature_codes,
            data_dir=config.data_dir,
            on_music_changed=on_music_changed,
            call_commands=call_commands,
            trunks=trunks,
        )
        self.events = EventStream(reactor, store, self.health, active_calls, trunks)
        self.devices = DeviceTracker(reactor, store)
        self.retention = RetentionJob(reactor, store)
        self._call_events = call_events
        self._unsubscribe: Callable[[], None] | None = None
        self._app_factory = app_factory
        self.pool = ThreadPool(minthreads=1, maxthreads=threads, name="pbx-web")
        self.ports: list[Any] = []  # IListeningPort
        self.generated_admin_password = False

    def start(self, tls: TlsFiles | None) -> None:
        """Start the jobs and, when ``[http] port`` is set, listen (HTTPS needs ``tls``)."""
        self.health.start()
        self.devices.start()
        self.retention.start()
        self.events.start()
        if self._call_events is not None:
            self._unsubscribe = self._call_events.subscribe(self.events.on_call_event)
        http = self.config.http
        if not http.port:
            log.info("web UI off ([http] port = 0)")
            return
        if tls is None:
            raise ValueError("HTTPS needs a certificate")
        secret_key = load_secret_key(self.config.data_dir)
        context = WebContext(
            store=self.store,
            live=self.live,
            data_dir=self.config.data_dir,
            config=self.config,
            secret_key=secret_key,
            generated_admin_password=self.generated_admin_password,
        )
        factory = self._app_factory or web_app.create_app
        self.pool.start()
        wsgi = WSGIResource(self._reactor, self.pool, factory(context))
        events = EventsResource(self.events, self.store, secret_key, self._reactor)
        site = server.Site(WebRoot(wsgi, events))
        bind = self.config.sip.bind
        self.ports.append(
            self._reactor.listenSSL(http.port, site, tls_options(tls), interface=bind)
        )
        if http.redirect_port:
            redirect = server.Site(RedirectToHttps(http.port, bind or "localhost"))
            self.ports.append(self._reactor.listenTCP(http.redirect_port, redirect, interface=bind))

    def listening(self) -> list[tuple[str, str, int]]:
        """(scheme, host, port) of each web port."""
        out = []
        for index, port in enumerate(self.ports):
            address = port.getHost()
            out.append(("https" if index == 0 else "http", address.host, address.port))
        return out

    def registered(self, extension: str, upserts: list[registrations.Binding]) -> None:
        """A REGISTER for ``extension`` was committed (reactor thread)."""
        if upserts:
            self.devices.observe(extension, upserts)
        self.events.registrations_changed()

    @defer.inlineCallbacks
    def stop(self) -> Any:
        if self._unsubscribe is not None:
            self._unsubscribe()
        self.events.stop()
        self.retention.stop()
        self.health.stop()
        yield self.devices.stop()
        yield defer.gatherResults(
            [defer.maybeDeferred(p.stopListening) for p in self.ports], consumeErrors=True
        )
        self.ports.clear()
        if self.pool.started:
            # joined off the reactor thread: a request still running may need the reactor
            # (blockingCallFromThread) to finish
            yield threads.deferToThreadPool(
                self._reactor, self._reactor.getThreadPool(), self.pool.stop
            )
