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


def record_changes(
    db: Database,
    *,
    actor: str,
    action: str,
    target: str,
    before: dict[str, Any],
    after: dict[str, Any],
    at: float,
) -> bool:
    """Append one entry with only the fields that differ between ``before`` and ``after``
    (old and new values); nothing when none differ. Returns whether an entry was written."""
    changed = {key: value for key, value in before.items() if after.get(key) != value}
    if not changed:
        return False
    new = {key: after.get(key) for key in changed}
    record(db, actor=actor, action=action, target=target, old=changed, new=new, at=at)
    return True


def list_entries(
    db: Database,
    limit: int = 100,
    actor: str | None = None,
    target: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    action: str | None = None,
    offset: int = 0,
) -> list[AuditEntry]:
    """Newest entries first, optionally filtered by actor, target, action (exact; a trailing
    ``*`` matches a prefix, e.g. ``user.*``) and time (``since <= at < until``)."""
    where, params = _filters(actor, target, since, until, action)
    sql = "SELECT id, at, actor, action, target, old, new FROM audit_log" + where
    rows = db.execute(sql + " ORDER BY id DESC LIMIT ? OFFSET ?", [*params, limit, offset])
    return [
        AuditEntry(i, at, a, act, t, _load(o), _load(n))
        for i, at, a, act, t, o, n in rows.fetchall()
    ]


def count_entries(
    db: Database,
    actor: str | None = None,
    target: str | None = None,
    *,
    since: float | None = None,
    until: float | None = None,
    action: str | None = None,
) -> int:
    """How many entries match the same filters as :func:`list_entries` (for paging)."""
    where, params = _filters(actor, target, since, until, action)
    return int(db.execute("SELECT COUNT(*) FROM audit_log" + where, params).fetchone()[0])


def _filters(
    actor: str | None,
    target: str | None,
    since: float | None,
    until: float | None,
    action: str | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if actor is not None:
        where.append("actor = ?")
        params.append(actor)
    if target is not None:
        where.append("target = ?")
        params.append(target)
    if since is not None:
        where.append("at >= ?")
        params.append(since)
    if until is not None:
        where.append("at < ?")
        params.append(until)
    if action is not None:
        if action.endswith("*"):
            where.append("substr(action, 1, ?) = ?")
            params += [len(action) - 1, action[:-1]]
        else:
            where.append("action = ?")
            params.append(action)
    return (" WHERE " + " AND ".join(where)) if where else "", params


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)
