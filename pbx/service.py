"""Composition root: builds every part of a running pbx and wires them together.

The only module that knows them all: configuration, the store, TLS material, the guard, the
digest authenticator, the SIP stack with its transports, the registrar, loop-lag monitoring
and the status file. ``pbx serve`` (pbx.cli) installs the reactor, then builds a
:class:`PbxServer` with it, starts it and runs the reactor.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.python.failure import Failure

from pbx import __version__, featurecodes
from pbx.calls.contacts import static_binding
from pbx.calls.control import IN_DIALOG_METHODS, CallControl
from pbx.calls.directory import Callee
from pbx.calls.numberplan import Kind, NumberPlan
from pbx.calls.outbound import OutboundRouter
from pbx.calls.sipleg import SipSettings
from pbx.calls.switch import Switch
from pbx.calls.trunkcalls import TrunkCalls
from pbx.certs import ensure_tls_files, tls_options
from pbx.config import Config, dns_server
from pbx.credentials import SecretBox, make_credentials
from pbx.features.apicommands import CallCommands
from pbx.features.echo import EchoTest
from pbx.features.originate import Originate
from pbx.features.park import ParkingLot
from pbx.features.pickup import Pickup
from pbx.features.transfer import Transfers
from pbx.health import CachedPart, GcPauseMonitor, LoopLagMonitor, StatusFile
from pbx.media.moh import MusicLibrary
from pbx.media.prompts import Prompts
from pbx.media.relay import PortPool
from pbx.media.transcode import shared_clock
from pbx.sip.access import Access
from pbx.sip.auth import DigestAuthenticator, DigestConfig
from pbx.sip.client import ClientTransactions
from pbx.sip.dns import SipLocator, make_resolver
from pbx.sip.guard import Ban as GuardBan
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.message import Limits
from pbx.sip.methods import Methods
from pbx.sip.registrar import RegisterRefused, Registrar, RegistrarPolicy
from pbx.sip.stack import Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Transports
from pbx.store import bans as store_bans
from pbx.store import cdr, registrations, sites, users
from pbx.store import credentials as store_credentials
from pbx.store import dids as store_dids
from pbx.store import routes as store_routes
from pbx.store import trunks as store_trunks
from pbx.store.db import Store
from pbx.store.deferred import as_deferred
from pbx.store.errors import NotFound
from pbx.store.settings import all_settings
from pbx.trunks.registrations import TrunkRegistrations
from pbx.webhost import WebHost

log = logging.getLogger(__name__)

BAN_SYNC_INTERVAL = 2.0
PURGE_INTERVAL = 60.0
TRUNK_SYNC_INTERVAL = 5.0
CREDENTIALS_TTL = 2.0
CREDENTIALS_CACHE_SIZE = 10_000
# settings table key -> CallControl attribute (numbers, seconds)
DEBIAN_MOH = Path("/usr/share/asterisk/moh")  # asterisk-moh-opsound-wav (CC-BY-SA-3.0)
LIVE_SETTINGS = {"calls.no_answer_timeout": "no_answer", "calls.max_duration": "max_duration"}


def database_path(data_dir: Path) -> Path:
    return data_dir / "pbx.sqlite"


class PbxServer:
    """One running pbx: start() opens everything, stop() closes it in order."""

    def __init__(self, config: Config, reactor: Any, store: Store | None = None) -> None:
        self.config = config
        self.reactor = reactor
        self.store = store or Store(database_path(config.data_dir))
        self.started_at = time.time()
        self._credentials: dict[str, tuple[float, Any]] = {}
        self._bindings = BindingCommits(self.store, reactor)
        self._loops: list[task.LoopingCall] = []
        self.guard = Guard(GuardConfig(**dataclasses.asdict(config.guard)), time.time)
        self.authenticator = DigestAuthenticator(
            os.urandom(32),
            time.time,
            DigestConfig(
                realm=config.auth.realm,
                nonce_lifetime=config.auth.nonce_lifetime,
                accept_no_qop=config.auth.accept_no_qop,
                algorithms=config.auth.algorithms,
            ),
        )
        sip = config.sip
        limits = Limits(
            max_message_size=sip.max_message_size,
            max_headers=sip.max_headers,
            max_line_length=sip.max_line_length,
        )
        self.stack = Stack(
            reactor,
            self.guard,
            StackOptions(
                timers=TimerConfig(t1=sip.t1, t2=sip.t2, t4=sip.t4),
                limits=limits,
                server_header=sip.server_header,
            ),
        )
        self.transports = Transports(reactor, self.stack.receive, limits, sip.tcp_idle_timeout)
        self.stack.transports = self.transports
        self.client = ClientTransactions(
            reactor, self.transports, self.stack.options.timers, self.transports.local_address
        )
        self.stack.client = self.client
        self.trunks = TrunkRegistrations(
            reactor,
            self.client,
            lambda token: SecretBox(config.data_dir / "secret.key").decrypt(token),
            user_agent=sip.server_header or f"pbx/{__version__}",
            locator=lambda: SipLocator(make_resolver(self._dns_servers())),
            ping_interval=sip.trunk_options_interval,
        )
        self.access = Access(
            self.authenticator, self.guard, self._lookup_credentials, self._persist_ban
        )
        reg = config.registrar
        self.registrar = Registrar(
            self.access,
            self._commit_bindings,
            RegistrarPolicy(
                min_expires=reg.min_expires,
                max_expires=reg.max_expires,
                default_expires=reg.default_expires,
                max_contacts=reg.max_contacts,
                domains=sip.domains,
            ),
            time.time,
            self._local_hosts,
        )
        self.methods = Methods(self.access, self.registrar.handle)
        self.stack.sink = self.methods
        self.ports = PortPool(
            reactor,
            config.rtp.port_min,
            config.rtp.port_max,
            sip.bind,
            latch_any=config.rtp.latch_any_address,
        )
        calls = config.calls
        self.feature_codes = featurecodes.load(config.data_dir)
        clock = shared_clock(reactor)
        self.music = MusicLibrary(reactor, clock, [DEBIAN_MOH], config.data_dir)
        self.control = CallControl(
            reactor,
            self.client,
            self.ports,
            self._call_record,
            settings=SipSettings(
                t1=sip.t1, session_expires=calls.session_expires, min_se=calls.min_se
            ),
            no_answer=calls.no_answer_timeout,
            max_duration=calls.max_duration,
            media_timeout=calls.media_timeout,
            music=self._music_for,
            clock=clock,
        )
        self.music.on_loaded.append(lambda _name: self.control.music_changed())
        self.control.directory = StoreDirectory(self.store, reactor)
        self.control.prompts = Prompts()
        plan = NumberPlan.of(self.feature_codes)
        self.switch = Switch(self.control, self.control.directory, plan)
        self._features(plan)
        self.methods.add_in_dialog(self.control.handle_in_dialog, IN_DIALOG_METHODS)
        self.stack.on_ack = self.control.on_ack
        self.loop_lag = LoopLagMonitor(reactor)
        self.gc_pauses = GcPauseMonitor()
        active_calls = CachedPart(
            "calls",
            lambda: self.control.snapshot(durations=False),
            version=lambda: self.control.feed.last_seq,
            clock=reactor.seconds,
        )
        self.status_file = StatusFile(
            reactor, config.data_dir / "run" / "status.json", self.snapshot, (active_calls,)
        )
        self.web = WebHost(
            reactor,
            config,
            self.store,
            started_at=self.started_at,
            loop_lag=self.loop_lag,
            active_calls=self.control.snapshot,
            call_events=self.control.feed,
            on_settings_changed=self.apply_live_settings,
            feature_codes=self.feature_codes.describe,
            on_music_changed=lambda site_id: self.music.reload(f"site-{site_id}"),
            trunks=self.trunks.snapshot,
            call_commands=CallCommands(self.control),
        )

    def _features(self, plan: NumberPlan) -> None:
        """The call features on the call-control facade, and the numbers that reach them."""
        control, calls = self.control, self.config.calls
        parking = ParkingLot(control, plan, timeout=calls.park_timeout)
        Transfers(control, plan, recall_after=calls.transfer_recall, park=parking)
        pickup = Pickup(control)
        Originate(control, plan)
        self.switch.features.update(
            {
                Kind.ECHO_TEST: EchoTest(control),
                Kind.PARK: parking.park_caller,
                Kind.PARK_SLOT: parking.retrieve,
                Kind.GROUP_PICKUP: pickup,
                Kind.DIRECTED_PICKUP: pickup,
            }
        )
        # a trunk's INVITE goes to its DID; one with Replaces to pickup; the switch routes the rest
        trunk_calls = TrunkCalls(self.switch, self.trunks, self._did_target)
        self.methods.trusted = lambda incoming: self.trunks.trunk_for_source(
            incoming.source.remote.host
        )
        self.methods.add("INVITE", trunk_calls.on_invite)
        self.switch.outbound = OutboundRouter(
            self.switch,
            self.trunks,
            lambda: as_deferred(self.store.read_async(store_routes.list_routes), self.reactor),
            lambda ext: as_deferred(self.store.read_async(store_dids.dids_of, ext), self.reactor),
        )
        self.methods.add("INVITE", pickup.on_invite)
        self.methods.add("INVITE", self.switch.on_invite)

    def _did_target(self, number: str) -> defer.Deferred[str | None]:
        def target(db: Any) -> str | None:
            did = store_dids.get_did(db, number)
            return None if did is None else did.target

        return as_deferred(self.store.read_async(target), self.reactor)

    def _music_for(self, leg: Any) -> Any:
        """The hold-music stream a leg hears: its site's (uploads), else the default."""
        site = leg.site_id
        return self.music.stream(f"site-{site}" if site is not None else "default")

    # -- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        """Open the store, listen on every configured transport, start periodic jobs."""
        config = self.config
        if not self.store.is_open:
            self.store.open()
        now = time.time()
        self._rehash_for_realm()
        self.store.write(registrations.purge_expired, now)
        interrupted = self.store.write(cdr.close_interrupted, now)
        if interrupted:
            log.warning(
                "%d call(s) were cut by the last stop: recorded as interrupted", interrupted
            )
        self.guard.load(_to_guard(b) for b in self.store.read(store_bans.active_bans, now))
        bind = config.sip.bind
        transports = config.sip.transports
        if "udp" in transports:
            self.transports.listen_udp(bind, config.sip.port)
        if "tcp" in transports:
            self.transports.listen_stream("TCP", bind, config.sip.port)
        files = None
        if "tls" in transports or config.http.port:
            files = ensure_tls_files(
                config.data_dir, config.sip.tls_certificate, config.sip.tls_private_key, bind
            )
        if "tls" in transports and files is not None:
            # the web's policy: TLS 1.2 or newer, the certificate file's whole chain
            self.transports.listen_stream("TLS", bind, config.tls_port, tls_options(files))
        self.control.start()
        self.music.load("default")
        self.control.prompts.load(self.reactor).addErrback(
            lambda f: log.warning("park slot announcements off: %s", f.getErrorMessage())
        )
        self.loop_lag.start()
        self.gc_pauses.start()
        self._every(BAN_SYNC_INTERVAL, self._sync_bans)
        self._every(PURGE_INTERVAL, self._purge)
        self.trunks.sync(self.store.read(store_trunks.list_trunks))
        self._every(TRUNK_SYNC_INTERVAL, self._sync_trunks)
        self.status_file.start()
        self.apply_live_settings()
        self.web.start(files)
        for address in self.transports.listening():
            log.info("listening on %s", address)
        for scheme, host, port in self.web.listening():
            log.info("web UI on %s://%s:%d/", scheme, host or "0.0.0.0", port)

    def _rehash_for_realm(self) -> None:
        """After a realm change, recompute HA1 values from the encrypted passwords."""
        realm = self.config.auth.realm
        stale = self.store.read(store_credentials.credentials_not_in_realm, realm)
        if not stale:
            return
        box = SecretBox(self.config.data_dir / "secret.key")
        now = time.time()
        for old in stale:
            fresh = make_credentials(box, old.extension, realm, box.decrypt(old.password_enc), now)
            self.store.write(store_credentials.set_credentials, fresh)
        log.info("realm is now %r: recomputed digest hashes of %d user(s)", realm, len(stale))

    def _dns_servers(self) -> list[tuple[str, int]]:
        servers = [dns_server(text) for text in self.config.dns.servers]
        return [s for s in servers if s is not None]  # checked when the config was loaded

    def _every(self, interval: float, fn: Any) -> None:
        loop = task.LoopingCall(fn)
        loop.clock = self.reactor
        loop.start(interval, now=False).addErrback(lambda f: log.error("%s", f.getTraceback()))
        self._loops.append(loop)

    @defer.inlineCallbacks
    def _sync_trunks(self) -> Any:
        """Trunks added, changed or deleted by ``pbx trunk`` or the web take effect here."""
        stored = yield as_deferred(self.store.read_async(store_trunks.list_trunks), self.reactor)
        self.trunks.sync(stored)

    @defer.inlineCallbacks
    def stop(self) -> Any:
        self.trunks.stop()
        self.control.stop()
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self.loop_lag.stop()
        self.gc_pauses.stop()
        self.status_file.stop()
        yield self.web.stop()
        yield defer.gatherResults(
            [d for d in self.transports.stop() if d is not None], consumeErrors=True
        )
        self.store.close()

    # -- store glue (reactor side) -------------------------------------------------------------

    def _lookup_credentials(self, username: str) -> defer.Deferred[Any]:
        """Credentials from a short-lived cache, else from a reader thread; None for an
        unknown or disabled user (Access answers both like a wrong password).

        A phone re-registers with the same credentials again and again; the cache saves a
        thread round trip per request. Changes made by another process (``pbx user passwd``,
        ``pbx user del``, disabling) take effect within CREDENTIALS_TTL seconds.
        """
        now = time.monotonic()
        cached = self._credentials.get(username)
        if cached is not None and now - cached[0] < CREDENTIALS_TTL:
            return defer.succeed(cached[1])
        d = as_deferred(
            self.store.read_async(store_credentials.get_enabled_credentials, username),
            self.reactor,
        )

        def remember(credentials: Any) -> Any:
            if len(self._credentials) >= CREDENTIALS_CACHE_SIZE:
                self._credentials.pop(next(iter(self._credentials)))
            self._credentials[username] = (now, credentials)
            return credentials

        d.addCallback(remember)
        return d

    def _commit_bindings(self, extension: str, **changes: Any) -> defer.Deferred[Any]:
        """The registrar's commit: batched with the other REGISTERs of this reactor turn."""
        d = self._bindings.commit(extension, changes)
        upserts = changes.get("upserts") or []

        def committed(bindings: Any) -> Any:
            self.web.registered(extension, upserts)  # devices table + live dashboards
            return bindings

        d.addCallbacks(committed, _refuse_gone_user, errbackArgs=(extension,))
        return d

    def apply_live_settings(self) -> defer.Deferred[Any]:
        """Apply the telephony settings the web UI keeps in the database (they win over the
        config file's [calls] values); called at start and when the UI changes them."""
        d = as_deferred(self.store.read_async(all_settings), self.reactor)

        def apply(values: dict[str, Any]) -> None:
            for key, attribute in LIVE_SETTINGS.items():
                value = values.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
                    setattr(self.control, attribute, float(value))
            codecs = values.get("calls.codec_order")
            if isinstance(codecs, list):
                self.control.codec_order = [str(c) for c in codecs]

        d.addCallback(apply)
        d.addErrback(lambda f: log.error("live settings not applied: %s", f.getErrorMessage()))
        return d

    def _call_record(self, kind: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        """Write a call record: 'open' at answer, 'close' at the end, 'add' for unanswered."""
        function: Any = {"open": cdr.open_record, "close": cdr.close_record, "add": cdr.add_record}[
            kind
        ]
        return as_deferred(self.store.write_async(function, *args, **kwargs), self.reactor)

    def _persist_ban(self, ban: GuardBan) -> None:
        stored = store_bans.Ban(
            address=ban.address,
            username=ban.username,
            until=ban.until,
            reason=ban.reason,
            created_at=ban.created_at,
        )
        d = as_deferred(self.store.write_async(store_bans.add_ban, stored), self.reactor)
        d.addErrback(lambda f: log.error("ban not saved: %s", f.getErrorMessage()))

    @defer.inlineCallbacks
    def _sync_bans(self) -> Any:
        """Bans lifted with ``pbx ban del`` (another process) take effect here within seconds."""
        now = time.time()
        stored = yield as_deferred(self.store.read_async(store_bans.active_bans, now), self.reactor)
        keys = {(b.address, b.username) for b in stored}
        for ban in self.guard.active_bans():
            if (
                ban.address,
                ban.username,
            ) not in keys and now - ban.created_at > BAN_SYNC_INTERVAL * 2:
                self.guard.lift(ban.address)
        known = {(b.address, b.username) for b in self.guard.active_bans()}
        self.guard.load(_to_guard(b) for b in stored if (b.address, b.username) not in known)

    def _purge(self) -> Any:
        d = as_deferred(
            self.store.write_async(registrations.purge_expired, time.time()), self.reactor
        )
        d.addErrback(lambda f: log.error("purge failed: %s", f.getErrorMessage()))
        return d

    def _local_hosts(self) -> set[str]:
        hosts = {"localhost", "127.0.0.1"}
        hosts.update(a.host for a in self.transports.listening())
        if self.config.sip.bind:
            hosts.add(self.config.sip.bind)
        return hosts

    # -- live status ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "version": __version__,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "listening": [
                {"transport": a.transport.lower(), "address": a.host, "port": a.port}
                for a in self.transports.listening()
            ],
            "transactions": self.stack.transaction_count,
            "connections": self.transports.connection_count(),
            "messages": dict(self.stack.stats),
            "bans": len(self.guard.active_bans()),
            "media_ports_free": self.ports.available,
            "loop_lag": self.loop_lag.snapshot(),
            "gc": self.gc_pauses.snapshot(),
            "trunks": self.trunks.snapshot(),
        }


