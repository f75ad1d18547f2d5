"""Registrar bindings (RFC 3261 §10.3), persisted so they survive a restart.

Owns the ``bindings`` table: at most one binding per (extension, contact). Runs for every
REGISTER, so the hot path is plain prepared SQL. The registrar decides *what* changes (expiry,
Call-ID/CSeq ordering of RFC 3261 §10.3 step 7); this module applies it atomically.
Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

from pbx.store.errors import NotFound

log = logging.getLogger(__name__)

_COLUMNS = (
    "extension, contact, expires_at, call_id, cseq, transport, source_host, source_port, "
    "user_agent, instance_id, reg_id, path, q, updated_at"
)
_UPDATED = [c.strip() for c in _COLUMNS.split(",")][2:]
_UPSERT = (
    f"INSERT INTO bindings ({_COLUMNS}) VALUES ({', '.join('?' * 14)}) "
    "ON CONFLICT(extension, contact) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _UPDATED)
)
# RFC 5626 §6 (3): a new flow with the same instance-id and reg-id replaces the old binding.
_REPLACE_FLOW = (
    "DELETE FROM bindings WHERE extension = ? AND instance_id = ? AND reg_id = ? AND contact <> ?"
)
_SELECT_ACTIVE = f"SELECT {_COLUMNS} FROM bindings WHERE expires_at > ?"


@dataclass(frozen=True)
class Binding:
    extension: str
    contact: str
    expires_at: float
    call_id: str
    cseq: int
    transport: str
    source_host: str
    source_port: int
    user_agent: str
    instance_id: str | None
    reg_id: int | None
    path: tuple[str, ...]
    q: float | None
    updated_at: float


def _row(b: Binding) -> tuple[Any, ...]:
    return (
        b.extension,
        b.contact,
        b.expires_at,
        b.call_id,
        b.cseq,
        b.transport,
        b.source_host,
        b.source_port,
        b.user_agent,
        b.instance_id,
        b.reg_id,
        json.dumps(list(b.path)),
        b.q,
        b.updated_at,
    )


def _binding(row: tuple[Any, ...]) -> Binding:
    values = list(row)
    values[11] = tuple(json.loads(values[11]))
    return Binding(*values)


def apply_register(
    db: Database,
    extension: str,
    *,
    upserts: list[Binding],
    removes: list[str],
    remove_all: bool,
    now: float,
) -> list[Binding]:
    """Apply one REGISTER atomically; return the extension's active bindings afterwards.

    Order: ``remove_all`` (``Contact: *``), then ``removes`` (contacts with expires 0), then
    ``upserts`` (insert or refresh per contact). Raises NotFound for an unknown or disabled
    extension and ValueError if an upsert belongs to another extension. Run it as one writer
    job so that it commits as a whole.
    """
    for b in upserts:
        if b.extension != extension:
            raise ValueError(f"binding for {b.extension} passed to apply_register({extension})")
    conn = db.conn
    found = conn.execute("SELECT enabled FROM users WHERE extension = ?", (extension,)).fetchone()
    if found is None or not found[0]:
        raise NotFound(f"no enabled extension {extension}")
    if remove_all:
        conn.execute("DELETE FROM bindings WHERE extension = ?", (extension,))
    if removes:
        conn.executemany(
            "DELETE FROM bindings WHERE extension = ? AND contact = ?",
            [(extension, contact) for contact in removes],
        )
    for b in upserts:
        if b.instance_id is not None and b.reg_id is not None:
            conn.execute(_REPLACE_FLOW, (extension, b.instance_id, b.reg_id, b.contact))
    if upserts:
        conn.executemany(_UPSERT, [_row(b) for b in upserts])
    rows = conn.execute(
        _SELECT_ACTIVE + " AND extension = ? ORDER BY contact", (now, extension)
    ).fetchall()
    return [_binding(row) for row in rows]


def list_bindings(db: Database, *, now: float, extension: str | None = None) -> list[Binding]:
    """Active bindings (``expires_at > now``), sorted by extension then contact."""
    if extension is None:
        cursor = db.execute(_SELECT_ACTIVE + " ORDER BY extension, contact", [now])
    else:
        cursor = db.execute(
            _SELECT_ACTIVE + " AND extension = ? ORDER BY contact", [now, extension]
        )
    return [_binding(row) for row in cursor.fetchall()]


def drop_bindings(db: Database, extension: str) -> int:
    """Delete every binding of ``extension`` (it was disabled); return how many."""
    return int(db.execute("DELETE FROM bindings WHERE extension = ?", [extension]).rowcount)


def purge_expired(db: Database, now: float) -> int:
    """Delete bindings with ``expires_at <= now``; return how many were deleted."""
    return int(db.execute("DELETE FROM bindings WHERE expires_at <= ?", [now]).rowcount)


RegisterChange = tuple[str, dict[str, Any]]  # (extension, apply_register keyword arguments)


def apply_many(db: Database, changes: list[RegisterChange]) -> list[list[Binding] | Exception]:
    """Apply several REGISTERs in one writer job, each in its own savepoint.

    The reactor side (pbx.service.BindingCommits) batches the REGISTERs of one reactor turn,
    and those that arrive while a commit is in flight, into one job: one queue hand-off and one
    wake-up of the reactor per batch instead of per REGISTER. A failing change (unknown or
    disabled extension, ...) is rolled back alone and returned as its exception.
    """
    conn = db.conn
    results: list[list[Binding] | Exception] = []
    for extension, kwargs in changes:
        conn.execute("SAVEPOINT pbx_register")
        try:
            results.append(apply_register(db, extension, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed back to that REGISTER's caller
            conn.execute("ROLLBACK TO pbx_register")
            results.append(exc)
        conn.execute("RELEASE pbx_register")
    return results
