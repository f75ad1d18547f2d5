"""pbx.webhost without a network: resources driven over an in-memory transport, a fake
reactor (task.Clock plus a callFromThread queue) and a real Store in tmp_path. A minimal Flask
app stands in for web.app."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from itsdangerous import URLSafeTimedSerializer
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.threadpool import ThreadPool
from twisted.web import server
from twisted.web.wsgi import WSGIResource

from pbx.store import admins, cdr, devices, registrations, settings, sites, users
from pbx.store.cdr import CallRecord
from pbx.store.db import Store
from pbx.webhost.events import EventsResource, EventStream
from pbx.webhost.host import RedirectToHttps, WebRoot, load_secret_key
from pbx.webhost.jobs import DeviceTracker, RetentionJob
from pbx.webhost.live import HealthSampler, ServerLive
from tests.store.conftest import make_binding

KEY = b"k" * 32


class FakeReactor(Clock):
    """A Clock whose callFromThread queues the call for :meth:`pump` (the test's 'reactor')."""

    def __init__(self) -> None:
        super().__init__()
        self.queue: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()

    def callFromThread(self, f: Callable[..., Any], *args: Any) -> None:  # noqa: N802
        self.queue.put((f, args))

    def run_until(self, until: Callable[[], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not until():
            if time.monotonic() > deadline:
                raise AssertionError("condition not reached")
            try:
                f, args = self.queue.get(timeout=0.01)
            except queue.Empty:
                continue
            f(*args)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pbx.sqlite")
    s.open()
    yield s
    s.close()


@pytest.fixture
def reactor() -> FakeReactor:
    return FakeReactor()


def _connect(site: server.Site, request: bytes) -> StringTransport:
    proto = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    assert proto is not None
    proto.makeConnection(transport)
    proto.dataReceived(request)
    return transport


def _get(path: str, host: str = "127.0.0.1:8443") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


def _token(username: str, key: bytes = KEY) -> str:
    serializer = URLSafeTimedSerializer(key, salt="sse")
    return str(serializer.dumps({"u": username, "r": "admin", "s": None}))


# -- secret key, redirect, routing ------------------------------------------------------------


def test_secret_key_is_made_once_private_and_reused(tmp_path: Path) -> None:
    key = load_secret_key(tmp_path)
    assert len(key) == 32 and load_secret_key(tmp_path) == key
    assert (tmp_path / "web-secret.key").stat().st_mode & 0o777 == 0o600


def test_secret_key_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_secret_key(tmp_path)
    (tmp_path / "web-secret.key").chmod(0o644)
    with pytest.raises(PermissionError):
        load_secret_key(tmp_path)


def test_redirect_resource_sends_301_to_the_same_path_on_https(reactor: FakeReactor) -> None:
    site = server.Site(RedirectToHttps(8443, "localhost"), reactor=reactor)
    out = _connect(site, _get("/users?page=2", host="127.0.0.1:8080")).value()
    assert out.startswith(b"HTTP/1.1 301 ")
    assert b"Location: https://127.0.0.1:8443/users?page=2\r\n" in out


def test_redirect_with_a_strange_host_uses_the_fallback(reactor: FakeReactor) -> None:
    site = server.Site(RedirectToHttps(443, "localhost"), reactor=reactor)
    out = _connect(site, _get("/", host="evil.example/x@y")).value()
    assert b"Location: https://localhost/\r\n" in out


def test_every_path_but_events_goes_to_the_wsgi_app(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    app = Flask("t")

    @app.route("/")
    def index() -> str:
        return "index"

    @app.route("/users/<ext>")
    def user(ext: str) -> str:
        return f"user {ext}"

    pool = ThreadPool(1, 2)
    pool.start()
    try:
        stream = EventStream(reactor, store, _health(reactor, store, tmp_path), lambda: [])
        root = WebRoot(
            WSGIResource(reactor, pool, app), EventsResource(stream, store, KEY, reactor)
        )
        site = server.Site(root, reactor=reactor)
        for path, body in ((b"/", b"index"), (b"/users/100", b"user 100")):
            transport = _connect(site, _get(path.decode()))
            reactor.run_until(lambda: transport.value().endswith(body))  # noqa: B023
            assert transport.value().startswith(b"HTTP/1.1 200 ")
        assert _connect(site, _get("/events")).value().startswith(b"HTTP/1.1 403 ")
    finally:
        pool.stop()


# -- /events ----------------------------------------------------------------------------------


def _health(reactor: FakeReactor, store: Store, tmp_path: Path) -> HealthSampler:
    return HealthSampler(reactor, tmp_path, store.path, time.time(), None)


def _events_site(
    reactor: FakeReactor,
    store: Store,
    tmp_path: Path,
    calls: list[dict[str, Any]] | None = None,
    trunks: list[dict[str, Any]] | None = None,
) -> tuple[server.Site, EventStream]:
    stream = EventStream(
        reactor,
        store,
        _health(reactor, store, tmp_path),
        lambda: list(calls or []),
        lambda: list(trunks or []),
    )
    stream.start()
    root = WebRoot(object(), EventsResource(stream, store, KEY, reactor))
    return server.Site(root, reactor=reactor), stream


@pytest.mark.parametrize(
    "token", ["", "?token=", "?token=garbage", f"?token={_token('admin', b'x' * 32)}"]
)
def test_events_without_a_valid_token_are_forbidden(
    reactor: FakeReactor, store: Store, tmp_path: Path, token: str
) -> None:
    site, _ = _events_site(reactor, store, tmp_path)
    out = _connect(site, _get(f"/events{token}")).value()
    assert out.startswith(b"HTTP/1.1 403 ")


@pytest.mark.parametrize(
    ("username", "fields"),
    [
        ("gone", None),
        ("off", {"disabled": True}),
        ("old", {"expires_at": 1.0}),
        ("phone", {"role": "user", "extension": "100"}),
    ],
)
def test_events_for_an_account_that_may_not_see_the_dashboard_are_forbidden(
    reactor: FakeReactor, store: Store, tmp_path: Path, username: str, fields: Any
) -> None:
    if fields is not None:
        store.write(admins.create_admin, username, "h", False)
        store.write(admins.update_admin, username, **fields)
    site, _ = _events_site(reactor, store, tmp_path)
    transport = _connect(site, _get(f"/events?token={_token(username)}"))
    reactor.run_until(lambda: b"\r\n\r\n" in transport.value())
    assert transport.value().startswith(b"HTTP/1.1 403 ")


def test_events_stream_health_calls_and_registrations(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    store.write(admins.create_admin, "admin", "h", False)
    store.write(users.add_user, "100", "Alice")
    calls = [{"call_id": "c1", "caller": "100", "dialled": "200", "state": "ringing"}]
    site, stream = _events_site(reactor, store, tmp_path, calls)
    transport = _connect(site, _get(f"/events?token={_token('admin')}"))
    reactor.run_until(lambda: b"event: calls" in transport.value())
    out = transport.value()
    assert out.startswith(b"HTTP/1.1 200 ")
    assert b"Content-Type: text/event-stream" in out and b"event: health\ndata: {" in out
    assert b'"call_id":"c1"' in out
    binding = make_binding("100", "sip:100@127.0.0.5", time.time() + 60, user_agent="baresip")
    store.write(
        registrations.apply_register,
        "100",
        upserts=[binding],
        removes=[],
        remove_all=False,
        now=time.time(),
    )
    stream.registrations_changed()
    reactor.advance(0.3)
    reactor.run_until(lambda: b'"extension":"100"' in transport.value())
    before = len(transport.value())
    reactor.advance(1.0)  # the next tick sends health again
    assert transport.value()[before:].count(b"event: health") == 1
    stream.stop()
    assert stream.clients == []


def test_site_admin_sees_only_their_sites_extensions(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    site_a = store.write(sites.add_site, "A", "UTC")
    store.write(admins.create_admin, "sa", "h", False, role="site_admin", site_id=site_a.id)
    store.write(users.add_user, "100", "Alice", site_id=site_a.id)
    store.write(users.add_user, "200", "Bob")
    now = time.time()
    for ext in ("100", "200"):
        store.write(
            registrations.apply_register,
            ext,
            upserts=[make_binding(ext, f"sip:{ext}@127.0.0.5", now + 60)],
            removes=[],
            remove_all=False,
            now=now,
        )
    calls = [
        {"call_id": "mine", "caller": "100", "dialled": "300"},
        {"call_id": "theirs", "caller": "200", "dialled": "300"},
    ]
    trunks = [{"name": "sipgate", "state": "registered"}]
    site, _ = _events_site(reactor, store, tmp_path, calls, trunks)
    transport = _connect(site, _get(f"/events?token={_token('sa')}"))
    reactor.run_until(lambda: b"event: health" in transport.value())
    reactor.advance(0.3)
    reactor.run_until(lambda: b"event: registrations" in transport.value())
    reactor.advance(1.0)
    out = transport.value()
    assert b'"extension":"100"' in out and b'"extension":"200"' not in out
    assert b'"call_id":"mine"' in out and b'"call_id":"theirs"' not in out
    assert b"event: trunks" not in out  # trunks serve every site: not a site admin's


def test_events_stream_trunk_states_when_they_change(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    store.write(admins.create_admin, "admin", "h", False)
    trunks = [{"name": "sipgate", "state": "registering"}]
    site, stream = _events_site(reactor, store, tmp_path, trunks=trunks)
    transport = _connect(site, _get(f"/events?token={_token('admin')}"))
    reactor.run_until(lambda: b"event: trunks" in transport.value())
    assert b'"state":"registering"' in transport.value()
    reactor.advance(1.0)
    assert transport.value().count(b"event: trunks") == 1  # unchanged: not sent again
    trunks[0] = {"name": "sipgate", "state": "registered"}
    reactor.advance(1.0)
    assert b'"state":"registered"' in transport.value()
    stream.stop()


# -- live state and jobs ----------------------------------------------------------------------


def test_health_sample_has_every_dashboard_key(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    sample = _health(reactor, store, tmp_path).sample()
    assert set(sample) == {
        "uptime_s",
        "cpu_percent",
        "memory_rss",
        "loop_lag_p99_ms",
        "disk_free",
        "db_size",
    }
    assert sample["memory_rss"] > 0 and sample["db_size"] > 0 and sample["disk_free"] > 0


def test_server_live_reads_registrations_and_passes_settings_changes(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    store.write(users.add_user, "100", "Alice")
    now = time.time()
    binding = make_binding("100", "sip:100@127.0.0.5", now + 60, source_port=5070)
    store.write(
        registrations.apply_register,
        "100",
        upserts=[binding],
        removes=[],
        remove_all=False,
        now=now,
    )
    changed: list[bool] = []
    live = ServerLive(
        reactor, store, _health(reactor, store, tmp_path), lambda: [], lambda: changed.append(True)
    )
    (row,) = live.registrations()
    assert row["extension"] == "100" and row["address"] == "127.0.0.1:5070"
    assert 55 <= row["expires_in"] <= 60
    live.settings_changed()
    reactor.run_until(lambda: changed == [True])
    assert set(live.health()) >= {"uptime_s", "db_size"}


def test_device_tracker_coalesces_registers_into_one_write(
    reactor: FakeReactor, store: Store
) -> None:
    store.write(users.add_user, "100", "Alice")
    tracker = DeviceTracker(reactor, store)
    tracker.start()
    ua = "Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc"
    for port in (5060, 5062):
        tracker.observe(
            "100",
            [
                make_binding(
                    "100", "sip:100@x", 1.0, user_agent=ua, source_port=port, updated_at=5.0
                )
            ],
        )
    reactor.advance(5.0)
    reactor.run_until(lambda: len(store.read(devices.list_devices)) == 1)
    (device,) = store.read(devices.list_devices)
    assert (device.mac, device.address, device.model) == (
        "001565aabbcc",
        "127.0.0.1:5062",
        "SIP-T46S",
    )


def test_retention_job_deletes_records_older_than_the_setting(
    reactor: FakeReactor, store: Store
) -> None:
    now = time.time()
    for n, age_days in enumerate((1, 20, 200)):
        record = CallRecord(f"c{n}", "100", "200", now - age_days * 86400, disposition="busy")
        store.write(cdr.add_record, record)
    job = RetentionJob(reactor, store)
    job.start()  # runs at once: default 180 days
    reactor.run_until(lambda: store.read(cdr.search_records)[1] == 2)
    job.stop()
    store.write(settings.set_setting, "calls.retention_days", 10)
    done = job.run()
    reactor.run_until(lambda: done.called)
    assert [r.call_id for r in store.read(cdr.search_records)[0]] == ["c0"]


def test_server_live_feature_codes_from_the_data_dir_or_the_injected_table(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    health = _health(reactor, store, tmp_path)
    live = ServerLive(reactor, store, health, lambda: [], lambda: None)
    rows = {row["key"]: row["code"] for row in live.feature_codes()}
    assert rows["park"] == "700" and rows["park_slots"] == "701-720"
    (tmp_path / "feature_codes.toml").write_text('park = "*70"\n')
    assert {r["key"]: r["code"] for r in live.feature_codes()}["park"] == "*70"
    other = tmp_path / "other"
    other.mkdir()
    assert {r["key"]: r["code"] for r in ServerLive(
        reactor, store, health, lambda: [], lambda: None, data_dir=other
    ).feature_codes()}["park"] == "700"  # fmt: skip
    table = [{"key": "park", "code": "800", "name": "Park", "description": "x"}]
    injected = ServerLive(
        reactor, store, health, lambda: [], lambda: None, feature_codes=lambda: table
    )
    assert injected.feature_codes() == table and injected.feature_codes() is not table


def test_server_live_passes_music_changes_to_the_reactor(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    health = _health(reactor, store, tmp_path)
    changed: list[int] = []
    live = ServerLive(
        reactor, store, health, lambda: [], lambda: None, on_music_changed=changed.append
    )
    live.music_changed(7)
    assert changed == []  # not on the calling (WSGI) thread
    reactor.run_until(lambda: changed == [7])
    ServerLive(reactor, store, health, lambda: [], lambda: None).music_changed(3)  # no listener
    assert reactor.queue.empty()


class _Refused(Exception):
    """Like pbx.calls' errors: a status and an error_id (the web side imports no pbx.calls)."""

    status = 409
    error_id = "wrong_state"


class _Commands:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.threads: list[str] = []

    def originate(self, from_extension: str, to: str) -> Any:
        import threading

        from twisted.internet import defer

        self.threads.append(threading.current_thread().name)
        self.calls.append(("originate", from_extension, to))
        return defer.succeed({"call": "c-1", "leg": "l-1"})

    def hang_up_call(self, call_id: str) -> None:
        self.calls.append(("hang_up_call", call_id))
        if call_id == "gone":
            raise _Refused("the call has ended")
        if call_id == "boom":
            raise RuntimeError("bug")

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict[str, Any]:
        self.calls.append(("transfer_call", call_id, to, leg_id))
        return {"call": call_id, "leg": leg_id}


def _in_thread(reactor: FakeReactor, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` on a worker thread (as a WSGI request does) while the test pumps the reactor."""
    import threading

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    worker = threading.Thread(target=work, name="wsgi-worker")
    worker.start()
    reactor.run_until(lambda: not worker.is_alive())
    worker.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def test_server_live_call_commands_run_on_the_reactor_and_translate_errors(
    reactor: FakeReactor, store: Store, tmp_path: Path
) -> None:
    from web.backend import CallCommandError

    commands = _Commands()
    health = _health(reactor, store, tmp_path)
    live = ServerLive(reactor, store, health, lambda: [], lambda: None, call_commands=commands)
    assert _in_thread(reactor, lambda: live.originate("100", "300")) == {
        "call": "c-1",
        "leg": "l-1",
    }
    assert commands.threads == ["MainThread"]  # the 'reactor' thread, not the worker
    assert _in_thread(reactor, lambda: live.transfer_call("c-1", "200", None)) == {
        "call": "c-1",
        "leg": None,
    }
    assert _in_thread(reactor, lambda: live.hang_up_call("c-1")) is None
    with pytest.raises(CallCommandError) as refused:
        _in_thread(reactor, lambda: live.hang_up_call("gone"))
    assert (refused.value.status, refused.value.error_id) == (409, "wrong_state")
    assert refused.value.message == "the call has ended"
    with pytest.raises(RuntimeError, match="bug"):
        _in_thread(reactor, lambda: live.hang_up_call("boom"))
    assert [c[0] for c in commands.calls] == [
        "originate", "transfer_call", "hang_up_call", "hang_up_call", "hang_up_call",
    ]  # fmt: skip
    without = ServerLive(reactor, store, health, lambda: [], lambda: None)
    with pytest.raises(CallCommandError) as unavailable:
        without.originate("100", "300")
    assert (unavailable.value.status, unavailable.value.error_id) == (409, "refused")