class StoreDirectory:
    """pbx.calls.directory.Directory over the store (reads on a reader thread)."""

    def __init__(self, store: Store, reactor: Any) -> None:
        self._store = store
        self._reactor = reactor

    def callee(self, extension: str) -> defer.Deferred[Callee]:
        read = self._store.read_async(callee_of, extension, time.time())
        return as_deferred(read, self._reactor)

    def group_members(self, group: str) -> defer.Deferred[list[str]]:
        read = self._store.read_async(users.pickup_group_members, group)
        return as_deferred(read, self._reactor)


def callee_of(db: Any, extension: str, now: float) -> Callee:
    """The extension's active bindings, its static contact first, and its call waiting
    setting. A disabled extension exists but has no contacts: the switch answers 480 Not
    Registered, as for an extension no phone is registered to (404 only for unknown ones)."""
    user = users.get_user(db, extension)
    if user is None:
        return Callee(False, [])
    group = user.pickup_group
    site = sites.get_site(db, user.site_id) if user.site_id is not None else None
    country = site.country_code if site is not None else ""
    area = site.area_code if site is not None else ""
    if not user.enabled:
        return Callee(
            True, [], user.call_waiting, user.display_name, user.site_id, group, country, area
        )
    bindings = registrations.list_bindings(db, now=now, extension=extension)
    if user.static_contact:
        static = static_binding(extension, user.static_contact, now)
        if static is not None and all(b.contact != static.contact for b in bindings):
            bindings.insert(0, static)
    return Callee(
        True, bindings, user.call_waiting, user.display_name, user.site_id, group, country, area
    )


