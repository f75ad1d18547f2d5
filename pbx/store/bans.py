"""Address bans (brute-force protection): a whole address, or one (address, username) pair.

Owns the ``bans`` table, where username '' stores "no username" (None). Must not import
twisted or anything outside pbx.store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlite_utils import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ban:
    address: str
    username: str | None
    until: float
    reason: str
    created_at: float


def add_ban(db: Database, ban: Ban) -> None:
    """Insert a ban, or replace the one with the same (address, username)."""
    db.execute(
        "INSERT INTO bans (address, username, until, reason, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(address, username) DO UPDATE SET until = excluded.until, "
        "reason = excluded.reason, created_at = excluded.created_at",
        [ban.address, ban.username or "", ban.until, ban.reason, ban.created_at],
    )


def active_bans(db: Database, now: float) -> list[Ban]:
    """Bans with ``until > now``, sorted by address then username."""
    rows = db.execute(
        "SELECT address, username, until, reason, created_at FROM bans "
        "WHERE until > ? ORDER BY address, username",
        [now],
    ).fetchall()
    return [Ban(a, u or None, until, reason, created) for a, u, until, reason, created in rows]


def delete_bans(db: Database, address: str) -> int:
    """Delete every ban of ``address`` (user-pair bans included); return how many."""
    return int(db.execute("DELETE FROM bans WHERE address = ?", [address]).rowcount)
