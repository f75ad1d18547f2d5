"""Web-admin accounts (password hashes only; hashing lives in pbx.credentials).

Owns the ``admins`` table. Must not import twisted, argon2 or anything outside pbx.store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Admin:
    username: str
    password_hash: str
    must_change_password: bool
    created_at: float


def create_admin(
    db: Database,
    username: str,
    password_hash: str,
    must_change: bool,
    *,
    now: float | None = None,
) -> Admin:
    """Create an admin; raise AlreadyExists if the username is taken."""
    admin = Admin(username, password_hash, must_change, time.time() if now is None else now)
    try:
        db.execute(
            "INSERT INTO admins (username, password_hash, must_change_password, created_at) "
            "VALUES (?, ?, ?, ?)",
            [username, password_hash, int(must_change), admin.created_at],
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists(f"admin {username} already exists") from exc
    return admin


def get_admin(db: Database, username: str) -> Admin | None:
    row = db.execute(
        "SELECT username, password_hash, must_change_password, created_at FROM admins "
        "WHERE username = ?",
        [username],
    ).fetchone()
    return None if row is None else Admin(row[0], row[1], bool(row[2]), row[3])


def set_admin_password(db: Database, username: str, password_hash: str, must_change: bool) -> None:
    """Replace an admin's password hash; raise NotFound if there is no such admin."""
    cursor = db.execute(
        "UPDATE admins SET password_hash = ?, must_change_password = ? WHERE username = ?",
        [password_hash, int(must_change), username],
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no admin {username}")
