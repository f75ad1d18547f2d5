"""API routes for live state, call control and call history: registrations, active calls,
click-to-call, hanging up and transferring active calls, call records (search with the
call-history page's filters, paging, CSV export) and per-day/per-user counts.

Owns the /api/v1/registrations and /api/v1/calls* routes. Everything goes through
web/services, which applies the site scope of a site administrator and the own-extension rule
of a user account. The call commands (``POST /calls/originate``, ``DELETE /calls/active/{id}``,
``POST /calls/active/{id}/transfer``; ``{id}`` is an active call's ``id``) answer a bad field
with 400 and a refusal of the running server with its status and error_id. Must not import
twisted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Response, jsonify
from flask.typing import ResponseReturnValue

from pbx.store.cdr import DISPOSITIONS
from web import services, validate
from web.api.context import account, web_context
from web.api.registry import api_route
from web.api.routes_users import SITE_ID
from web.api.schema import Field, Schema

log = logging.getLogger(__name__)

_FILTERS = {
    "number": Field("string", max_length=64, description="Caller, callee or dialled number"),
    "user": Field("string", max_length=64, description="Extension on either side"),
    "since": Field("timestamp", max_length=40),
    "until": Field("timestamp", max_length=40, description="A bare date means the whole day"),
    "disposition": Field("string", max_length=32, enum=DISPOSITIONS),
    "direction": Field("string", max_length=32, enum=services.DIRECTIONS),
    "site_id": SITE_ID,
}
RECORDS_QUERY = Schema(
    _FILTERS
    | {
        "page": Field("integer", minimum=1, maximum=10**6, description="1-based"),
        "per_page": Field("integer", minimum=1, maximum=500, description="Default 50"),
    }
)
EXPORT_QUERY = Schema(_FILTERS)
COUNTS_QUERY = Schema(
    {
        "since": Field("timestamp", max_length=40, description="Default: 30 days ago"),
        "until": Field("timestamp", max_length=40, description="Default: now"),
        "site_id": SITE_ID,
    }
)


@api_route(
    "/registrations",
    "GET",
    summary="Live registrations",
    tag="calls",
    response="Registration[]",
)
def list_registrations() -> ResponseReturnValue:
    return jsonify(services.list_registrations(web_context(), account()))


@api_route("/calls/active", "GET", summary="Active calls", tag="calls", response="ActiveCall[]")
def active_calls() -> ResponseReturnValue:
    return jsonify(services.list_active_calls(web_context(), account()))


ORIGINATE = Schema(
    {
        "from": Field("string", required=True, max_length=32, description="Your extension"),
        "to": Field("string", required=True, max_length=32, description="The number to call"),
    },
    "Click-to-call: pbx rings the phone(s) of 'from' first, then 'to'.",
)
TRANSFER = Schema(
    {
        "to": Field("string", required=True, max_length=32, description="Transfer target"),
        "leg": Field(
            "string",
            nullable=True,
            max_length=64,
            description=(
                "The leg (party) to transfer; default: the other party for a user, the callee "
                "for administrators"
            ),
        ),
    },
    "Blind transfer of one party of an active call.",
)


@api_route(
    "/calls/originate",
    "POST",
    summary="Click-to-call: ring the user's own phone, then the number",
    tag="calls",
    body=ORIGINATE,
    response="CallStarted",
    status=201,
    invalid_status=400,
)
def originate(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.originate_call(web_context(), account(), body)), 201


@api_route(
    "/calls/active/<call_id>",
    "DELETE",
    summary="Hang up an active call",
    tag="calls",
    status=204,
    invalid_status=400,
)
def hang_up(call_id: str) -> ResponseReturnValue:
    services.hang_up_call(web_context(), account(), call_id)
    return "", 204


@api_route(
    "/calls/active/<call_id>/transfer",
    "POST",
    summary="Blind-transfer a party of an active call (accepted: the target rings)",
    tag="calls",
    body=TRANSFER,
    response="TransferStarted",
    status=202,
    invalid_status=400,
)
def transfer(call_id: str, body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.transfer_call(web_context(), account(), call_id, body)), 202


@api_route(
    "/calls/records",
    "GET",
    summary="Search call records (newest first), one page at a time",
    tag="calls",
    query=RECORDS_QUERY,
    response="CallRecordPage",
)
def call_records(query: dict[str, Any]) -> ResponseReturnValue:
    records, total, filters = services.search_calls(web_context(), account(), query)
    return jsonify(
        {
            "records": records,
            "total": total,
            "page": filters["page"],
            "per_page": filters["per_page"],
        }
    )


@api_route(
    "/calls/records.csv",
    "GET",
    summary="Call records matching the filters as CSV",
    tag="calls",
    query=EXPORT_QUERY,
    response="csv",
    content_type="text/csv",
)
def export_call_records(query: dict[str, Any]) -> ResponseReturnValue:
    text = services.export_calls_csv(web_context(), account(), query)
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=calls.csv"},
    )


@api_route(
    "/calls/counts",
    "GET",
    summary="Calls per day and per user",
    tag="calls",
    query=COUNTS_QUERY,
    response="CallCounts",
)
def call_counts(query: dict[str, Any]) -> ResponseReturnValue:
    now = time.time()
    since = validate.timestamp(query, "since")
    until = validate.timestamp(query, "until", end_of_day=True)
    since = now - 30 * 86400 if since is None else since
    until = now if until is None else until
    counts = services.call_counts(web_context(), account(), since, until, query.get("site_id"))
    return jsonify(
        {
            "per_day": [{"day": day, "count": n} for day, n in counts["per_day"]],
            "per_user": [{"user": user, "count": n} for user, n in counts["per_user"]],
        }
    )
