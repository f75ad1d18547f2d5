"""``/events``: the dashboard's server-sent-events stream, a native twisted.web resource.

``GET /events?token=T`` (T from web.auth.sse_token; checked with web.auth.check_sse_token and
against the account's current row: gone, disabled or expired accounts and roles without
``dashboard.read`` get 403) streams named events whose ``data:`` is one JSON document:
``registrations`` (list as Live.registrations), ``calls`` (list as Live.active_calls) and
``health`` (dict as Live.health) and ``trunks`` (list as Live.trunks; not to site
administrators, trunks serve every site). Health goes out every second, trunks when they change, calls every second while they
change and on call events, registrations on every committed REGISTER (coalesced) and every few
seconds; registrations payloads are built on a store reader thread, not the reactor. A site
administrator only sees their own site's extensions. Open streams hold no WSGI thread.
Must not import pbx.service.
"""

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, task
from twisted.web import resource, server

from pbx.calls.events import Event as CallEvent
from pbx.store import admins, registrations, users
from pbx.store.db import Store
from pbx.store.deferred import as_deferred
from pbx.webhost.live import HealthSampler, registration_rows
from web.auth import Account, can, check_sse_token

log = logging.getLogger(__name__)


SSE_MAX_CLIENTS = 200
SSE_TICK = 1.0
SSE_REGISTRATIONS_EVERY = 5.0
SSE_COALESCE = 0.25


class _Client:
    """One open /events stream."""

    def __init__(self, request: server.Request, account: Account) -> None:
        self.request = request
        self.account = account
        self.sent: dict[str, bytes] = {}

    @property
    def group(self) -> int | None:
        """The site whose extensions this client may see; None: everything."""
        if self.account.site_bound:
            return self.account.site_id if self.account.site_id is not None else -1
        return None


