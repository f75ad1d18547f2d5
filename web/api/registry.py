"""The /api/v1 blueprint and the ``api_route`` decorator every API view is declared with.

Owns the Flask Blueprint and the list of :class:`Endpoint` records: each route is registered
once, with its query and body :class:`~web.api.schema.Schema`, and the same record feeds the
OpenAPI document (web/api/openapi.py). The decorator parses the query string and JSON body
before the view runs, so a view only ever sees checked values. Must not import twisted.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, request
from flask.blueprints import BlueprintSetupState
from flask.typing import ResponseReturnValue
from werkzeug.routing import BaseConverter, PathConverter

from web.api.schema import MAX_BODY_BYTES, ApiError, Schema, decode_json
from web.errors import ValidationError

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
bp = Blueprint("api", __name__, url_prefix=PREFIX)


class AnyPathConverter(PathConverter):
    """Like ``path`` but also matches newlines, so the catch-all sees every API path."""

    regex = r"[\s\S]*"
    part_isolating = False  # spans "/" (werkzeug guesses from a "/" in the regex)


class IdConverter(BaseConverter):
    """A row id of at most 9 digits; anything else falls through to the JSON 404 catch-all."""

    regex = r"[0-9]{1,9}"
    weight = 50

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(int(value))


def _add_converters(state: BlueprintSetupState) -> None:
    state.app.url_map.converters.setdefault("anypath", AnyPathConverter)
    state.app.url_map.converters.setdefault("id", IdConverter)


# Runs before the routes are added, so "<anypath:...>" and "<id:...>" are known when they are.
bp.record_once(_add_converters)

View = Callable[..., ResponseReturnValue]


@dataclass(frozen=True)
class Endpoint:
    """One documented route: Flask rule (relative to /api/v1), method and its contract."""

    rule: str
    method: str
    name: str
    summary: str
    tag: str
    query: Schema | None = None
    body: Schema | None = None
    response: str | None = None  # components/schemas name, "Name[]" for an array
    status: int = 200
    public: bool = False
    content_type: str = "application/json"
    max_body: int = MAX_BODY_BYTES
    body_optional: bool = False
    raw_body: tuple[str, ...] = ()  # media types of a raw (non-JSON) body, "audio/*" style
    invalid_status: int = 422  # the status of a bad field value (the call routes answer 400)


ENDPOINTS: list[Endpoint] = []


def api_route(
    rule: str,
    method: str,
    *,
    summary: str,
    tag: str,
    query: Schema | None = None,
    body: Schema | None = None,
    response: str | None = None,
    status: int = 200,
    public: bool = False,
    content_type: str = "application/json",
    max_body: int = MAX_BODY_BYTES,
    body_optional: bool = False,
    raw_body: tuple[str, ...] = (),
    invalid_status: int = 422,
) -> Callable[[View], View]:
    """Register ``view`` under ``rule`` for ``method``; it receives ``query=``/``body=`` dicts.

    ``body_optional``: a request without any body counts as ``{}`` (for action routes).
    ``raw_body``: the view takes the body as it is (``raw=`` bytes, at most ``max_body``) in
    one of these media types (``audio/*`` matches any audio type); others get 415.
    ``invalid_status``: the status of a missing, unknown or bad field (in the body, the query
    or found by the service), 422 unless given.
    """

    def decorate(view: View) -> View:
        endpoint = Endpoint(
            rule, method, view.__name__, summary, tag, query, body, response, status, public,
            content_type, max_body, body_optional, raw_body, invalid_status,
        )  # fmt: skip

        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> ResponseReturnValue:
            if invalid_status == 422:
                return checked(**kwargs)
            try:
                return checked(**kwargs)
            except ApiError as exc:
                if exc.status != 422:
                    raise
                raise ApiError(invalid_status, exc.message, exc.field) from None
            except ValidationError as exc:
                raise ApiError(invalid_status, exc.message, exc.field) from None

        def checked(**kwargs: Any) -> ResponseReturnValue:
            if query is not None:
                kwargs["query"] = query.check_query(request.args.to_dict(flat=False))
            elif request.args:
                name = next(iter(request.args))
                raise ApiError(422, "unknown query parameter", name[:64])
            if raw_body:
                kwargs["raw"] = read_raw(raw_body, max_body)
            elif body is not None:
                empty = body_optional and not _has_body()
                kwargs["body"] = {} if empty else body.check(read_json(max_body))
            elif _has_body():
                raise ApiError(415, "this request takes no body")
            return view(**kwargs)

        ENDPOINTS.append(endpoint)
        bp.add_url_rule(rule, endpoint=view.__name__, view_func=wrapper, methods=[method])
        return wrapper

    return decorate


def _has_body() -> bool:
    return bool(request.content_length) or bool(request.get_data(cache=True))


def read_json(max_body: int = MAX_BODY_BYTES) -> Any:
    """The request body decoded as JSON; 415 unless the content type is JSON, 413 if too big."""
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        raise ApiError(415, "send the body as application/json")
    return decode_json(request.get_data(cache=True), max_body)


def media_type_matches(mimetype: str, accepted: tuple[str, ...]) -> bool:
    """Whether ``mimetype`` is one of ``accepted`` (``type/*`` accepts the whole type)."""
    main = mimetype.partition("/")[0]
    return any(
        mimetype == pattern or (pattern.endswith("/*") and main == pattern[:-2] and main)
        for pattern in accepted
    )


def read_raw(accepted: tuple[str, ...], max_body: int) -> bytes:
    """The raw request body; 415 for another media type, 413 when larger than ``max_body``."""
    if not media_type_matches(request.mimetype, accepted):
        raise ApiError(415, f"send the body as {' or '.join(accepted)}")
    if (request.content_length or 0) > max_body:
        raise ApiError(413, f"the body must be at most {max_body} bytes")
    data = request.get_data(cache=False)
    if len(data) > max_body:
        raise ApiError(413, f"the body must be at most {max_body} bytes")
    return data


def limit_body_size() -> None:
    """Cap the request body (werkzeug answers 413 past it, chunked bodies included)."""
    endpoint = request.endpoint or ""
    name = endpoint.partition(".")[2]
    sizes = [e.max_body for e in ENDPOINTS if e.name == name]
    request.max_content_length = max(sizes, default=MAX_BODY_BYTES)
