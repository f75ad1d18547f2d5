"""Shared set-up for the REST API tests (tests/web/test_api_*.py).

A real pbx.store.db.Store in a temporary folder, the Flask app from web.app.create_app with a
static Live double, two sites, three users, a device, two call records (r1 with a history),
the web accounts "setup" (admin, the ADMIN actor) and "ursula" (user of extension 100), and one
API token per role (owned by setup, the user token by ursula). ``World.call(role, method, path, ...)`` sends a request
with that role's bearer token. ``dump(world)`` is a snapshot of every table (and the override
file) for "nothing was written" checks.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import Headers

from pbx.config import Config
from pbx.featurecodes import FeatureCodes
from pbx.store import admins, cdr, devices, tokens
from pbx.store.db import Store
from web import services
from web.app import create_app
from web.auth import Account
from web.backend import WebContext

ROLES = ("admin", "site_admin", "readonly", "user")
SITE_1, SITE_2 = 1, 2


class StaticLive:
    """Fixed live state; remembers settings_changed(), music_changed() and call commands
    (which raise ``refuse`` when it is set)."""

    def __init__(self) -> None:
        self.changed = 0
        self.music: list[int] = []  # music_changed() calls
        self.commands: list[tuple[Any, ...]] = []  # call commands received
        self.refuse: Exception | None = None  # raised by the call commands when set

    def registrations(self) -> list[dict[str, Any]]:
        return [
            {"extension": "100", "contact": "sip:100@127.0.0.1:5062", "user_agent": "Yealink",
             "address": "127.0.0.1:5062", "transport": "udp", "expires_in": 300},
            {"extension": "200", "contact": "sip:200@127.0.0.1:5064", "user_agent": "baresip",
             "address": "127.0.0.1:5064", "transport": "tcp", "expires_in": 120},
        ]  # fmt: skip

    def active_calls(self) -> list[dict[str, Any]]:
        return [
            {"id": "conv-1", "call_id": "c1", "caller": "100", "dialled": "300",
             "state": "answered", "duration": 12.0, "codecs": {"A": "PCMU", "B": "PCMU"},
             "legs": [
                 {"id": "leg-100", "party": "100", "direction": "in", "state": "confirmed"},
                 {"id": "leg-300", "party": "300", "direction": "out", "state": "confirmed"},
             ]},
            {"call_id": "c2", "caller": "200", "dialled": "300", "state": "ringing",
             "duration": 1.0, "codecs": {}},
        ]  # fmt: skip

    def trunks(self) -> list[dict[str, Any]]:
        return [{"name": "sipgate", "state": "registered", "since": 1.0, "reason": "",
                 "expires": 600, "retry_in": None}]  # fmt: skip

    def health(self) -> dict[str, Any]:
        return {"uptime_s": 5.0, "cpu_percent": 1.5, "memory_rss": 1e8,
                "loop_lag_p99_ms": 0.4, "disk_free": 1e10, "db_size": 1e5}  # fmt: skip

    def settings_changed(self) -> None:
        self.changed += 1

    def feature_codes(self) -> list[dict[str, Any]]:
        return [dict(row) for row in FeatureCodes().describe()]

    def music_changed(self, site_id: int) -> None:
        self.music.append(site_id)

    def _command(self, *call: Any) -> None:
        self.commands.append(call)
        if self.refuse is not None:
            raise self.refuse

    def originate(self, from_extension: str, to: str) -> dict[str, Any]:
        self._command("originate", from_extension, to)
        return {"call": "conv-9", "leg": "leg-9"}

    def hang_up_call(self, call_id: str) -> None:
        self._command("hang_up_call", call_id)

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict[str, Any]:
        self._command("transfer_call", call_id, to, leg_id)
        return {"call": call_id, "leg": leg_id or "callee", "to": to}


class ApiResponse(Protocol):
    """The parts of werkzeug's TestResponse the tests use, with ``json`` typed as Any."""

    status_code: int
    headers: Headers
    mimetype: str | None
    is_json: bool

    @property
    def json(self) -> Any: ...

    def get_data(self, as_text: bool = False) -> Any: ...


