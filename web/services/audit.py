"""Reading the audit log (who changed what, when) for the settings page and the API.

Owns the audit log filters and the paged, newest-first listing. Writing entries happens in the
service that makes each change (pbx.store.audit.record). Must not import flask or twisted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pbx.store import audit
from web import validate
from web.auth import Account, check
from web.backend import WebContext

AUDIT_FILTERS = ("actor", "action", "target", "since", "until", "page", "per_page")


def list_audit(ctx: WebContext, actor: Account, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first, filtered by actor, action, target and date (page of per_page rows)."""
    check(actor, "audit.read")
    validate.reject_unknown(data, AUDIT_FILTERS)
    page = validate.integer(data, "page", low=1, high=10**6, default=1) or 1
    per_page = validate.integer(data, "per_page", low=1, high=500, default=100) or 100
    entries = ctx.store.read(
        audit.list_entries,
        limit=per_page,
        offset=(page - 1) * per_page,
        actor=validate.text(data, "actor", max_len=100) or None,
        action=validate.text(data, "action", max_len=100) or None,
        target=validate.text(data, "target", max_len=100) or None,
        since=validate.timestamp(data, "since"),
        until=validate.timestamp(data, "until", end_of_day=True),
    )
    return [asdict(e) for e in entries]
