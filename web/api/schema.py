"""Strict parsing of REST API request bodies and query strings, and their OpenAPI schemas.

Owns :class:`Field` / :class:`Schema` and the functions that turn raw request data into checked
Python values. Every refusal is an :class:`ApiError` with a 4xx status and the offending field:
bodies that are not JSON objects, wrong types, unknown fields, strings or numbers out of range,
NaN/Infinity, deeply nested or oversized JSON. The same Schema objects produce the OpenAPI
fragments in web/api/openapi.py, so the document cannot drift from the checks.
Must not import twisted, flask or pbx.store.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
MAX_SAFE_INT = 2**53 - 1
_INT_TEXT = re.compile(r"-?[0-9]{1,16}")
_NUMBER_TEXT = re.compile(r"-?[0-9]{1,16}(\.[0-9]{1,9})?")


class ApiError(Exception):
    """A client mistake: HTTP ``status``, a message and optionally the field it concerns."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Field:
    """One allowed field and its limits.

    ``kind`` is a JSON type (string/integer/number/boolean/array of strings) or "timestamp"
    (a Unix time number or an ISO date string, as web.validate.timestamp takes).
    """

    kind: str
    required: bool = False
    nullable: bool = False
    max_length: int = 200
    min_length: int = 0
    minimum: float = -MAX_SAFE_INT
    maximum: float = MAX_SAFE_INT
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    max_items: int = 50
    description: str = ""

    def check(self, name: str, value: Any) -> Any:
        """Return ``value`` if it fits, else raise ApiError(422) naming the field."""
        if value is None:
            if self.nullable:
                return None
            raise ApiError(422, "must not be null", name)
        checker = _CHECKS.get(self.kind)
        if checker is None:  # pragma: no cover - programming error
            raise ValueError(f"unknown field kind {self.kind!r}")
        return checker(self, name, value)

    def openapi(self) -> dict[str, Any]:
        """This field as an OpenAPI 3.1 (JSON Schema 2020-12) schema."""
        if self.kind == "timestamp":
            out: dict[str, Any] = {
                "type": ["number", "string", "null"] if self.nullable else ["number", "string"],
                "description": self.description
                or "Unix time, or an ISO date/time like 2025-01-31 or 2025-01-31T14:00 (UTC)",
            }
            return out
        out = {"type": [self.kind, "null"] if self.nullable else self.kind}
        if self.kind == "string":
            out["maxLength"] = self.max_length
            if self.min_length:
                out["minLength"] = self.min_length
            if self.enum:
                out["enum"] = list(self.enum)
            if self.pattern:
                out["pattern"] = self.pattern
        elif self.kind in ("integer", "number"):
            out["minimum"] = self.minimum
            out["maximum"] = self.maximum
        elif self.kind == "array":
            item: dict[str, Any] = {"type": "string", "maxLength": self.max_length}
            if self.enum:
                item["enum"] = list(self.enum)
            out["items"] = item
            out["maxItems"] = self.max_items
        if self.description:
            out["description"] = self.description
        return out


