"""API routes for users (extensions): list, read, create, change, delete, SIP password,
provisioning summary, CSV import and export.

Owns the /api/v1/users* routes and their body schemas. Every change goes through
web/services (validation, permissions, audit); a role 'user' token may read only its own
extension. Must not import twisted.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Response, jsonify
from flask.typing import ResponseReturnValue

from web import services
from web.api.context import account, web_context
from web.api.registry import api_route
from web.api.schema import Field, Schema

log = logging.getLogger(__name__)

SITE_ID = Field("integer", nullable=True, minimum=1, maximum=2**31, description="Site id")
_USER_FIELDS = {
    "extension": Field("string", max_length=32, description="Extension number or name"),
    "display_name": Field("string", max_length=100),
    "site_id": SITE_ID,
    "enabled": Field("boolean"),
    "call_waiting": Field("boolean"),
    "static_contact": Field(
        "string", nullable=True, max_length=200, description="Fixed SIP URI (gateways)"
    ),
    "pickup_group": Field(
        "string",
        nullable=True,
        max_length=32,
        description="Pickup group: 1-32 letters, digits or - _ . (null or empty: none)",
    ),
}
CREATE_USER = Schema(
    _USER_FIELDS
    | {
        "extension": Field("string", required=True, max_length=32),
        "password": Field(
            "string", max_length=128, description="SIP password (generated when left out)"
        ),
    }
)
UPDATE_USER = Schema(_USER_FIELDS, "Only the fields given change; the extension cannot.")
SIP_PASSWORD = Schema(
    {"password": Field("string", max_length=128, description="Generated when left out")}
)
USERS_QUERY = Schema({"site_id": SITE_ID})
PROVISIONING_QUERY = Schema(
    {"with_password": Field("boolean", description="Include the SIP password (audited)")}
)
IMPORT = Schema(
    {
        "csv": Field(
            "string",
            required=True,
            max_length=1024 * 1024,
            description=(
                "CSV rows extension,password,name[,site]; a pickup_group column named in the "
                "header is optional; all or none are added"
            ),
        )
    }
)


def _created(data: Any) -> Response:
    response = jsonify(data)
    response.status_code = 201
    return response


@api_route("/users", "GET", summary="List users", tag="users", query=USERS_QUERY, response="User[]")
def list_users(query: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.list_users(web_context(), account(), query.get("site_id")))


@api_route(
    "/users",
    "POST",
    summary="Create a user with SIP credentials (the password is returned once)",
    tag="users",
    body=CREATE_USER,
    response="UserCreated",
    status=201,
)
def create_user(body: dict[str, Any]) -> ResponseReturnValue:
    return _created(services.create_user(web_context(), account(), body))


@api_route(
    "/users.csv",
    "GET",
    summary="Export users as CSV (import format, no passwords)",
    tag="users",
    query=USERS_QUERY,
    response="csv",
    content_type="text/csv",
)
def export_users(query: dict[str, Any]) -> ResponseReturnValue:
    text = services.export_users_csv(web_context(), account(), query.get("site_id"))
    return Response(
        text,
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=users.csv"},
    )


@api_route(
    "/users/import",
    "POST",
    summary="Import users from CSV (all rows or none)",
    tag="users",
    body=IMPORT,
    response="ImportResult",
    status=201,
    max_body=2 * 1024 * 1024,
)
def import_users(body: dict[str, Any]) -> ResponseReturnValue:
    generated = services.import_users_csv(web_context(), account(), body["csv"])
    return _created(
        {"generated": [{"extension": ext, "sip_password": pw} for ext, pw in generated]}
    )


@api_route("/users/<extension>", "GET", summary="One user", tag="users", response="User")
def get_user(extension: str) -> ResponseReturnValue:
    return jsonify(services.get_user(web_context(), account(), extension))


@api_route(
    "/users/<extension>",
    "PATCH",
    summary="Change a user",
    tag="users",
    body=UPDATE_USER,
    response="User",
)
def update_user(extension: str, body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.update_user(web_context(), account(), extension, body))


@api_route(
    "/users/<extension>",
    "DELETE",
    summary="Delete a user with its credentials and registrations",
    tag="users",
    status=204,
)
def delete_user(extension: str) -> ResponseReturnValue:
    services.delete_user(web_context(), account(), extension)
    return "", 204


@api_route(
    "/users/<extension>/sip-password",
    "POST",
    summary="Set or generate a new SIP password (returned once)",
    tag="users",
    body=SIP_PASSWORD,
    body_optional=True,
    response="SipPassword",
)
def reset_sip_password(extension: str, body: dict[str, Any]) -> ResponseReturnValue:
    password = services.reset_sip_password(
        web_context(), account(), extension, body.get("password")
    )
    return jsonify({"extension": extension, "sip_password": password})


@api_route(
    "/users/<extension>/provisioning",
    "GET",
    summary="Provisioning summary for manual phone set-up (showing the password is audited)",
    tag="users",
    query=PROVISIONING_QUERY,
    response="Provisioning",
)
def provisioning(extension: str, query: dict[str, Any]) -> ResponseReturnValue:
    summary = services.provisioning_summary(
        web_context(), account(), extension, with_password=query.get("with_password", False)
    )
    return jsonify(summary)
