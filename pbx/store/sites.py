"""Sites: locations with their own timezone, dialling codes and number block.

Owns the ``sites`` table. Users and web accounts point at a site (``site_id``); a site that
still has users or accounts cannot be deleted (:class:`InUse`). Must not import twisted or
anything outside pbx.store.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, InUse, NotFound

log = logging.getLogger(__name__)

_COLUMNS = (
    "id, name, timezone, country_code, area_code, number_block_start, number_block_end, created_at"
)
UPDATABLE = frozenset(
    {"name", "timezone", "country_code", "area_code", "number_block_start", "number_block_end"}
)


@dataclass(frozen=True)
class Site:
    id: int
    name: str
    timezone: str
    country_code: str
    area_code: str
    number_block_start: str
    number_block_end: str
    created_at: float


def add_site(
    db: Database,
    name: str,
    timezone: str,
    country_code: str = "",
    area_code: str = "",
    number_block_start: str = "",
    number_block_end: str = "",
    *,
    now: float | None = None,
) -> Site:
    """Create a site; raise AlreadyExists if the name is taken."""
    created = time.time() if now is None else now
    try:
        cursor = db.execute(
            "INSERT INTO sites (name, timezone, country_code, area_code, number_block_start, "
            "number_block_end, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                name,
                timezone,
                country_code,
                area_code,
                number_block_start,
                number_block_end,
                created,
            ],
        )
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists(f"site {name} already exists") from exc
    site_id = int(cursor.lastrowid or 0)
    return Site(
        site_id,
        name,
        timezone,
        country_code,
        area_code,
        number_block_start,
        number_block_end,
        created,
    )


def get_site(db: Database, site_id: int) -> Site | None:
    row = db.execute(f"SELECT {_COLUMNS} FROM sites WHERE id = ?", [site_id]).fetchone()
    return None if row is None else Site(*row)


def list_sites(db: Database) -> list[Site]:
    """Every site, sorted by name."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM sites ORDER BY name COLLATE NOCASE, id").fetchall()
    return [Site(*row) for row in rows]


def update_site(db: Database, site_id: int, **fields: Any) -> Site:
    """Change some of a site's fields; NotFound, AlreadyExists (name taken), ValueError."""
    unknown = set(fields) - UPDATABLE
    if unknown:
        raise ValueError(f"cannot update {', '.join(sorted(unknown))}")
    if fields:
        assignments = ", ".join(f"{name} = ?" for name in fields)
        try:
            cursor = db.execute(
                f"UPDATE sites SET {assignments} WHERE id = ?", [*fields.values(), site_id]
            )
        except sqlite3.IntegrityError as exc:
            raise AlreadyExists(f"site {fields.get('name')} already exists") from exc
        if cursor.rowcount == 0:
            raise NotFound(f"no site {site_id}")
    site = get_site(db, site_id)
    if site is None:
        raise NotFound(f"no site {site_id}")
    return site


def site_usage(db: Database, site_id: int) -> dict[str, int]:
    """How many users, web accounts and live API tokens belong to the site."""
    users = db.execute("SELECT COUNT(*) FROM users WHERE site_id = ?", [site_id]).fetchone()[0]
    admins = db.execute("SELECT COUNT(*) FROM admins WHERE site_id = ?", [site_id]).fetchone()[0]
    tokens = db.execute(
        "SELECT COUNT(*) FROM api_tokens WHERE site_id = ? AND revoked_at IS NULL", [site_id]
    ).fetchone()[0]
    return {"users": users, "accounts": admins, "tokens": tokens}


def delete_site(db: Database, site_id: int) -> None:
    """Delete a site; InUse while users, accounts or unrevoked tokens belong to it."""
    if get_site(db, site_id) is None:
        raise NotFound(f"no site {site_id}")
    usage = {what: n for what, n in site_usage(db, site_id).items() if n}
    if usage:
        listed = ", ".join(f"{n} {what}" for what, n in usage.items())
        raise InUse(f"site {site_id} still has {listed}")
    db.execute("DELETE FROM sites WHERE id = ?", [site_id])
