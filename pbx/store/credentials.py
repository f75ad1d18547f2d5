"""Stored SIP credentials of a user (encrypted password and digest HA1 values).

Owns the ``credentials`` table. Knows nothing about crypto: pbx.credentials builds the values.
Must not import twisted, cryptography or anything outside pbx.store.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import astuple, dataclass

from sqlite_utils import Database

from pbx.store.errors import NotFound

log = logging.getLogger(__name__)

_COLUMNS = "extension, realm, password_enc, ha1_md5, ha1_sha256, updated_at"


@dataclass(frozen=True)
class Credentials:
    extension: str
    realm: str
    password_enc: str
    ha1_md5: str
    ha1_sha256: str
    updated_at: float


def set_credentials(db: Database, creds: Credentials) -> None:
    """Insert or replace the credentials of ``creds.extension``; NotFound if no such user."""
    try:
        db.execute(
            f"INSERT INTO credentials ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(extension) DO UPDATE SET realm = excluded.realm, "
            "password_enc = excluded.password_enc, ha1_md5 = excluded.ha1_md5, "
            "ha1_sha256 = excluded.ha1_sha256, updated_at = excluded.updated_at",
            list(astuple(creds)),
        )
    except sqlite3.IntegrityError as exc:  # foreign key: the user does not exist
        raise NotFound(f"no extension {creds.extension}") from exc


def get_credentials(db: Database, extension: str) -> Credentials | None:
    """The stored credentials, whether the user is enabled or not (showing, re-hashing)."""
    row = db.execute(
        f"SELECT {_COLUMNS} FROM credentials WHERE extension = ?", [extension]
    ).fetchone()
    return None if row is None else Credentials(*row)


def get_enabled_credentials(db: Database, extension: str) -> Credentials | None:
    """The credentials phones authenticate with: None for an unknown or a disabled user, so
    that both get exactly the answers of a wrong password."""
    columns = ", ".join(f"c.{name.strip()}" for name in _COLUMNS.split(","))
    row = db.execute(
        f"SELECT {columns} FROM credentials c JOIN users u ON u.extension = c.extension "
        "WHERE c.extension = ? AND u.enabled = 1",
        [extension],
    ).fetchone()
    return None if row is None else Credentials(*row)


def credentials_not_in_realm(db: Database, realm: str) -> list[Credentials]:
    """Credentials whose HA1 values were computed for another realm (the realm was changed)."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM credentials WHERE realm <> ?", [realm]).fetchall()
    return [Credentials(*row) for row in rows]
