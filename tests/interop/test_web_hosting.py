"""The admin web UI hosted by the real running pbx (issue 4, "Serving").

``pbx serve`` answers HTTPS on --http-port with its own certificate, ``/events`` (native
server-sent events) needs a valid signed token, the optional plain-HTTP redirect port answers
301 to HTTPS, and page handlers that take long (every WSGI thread asleep) stall neither SIP
nor the live events. The server runs through a small wrapper that adds a sleeping WSGI path
before the Flask app; everything else is the shipped ``pbx serve``. Traffic goes only to
127.0.0.1. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from itsdangerous import URLSafeTimedSerializer

from .harness import ports
from .harness.pbx_server import PbxServer, sip_options

HOST = "127.0.0.1"
SLEEP_S = 3.0
WEB_THREADS = 8

# Runs the shipped CLI with one extra WSGI path, /_test/sleep, in front of the Flask app.
WRAPPER = f"""
import sys
import time

import web.app as web_app

_create_app = web_app.create_app


def create_app(ctx, **kwargs):
    app = _create_app(ctx, **kwargs)
    inner = app.wsgi_app

    def wsgi(environ, start_response):
        if environ.get("PATH_INFO") == "/_test/sleep":
            time.sleep({SLEEP_S})
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"slept"]
        return inner(environ, start_response)

    app.wsgi_app = wsgi
    return app


web_app.create_app = create_app
from pbx.cli import main  # noqa: E402

raise SystemExit(main(sys.argv[1:]))
"""


class WrappedPbx(PbxServer):
    """``pbx serve`` started through WRAPPER instead of ``python -m pbx``."""

    def __init__(self, data_dir: Path, script: Path, **kwargs: object) -> None:
        super().__init__(data_dir, **kwargs)  # type: ignore[arg-type]
        self.script = script

    def serve_args(self) -> list[str]:
        args = super().serve_args()
        assert args[1:3] == ["-m", "pbx"]
        return [args[0], str(self.script), *args[3:]]


@pytest.fixture(scope="module")
def web_pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[WrappedPbx, int]]:
    base = tmp_path_factory.mktemp("web")
    script = base / "serve_with_sleep.py"
    script.write_text(WRAPPER, encoding="utf-8")
    reservation = ports.Reservation(HOST)
    redirect_port = reservation.port()
    server = WrappedPbx(
        base / "data",
        script,
        python=sys.executable,
        site_toml=f"[http]\nredirect_port = {redirect_port}\n",
        rtp_block=20,
    )
    try:
        server.start()
        yield server, redirect_port
    finally:
        server.close()
        reservation.release()


def _tls(server: PbxServer) -> ssl.SSLContext:
    """Verifies the server's own self-signed certificate (it names 127.0.0.1)."""
    return ssl.create_default_context(cafile=str(server.cert_path))


def _get(server: PbxServer, path: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPSConnection(
        HOST, server.http_port, context=_tls(server), timeout=timeout
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _token(server: PbxServer, username: str = "admin") -> str:
    key = (server.data_dir / "web-secret.key").read_bytes()
    return str(
        URLSafeTimedSerializer(key, salt="sse").dumps({"u": username, "r": "admin", "s": None})
    )


def _first_event(server: PbxServer, token: str, within: float) -> tuple[str, object]:
    """Open /events and return the first named event (name, decoded data)."""
    conn = http.client.HTTPSConnection(HOST, server.http_port, context=_tls(server), timeout=within)
    try:
        conn.request("GET", f"/events?token={token}")
        response = conn.getresponse()
        assert response.status == 200
        assert response.getheader("content-type", "").startswith("text/event-stream")
        name = ""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            line = response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[len("event: ") :]
            elif line.startswith("data: ") and name:
                return name, json.loads(line[len("data: ") :])
        raise AssertionError(f"no event within {within} s")
    finally:
        conn.close()


def test_login_page_is_served_over_tls(web_pbx: tuple[WrappedPbx, int]) -> None:
    server, _ = web_pbx
    status, headers, body = _get(server, "/login")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"<form" in body


def test_tls_is_the_only_way_in(web_pbx: tuple[WrappedPbx, int]) -> None:
    server, _ = web_pbx
    conn = http.client.HTTPConnection(HOST, server.http_port, timeout=5)
    try:
        conn.request("GET", "/login")
        with pytest.raises((http.client.HTTPException, ConnectionError)):
            conn.getresponse().read()
    finally:
        conn.close()


def test_events_need_a_valid_token(web_pbx: tuple[WrappedPbx, int]) -> None:
    server, _ = web_pbx
    assert _get(server, "/events")[0] == 403
    assert _get(server, "/events?token=forged.token.value")[0] == 403
    assert _get(server, f"/events?token={_token(server, 'nobody')}")[0] == 403


def test_events_stream_within_two_seconds_with_a_valid_token(
    web_pbx: tuple[WrappedPbx, int],
) -> None:
    server, _ = web_pbx
    started = time.monotonic()
    name, data = _first_event(server, _token(server), within=2.0)
    assert time.monotonic() - started < 2.0
    assert name in ("health", "calls", "registrations")
    if name == "health":
        assert isinstance(data, dict) and {"uptime_s", "loop_lag_p99_ms"} <= set(data)


def test_redirect_port_answers_301_to_https(web_pbx: tuple[WrappedPbx, int]) -> None:
    server, redirect_port = web_pbx
    conn = http.client.HTTPConnection(HOST, redirect_port, timeout=5)
    try:
        conn.request("GET", "/users?page=2", headers={"Host": f"{HOST}:{redirect_port}"})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 301
    assert response.getheader("Location") == f"https://{HOST}:{server.http_port}/users?page=2"


def test_sleeping_page_handlers_stall_neither_sip_nor_live_events(
    web_pbx: tuple[WrappedPbx, int],
) -> None:
    server, _ = web_pbx
    results: list[int] = []

    def slow() -> None:
        results.append(_get(server, "/_test/sleep", timeout=SLEEP_S * 4)[0])

    sleepers = [threading.Thread(target=slow) for _ in range(WEB_THREADS)]
    started = time.monotonic()
    for thread in sleepers:
        thread.start()
    time.sleep(0.5)  # every WSGI thread is now asleep in a page handler
    answered = []
    for _ in range(5):
        sent = time.monotonic()
        assert sip_options(HOST, server.sip_port, timeout=0.5) is not None
        answered.append(time.monotonic() - sent)
    name, _data = _first_event(server, _token(server), within=2.0)
    assert time.monotonic() - started < SLEEP_S, "SIP and events were checked while asleep"
    assert max(answered) < 0.25
    for thread in sleepers:
        thread.join(SLEEP_S * 5)
    assert results == [200] * WEB_THREADS
