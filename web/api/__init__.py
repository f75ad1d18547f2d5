"""REST API under /api/v1: JSON only, bearer tokens, the web UI's permission model and services.

Owns the API package: ``bp`` (the Flask blueprint create_app registers), the per-request token
check, the JSON 404/405 answers for unknown API paths, and the route modules
(routes_users, routes_sites, routes_calls, routes_system). The views call web/services.py (which
validates and audits every change) and web.auth.can; they never write to the store directly.
Must not import twisted.
"""

from __future__ import annotations

import logging

from flask import current_app, g, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from web.api import errors
from web.api.context import web_context
from web.api.registry import ENDPOINTS, bp, limit_body_size
from web.api.schema import ApiError
from web.api.tokenauth import authenticate

log = logging.getLogger(__name__)

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_CATCH_ALL = "api.unknown_path"


@bp.before_request
def _authenticate() -> None:
    limit_body_size()
    endpoint = request.endpoint or ""
    public = {f"api.{e.name}" for e in ENDPOINTS if e.public}
    if endpoint in public:
        return
    g.account = authenticate(web_context())


@bp.route("", defaults={"rest": ""}, methods=list(_METHODS), endpoint="unknown_path")
@bp.route("/<anypath:rest>", methods=list(_METHODS), endpoint="unknown_path", strict_slashes=False)
def unknown_path(rest: str) -> ResponseReturnValue:
    """404 for an unknown API path, 405 (with Allow) for a known path and the wrong method."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in _METHODS:
        try:
            rule, _ = adapter.match(request.path, method=method, return_rule=True)
        except HTTPException:
            continue
        if rule.endpoint != _CATCH_ALL:
            allowed.append(method)
    if allowed:
        response = errors.error_response(405, "method not allowed")
        response.headers["Allow"] = ", ".join(allowed)
        return response
    raise ApiError(404, "no such API path")


errors.install(bp)

# The route modules register themselves on ``bp`` when imported.
from web.api import routes_calls, routes_sites, routes_system, routes_users  # noqa: E402

blueprint = bp  # the name web.app.create_app mounts
__all__ = ["blueprint", "bp", "routes_calls", "routes_sites", "routes_system", "routes_users"]
