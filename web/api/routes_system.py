"""API routes for settings, the audit log, API tokens, web accounts, support access, health,
the feature codes, the caller's own identity and the OpenAPI document.

Owns the /api/v1/settings*, /audit, /tokens*, /accounts*, /support-access, /health, /trunks/states, /trunks, /trunk-presets,
/dids, /routes,
/feature-codes, /me and /openapi.json routes. Changes go through web/services and web/accounts.py (validation,
permissions, audit). Must not import twisted.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from web import accounts, services
from web.api import openapi
from web.api.context import account, web_context
from web.api.registry import api_route
from web.api.routes_users import SITE_ID
from web.api.schema import Field, Schema
from web.auth import ROLES

log = logging.getLogger(__name__)

LIVE_SETTINGS = Schema(
    {
        key: Field("integer", minimum=low, maximum=high, description=f"Default {default}")
        for key, (default, low, high) in services.LIVE_NUMBERS.items()
    }
    | {
        services.LIVE_CODECS_KEY: Field(
            "array", max_items=20, max_length=20, description="Codec names, preferred first"
        )
    },
    "Only the keys given change; they apply at once.",
)
PROCESS_SETTINGS = Schema(
    {
        f"{section}.{key}": (
            Field("integer", minimum=0, maximum=65535)
            if kind == "int"
            else Field("string", max_length=64)
        )
        for section, key, kind in services.PROCESS_SETTINGS
    },
    "Written to the data directory's pbx.toml; they take effect at the next restart.",
)
AUDIT_QUERY = Schema(
    {
        "actor": Field("string", max_length=100, description="e.g. web:admin or api:deploy"),
        "action": Field("string", max_length=100, description="e.g. user.add"),
        "target": Field("string", max_length=100),
        "since": Field("timestamp", max_length=40),
        "until": Field("timestamp", max_length=40),
        "page": Field("integer", minimum=1, maximum=10**6),
        "per_page": Field("integer", minimum=1, maximum=500),
    }
)
EXPIRES = Field("timestamp", nullable=True, max_length=40, description="Unix time or ISO date")
CREATE_TOKEN = Schema(
    {
        "name": Field("string", required=True, max_length=64),
        "role": Field("string", required=True, enum=("admin", "site_admin", "readonly")),
        "site_id": SITE_ID,
        "expires_at": EXPIRES,
    }
)
_ACCOUNT_FIELDS = {
    "role": Field("string", enum=ROLES),
    "site_id": SITE_ID,
    "extension": Field("string", nullable=True, max_length=32, description="For role user"),
    "expires_at": EXPIRES,
    "disabled": Field("boolean"),
}
CREATE_ACCOUNT = Schema(
    _ACCOUNT_FIELDS
    | {
        "username": Field("string", required=True, max_length=64),
        "role": Field("string", required=True, enum=ROLES),
        "password": Field("string", max_length=256, description="Generated when left out"),
    }
)
UPDATE_ACCOUNT = Schema(_ACCOUNT_FIELDS)
SUPPORT_ACCESS = Schema(
    {
        "kind": Field("string", required=True, enum=("account", "token")),
        "name": Field("string", required=True, max_length=64),
        "role": Field("string", enum=("admin", "site_admin", "readonly")),
        "site_id": SITE_ID,
        "expires_at": Field("timestamp", required=True, max_length=40, description="<= 30 days"),
    },
    "Temporary access that expires by itself; every use is audited.",
)


@api_route(
    "/openapi.json", "GET", summary="This OpenAPI document", tag="meta", public=True,
    response="OpenApi",
)  # fmt: skip
def openapi_document() -> ResponseReturnValue:
    return jsonify(openapi.document())


@api_route("/me", "GET", summary="The token's own identity", tag="meta", response="Me")
def me() -> ResponseReturnValue:
    who = account()
    return jsonify(
        {"name": who.username, "role": who.role, "site_id": who.site_id,
         "extension": who.extension, "expires_at": who.expires_at}
    )  # fmt: skip


@api_route("/health", "GET", summary="System health", tag="system", response="Health")
def health() -> ResponseReturnValue:
    return jsonify(services.health(web_context(), account()))


@api_route(
    "/trunks/states", "GET", summary="Registration states of the registering trunks",
    tag="system", response="TrunkState[]",
)  # fmt: skip
def trunk_states() -> ResponseReturnValue:
    return jsonify(services.list_trunks(web_context(), account()))


@api_route("/trunks", "GET", summary="Configured trunks (no passwords) with their live state",
           tag="trunks", response="Trunk[]")  # fmt: skip
def list_trunks() -> ResponseReturnValue:
    return jsonify(services.list_trunk_configs(web_context(), account()))


@api_route("/trunk-presets", "GET", summary="Provider presets (config/trunks/)", tag="trunks",
           response="TrunkPreset[]")  # fmt: skip
def list_trunk_presets() -> ResponseReturnValue:
    return jsonify(services.list_presets(web_context(), account()))


@api_route("/dids", "GET", summary="Public numbers and the extension each rings", tag="trunks",
           response="Did[]")  # fmt: skip
def list_dids() -> ResponseReturnValue:
    return jsonify(services.list_dids(web_context(), account()))


@api_route("/routes", "GET", summary="Outbound routes, in the order they are tried",
           tag="trunks", response="Route[]")  # fmt: skip
def list_routes() -> ResponseReturnValue:
    return jsonify(services.list_routes(web_context(), account()))


@api_route(
    "/feature-codes", "GET", summary="The running server's feature codes (pickup, park, ...)",
    tag="system", response="FeatureCode[]",
)  # fmt: skip
def feature_codes() -> ResponseReturnValue:
    return jsonify(services.list_feature_codes(web_context(), account()))


@api_route("/settings", "GET", summary="Live and process settings", tag="settings",
           response="Settings")  # fmt: skip
def get_settings() -> ResponseReturnValue:
    ctx, who = web_context(), account()
    return jsonify(
        {
            "live": services.live_settings(ctx, who),
            "process": services.process_settings(ctx, who),
        }
    )


@api_route(
    "/settings/live", "PATCH", summary="Change live telephony settings", tag="settings",
    body=LIVE_SETTINGS, response="LiveSettings",
)  # fmt: skip
def update_live_settings(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.update_settings(web_context(), account(), body))


@api_route(
    "/settings/process", "PATCH",
    summary="Change process settings (written to DATA/pbx.toml, effective at restart)",
    tag="settings", body=PROCESS_SETTINGS, response="ProcessSettings",
)  # fmt: skip
def update_process_settings(body: dict[str, Any]) -> ResponseReturnValue:
    values = services.update_process_settings(web_context(), account(), body)
    return jsonify({"process": values, "takes_effect": "at restart"})


@api_route(
    "/audit", "GET", summary="Audit log, newest first", tag="audit", query=AUDIT_QUERY,
    response="AuditEntry[]",
)  # fmt: skip
def audit_log(query: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.list_audit(web_context(), account(), query))


@api_route("/tokens", "GET", summary="List API tokens (never their secrets)", tag="tokens",
           response="Token[]")  # fmt: skip
def list_tokens() -> ResponseReturnValue:
    return jsonify(services.list_tokens(web_context(), account()))


@api_route(
    "/tokens", "POST", summary="Create an API token (the secret is returned once)",
    tag="tokens", body=CREATE_TOKEN, response="TokenCreated", status=201,
)  # fmt: skip
def create_token(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.create_token(web_context(), account(), body)), 201


@api_route("/tokens/<id:token_id>/revoke", "POST", summary="Revoke an API token",
           tag="tokens", status=204)  # fmt: skip
def revoke_token(token_id: int) -> ResponseReturnValue:
    services.revoke_token(web_context(), account(), token_id)
    return "", 204


@api_route("/accounts", "GET", summary="List web accounts", tag="accounts",
           response="Account[]")  # fmt: skip
def list_accounts() -> ResponseReturnValue:
    return jsonify(accounts.list_accounts(web_context(), account()))


@api_route(
    "/accounts", "POST", summary="Create a web account (the password is returned once)",
    tag="accounts", body=CREATE_ACCOUNT, response="AccountCreated", status=201,
)  # fmt: skip
def create_account(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(accounts.create_account(web_context(), account(), body)), 201


@api_route(
    "/accounts/<username>", "PATCH", summary="Change a web account's role, site or state",
    tag="accounts", body=UPDATE_ACCOUNT, response="Account",
)  # fmt: skip
def update_account(username: str, body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(accounts.update_account(web_context(), account(), username, body))


@api_route("/accounts/<username>", "DELETE", summary="Delete a web account", tag="accounts",
           status=204)  # fmt: skip
def delete_account(username: str) -> ResponseReturnValue:
    accounts.delete_account(web_context(), account(), username)
    return "", 204


@api_route(
    "/accounts/<username>/reset-password", "POST",
    summary="Generate a new password (changed at next login); lifts a lock-out",
    tag="accounts", response="AccountPassword",
)  # fmt: skip
def reset_account_password(username: str) -> ResponseReturnValue:
    password = accounts.reset_account_password(web_context(), account(), username)
    return jsonify({"username": username, "password": password})


@api_route(
    "/support-access", "POST",
    summary="Create temporary support access (an account or a token) valid until expires_at",
    tag="accounts", body=SUPPORT_ACCESS, response="SupportAccess", status=201,
)  # fmt: skip
def create_support_access(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.create_support_access(web_context(), account(), body)), 201
