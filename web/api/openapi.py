"""The OpenAPI 3.1 document of the REST API, served at /api/v1/openapi.json.

Owns the document builder and the response schemas (components). Paths, parameters and request
bodies are generated from the ``Endpoint`` records the routes register (web/api/registry.py),
so the document lists exactly the routes Flask serves; tests/web/test_api_openapi.py checks that
both ways. Must not import twisted.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pbx.store.cdr import HISTORY_KINDS
from web.api.registry import ENDPOINTS, PREFIX, Endpoint

log = logging.getLogger(__name__)

_RULE_PARAM = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>[a-z_]+)>")

_STR = {"type": "string"}
_STR_OR_NULL = {"type": ["string", "null"]}
_INT_OR_NULL = {"type": ["integer", "null"]}
_INT = {"type": "integer"}
_NUM = {"type": "number"}
_NUM_OR_NULL = {"type": ["number", "null"]}
_BOOL = {"type": "boolean"}


def _obj(props: dict[str, Any], description: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props}
    if description:
        out["description"] = description
    return out


COMPONENTS: dict[str, dict[str, Any]] = {
    "Error": _obj(
        {
            "error": _STR,
            "error_id": {
                **_STR,
                "description": (
                    "A stable word for programs: 'invalid' for a bad field value, for call "
                    "commands 'not_found', 'gone', 'wrong_state' or 'refused', else named "
                    "after the status ('forbidden', 'not_found', 'conflict', ...)"
                ),
            },
            "field": _STR,
        },
        "Every failure: a message, an error_id and, for a bad value, the field it concerns.",
    ),
    "Ok": _obj({"ok": {"type": "boolean"}}),
    "User": _obj(
        {
            "extension": _STR,
            "display_name": _STR,
            "enabled": {"type": "boolean"},
            "site_id": _INT_OR_NULL,
            "call_waiting": {"type": "boolean"},
            "static_contact": _STR_OR_NULL,
            "pickup_group": _STR_OR_NULL,
            "created_at": _NUM,
        }
    ),
    "UserCreated": {
        "allOf": [
            {"$ref": "#/components/schemas/User"},
            _obj({"sip_password": _STR}, "The SIP password is shown only in this answer."),
        ]
    },
    "SipPassword": _obj({"extension": _STR, "sip_password": _STR}),
    "ImportResult": _obj(
        {
            "generated": {
                "type": "array",
                "items": _obj({"extension": _STR, "sip_password": _STR}),
                "description": "Users whose SIP password was generated, with that password",
            }
        }
    ),
    "Provisioning": _obj(
        {
            "extension": _STR,
            "display_name": _STR,
            "server": _STR,
            "port": {"type": "integer"},
            "tls_port": {"type": "integer"},
            "transports": {"type": "array", "items": _STR},
            "username": _STR,
            "auth_username": _STR,
            "realm": _STR,
            "password": _STR_OR_NULL,
        },
        "Settings for manual phone set-up; password only with with_password=true (audited).",
    ),
    "Site": _obj(
        {
            "id": {"type": "integer"},
            "name": _STR,
            "timezone": _STR,
            "country_code": _STR,
            "area_code": _STR,
            "number_block_start": _STR,
            "number_block_end": _STR,
            "created_at": _NUM,
        }
    ),
    "Device": _obj(
        {
            "id": {"type": "integer"},
            "mac": _STR_OR_NULL,
            "vendor": _STR,
            "model": _STR,
            "user_agent": _STR,
            "extension": _STR_OR_NULL,
            "address": _STR,
            "first_seen": _NUM,
            "last_seen": _NUM,
            "state": {"type": "string", "enum": ["registered", "offline"]},
        }
    ),
    "Registration": _obj(
        {
            "extension": _STR,
            "contact": _STR,
            "user_agent": _STR,
            "address": _STR,
            "transport": _STR,
            "expires_in": _NUM,
        }
    ),
    "ActiveCall": _obj(
        {
            "id": {**_STR, "description": "The call's id for the call commands"},
            "call_id": _STR,
            "caller": _STR,
            "dialled": _STR,
            "state": _STR,
            "duration": _NUM,
            "codecs": {},
            "legs": {
                "type": "array",
                "items": _obj({"id": _STR, "party": _STR, "direction": _STR, "state": _STR}),
                "description": "The parties of the call (transfer names one by its id)",
            },
        }
    ),
    "CallRecord": _obj(
        {
            "id": {"type": "integer"},
            "call_id": _STR,
            "caller": _STR,
            "caller_name": _STR,
            "callee": _STR,
            "dialled": _STR,
            "direction": _STR,
            "caller_user": _STR_OR_NULL,
            "callee_user": _STR_OR_NULL,
            "caller_site": _STR_OR_NULL,
            "callee_site": _STR_OR_NULL,
            "started_at": _NUM,
            "answered_at": _NUM_OR_NULL,
            "ended_at": _NUM_OR_NULL,
            "duration": _NUM_OR_NULL,
            "disposition": _STR,
            "hangup_side": _STR_OR_NULL,
            "hangup_cause": _STR_OR_NULL,
            "caller_codec": _STR_OR_NULL,
            "callee_codec": _STR_OR_NULL,
            "history": {
                "type": "array",
                "items": {"$ref": "#/components/schemas/HistoryEntry"},
                "description": "The steps of the call, in order",
            },
        }
    ),
    "HistoryEntry": _obj(
        {
            "kind": {"type": "string", "enum": list(HISTORY_KINDS)},
            "at": _NUM,
            "until": {**_NUM_OR_NULL, "description": "End of a talk segment; null otherwise"},
            "parties": {"type": "array", "items": _STR, "description": "Numbers involved"},
            "detail": {**_STR, "description": "The step in words"},
        },
        "One step of a call: a talk segment, a transfer, park, unpark or pickup.",
    ),
    "CallStarted": _obj(
        {"call": _STR, "leg": _STR},
        "The new call's id (as in GET /calls/active) and the leg ringing the user's phone.",
    ),
    "TransferStarted": {
        "type": "object",
        "description": "What the server reports about the transfer it started (call, leg, ...).",
    },
    "CallRecordPage": _obj(
        {
            "records": {"type": "array", "items": {"$ref": "#/components/schemas/CallRecord"}},
            "total": {"type": "integer"},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
        }
    ),
    "CallCounts": _obj(
        {
            "per_day": {"type": "array", "items": _obj({"day": _STR, "count": _INT})},
            "per_user": {"type": "array", "items": _obj({"user": _STR, "count": _INT})},
        }
    ),
    "Settings": _obj(
        {
            "live": {"$ref": "#/components/schemas/LiveSettings"},
            "process": {
                "type": "object",
                "description": "Process settings ('section.key' -> value); effective at restart.",
            },
        }
    ),
    "LiveSettings": {
        "type": "object",
        "description": "Telephony settings ('calls.codec_order', 'calls.no_answer_timeout', ...).",
    },
    "ProcessSettings": _obj(
        {"process": {"type": "object"}, "takes_effect": {"type": "string", "const": "at restart"}}
    ),
    "AuditEntry": _obj(
        {
            "id": {"type": "integer"},
            "at": _NUM,
            "actor": _STR,
            "action": _STR,
            "target": _STR,
            "old": {},
            "new": {},
        }
    ),
    "Token": _obj(
        {
            "id": {"type": "integer"},
            "name": _STR,
            "role": _STR,
            "site_id": _INT_OR_NULL,
            "created_by": _STR,
            "owner": _STR_OR_NULL,
            "created_at": _NUM,
            "expires_at": _NUM_OR_NULL,
            "revoked_at": _NUM_OR_NULL,
            "last_used_at": _NUM_OR_NULL,
        }
    ),
    "TokenCreated": {
        "allOf": [
            {"$ref": "#/components/schemas/Token"},
            _obj({"token": _STR}, "The secret (use as Bearer token); shown only here."),
        ]
    },
    "Account": _obj(
        {
            "username": _STR,
            "role": _STR,
            "site_id": _INT_OR_NULL,
            "extension": _STR_OR_NULL,
            "must_change_password": {"type": "boolean"},
            "expires_at": _NUM_OR_NULL,
            "disabled": {"type": "boolean"},
            "failed_logins": _INT,
            "locked_until": _NUM_OR_NULL,
            "created_at": _NUM,
        }
    ),
    "AccountCreated": {
        "allOf": [
            {"$ref": "#/components/schemas/Account"},
            _obj({"password": _STR}, "The password is shown only in this answer."),
        ]
    },
    "AccountPassword": _obj({"username": _STR, "password": _STR}),
    "SupportAccess": {
        "description": "An AccountCreated (kind account) or a TokenCreated (kind token).",
        "oneOf": [
            {"$ref": "#/components/schemas/AccountCreated"},
            {"$ref": "#/components/schemas/TokenCreated"},
        ],
    },
    "Me": _obj(
        {
            "name": _STR,
            "role": _STR,
            "site_id": _INT_OR_NULL,
            "extension": _STR_OR_NULL,
            "expires_at": _NUM_OR_NULL,
        }
    ),
    "OpenApi": {"type": "object", "description": "This document."},
    "SiteMusic": _obj(
        {
            "site_id": _INT,
            "custom": {
                "type": "boolean",
                "description": "true: the site's own upload; false: the default music",
            },
            "original_name": _STR_OR_NULL,
            "duration_s": _NUM_OR_NULL,
            "uploaded_at": _NUM_OR_NULL,
            "uploaded_by": _STR_OR_NULL,
        },
        "A site's hold music.",
    ),
    "FeatureCode": _obj(
        {
            "key": {**_STR, "description": "Key in feature_codes.toml, e.g. group_pickup"},
            "code": {**_STR, "description": "What to dial (park_slots: START-END); '' is off"},
            "name": _STR,
            "description": _STR,
        }
    ),
    "Trunk": _obj(
        {
            "name": _STR,
            "preset": _STR,
            "domain": _STR,
            "proxy": {**_STR, "description": "HOST[:PORT]; '' is the domain"},
            "transport": _STR,
            "username": _STR,
            "register": _BOOL,
            "expires": _INT,
            "allow_from": {"type": "array", "items": _STR},
            "enabled": _BOOL,
            "status": {"oneOf": [{"$ref": "#/components/schemas/TrunkState"}, {"type": "null"}]},
        },
        "A SIP trunk as configured (never its password) and, when the server runs, its state.",
    ),
    "TrunkPreset": _obj(
        {
            "name": _STR,
            "title": _STR,
            "domain": _STR,
            "proxy": _STR,
            "transport": _STR,
            "register": _BOOL,
            "expires": _INT,
            "number_format": _STR,
            "identity_headers": {"type": "array", "items": _STR},
            "called_number": _STR,
            "allow_from": {"type": "array", "items": _STR},
            "notes": _STR,
        },
        "A provider preset from config/trunks/.",
    ),
    "Did": _obj({"number": {**_STR, "description": "E.164"}, "target": _STR, "created_at": _NUM}),
    "Route": _obj(
        {
            "name": _STR,
            "pattern": _STR,
            "trunks": {"type": "array", "items": _STR},
            "priority": _INT,
            "exit_digit": _STR,
            "created_at": _NUM,
        }
    ),
    "TrunkState": _obj(
        {
            "name": _STR,
            "state": {
                **_STR,
                "description": "idle, registering, registered, failed or stopped",
            },
            "since": {**_NUM, "description": "When the trunk entered this state (Unix time)"},
            "reason": {**_STR, "description": "Why it failed ('' otherwise)"},
            "expires": {**_INT_OR_NULL, "description": "Granted expiry when registered (s)"},
            "retry_in": {**_NUM_OR_NULL, "description": "Wait before the next try when failed"},
            "reachable": {
                **_STR_OR_NULL,
                "description": "Whether the trunk's server answers OPTIONS: unknown, up, down",
            },
            "rtt_ms": {**_NUM_OR_NULL, "description": "Round trip of the last answered OPTIONS"},
        },
        "A trunk's registration state (ip-authenticated when it does not register) and reachability.",
    ),
    "Health": _obj(
        {
            "uptime_s": _NUM,
            "cpu_percent": _NUM,
            "memory_rss": _NUM,
            "loop_lag_p99_ms": _NUM,
            "disk_free": _NUM,
            "db_size": _NUM,
        }
    ),
}


def openapi_path(rule: str) -> str:
    """Flask rule ``/users/<extension>`` -> OpenAPI path ``/api/v1/users/{extension}``."""
    return PREFIX + _RULE_PARAM.sub(lambda m: "{" + m.group("name") + "}", rule)


def _path_parameters(rule: str) -> list[dict[str, Any]]:
    params = []
    for match in _RULE_PARAM.finditer(rule):
        schema: dict[str, Any] = {"type": "string"}
        if match.group("conv") == "id":
            schema = {"type": "integer", "minimum": 0, "maximum": 999_999_999}
        params.append(
            {"name": match.group("name"), "in": "path", "required": True, "schema": schema}
        )
    return params


def _schema_ref(response: str) -> dict[str, Any]:
    if response.endswith("[]"):
        return {"type": "array", "items": {"$ref": f"#/components/schemas/{response[:-2]}"}}
    return {"$ref": f"#/components/schemas/{response}"}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    params = _path_parameters(endpoint.rule)
    if endpoint.query is not None:
        params += endpoint.query.openapi_parameters()
    success: dict[str, Any] = {"description": endpoint.summary}
    if endpoint.response is not None:
        if endpoint.content_type == "application/json":
            success["content"] = {"application/json": {"schema": _schema_ref(endpoint.response)}}
        else:
            success["content"] = {endpoint.content_type: {"schema": {"type": "string"}}}
    op: dict[str, Any] = {
        "operationId": endpoint.name,
        "summary": endpoint.summary,
        "tags": [endpoint.tag],
        "parameters": params,
        "responses": {str(endpoint.status): success},
    }
    if endpoint.body is not None:
        op["requestBody"] = {
            "required": not endpoint.body_optional,
            "content": {"application/json": {"schema": endpoint.body.openapi()}},
        }
        op["responses"].update(
            {
                "400": _error("The body is not a JSON object"),
                "413": _error("The body is too large"),
                "415": _error("The body is not application/json"),
            }
        )
    if endpoint.raw_body:
        op["requestBody"] = {
            "required": True,
            "content": {
                media: {"schema": {"type": "string", "format": "binary"}}
                for media in endpoint.raw_body
            },
        }
        op["responses"].update(
            {
                "413": _error(f"The body is larger than {endpoint.max_body} bytes"),
                "415": _error(f"The body is not {' or '.join(endpoint.raw_body)}"),
                "422": _error("The file cannot be used (the message says why)"),
            }
        )
    if endpoint.body is not None or endpoint.query is not None:
        op["responses"]["422"] = _error("A field is missing, unknown or has a bad value")
    if endpoint.invalid_status != 422 and "422" in op["responses"]:
        del op["responses"]["422"]
        op["responses"][str(endpoint.invalid_status)] = _error(
            "The body is not a JSON object, or a field is missing, unknown or has a bad value"
        )
    if endpoint.public:
        op["security"] = []
    else:
        op["responses"].update(
            {
                "401": _error("Missing, unknown, expired or revoked token"),
                "403": _error("The token's role or site does not allow this"),
            }
        )
    if "<" in endpoint.rule:
        op["responses"]["404"] = _error("No such object")
    if endpoint.method in ("POST", "PUT", "PATCH", "DELETE"):
        op["responses"]["409"] = _error("Conflicts with existing data")
    return op


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    paths: dict[str, dict[str, Any]] = {}
    for endpoint in ENDPOINTS:
        paths.setdefault(openapi_path(endpoint.rule), {})[endpoint.method.lower()] = _operation(
            endpoint
        )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "pbx REST API",
            "version": "1",
            "description": (
                "Administration of pbx. Authenticate with `Authorization: Bearer <token>` "
                "(tokens are created in the web UI or with POST /api/v1/tokens). Permissions "
                "follow the token's role and site, as in the web UI. Errors are JSON "
                '`{"error": message, "error_id": word, "field": name}` (field only for a '
                "bad value)."
            ),
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": COMPONENTS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
