"""Web-admin accounts (password hashes only; hashing lives in pbx.credentials).

Owns the ``admins`` table: username, password hash, role ('admin', 'site_admin', 'readonly',
'user'), the site of a site administrator, the extension of a 'user' account, the expiry of
temporary support access, and the failed-login counter with its lock-out time. The login
policy (how many failures, how long a lock) is the caller's; this module only counts.
Must not import twisted, argon2 or anything outside pbx.store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)

ROLES = ("admin", "site_admin", "readonly", "user")
UPDATABLE = frozenset({"role", "site_id", "extension", "expires_at", "disabled"})

_COLUMNS = (
    "username, password_hash, must_change_password, created_at, role, site_id, extension, "
    "expires_at, disabled, failed_logins, locked_until"
)


@dataclass(frozen=True)
class Admin:
    username: str
    password_hash: str
    must_change_password: bool
    created_at: float
    role: str = "admin"
    site_id: int | None = None
    extension: str | None = None  # the own extension of a 'user' account
    expires_at: float | None = None  # temporary support access ends here
    disabled: bool = False
    failed_logins: int = 0
    locked_until: float | None = None

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and now < self.locked_until

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def _admin(row: tuple[Any, ...]) -> Admin:
    return Admin(
        username=row[0],
        password_hash=row[1],
        must_change_password=bool(row[2]),
        created_at=row[3],
        role=row[4],
        site_id=row[5],
        extension=row[6],
        expires_at=row[7],
        disabled=bool(row[8]),
        failed_logins=row[9],
        locked_until=row[10],
    )


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")


def create_admin(
    db: Database,
    username: str,
    password_hash: str,
    must_change: bool,
    *,
    role: str = "admin",
    site_id: int | None = None,
    extension: str | None = None,
    expires_at: float | None = None,
    now: float | None = None,
) -> Admin:
    """Create an account; raise AlreadyExists if the username is taken."""
    _check_role(role)
    admin = Admin(
        username,
        password_hash,
        must_change,
        time.time() if now is None else now,
        role=role,
        site_id=site_id,
        extension=extension,
        expires_at=expires_at,
    )
    try:
        db.execute(
            "INSERT INTO admins (username, password_hash, must_change_password, created_at, "
            "role, site_id, extension, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                username,
                password_hash,
                int(must_change),
                admin.created_at,
                role,
                site_id,
                extension,
                expires_at,
            ],
        )
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc) or "PRIMARY KEY" in str(exc):
            raise AlreadyExists(f"admin {username} already exists") from exc
        raise NotFound(f"no site {site_id}") from exc
    return admin


def get_admin(db: Database, username: str) -> Admin | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM admins WHERE username = ?", [username]).fetchone()
    return None if row is None else _admin(row)


def list_admins(db: Database) -> list[Admin]:
    """Every account, sorted by username."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM admins ORDER BY username").fetchall()
    return [_admin(row) for row in rows]


def has_role(db: Database, role: str) -> bool:
    """True when at least one account has ``role`` (disabled and expired ones included)."""
    _check_role(role)
    return db.execute("SELECT 1 FROM admins WHERE role = ? LIMIT 1", [role]).fetchone() is not None


def set_admin_password(db: Database, username: str, password_hash: str, must_change: bool) -> None:
    """Replace an admin's password hash (and lift a lock-out); NotFound if no such admin."""
    cursor = db.execute(
        "UPDATE admins SET password_hash = ?, must_change_password = ?, failed_logins = 0, "
        "locked_until = NULL WHERE username = ?",
        [password_hash, int(must_change), username],
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no admin {username}")


def update_admin(db: Database, username: str, **fields: Any) -> Admin:
    """Change role, site_id, extension, expires_at and/or disabled; return the new row.

    Raises ValueError for another field or an unknown role, NotFound for no such account.
    """
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
    if "role" in fields:
        _check_role(fields["role"])
    if "disabled" in fields:
        fields["disabled"] = int(bool(fields["disabled"]))
    if fields:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        try:
            cursor = db.execute(
                f"UPDATE admins SET {assignments} WHERE username = ?", [*fields.values(), username]
            )
        except sqlite3.IntegrityError as exc:
            raise NotFound(f"no site {fields.get('site_id')}") from exc
        if cursor.rowcount == 0:
            raise NotFound(f"no admin {username}")
    admin = get_admin(db, username)
    if admin is None:
        raise NotFound(f"no admin {username}")
    return admin


def delete_admin(db: Database, username: str) -> None:
    """Delete an account; raise NotFound if it does not exist."""
    cursor = db.execute("DELETE FROM admins WHERE username = ?", [username])
    if cursor.rowcount == 0:
        raise NotFound(f"no admin {username}")


def login_failed(
    db: Database, username: str, now: float, max_failures: int, lock_seconds: float
) -> Admin:
    """Count one failed login; at ``max_failures`` lock the account for ``lock_seconds``.

    The counter only goes back to 0 on a successful login or a password reset, so after a lock
    has run out one more failure locks the account again. Raises NotFound for an unknown
    username (the caller must answer the same either way).
    """
    admin = get_admin(db, username)
    if admin is None:
        raise NotFound(f"no admin {username}")
    failures = admin.failed_logins + 1
    locked_until = admin.locked_until
    if failures >= max_failures:
        locked_until = now + lock_seconds
        log.warning("web account %s locked for %g s after failed logins", username, lock_seconds)
    db.execute(
        "UPDATE admins SET failed_logins = ?, locked_until = ? WHERE username = ?",
        [failures, locked_until, username],
    )
    result = get_admin(db, username)
    assert result is not None
    return result


def login_succeeded(db: Database, username: str) -> None:
    """Reset the failed-login counter and any lock-out."""
    cursor = db.execute(
        "UPDATE admins SET failed_logins = 0, locked_until = NULL WHERE username = ?", [username]
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no admin {username}")
