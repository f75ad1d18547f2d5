"""SIP trunks: the providers pbx connects to the public network through.

Owns the ``trunks`` table. The password is stored as given by pbx.credentials (encrypted);
this module never sees it in the clear. At most :data:`MAX_TRUNKS` trunks (:class:`TooMany`).
Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field, replace
from typing import Any

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound, StoreError

log = logging.getLogger(__name__)

MAX_TRUNKS = 16

_COLUMNS = (
    "name, preset, domain, proxy, transport, username, password_enc, register, expires, "
    "allow_from, enabled, created_at, updated_at"
)


class TooMany(StoreError):
    """The system has its maximum number of trunks."""


@dataclass(frozen=True)
class Trunk:
    name: str
    preset: str
    domain: str
    proxy: str = ""  # host[:port]; '' = the domain
    transport: str = "udp"
    username: str = ""
    password_enc: str = field(default="", repr=False)
    register: bool = True
    expires: int = 600
    allow_from: tuple[str, ...] = ()  # networks whose INVITEs are the provider's
    enabled: bool = True
    created_at: float = 0.0
    updated_at: float = 0.0

    def public(self) -> dict[str, Any]:
        """What may be shown and audited of a trunk: everything but the password."""
        return {
            "name": self.name, "preset": self.preset, "domain": self.domain,
            "proxy": self.proxy, "transport": self.transport, "username": self.username,
            "register": self.register, "expires": self.expires,
            "allow_from": list(self.allow_from), "enabled": self.enabled,
        }  # fmt: skip


def _from_row(row: Any) -> Trunk:
    (name, preset, domain, proxy, transport, username, password_enc, register, expires,
     allow_from, enabled, created_at, updated_at) = row  # fmt: skip
    return Trunk(
        name, preset, domain, proxy, transport, username, password_enc, bool(register),
        int(expires), tuple(json.loads(allow_from)), bool(enabled), created_at, updated_at,
    )  # fmt: skip


def add_trunk(db: Database, trunk: Trunk, now: float | None = None) -> Trunk:
    """Insert ``trunk``; AlreadyExists for a taken name, TooMany beyond MAX_TRUNKS."""
    if get_trunk(db, trunk.name) is not None:
        raise AlreadyExists(f"trunk {trunk.name} already exists")
    (count,) = db.execute("SELECT COUNT(*) FROM trunks").fetchone()
    if count >= MAX_TRUNKS:
        raise TooMany(f"at most {MAX_TRUNKS} trunks per system")
    stamp = time.time() if now is None else now
    stored = replace(trunk, created_at=stamp, updated_at=stamp)
    try:
        db.execute(
            f"INSERT INTO trunks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            _values(stored),
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists(f"trunk {trunk.name} already exists") from exc
    return stored


def update_trunk(db: Database, trunk: Trunk, now: float | None = None) -> Trunk:
    """Replace the stored fields of ``trunk.name``; NotFound if there is none."""
    stamp = time.time() if now is None else now
    stored = replace(trunk, updated_at=stamp)
    values = _values(stored)
    cursor = db.execute(
        "UPDATE trunks SET preset = ?, domain = ?, proxy = ?, transport = ?, username = ?, "
        "password_enc = ?, register = ?, expires = ?, allow_from = ?, enabled = ?, "
        "updated_at = ? WHERE name = ?",
        [*values[1:11], values[12], values[0]],
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no trunk {trunk.name}")
    return stored


def _values(trunk: Trunk) -> list[Any]:
    return [
        trunk.name, trunk.preset, trunk.domain, trunk.proxy, trunk.transport, trunk.username,
        trunk.password_enc, int(trunk.register), trunk.expires, json.dumps(list(trunk.allow_from)),
        int(trunk.enabled), trunk.created_at, trunk.updated_at,
    ]  # fmt: skip


def get_trunk(db: Database, name: str) -> Trunk | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM trunks WHERE name = ?", [name]).fetchone()
    return None if row is None else _from_row(row)


def list_trunks(db: Database) -> list[Trunk]:
    rows = db.execute(f"SELECT {_COLUMNS} FROM trunks ORDER BY name").fetchall()
    return [_from_row(row) for row in rows]


def delete_trunk(db: Database, name: str) -> None:
    """Remove the trunk ``name``; NotFound if there is none."""
    cursor = db.execute("DELETE FROM trunks WHERE name = ?", [name])
    if cursor.rowcount == 0:
        raise NotFound(f"no trunk {name}")
