"""Call history: filters (number, user, date range, disposition, direction), paging, CSV
export, per-day / per-user counts drawn as inline SVG bar charts, and each call's history
(talk segments, transfers, parks, pickups) in an expandable details element.

Must not import twisted or the store.
"""

from __future__ import annotations

import time
from typing import Any

from flask import Response as FlaskResponse
from flask import render_template

from web import services
from web.auth import require
from web.chart import bar_chart
from web.errors import ValidationError
from web.pages import actor, args, bp, ctx

_FILTERS = (*services.CALL_FILTERS, "site_id")
CHART_DAYS = 30


@bp.app_template_filter("history_line")
def history_line(entry: dict[str, Any]) -> str:
    """One step of a call's history in words, for the call history page."""
    return services.history_line(entry)


@bp.route("/calls")
@require("calls.read")
def calls() -> str | tuple[str, int]:
    data = args(_FILTERS)
    try:
        records, total, filters = services.search_calls(ctx(), actor(), data)
    except ValidationError as exc:
        page = render_template(
            "calls.html", records=[], total=0, filters=data, error=exc, charts=None, query={}
        )
        return page, 422
    until = filters["until"] or time.time()
    since = filters["since"] or until - CHART_DAYS * 86400
    counts = services.call_counts(ctx(), actor(), since, until, filters["site_id"])
    charts = {
        "per_day": bar_chart(counts["per_day"], "Calls per day"),
        "per_user": bar_chart(counts["per_user"][:20], "Calls per user"),
    }
    pages = max(1, -(-total // filters["per_page"]))
    query: dict[str, Any] = {k: v for k, v in data.items() if k != "page"}
    return render_template(
        "calls.html",
        records=records,
        total=total,
        filters=data,
        page=filters["page"],
        pages=pages,
        charts=charts,
        query=query,
        dispositions=services.cdr.DISPOSITIONS,
        directions=services.DIRECTIONS,
    )


@bp.route("/calls/export.csv")
@require("calls.read")
def calls_export() -> FlaskResponse:
    body = services.export_calls_csv(ctx(), actor(), args(_FILTERS))
    return FlaskResponse(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=calls.csv"},
    )