@dataclass
class World:
    store: Store
    ctx: WebContext
    app: Flask
    client: FlaskClient
    live: StaticLive
    secrets: dict[str, str] = field(default_factory=dict)  # role -> bearer token
    sip_passwords: dict[str, str] = field(default_factory=dict)  # extension -> password

    def headers(self, role: str | None) -> dict[str, str]:
        return {} if role is None else {"Authorization": f"Bearer {self.secrets[role]}"}

    def call(self, role: str | None, method: str, path: str, **kw: Any) -> ApiResponse:
        headers = self.headers(role) | kw.pop("headers", {})
        return cast(ApiResponse, self.client.open(path, method=method, headers=headers, **kw))


ADMIN = Account("setup", "admin", via="web")
HISTORY = [  # of call record r1
    {"kind": "pickup", "at": 1000.0, "until": None, "parties": ["300", "100"],
     "detail": "300 picked up the call ringing at 100"},
    {"kind": "talk", "at": 1000.0, "until": 1012.0, "parties": ["100", "300"], "detail": ""},
]  # fmt: skip


def add_token(
    store: Store,
    secret: str,
    role: str,
    *,
    site_id: int | None = None,
    created_by: str = "web:setup",
    expires_at: float | None = None,
) -> int:
    """A token made in the UI by the account ``created_by`` names, which owns it."""
    digest = hashlib.sha256(secret.encode()).hexdigest()
    owner = created_by.partition(":")[2]
    token = store.write(
        tokens.add_token,
        secret,
        digest,
        role,
        site_id,
        created_by,
        expires_at,
        time.time(),
        owner=owner,
    )
    return token.id


def _populate(world: World) -> None:
    ctx, store = world.ctx, world.store
    services.create_site(ctx, ADMIN, {"name": "HQ", "timezone": "Europe/Berlin"})
    services.create_site(ctx, ADMIN, {"name": "Branch", "timezone": "Europe/Vienna"})
    services.create_site(ctx, ADMIN, {"name": "Empty", "timezone": "UTC"})
    for ext, site in (("100", SITE_1), ("200", SITE_2), ("300", None)):
        user = services.create_user(ctx, ADMIN, {"extension": ext, "site_id": site})
        world.sip_passwords[ext] = user["sip_password"]
    now = time.time()
    store.write(
        devices.record_sightings,
        [
            devices.Sighting("100", "Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc", "127.0.0.1:5062", now),
            devices.Sighting("200", "baresip v1.0.0 (x86_64/linux)", "127.0.0.1:5064", now),
        ],
    )  # fmt: skip
    for call_id, caller, callee in (("r1", "100", "300"), ("r2", "200", "300")):
        store.write(
            cdr.add_record,
            cdr.CallRecord(
                call_id=call_id, caller=caller, dialled=callee, callee=callee,
                started_at=now - 60, caller_user=caller, callee_user=callee,
                ended_at=now - 30, disposition="no answer",
            ),
            history=HISTORY if call_id == "r1" else [],
        )  # fmt: skip
    store.write(admins.create_admin, "setup", "x", False)  # ADMIN: owns the role tokens
    store.write(admins.create_admin, "ursula", "x", False, role="user", extension="100")
    for role in ROLES:
        secret = f"pbx_test_{role}"
        site_id = SITE_1 if role == "site_admin" else None
        created_by = "web:ursula" if role == "user" else "web:setup"
        add_token(store, secret, role, site_id=site_id, created_by=created_by)
        world.secrets[role] = secret


@contextmanager
def api_world(tmp_path: Path) -> Iterator[World]:
    """A populated store and app; closed afterwards."""
    store = Store(tmp_path / "pbx.sqlite3")
    store.open()
    try:
        live = StaticLive()
        ctx = WebContext(
            store=store,
            live=live,
            data_dir=tmp_path,
            config=Config(data_dir=tmp_path),
            secret_key=b"k" * 32,
        )
        app = create_app(ctx, testing=True)
        world = World(store, ctx, app, app.test_client(), live)
        _populate(world)
        yield world
    finally:
        store.close()


def dump(world: World) -> list[Any]:
    """Every row of every table (api_tokens without last_used_at) plus the override file."""

    def read(db: Any) -> list[Any]:
        names = [
            r[0]
            for r in db.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "ORDER BY name"
            )
        ]
        out: list[Any] = []
        for name in names:
            cursor = db.conn.execute(f"SELECT * FROM [{name}] ORDER BY rowid")
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                item = dict(zip(columns, row, strict=True))
                if name == "api_tokens":
                    item.pop("last_used_at")
                out.append((name, item))
        return out

    override = world.ctx.data_dir / "pbx.toml"
    return [*world.store.read(read), override.read_bytes() if override.exists() else None]
