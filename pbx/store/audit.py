"""Append-only audit log of administrative changes (who changed what, old and new values).

Owns the ``audit_log`` table; ``old``/``new`` are stored as JSON. Must not import twisted or
anything outside pbx.store.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: float
    actor: str
    action: str
    target: str
    old: Any
    new: Any


def record(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str,
    old: Any = None,
    new: Any = None,
    at: float,
) -> None:
    """Append one entry; ``old``/``new`` must be JSON-serialisable (None is stored as NULL)."""
    db.execute(
        "INSERT INTO audit_log (at, actor, action, target, old, new) VALUES (?, ?, ?, ?, ?, ?)",
        [at, actor, action, target, _dump(old), _dump(new)],
    )


def list_entries(
    db: Database, limit: int = 100, actor: str | None = None, target: str | None = None
) -> list[AuditEntry]:
    """Newest entries first, optionally only those of one actor and/or one target."""
    where, params = [], []
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if target is not None:
        where.append("target = ?")
        params.append(target)
    sql = "SELECT id, at, actor, action, target, old, new FROM audit_log"
    if where:
        sql += " WHERE " + " AND ".join(where)
    rows = db.execute(sql + " ORDER BY id DESC LIMIT ?", [*params, limit]).fetchall()
    return [AuditEntry(i, at, a, act, t, _load(o), _load(n)) for i, at, a, act, t, o, n in rows]


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)
