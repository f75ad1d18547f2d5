"""Fixtures for the web UI tests: a real Store in tmp_path, a StaticLive double, the Flask app
over https (Secure cookies), accounts of every role, and a logged-in client per role."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pbx import config as config_module
from pbx.credentials import hash_admin_password
from pbx.featurecodes import FeatureCodes
from pbx.store import admins, sites
from pbx.store.db import Store
from web.app import create_app
from web.backend import WebContext

PASSWORD = "correct horse battery"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_HASH = hash_admin_password(PASSWORD)  # argon2 is slow on purpose: hash once


class StaticLive:
    """Live double: fixed registrations, calls and health; counts settings_changed calls."""

    def __init__(self) -> None:
        self.regs: list[dict[str, Any]] = [
            {
                "extension": "100",
                "contact": "sip:100@127.0.0.1:5070",
                "user_agent": "Yealink SIP-T46S 66.86.0.15",
                "address": "127.0.0.1:5070",
                "transport": "udp",
                "expires_in": 3599,
            },
            {
                "extension": "200",
                "contact": "sip:200@127.0.0.2:5070",
                "user_agent": "baresip v2.0",
                "address": "127.0.0.2:5070",
                "transport": "tcp",
                "expires_in": 1200,
            },
        ]
        self.calls: list[dict[str, Any]] = [
            {
                "call_id": "c1",
                "caller": "100",
                "dialled": "101",
                "state": "answered",
                "duration": 75.5,
                "codecs": ["PCMU", "opus"],
            }
        ]
        self.changed = 0
        self.music: list[int] = []  # music_changed() calls
        self.trunk_states: list[dict[str, Any]] = [
            {"name": "sipgate", "state": "registered", "since": 1_700_000_000.0, "reason": "",
             "expires": 600, "retry_in": None, "reachable": "up", "rtt_ms": 12.5},
            {"name": "backup", "state": "failed", "since": 1_700_000_100.0,
             "reason": "401 Unauthorized: credentials of 'u' refused", "expires": None,
             "retry_in": 60.0},
        ]  # fmt: skip

    def registrations(self) -> list[dict[str, Any]]:
        return list(self.regs)

    def active_calls(self) -> list[dict[str, Any]]:
        return list(self.calls)

    def trunks(self) -> list[dict[str, Any]]:
        return list(self.trunk_states)

    def health(self) -> dict[str, Any]:
        return {
            "uptime_s": 3723,
            "cpu_percent": 2.5,
            "memory_rss": 50_000_000,
            "loop_lag_p99_ms": 1.2,
            "disk_free": 10_000_000_000,
            "db_size": 123_456,
        }

    def settings_changed(self) -> None:
        self.changed += 1

    def feature_codes(self) -> list[dict[str, Any]]:
        return [dict(row) for row in FeatureCodes().describe()]

    def music_changed(self, site_id: int) -> None:
        self.music.append(site_id)

    def originate(self, from_extension: str, to: str) -> dict[str, Any]:
        return {"call": "c2", "leg": "l1"}

    def hang_up_call(self, call_id: str) -> None:
        return None

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict[str, Any]:
        return {"call": call_id}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pbx.sqlite")
    s.open()
    yield s
    s.close()


@pytest.fixture
def live() -> StaticLive:
    return StaticLive()


@pytest.fixture
def ctx(store: Store, live: StaticLive, tmp_path: Path) -> WebContext:
    return WebContext(
        store=store,
        live=live,
        data_dir=tmp_path,
        config=config_module.load(tmp_path),
        secret_key=os.urandom(32),
    )


@pytest.fixture
def app(ctx: WebContext) -> Flask:
    return create_app(ctx, testing=True)


def https_client(app: Flask) -> FlaskClient:
    client = app.test_client()
    client.environ_base.update(
        {"wsgi.url_scheme": "https", "HTTP_REFERER": "https://localhost/", "HTTP_HOST": "localhost"}
    )
    return client


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return https_client(app)


def add_account(
    ctx: WebContext,
    username: str,
    role: str = "admin",
    *,
    site_id: int | None = None,
    extension: str | None = None,
    must_change: bool = False,
    expires_at: float | None = None,
) -> None:
    ctx.store.write(
        admins.create_admin,
        username,
        _HASH,
        must_change,
        role=role,
        site_id=site_id,
        extension=extension,
        expires_at=expires_at,
    )


def add_site(ctx: WebContext, name: str) -> int:
    return int(ctx.store.write(sites.add_site, name, "Europe/Berlin").id)


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD) -> Any:
    token = csrf_token(client)
    return client.post(
        "/login", data={"username": username, "password": password, "csrf_token": token}
    )


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any) -> Any:
    """POST with the CSRF token of the current session."""
    token = csrf_token(client, "/account/password")
    return client.post(path, data={**(data or {}), "csrf_token": token}, **kw)


@pytest.fixture
def sites_ab(ctx: WebContext) -> tuple[int, int]:
    return add_site(ctx, "Berlin"), add_site(ctx, "Hamburg")


@pytest.fixture
def as_role(app: Flask, ctx: WebContext, sites_ab: tuple[int, int]) -> Any:
    """as_role('site_admin') -> a client logged in with that role (site_admin: site A)."""

    def make(role: str) -> FlaskClient:
        name = f"{role}-{time.monotonic_ns()}"
        add_account(
            ctx,
            name,
            role,
            site_id=sites_ab[0] if role == "site_admin" else None,
            extension="100" if role == "user" else None,
        )
        c = https_client(app)
        response = login(c, name)
        assert response.status_code == 302, response.get_data(as_text=True)
        return c

    return make