def _refuse_gone_user(failure: Failure, extension: str) -> Any:
    """A REGISTER authenticated with cached credentials whose user was disabled or deleted
    meanwhile (the store refuses it with NotFound): 403, not 500."""
    failure.trap(NotFound)
    raise RegisterRefused(
        f"{extension} is not an enabled extension", status=403, reason="Forbidden"
    )


class BindingCommits:
    """Group commit of REGISTER changes on the reactor side.

    The changes of one reactor turn go to the store's writer thread as one batch
    (registrations.apply_many) at the end of the turn, and while a batch is being committed
    further changes queue up here and go as the next one: one hand-off between threads per
    batch, not per REGISTER (each hand-off costs the reactor thread a GIL round trip). Every
    Deferred still fires only after its own change is committed, with its own result; a
    change that fails (unknown or disabled extension) fails alone.
    """

    def __init__(self, store: Store, reactor: Any) -> None:
        self._store = store
        self._reactor = reactor
        self._pending: list[tuple[str, dict[str, Any], defer.Deferred[Any]]] = []
        self._in_flight = False
        self._scheduled = False

    def commit(self, extension: str, changes: dict[str, Any]) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self._pending.append((extension, changes, d))
        if not self._in_flight and not self._scheduled:
            self._scheduled = True
            self._reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending, []
        if not batch:
            return
        job = [(extension, changes) for extension, changes, _ in batch]
        try:
            future = self._store.write_async(registrations.apply_many, job)
        except Exception:  # noqa: BLE001 - e.g. the store is closed: these fail, later ones try
            self._committed(Failure(), batch)
            return
        self._in_flight = True
        as_deferred(future, self._reactor).addBoth(self._committed, batch)

    def _committed(self, results: Any, batch: list[tuple[str, dict[str, Any], Any]]) -> None:
        if isinstance(results, Failure):
            for _, _, d in batch:
                d.errback(results)
        else:
            for (_, _, d), result in zip(batch, results, strict=True):
                if isinstance(result, Exception):
                    d.errback(result)
                else:
                    d.callback(result)
        self._in_flight = False  # after the callbacks: what they commit joins the next batch
        if self._pending and not self._scheduled:
            self._flush()


def _to_guard(ban: store_bans.Ban) -> GuardBan:
    return GuardBan(
        address=ban.address,
        username=ban.username,
        until=ban.until,
        reason=ban.reason,
        created_at=ban.created_at,
    )