class EventStream:
    """Pushes registrations, calls and health to every open /events stream (reactor side)."""

    def __init__(
        self,
        reactor: Any,
        store: Store,
        health: HealthSampler,
        active_calls: Callable[[], list[dict[str, Any]]],
        trunks: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> None:
        self._reactor = reactor
        self._store = store
        self._health = health
        self._active_calls = active_calls
        self._trunks = trunks or (lambda: [])
        self.clients: list[_Client] = []
        self._registrations: dict[int | None, bytes] = {}
        self._site_extensions: dict[int, frozenset[str]] = {}
        self._loading = False
        self._reload_again = False
        self._pending: Any = None
        self._last_load = 0.0
        self._calls_pending: Any = None
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        self._loop = task.LoopingCall(self._tick)
        self._loop.clock = self._reactor
        self._loop.start(SSE_TICK, now=False).addErrback(
            lambda f: log.error("event stream: %s", f.getTraceback())
        )

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        for call in (self._pending, self._calls_pending):
            if call is not None and call.active():
                call.cancel()
        for client in list(self.clients):
            client.request.finish()
        self.clients.clear()

    def add(self, client: _Client) -> None:
        self.clients.append(client)
        client.request.write(b"retry: 3000\n\n")
        self._send(client, "health", _encode(self._health.latest))
        self._send_calls([client])
        self._send_trunks([client])
        if client.group in self._registrations:
            self._send(client, "registrations", self._registrations[client.group])
        self.registrations_changed()

    def remove(self, client: _Client) -> None:
        if client in self.clients:
            self.clients.remove(client)

    # -- triggers ------------------------------------------------------------------------------

    def registrations_changed(self) -> None:
        """A REGISTER was committed (or a client needs a first list): reload soon."""
        if self.clients and (self._pending is None or not self._pending.active()):
            self._pending = self._reactor.callLater(SSE_COALESCE, self._load_registrations)

    def on_call_event(self, event: CallEvent) -> None:
        if self.clients and (self._calls_pending is None or not self._calls_pending.active()):
            self._calls_pending = self._reactor.callLater(SSE_COALESCE, self._send_calls)

    def _tick(self) -> None:
        if not self.clients:
            return
        health = _encode(self._health.latest)
        for client in list(self.clients):
            self._send(client, "health", health, always=True)
        self._send_calls()
        self._send_trunks()
        if time.monotonic() - self._last_load >= SSE_REGISTRATIONS_EVERY:
            self._load_registrations()

    # -- payloads ------------------------------------------------------------------------------

    def _send_trunks(self, clients: list[_Client] | None = None) -> None:
        """Trunk states, to accounts that see the whole system (trunks serve every site)."""
        payload = _encode(self._trunks())
        for client in list(self.clients if clients is None else clients):
            if client.group is None:
                self._send(client, "trunks", payload)

    def _send_calls(self, clients: list[_Client] | None = None) -> None:
        calls = self._active_calls()
        payloads: dict[int | None, bytes] = {}
        for client in list(self.clients if clients is None else clients):
            group = client.group
            if group not in payloads:
                allowed = None if group is None else self._site_extensions.get(group, frozenset())
                payloads[group] = _encode(
                    [
                        c
                        for c in calls
                        if allowed is None
                        or c.get("caller") in allowed
                        or c.get("dialled") in allowed
                    ]
                )
            self._send(client, "calls", payloads[group])

    def _load_registrations(self) -> None:
        if self._loading:
            self._reload_again = True
            return
        self._loading = True
        self._last_load = time.monotonic()
        groups = {c.group for c in self.clients}
        d = defer.maybeDeferred(
            lambda: as_deferred(
                self._store.read_async(_registration_payloads, groups), self._reactor
            )
        )
        d.addCallbacks(self._loaded, lambda f: log.warning("event stream: %s", f.getErrorMessage()))
        d.addBoth(self._load_done)

    def _loaded(self, result: tuple[dict[int | None, bytes], dict[int, frozenset[str]]]) -> None:
        self._registrations, self._site_extensions = result
        for client in list(self.clients):
            payload = self._registrations.get(client.group)
            if payload is not None:
                self._send(client, "registrations", payload)

    def _load_done(self, _: object) -> None:
        self._loading = False
        if self._reload_again:
            self._reload_again = False
            self.registrations_changed()

    def _send(self, client: _Client, kind: str, payload: bytes, always: bool = False) -> None:
        if not always and client.sent.get(kind) == payload:
            return
        client.sent[kind] = payload
        if client.request.finished or client.request.channel is None:
            self.remove(client)
            return
        client.request.write(b"event: " + kind.encode() + b"\ndata: " + payload + b"\n\n")


def _encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _registration_payloads(
    db: Any, groups: set[int | None]
) -> tuple[dict[int | None, bytes], dict[int, frozenset[str]]]:
    """Runs on a store reader thread: the encoded registrations list per client group."""
    now = time.time()
    rows = registration_rows(registrations.list_bindings(db, now=now), now)
    extensions: dict[int, frozenset[str]] = {}
    payloads: dict[int | None, bytes] = {}
    for group in groups:
        if group is None:
            payloads[None] = _encode(rows)
            continue
        allowed = frozenset(u.extension for u in users.list_users(db, site_id=group))
        extensions[group] = allowed
        payloads[group] = _encode([r for r in rows if r["extension"] in allowed])
    return payloads, extensions


class EventsResource(resource.Resource):
    """``GET /events?token=...``: a server-sent-events stream for the dashboard."""

    isLeaf = True

    def __init__(self, stream: EventStream, store: Store, secret_key: bytes, reactor: Any) -> None:
        super().__init__()
        self._stream = stream
        self._store = store
        self._secret_key = secret_key
        self._reactor = reactor

    def render_GET(self, request: server.Request) -> bytes | int:
        args: dict[bytes, list[bytes]] = request.args or {}
        token = (args.get(b"token") or [b""])[0].decode("ascii", "replace")
        payload = check_sse_token(self._secret_key, token) if token else None
        if payload is None:
            return _refuse(request, 403, b"a valid token is needed\n")
        if len(self._stream.clients) >= SSE_MAX_CLIENTS:
            return _refuse(request, 503, b"too many live dashboards open\n")
        d = as_deferred(self._store.read_async(admins.get_admin, str(payload["u"])), self._reactor)
        d.addCallback(self._open, request)
        d.addErrback(self._failed, request)
        return server.NOT_DONE_YET

    def _open(self, admin: admins.Admin | None, request: server.Request) -> None:
        if request.finished or request.channel is None:
            return
        now = time.time()
        account = None
        if admin is not None and not admin.disabled and not admin.expired(now):
            account = Account(admin.username, admin.role, admin.site_id, admin.extension)
        if account is None or not can(account, "dashboard.read"):
            request.write(_refuse(request, 403, b"not allowed\n"))
            request.finish()
            return
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"x-accel-buffering", b"no")
        client = _Client(request, account)
        request.notifyFinish().addBoth(lambda _: self._stream.remove(client))
        self._stream.add(client)

    def _failed(self, failure: Any, request: server.Request) -> None:
        log.error("event stream: %s", failure.getErrorMessage())
        if not request.finished and request.channel is not None:
            request.write(_refuse(request, 500, b"internal error\n"))
            request.finish()


def _refuse(request: server.Request, code: int, body: bytes) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"text/plain; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return body
