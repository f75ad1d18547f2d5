"""SIP users (extensions).

Owns the ``users`` table, pickup groups included (:func:`set_pickup_group`,
:func:`pickup_group_members`). Plain functions taking the sqlite-utils Database first;
dataclasses out. Must not import twisted or anything outside pbx.store (but the name rules of
pbx.extensions).
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from pbx.extensions import check_pickup_group
from pbx.store import registrations
from pbx.store.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)

_COLUMNS = (
    "extension, display_name, enabled, created_at, call_waiting, static_contact, site_id, "
    "pickup_group"
)


@dataclass(frozen=True)
class User:
    extension: str
    display_name: str
    enabled: bool
    created_at: float
    call_waiting: bool = True  # False: a second call while one is up gets 486
    static_contact: str | None = None  # SIP URI reached besides the registrations
    site_id: int | None = None  # the site the user belongs to (pbx.store.sites)
    pickup_group: str | None = None  # users of a group pick up each other's calls


def _user(row: tuple[Any, ...]) -> User:
    return User(
        extension=row[0],
        display_name=row[1],
        enabled=bool(row[2]),
        created_at=row[3],
        call_waiting=bool(row[4]),
        static_contact=row[5],
        site_id=row[6],
        pickup_group=row[7],
    )


def add_user(
    db: Database,
    extension: str,
    display_name: str,
    *,
    now: float | None = None,
    static_contact: str | None = None,
    site_id: int | None = None,
) -> User:
    """Create an enabled user; AlreadyExists if the extension is taken, NotFound for an
    unknown site."""
    created = time.time() if now is None else now
    user = User(extension, display_name, True, created, True, static_contact, site_id)
    try:
        db.execute(
            f"INSERT INTO users ({_COLUMNS}) VALUES (?, ?, 1, ?, 1, ?, ?, NULL)",
            [extension, display_name, user.created_at, static_contact, site_id],
        )
    except sqlite3.IntegrityError as exc:
        if "FOREIGN KEY" in str(exc):
            raise NotFound(f"no site {site_id}") from exc
        raise AlreadyExists(f"extension {extension} already exists") from exc
    return user


def get_user(db: Database, extension: str) -> User | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM users WHERE extension = ?", [extension]).fetchone()
    return None if row is None else _user(row)


def list_users(db: Database, site_id: int | None = None) -> list[User]:
    """Every user (or only those of one site), sorted by extension."""
    if site_id is None:
        rows = db.execute(f"SELECT {_COLUMNS} FROM users ORDER BY extension").fetchall()
    else:
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM users WHERE site_id = ? ORDER BY extension", [site_id]
        ).fetchall()
    return [_user(row) for row in rows]


def set_user_enabled(db: Database, extension: str, enabled: bool) -> None:
    """Enable or disable a user; raise NotFound if it does not exist.

    Disabling drops the user's bindings in the same transaction: a disabled user is not
    reachable and cannot register (pbx.store.credentials.get_enabled_credentials).
    """
    cursor = db.execute(
        "UPDATE users SET enabled = ? WHERE extension = ?", [int(enabled), extension]
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no extension {extension}")
    if not enabled:
        registrations.drop_bindings(db, extension)


def set_call_waiting(db: Database, extension: str, enabled: bool) -> None:
    """Turn call waiting on or off; raise NotFound if the user does not exist."""
    _update(db, extension, "call_waiting", int(enabled))


def set_static_contact(db: Database, extension: str, contact: str | None) -> None:
    """Set (or clear with None) the static contact URI; raise NotFound for no such user."""
    _update(db, extension, "static_contact", contact)


def set_user_site(db: Database, extension: str, site_id: int | None) -> None:
    """Move a user to a site (None: no site); NotFound for no such user or site."""
    _update(db, extension, "site_id", site_id)


def set_pickup_group(db: Database, extension: str, group: str | None) -> None:
    """Put a user in a pickup group (None: in none); ValueError for a bad group name
    (pbx.extensions.check_pickup_group), NotFound for no such user."""
    if group is not None:
        check_pickup_group(group)
    _update(db, extension, "pickup_group", group)


def pickup_group_members(db: Database, group: str) -> list[str]:
    """The extensions of the enabled users in ``group``, sorted."""
    rows = db.execute(
        "SELECT extension FROM users WHERE pickup_group = ? AND enabled = 1 ORDER BY extension",
        [group],
    ).fetchall()
    return [row[0] for row in rows]


def set_display_name(db: Database, extension: str, name: str) -> None:
    """Change the display name; raise NotFound if the user does not exist."""
    _update(db, extension, "display_name", name)


def _update(db: Database, extension: str, column: str, value: Any) -> None:
    try:
        cursor = db.execute(
            f"UPDATE users SET {column} = ? WHERE extension = ?", [value, extension]
        )
    except sqlite3.IntegrityError as exc:
        raise NotFound(f"no such {column} {value!r}") from exc
    if cursor.rowcount == 0:
        raise NotFound(f"no extension {extension}")


def delete_user(db: Database, extension: str) -> None:
    """Delete a user with its credentials and bindings; raise NotFound if it does not exist."""
    cursor = db.execute("DELETE FROM users WHERE extension = ?", [extension])
    if cursor.rowcount == 0:
        raise NotFound(f"no extension {extension}")
