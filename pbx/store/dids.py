"""Public numbers (DIDs): which number-plan target a call to a number from a trunk goes to.

Owns the ``dids`` table: ``number`` in E.164 with ``+``, ``target`` what the number plan
resolves (an extension for now). Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound


@dataclass(frozen=True)
class Did:
    number: str
    target: str
    created_at: float


def add_did(db: Database, number: str, target: str, now: float | None = None) -> Did:
    """Route ``number`` to ``target``; AlreadyExists (naming the target) if it is taken."""
    stamp = time.time() if now is None else now
    try:
        db.execute("INSERT INTO dids (number, target, created_at) VALUES (?, ?, ?)",
                   [number, target, stamp])  # fmt: skip
    except sqlite3.IntegrityError as exc:
        taken = get_did(db, number)
        where = f" (it goes to {taken.target})" if taken else ""
        raise AlreadyExists(f"DID {number} is already taken{where}") from exc
    return Did(number, target, stamp)


def get_did(db: Database, number: str) -> Did | None:
    row = db.execute(
        "SELECT number, target, created_at FROM dids WHERE number = ?", [number]
    ).fetchone()
    return None if row is None else Did(*row)


def list_dids(db: Database) -> list[Did]:
    rows = db.execute("SELECT number, target, created_at FROM dids ORDER BY number").fetchall()
    return [Did(*row) for row in rows]


def delete_did(db: Database, number: str) -> None:
    if db.execute("DELETE FROM dids WHERE number = ?", [number]).rowcount == 0:
        raise NotFound(f"no DID {number}")


def dids_of(db: Database, target: str) -> list[str]:
    """The numbers that ring ``target`` (its public identity), lowest first."""
    rows = db.execute("SELECT number FROM dids WHERE target = ? ORDER BY number", [target])
    return [row[0] for row in rows.fetchall()]
