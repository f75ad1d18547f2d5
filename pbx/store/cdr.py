"""Call records (CDR): one row per call, crash-safe, with the call's history.

Owns the ``call_records`` and ``call_history`` tables. The call layer writes a row when a call
is answered, before the 200 OK goes to the caller (:func:`open_record`), and completes it when
the call ends (:func:`close_record`); unanswered calls are written once, complete
(:func:`add_record`). Both take the call's history (:class:`HistoryEntry`: talk segments,
transfers, parks, unparks, pickups), written in the same transaction as the row. At start-up,
:func:`close_interrupted` gives every row still open the disposition 'interrupted', so a crash
never loses an answered call. History rows go with their record (ON DELETE CASCADE: the
retention purge removes both). :func:`history_text` is the one line for people that the CSV
exports and ``pbx cdr`` show. Must not import twisted.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import astuple, dataclass, fields
from typing import Any

from sqlite_utils import Database

from pbx.csvsafe import safe_row
from pbx.store.errors import NotFound

DISPOSITIONS = ("open", "answered", "busy", "no answer", "failed", "cancelled", "interrupted")


@dataclass(frozen=True)
class CallRecord:
    call_id: str
    caller: str
    dialled: str
    started_at: float
    caller_name: str = ""
    callee: str = ""
    direction: str = "internal"
    caller_user: str | None = None
    callee_user: str | None = None
    caller_site: str | None = None
    callee_site: str | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    duration: float | None = None
    disposition: str = "open"
    hangup_side: str | None = None
    hangup_cause: str | None = None
    caller_codec: str | None = None
    callee_codec: str | None = None
    id: int | None = None


_FIELDS = [f.name for f in fields(CallRecord) if f.name != "id"]
_INSERT = (
    f"INSERT INTO call_records ({', '.join(_FIELDS)}) VALUES ({', '.join('?' * len(_FIELDS))})"
)
_SELECT = f"SELECT {', '.join(_FIELDS)}, id FROM call_records"


HISTORY_KINDS = ("talk", "transfer", "park", "unpark", "pickup")
_CHUNK = 500  # ids per query (SQLite's limit on host parameters)


@dataclass(frozen=True)
class HistoryEntry:
    """One step of a call: a talk segment (``until`` is when it ended) or a transfer, park,
    unpark or pickup (``until`` None). ``parties`` are the numbers involved, ``detail`` a
    sentence for people."""

    kind: str
    at: float
    until: float | None = None
    parties: tuple[str, ...] = ()
    detail: str = ""

    @classmethod
    def of(cls, entry: HistoryEntry | Mapping[str, Any]) -> HistoryEntry:
        """An entry from what the call layer passes (a dict with kind, at, until, parties,
        detail); ValueError naming what is wrong."""
        if isinstance(entry, HistoryEntry):
            return entry
        if not isinstance(entry, Mapping):
            raise ValueError(f"history entry: expected a mapping, got {type(entry).__name__}")
        kind = entry.get("kind")
        if kind not in HISTORY_KINDS:
            raise ValueError(f"history entry: kind {kind!r} is not one of {HISTORY_KINDS}")
        parties = entry.get("parties", ())
        if not isinstance(parties, list | tuple) or not all(isinstance(p, str) for p in parties):
            raise ValueError(f"history entry: parties must be a list of numbers, got {parties!r}")
        detail = entry.get("detail", "")
        if not isinstance(detail, str):
            raise ValueError(f"history entry: detail must be text, got {detail!r}")
        until = entry.get("until")
        return cls(
            kind=str(kind),
            at=_time(entry.get("at"), "at"),
            until=None if until is None else _time(until, "until"),
            parties=tuple(parties),
            detail=detail,
        )


def _time(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"history entry: {name} must be a time in seconds, got {value!r}")
    return float(value)


def entry_text(entry: HistoryEntry | Mapping[str, Any]) -> str:
    """One entry for people: a talk segment as ``1001 + 1002 talked 12 s``, the others their
    detail."""
    item = HistoryEntry.of(entry)
    if item.kind == "talk" and item.until is not None:
        seconds = max(0, round(item.until - item.at))
        return f"{' + '.join(item.parties)} talked {seconds} s"
    return item.detail or item.kind


def history_text(entries: Iterable[HistoryEntry | Mapping[str, Any]]) -> str:
    """A call's history as one line for people (CSV exports, ``pbx cdr``): the entries'
    :func:`entry_text` joined by '; '."""
    return "; ".join(entry_text(entry) for entry in entries)


def _write_history(
    db: Database, record_id: int, history: Sequence[HistoryEntry | Mapping[str, Any]]
) -> None:
    entries = [HistoryEntry.of(entry) for entry in history]
    if not entries:
        return
    (start,) = db.conn.execute(
        "SELECT COALESCE(MAX(position) + 1, 0) FROM call_history WHERE record_id = ?",
        (record_id,),
    ).fetchone()
    db.conn.executemany(
        "INSERT INTO call_history (record_id, position, kind, at, until, parties, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (record_id, start + n, e.kind, e.at, e.until, json.dumps(list(e.parties)), e.detail)
            for n, e in enumerate(entries)
        ],
    )


def _entry(row: tuple[Any, ...]) -> HistoryEntry:
    kind, at, until, parties, detail = row
    return HistoryEntry(kind, at, until, tuple(json.loads(parties)), detail)


def history_of(db: Database, record_id: int) -> list[HistoryEntry]:
    """The history of one record, in the order it happened (empty when it has none)."""
    rows = db.execute(
        "SELECT kind, at, until, parties, detail FROM call_history WHERE record_id = ? "
        "ORDER BY position",
        [record_id],
    ).fetchall()
    return [_entry(row) for row in rows]


def histories_of(db: Database, ids: Iterable[int]) -> dict[int, list[HistoryEntry]]:
    """The histories of many records: every id given maps to its entries (maybe none)."""
    wanted = list(dict.fromkeys(ids))
    out: dict[int, list[HistoryEntry]] = {record_id: [] for record_id in wanted}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = db.execute(
            "SELECT record_id, kind, at, until, parties, detail FROM call_history "
            f"WHERE record_id IN ({', '.join('?' * len(chunk))}) ORDER BY record_id, position",
            chunk,
        ).fetchall()
        for row in rows:
            out[row[0]].append(_entry(row[1:]))
    return out


def _check(record: CallRecord) -> None:
    if record.disposition not in DISPOSITIONS:
        raise ValueError(f"unknown disposition {record.disposition!r}")


def _with_sites(db: Database, record: CallRecord) -> CallRecord:
    """The record with the sites its users belong to at call time (the site id as text), so
    the record keeps them when a user later moves to another site."""
    sites = {}
    for field_name, user in (
        ("caller_site", record.caller_user),
        ("callee_site", record.callee_user),
    ):
        if getattr(record, field_name) is None and user:
            row = db.conn.execute(
                "SELECT site_id FROM users WHERE extension = ?", (user,)
            ).fetchone()
            if row is not None and row[0] is not None:
                sites[field_name] = str(row[0])
    return _replace(record, **sites) if sites else record


def open_record(db: Database, record: CallRecord) -> int:
    """Insert the row of an answered call (disposition 'open'); returns its id."""
    if record.answered_at is None:
        raise ValueError("an open record needs answered_at")
    record = _with_sites(db, _replace(record, disposition="open"))
    cursor = db.conn.execute(_INSERT, astuple(record)[:-1])
    return int(cursor.lastrowid or 0)


def add_record(
    db: Database,
    record: CallRecord,
    history: Sequence[HistoryEntry | Mapping[str, Any]] = (),
) -> int:
    """Insert the complete row of a call that ended (answered or not) with its history."""
    _check(record)
    if record.disposition == "open":
        raise ValueError("use open_record for calls in progress")
    entries = [HistoryEntry.of(entry) for entry in history]
    record = _with_sites(db, record)
    cursor = db.conn.execute(_INSERT, astuple(record)[:-1])
    record_id = int(cursor.lastrowid or 0)
    _write_history(db, record_id, entries)
    return record_id


def close_record(
    db: Database,
    record_id: int,
    *,
    ended_at: float,
    disposition: str = "answered",
    hangup_side: str | None = None,
    hangup_cause: str | None = None,
    history: Sequence[HistoryEntry | Mapping[str, Any]] = (),
) -> None:
    """Complete the open row ``record_id`` (what :func:`open_record` returned; duration from
    answer to end) and write its history. One Call-ID may have several rows (a retried
    INVITE), so rows are closed by id. Both happen in the caller's transaction (the store's
    writer job): a bad history entry (ValueError) leaves the row open."""
    if disposition not in DISPOSITIONS or disposition == "open":
        raise ValueError(f"bad final disposition {disposition!r}")
    entries = [HistoryEntry.of(entry) for entry in history]
    cursor = db.conn.execute(
        "UPDATE call_records SET ended_at = ?, duration = MAX(0, ? - answered_at), "
        "disposition = ?, hangup_side = ?, hangup_cause = ? "
        "WHERE id = ? AND disposition = 'open'",
        (ended_at, ended_at, disposition, hangup_side, hangup_cause, record_id),
    )
    if cursor.rowcount == 0:
        raise NotFound(f"no open call record {record_id}")
    _write_history(db, record_id, entries)


def close_interrupted(db: Database, now: float) -> int:
    """Start-up: every row still open was cut by a crash or kill; returns how many."""
    cursor = db.conn.execute(
        "UPDATE call_records SET disposition = 'interrupted', ended_at = ?, "
        "duration = MAX(0, ? - answered_at), hangup_cause = 'server restart' "
        "WHERE disposition = 'open'",
        (now, now),
    )
    return int(cursor.rowcount)


def recent(db: Database, limit: int = 50, *, disposition: str | None = None) -> list[CallRecord]:
    """Newest first."""
    sql = _SELECT
    params: list[Any] = []
    if disposition is not None:
        sql += " WHERE disposition = ?"
        params.append(disposition)
    sql += " ORDER BY started_at DESC, id DESC LIMIT ?"
    params.append(limit)
    return [CallRecord(*row) for row in db.execute(sql, params).fetchall()]


def search_records(
    db: Database,
    *,
    number: str | None = None,
    user: str | None = None,
    since: float | None = None,
    until: float | None = None,
    disposition: str | None = None,
    direction: str | None = None,
    site_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> tuple[list[CallRecord], int]:
    """One page of matching records, newest first, and the number of all matches.

    ``number`` matches part of the caller, callee or dialled number; ``user`` either side's
    user; ``since <= started_at < until``; ``site_id`` calls where either side's user belongs
    to the site (or the record names the site).
    """
    where, params = _search_filter(number, user, since, until, disposition, direction, site_id)
    total = int(db.execute("SELECT COUNT(*) FROM call_records" + where, params).fetchone()[0])
    rows = db.execute(
        _SELECT + where + " ORDER BY started_at DESC, id DESC LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return [CallRecord(*row) for row in rows], total


def counts_per_day(
    db: Database, since: float, until: float, site_id: int | None = None
) -> list[tuple[str, int]]:
    """Calls per day ('YYYY-MM-DD' in the server's local time), oldest day first; days
    without calls are left out."""
    where, params = _search_filter(None, None, since, until, None, None, site_id)
    rows = db.execute(
        "SELECT date(started_at, 'unixepoch', 'localtime') AS day, COUNT(*) FROM call_records"
        + where
        + " GROUP BY day ORDER BY day",
        params,
    ).fetchall()
    return [(day, count) for day, count in rows]


def counts_per_user(
    db: Database, since: float, until: float, site_id: int | None = None
) -> list[tuple[str, int]]:
    """Calls per user (as caller or callee), most calls first; with ``site_id`` only that
    site's users are counted."""
    params: list[Any] = [since, until, since, until]
    sql = (
        "SELECT user, COUNT(*) AS n FROM ("
        "SELECT caller_user AS user FROM call_records "
        "WHERE started_at >= ? AND started_at < ? AND caller_user IS NOT NULL "
        "UNION ALL SELECT callee_user FROM call_records "
        "WHERE started_at >= ? AND started_at < ? AND callee_user IS NOT NULL)"
    )
    if site_id is not None:
        sql += " WHERE user IN (SELECT extension FROM users WHERE site_id = ?)"
        params.append(site_id)
    rows = db.execute(sql + " GROUP BY user ORDER BY n DESC, user", params).fetchall()
    return [(user, count) for user, count in rows]


def purge_before(db: Database, when: float) -> int:
    """Delete finished records of calls that started before ``when`` (their history goes
    with them: ON DELETE CASCADE); return how many."""
    cursor = db.conn.execute(
        "DELETE FROM call_records WHERE started_at < ? AND disposition <> 'open'", (when,)
    )
    return int(cursor.rowcount)


def _search_filter(
    number: str | None,
    user: str | None,
    since: float | None,
    until: float | None,
    disposition: str | None,
    direction: str | None,
    site_id: int | None,
) -> tuple[str, list[Any]]:
    where: list[str] = []
    params: list[Any] = []
    if number:
        pattern = "%" + number.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            "(caller LIKE ? ESCAPE '\\' OR callee LIKE ? ESCAPE '\\' OR dialled LIKE ? ESCAPE '\\')"
        )
        params += [pattern] * 3
    if user is not None:
        where.append("(caller_user = ? OR callee_user = ?)")
        params += [user, user]
    if since is not None:
        where.append("started_at >= ?")
        params.append(since)
    if until is not None:
        where.append("started_at < ?")
        params.append(until)
    if disposition is not None:
        where.append("disposition = ?")
        params.append(disposition)
    if direction is not None:
        where.append("direction = ?")
        params.append(direction)
    if site_id is not None:
        members = "(SELECT extension FROM users WHERE site_id = ?)"
        where.append(
            f"(caller_user IN {members} OR callee_user IN {members} "
            "OR caller_site = ? OR callee_site = ?)"
        )
        params += [site_id, site_id, str(site_id), str(site_id)]
    return (" WHERE " + " AND ".join(where)) if where else "", params


def as_csv(
    records: list[CallRecord], histories: Mapping[int, Sequence[HistoryEntry]] | None = None
) -> str:
    """Every field of ``records`` as CSV, id first, and last a ``history`` column (the
    :func:`history_text` of ``histories[id]``, from :func:`histories_of`; empty without).
    Text cells go through pbx.csvsafe (caller names, numbers and Call-IDs come from phones:
    ``+4930...`` is written ``'+4930...``); ids, times and durations stay numbers."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", *_FIELDS, "history"])
    for record in records:
        values: list[Any] = list(astuple(record))
        entries = (histories or {}).get(record.id or 0, ())
        writer.writerow(safe_row([values[-1], *values[:-1], history_text(entries)]))
    return out.getvalue()


def _replace(record: CallRecord, **changes: Any) -> CallRecord:
    data = {f.name: getattr(record, f.name) for f in fields(CallRecord)}
    data.update(changes)
    return CallRecord(**data)
