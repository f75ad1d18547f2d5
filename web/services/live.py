"""What the PBX is doing and has done: devices, registrations, active calls, health, call records.

Owns the read-only views of devices, live registrations and calls (scoped to a site admin's
site), the health summary, and call record search (each record with its history), CSV export
and per-day/per-user counts.
Must not import flask or twisted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pbx.store import cdr, devices, users
from web import validate
from web.auth import Account, check, scope_site
from web.backend import WebContext
from web.errors import ValidationError

DIRECTIONS = ("internal", "inbound", "outbound")


def _site_extensions(ctx: WebContext, actor: Account) -> set[str] | None:
    """Extensions a site admin may see; None means no restriction."""
    if not actor.site_bound:
        return None
    scope = scope_site(actor)
    return {u.extension for u in ctx.store.read(users.list_users, site_id=scope)}


def list_devices(
    ctx: WebContext, actor: Account, site_id: int | None = None
) -> list[dict[str, Any]]:
    check(actor, "devices.read")
    scope = scope_site(actor, site_id)
    return [asdict(d) for d in ctx.store.read(devices.list_devices, site_id=scope)]


def list_registrations(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "registrations.read")
    allowed = _site_extensions(ctx, actor)
    rows = ctx.live.registrations()
    return [r for r in rows if allowed is None or r.get("extension") in allowed]


def list_active_calls(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "calls.read")
    allowed = _site_extensions(ctx, actor)
    rows = ctx.live.active_calls()
    return [
        c
        for c in rows
        if allowed is None or c.get("caller") in allowed or c.get("dialled") in allowed
    ]


def list_trunks(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    """The trunks' registration states; none for a site administrator (trunks serve every
    site; which site a trunk serves is not modelled yet)."""
    check(actor, "health.read")
    if actor.site_bound:
        return []
    return list(ctx.live.trunks())


def health(ctx: WebContext, actor: Account) -> dict[str, Any]:
    check(actor, "health.read")
    return dict(ctx.live.health())


CALL_FILTERS = ("number", "user", "since", "until", "disposition", "direction", "page", "per_page")


def call_filters(data: dict[str, Any]) -> dict[str, Any]:
    """Validated search filters for call records (shared by the page and the API)."""
    validate.reject_unknown(data, (*CALL_FILTERS, "site_id"))
    filters: dict[str, Any] = {
        "number": validate.text(data, "number", max_len=64) or None,
        "user": validate.text(data, "user", max_len=64) or None,
        "since": validate.timestamp(data, "since"),
        "until": validate.timestamp(data, "until", end_of_day=True),
        "disposition": validate.text(data, "disposition", max_len=32) or None,
        "direction": validate.text(data, "direction", max_len=32) or None,
        "site_id": validate.integer(data, "site_id", low=1, high=2**31),
    }
    if filters["disposition"] and filters["disposition"] not in cdr.DISPOSITIONS:
        raise ValidationError("disposition", f"disposition: one of {', '.join(cdr.DISPOSITIONS)}")
    if filters["direction"] and filters["direction"] not in DIRECTIONS:
        raise ValidationError("direction", f"direction: one of {', '.join(DIRECTIONS)}")
    if filters["since"] and filters["until"] and filters["since"] > filters["until"]:
        raise ValidationError("until", "until: must not be before since")
    return filters


def _search_with_history(
    db: Any, **filters: Any
) -> tuple[list[cdr.CallRecord], int, dict[int, list[cdr.HistoryEntry]]]:
    """One page of matching records, the number of matches and the page's histories, in one
    read (one snapshot)."""
    records, total = cdr.search_records(db, **filters)
    return records, total, cdr.histories_of(db, [r.id for r in records if r.id is not None])


def record_dict(record: cdr.CallRecord, history: list[cdr.HistoryEntry]) -> dict[str, Any]:
    """A call record as pages and the API show it, with ``history``: its entries (kind, at,
    until, parties, detail) in order."""
    return asdict(record) | {"history": [asdict(entry) for entry in history]}


def history_line(entry: dict[str, Any]) -> str:
    """One history entry of :func:`record_dict` in words (pbx.store.cdr.entry_text)."""
    return cdr.entry_text(entry)


def search_calls(
    ctx: WebContext, actor: Account, data: dict[str, Any]
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """(records, total, filters) for the given filters and page (1-based, per_page <= 500);
    each record carries its history."""
    check(actor, "calls.read")
    filters = call_filters(data)
    filters["site_id"] = scope_site(actor, filters["site_id"])
    page = validate.integer(data, "page", low=1, high=10**6, default=1) or 1
    per_page = validate.integer(data, "per_page", low=1, high=500, default=50) or 50
    records, total, histories = ctx.store.read(
        _search_with_history, **filters, limit=per_page, offset=(page - 1) * per_page
    )
    rows = [record_dict(r, histories.get(r.id or 0, [])) for r in records]
    return rows, total, filters | {"page": page, "per_page": per_page}


def export_calls_csv(ctx: WebContext, actor: Account, data: dict[str, Any]) -> str:
    """Every record matching the filters (at most 100,000 rows) as CSV, with its history."""
    check(actor, "calls.read")
    filters = call_filters({k: v for k, v in data.items() if k not in ("page", "per_page")})
    filters["site_id"] = scope_site(actor, filters["site_id"])
    records, _, histories = ctx.store.read(
        _search_with_history, **filters, limit=100_000, offset=0
    )
    return cdr.as_csv(records, histories)


def call_counts(
    ctx: WebContext, actor: Account, since: float, until: float, site_id: int | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Calls per day and per user in [since, until] for the chart."""
    check(actor, "calls.read")
    scope = scope_site(actor, site_id)
    return {
        "per_day": list(ctx.store.read(cdr.counts_per_day, since, until, site_id=scope)),
        "per_user": list(ctx.store.read(cdr.counts_per_user, since, until, site_id=scope)),
    }
