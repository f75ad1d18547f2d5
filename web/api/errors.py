"""JSON error answers of the REST API: ``{"error": message, "error_id": id, "field": name?}``.

Owns the blueprint's error handlers. Client mistakes (ApiError, werkzeug HTTP errors, the
web.errors.ServiceError family raised by web/services.py, store NotFound/AlreadyExists) become 4xx
JSON answers; a call command the server refused (web.backend.CallCommandError) its status with
its own error_id ("not_found", "gone", "wrong_state", "refused"); anything else is logged and
answered with a JSON 500 that reveals nothing. ``error_id`` is a stable word for programs: a
bad value of a field is "invalid", other errors are named after their status (_ERROR_IDS).
Must not import twisted.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, jsonify
from werkzeug.exceptions import HTTPException

from pbx.store import errors as store_errors
from web import errors as web_errors
from web.api.schema import ApiError
from web.backend import CallCommandError

log = logging.getLogger(__name__)

_MESSAGES = {
    400: "bad request",
    401: "authentication required",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    413: "request body too large",
    415: "unsupported media type",
    422: "invalid value",
}


_ERROR_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    500: "internal",
}


def error_response(
    status: int, message: str, field: str | None = None, error_id: str | None = None
) -> Response:
    """The JSON error body every API failure uses."""
    if error_id is None:
        error_id = "invalid" if field is not None else _ERROR_IDS.get(status, "error")
    body: dict[str, str] = {"error": message, "error_id": error_id}
    if field is not None:
        body["field"] = field
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="pbx"'
    return response


def _api_error(exc: ApiError) -> Response:
    return error_response(exc.status, exc.message, exc.field)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = error_response(status, _MESSAGES.get(status, exc.name.lower()))
    for name, value in exc.get_headers():
        if name.lower() == "allow":
            response.headers["Allow"] = value
    return response


def _service_error(exc: web_errors.ServiceError) -> Response:
    field = exc.field if isinstance(exc, web_errors.ValidationError) else None
    return error_response(exc.status, exc.message, field)


def _call_command_error(exc: CallCommandError) -> Response:
    return error_response(exc.status, exc.message, error_id=exc.error_id)


def _not_found(exc: Exception) -> Response:
    return error_response(404, str(exc) or "not found")


def _conflict(exc: Exception) -> Response:
    return error_response(409, str(exc) or "conflict")


def _unexpected(exc: Exception) -> Response:
    log.exception("API request failed: %s", exc)
    return error_response(500, "internal error")


def install(bp: Blueprint) -> None:
    """Register every handler on the API blueprint."""
    bp.register_error_handler(ApiError, _api_error)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(web_errors.ServiceError, _service_error)
    bp.register_error_handler(CallCommandError, _call_command_error)
    bp.register_error_handler(store_errors.NotFound, _not_found)
    bp.register_error_handler(store_errors.AlreadyExists, _conflict)
    bp.register_error_handler(Exception, _unexpected)
