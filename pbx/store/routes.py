"""Outbound routes: which trunks calls to numbers matching a dial pattern leave through.

Owns the ``routes`` table (pattern syntax in pbx.dialpatterns; ``trunks`` in the order they
are tried). A trunk that routes name cannot be deleted while they do (:class:`InUse`, checked
by :func:`routes_using`). Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass

from sqlite_utils import Database

from pbx.store.errors import AlreadyExists, NotFound

_COLUMNS = "name, pattern, exit_digit, priority, trunks, created_at"


@dataclass(frozen=True)
class Route:
    name: str
    pattern: str
    trunks: tuple[str, ...]
    priority: int = 100
    exit_digit: str = ""
    created_at: float = 0.0


def _from_row(row: tuple[object, ...]) -> Route:
    name, pattern, exit_digit, priority, trunks, created_at = row
    return Route(str(name), str(pattern), tuple(json.loads(str(trunks))), int(str(priority)),
                 str(exit_digit), float(str(created_at)))  # fmt: skip


def add_route(db: Database, route: Route, now: float | None = None) -> Route:
    stamp = time.time() if now is None else now
    try:
        db.execute(
            f"INSERT INTO routes ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
            [route.name, route.pattern, route.exit_digit, route.priority,
             json.dumps(list(route.trunks)), stamp],
        )  # fmt: skip
    except sqlite3.IntegrityError as exc:
        raise AlreadyExists(f"route {route.name} already exists") from exc
    return Route(route.name, route.pattern, route.trunks, route.priority, route.exit_digit, stamp)


def list_routes(db: Database) -> list[Route]:
    """Every route, lowest priority value first, then by name."""
    rows = db.execute(f"SELECT {_COLUMNS} FROM routes ORDER BY priority, name").fetchall()
    return [_from_row(row) for row in rows]


def routes_using(db: Database, trunk: str) -> list[str]:
    return [r.name for r in list_routes(db) if trunk in r.trunks]


def delete_route(db: Database, name: str) -> None:
    if db.execute("DELETE FROM routes WHERE name = ?", [name]).rowcount == 0:
        raise NotFound(f"no route {name}")
