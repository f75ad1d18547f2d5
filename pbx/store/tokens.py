"""REST API tokens, stored only as the SHA-256 hex digest of the token.

Owns the ``api_tokens`` table. Creating the token and hashing it is the caller's (web layer);
this module stores, finds by hash, revokes and records use. A token is usable while it is
neither revoked nor expired (:meth:`ApiToken.usable`) and, checked by the caller, its
``owner`` (the web account whose authority it carries, pbx.store.admins) is. Must not import
twisted or anything outside pbx.store.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, name, token_hash, role, site_id, created_by, created_at, expires_at, revoked_at, "
    "last_used_at, owner"
)


@dataclass(frozen=True)
class ApiToken:
    id: int
    name: str
    token_hash: str
    role: str
    site_id: int | None
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    owner: str | None = None  # web account (admins.username); None: the token works for no one

    def usable(self, now: float) -> bool:
        """Neither revoked nor expired at ``now``."""
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


def _token(row: tuple[Any, ...]) -> ApiToken:
    return ApiToken(*row)


def add_token(
    db: Database,
    name: str,
    token_hash: str,
    role: str,
    site_id: int | None,
    created_by: str,
    expires_at: float | None,
    now: float,
    *,
    owner: str | None = None,
) -> ApiToken:
    """Store a new token's hash; raise AlreadyExists if that hash is already stored.

    ``created_by`` is who made it (an audit actor such as ``web:alice`` or ``api:ci``),
    ``owner`` the web account it belongs to.
    """
    try:
        cursor = db.execute(
            "INSERT INTO api_tokens (name, token_hash, role, site_id, created_by, created_at, "
            "expires_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [name, token_hash, role, site_id, created_by, now, expires_at, owner],
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists("a token with this hash already exists") from exc
    token_id = int(cursor.lastrowid or 0)
    return ApiToken(
        token_id, name, token_hash, role, site_id, created_by, now, expires_at, None, None, owner
    )


def get_token(db: Database, token_id: int) -> ApiToken | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM api_tokens WHERE id = ?", [token_id]).fetchone()
    return None if row is None else _token(row)


def token_by_hash(db: Database, token_hash: str) -> ApiToken | None:
    """The token with this hash, revoked or expired ones included (check ``usable``)."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = ?", [token_hash]
    ).fetchone()
    return None if row is None else _token(row)


def list_tokens(db: Database) -> list[ApiToken]:
    """Every token, newest first."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY id DESC").fetchall()
    return [_token(row) for row in rows]


def revoke_token(db: Database, token_id: int, now: float) -> ApiToken:
    """Revoke a token (idempotent: the first revocation time is kept); NotFound if unknown."""
    db.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        [now, token_id],
    )
    token = get_token(db, token_id)
    if token is None:
        raise NotFound(f"no token {token_id}")
    return token


def touch_token(db: Database, token_id: int, now: float) -> None:
    """Record that the token was just used."""
    cursor = db.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", [now, token_id])
    if cursor.rowcount == 0:
        raise NotFound(f"no token {token_id}")