def _check_string(spec: Field, name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ApiError(422, "must be a string", name)
    if len(value) > spec.max_length:
        raise ApiError(422, f"must be at most {spec.max_length} characters", name)
    if len(value) < spec.min_length:
        raise ApiError(422, f"must be at least {spec.min_length} characters", name)
    if "\x00" in value:
        raise ApiError(422, "must not contain NUL characters", name)
    if spec.enum and value not in spec.enum:
        raise ApiError(422, f"must be one of {', '.join(spec.enum)}", name)
    if spec.pattern and not re.fullmatch(spec.pattern, value):
        raise ApiError(422, "has the wrong format", name)
    return value


def _check_integer(spec: Field, name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(422, "must be an integer", name)
    if not spec.minimum <= value <= spec.maximum:
        raise ApiError(422, f"must be between {spec.minimum:g} and {spec.maximum:g}", name)
    return value


def _check_number(spec: Field, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ApiError(422, "must be a number", name)
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(422, "must be a finite number", name)
    if not spec.minimum <= value <= spec.maximum:
        raise ApiError(422, f"must be between {spec.minimum:g} and {spec.maximum:g}", name)
    return float(value)


def _check_boolean(spec: Field, name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ApiError(422, "must be true or false", name)
    return value


def _check_timestamp(spec: Field, name: str, value: Any) -> float | str:
    if isinstance(value, str):
        return _check_string(replace(spec, max_length=min(spec.max_length, 40)), name, value)
    return _check_number(spec, name, value)


def _check_array(spec: Field, name: str, value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ApiError(422, "must be an array of strings", name)
    if len(value) > spec.max_items:
        raise ApiError(422, f"must have at most {spec.max_items} items", name)
    item = Field("string", max_length=spec.max_length, enum=spec.enum)
    return [item.check(name, v) for v in value]


_CHECKS = {
    "string": _check_string,
    "integer": _check_integer,
    "number": _check_number,
    "boolean": _check_boolean,
    "array": _check_array,
    "timestamp": _check_timestamp,
}


@dataclass(frozen=True)
class Schema:
    """The fields a JSON object (or a query string) may carry; anything else is refused."""

    fields: dict[str, Field] = field(default_factory=dict)
    description: str = ""

    def check(self, data: Any) -> dict[str, Any]:
        """Validate a decoded JSON body; return only the fields present."""
        if not isinstance(data, dict):
            raise ApiError(400, "the body must be a JSON object")
        for name in data:
            if name not in self.fields:
                raise ApiError(422, "unknown field", _clip(name))
        for name, spec in self.fields.items():
            if spec.required and name not in data:
                raise ApiError(422, "is required", name)
        return {name: self.fields[name].check(name, value) for name, value in data.items()}

    def check_query(self, args: dict[str, list[str]]) -> dict[str, Any]:
        """Validate query parameters (strings) and convert them to the declared kinds."""
        out: dict[str, Any] = {}
        for name, values in args.items():
            spec = self.fields.get(name)
            if spec is None:
                raise ApiError(422, "unknown query parameter", _clip(name))
            if len(values) != 1:
                raise ApiError(422, "must be given once", name)
            out[name] = spec.check(name, _from_query(spec, name, values[0]))
        for name, spec in self.fields.items():
            if spec.required and name not in out:
                raise ApiError(422, "is required", name)
        return out

    def openapi(self) -> dict[str, Any]:
        """This schema as an OpenAPI object schema (closed: additionalProperties false)."""
        out: dict[str, Any] = {
            "type": "object",
            "properties": {name: spec.openapi() for name, spec in self.fields.items()},
            "additionalProperties": False,
        }
        required = [name for name, spec in self.fields.items() if spec.required]
        if required:
            out["required"] = required
        if self.description:
            out["description"] = self.description
        return out

    def openapi_parameters(self) -> list[dict[str, Any]]:
        """This schema as a list of OpenAPI query parameters."""
        return [
            {
                "name": name,
                "in": "query",
                "required": spec.required,
                "schema": spec.openapi(),
            }
            for name, spec in self.fields.items()
        ]


def _from_query(spec: Field, name: str, text: str) -> Any:
    if spec.kind == "integer":
        if not _INT_TEXT.fullmatch(text):
            raise ApiError(422, "must be an integer", name)
        return int(text)
    if spec.kind == "number" or (spec.kind == "timestamp" and _NUMBER_TEXT.fullmatch(text)):
        if not _NUMBER_TEXT.fullmatch(text):
            raise ApiError(422, "must be a number", name)
        return float(text)
    if spec.kind == "boolean":
        if text not in ("true", "false"):
            raise ApiError(422, "must be true or false", name)
        return text == "true"
    if spec.kind == "array":
        return [part for part in text.split(",") if part]
    return text


def _clip(name: str) -> str:
    return name if len(name) <= 64 else name[:61] + "..."


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not allowed")


def decode_json(raw: bytes, max_body: int = MAX_BODY_BYTES) -> Any:
    """Decode a JSON body; refuse invalid UTF-8/JSON, NaN/Infinity, giant numbers, deep nesting."""
    if len(raw) > max_body:
        raise ApiError(413, f"the body must be at most {max_body} bytes")
    if not raw.strip():
        raise ApiError(400, "the body must be a JSON object")
    try:
        text = raw.decode("utf-8")
        return json.loads(text, parse_constant=_refuse_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ApiError(400, f"the body is not valid JSON: {_short(exc)}") from None


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 120 else text[:117] + "..."
