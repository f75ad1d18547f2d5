"""Fuzzing the REST API with bad JSON, wrong types, huge values, unknown fields and non-objects:
every answer is a JSON 4xx error and the database (and the override file) stay unchanged."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.api_support import World, api_world, dump
from web.api.openapi import openapi_path
from web.api.registry import ENDPOINTS, Endpoint
from web.api.schema import Field

PATH_VALUES = {
    "extension": "100",
    "site_id": "1",
    "username": "ursula",
    "token_id": "1",
    "call_id": "conv-1",
}
BODY_ENDPOINTS = [e for e in ENDPOINTS if e.body is not None]
QUERY_ENDPOINTS = [e for e in ENDPOINTS if e.query is not None]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
huge_numbers = st.sampled_from([10**30, -(10**30), 2**63, 2**64 + 1, 1e308, -1e308])


def url(endpoint: Endpoint) -> str:
    path = openapi_path(endpoint.rule)
    return re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES[m.group(1)], path)


def wrong_type(spec: Field) -> st.SearchStrategy[Any]:
    """Values whose JSON type the field does not take."""
    others: dict[str, st.SearchStrategy[Any]] = {
        "string": st.integers() | st.floats(allow_nan=False) | st.booleans(),
        "integer": st.text(max_size=10)
        | st.booleans()
        | st.floats(allow_nan=False).filter(lambda f: not f.is_integer()),
        "number": st.text(max_size=10) | st.booleans(),
        "boolean": st.integers() | st.text(max_size=10),
        "array": st.text(max_size=10) | st.integers() | st.lists(st.integers(), min_size=1),
        "timestamp": st.booleans() | st.lists(st.integers(), max_size=2),
    }
    containers = st.lists(json_scalars, max_size=3) | st.dictionaries(
        st.text(max_size=5), json_scalars, max_size=2
    )
    strategy = others[spec.kind] | (containers if spec.kind != "array" else st.dictionaries(
        st.text(max_size=5), json_scalars, max_size=2
    ))  # fmt: skip
    return strategy if spec.nullable else strategy | st.none()


def out_of_range(spec: Field) -> st.SearchStrategy[Any]:
    """Values of the right type that are too long, too big or too small."""
    if spec.kind == "string":
        too_long = st.integers(1, 64).map(lambda n: "x" * (spec.max_length + n))
        if spec.enum:
            return too_long | st.text(max_size=10).filter(lambda t: t not in spec.enum)
        return too_long
    if spec.kind in ("integer", "number"):
        low, high = int(spec.minimum), int(spec.maximum)
        return st.integers(max_value=low - 1) | st.integers(min_value=high + 1) | huge_numbers
    if spec.kind == "timestamp":
        return st.integers(1, 64).map(lambda n: "2025-01-01" + "x" * (40 + n)) | huge_numbers
    if spec.kind == "array":
        many = st.lists(st.just("PCMU"), min_size=spec.max_items + 1, max_size=spec.max_items + 5)
        return many | st.lists(st.just("y" * (spec.max_length + 1)), min_size=1, max_size=2)
    return wrong_type(spec)


@st.composite
def bad_body(draw: st.DrawFn) -> tuple[Endpoint, bytes, str]:
    """(endpoint, raw body, content type) that the API must refuse."""
    endpoint = draw(st.sampled_from(BODY_ENDPOINTS))
    assert endpoint.body is not None
    fields = endpoint.body.fields
    how = draw(
        st.sampled_from(
            ["garbage", "not_object", "unknown", "wrong_type", "out_of_range", "raw", "type"]
        )
    )
    if how == "garbage":
        raw = draw(
            st.binary(max_size=200).filter(
                lambda b: not _is_json_object(b) and (b or not endpoint.body_optional)
            )
        )
        return endpoint, raw, "application/json"
    if how == "not_object":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return endpoint, json.dumps(value).encode(), "application/json"
    if how == "raw":
        raw = draw(
            st.sampled_from(
                [
                    b'{"a": ' + b"9" * 5000 + b"}",
                    b"[" * 100_000 + b"]" * 100_000,
                    b'{"a": NaN}',
                    b'{"a": Infinity}',
                    b'{"a": 1e999}',
                    b'{"a": "\xff\xfe"}',
                    b'{"a": 1,}',
                    b"\xef\xbb\xbf{}",
                    b" " * 10,
                    b'{"a": "' + b"x" * 3_000_000 + b'"}',
                ]
            )
        )
        return endpoint, raw, "application/json"
    if how == "type":
        body = json.dumps({name: "x" for name in fields}).encode()
        mimetype = draw(st.sampled_from(["text/plain", "application/x-www-form-urlencoded", ""]))
        return endpoint, body, mimetype
    data: dict[str, Any] = {}
    if how == "unknown":
        key = draw(st.text(min_size=1, max_size=80).filter(lambda k: k not in fields))
        data[key] = draw(json_values)
    else:
        name = draw(st.sampled_from(sorted(fields)))
        strategy = wrong_type(fields[name]) if how == "wrong_type" else out_of_range(fields[name])
        data[name] = draw(strategy)
    return endpoint, json.dumps(data).encode(), "application/json"


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        w.call("admin", "GET", "/api/v1/me")
        yield w


@FUZZ
@given(case=bad_body())
def test_bad_bodies_get_a_json_4xx_and_write_nothing(
    world: World, case: tuple[Endpoint, bytes, str]
) -> None:
    endpoint, raw, mimetype = case
    before = dump(world)
    headers = {"Content-Type": mimetype} if mimetype else {}
    response = world.call("admin", endpoint.method, url(endpoint), data=raw, headers=headers)
    assert 400 <= response.status_code < 500, (response.status_code, response.get_data()[:300])
    assert response.is_json and isinstance(response.json["error"], str)
    assert dump(world) == before


@FUZZ
@given(
    endpoint=st.sampled_from(QUERY_ENDPOINTS),
    params=st.dictionaries(
        st.sampled_from(["site_id", "page", "per_page", "since", "until", "number", "user",
                         "disposition", "direction", "with_password", "actor", "x"])
        | st.text(max_size=20),
        st.text(max_size=50) | st.integers().map(str) | huge_numbers.map(str),
        max_size=4,
    ),
)  # fmt: skip
def test_bad_query_strings_never_cause_a_server_error(
    world: World, endpoint: Endpoint, params: dict[str, str]
) -> None:
    response = world.call("admin", "GET", url(endpoint) + "?" + urlencode(params))
    assert response.status_code < 500, response.get_data()[:300]
    if response.status_code >= 400:
        assert response.json["error"]


@FUZZ
@given(segment=st.text(min_size=1, max_size=300))
def test_strange_path_values_never_cause_a_server_error(world: World, segment: str) -> None:
    for template in ("/api/v1/users/{}", "/api/v1/users/{}/provisioning", "/api/v1/sites/{}"):
        response = world.call("admin", "GET", template.format(quote(segment, safe="")))
        assert response.status_code in (200, 404) or 400 <= response.status_code < 500
        assert response.is_json


def test_bodies_on_routes_without_one_are_refused(world: World) -> None:
    before = dump(world)
    response = world.call("admin", "DELETE", "/api/v1/users/100", json={"force": True})
    assert response.status_code == 415
    assert dump(world) == before


def test_oversized_body_is_413(world: World) -> None:
    before = dump(world)
    raw = json.dumps({"display_name": "x" * 70_000}).encode()
    response = world.call(
        "admin", "PATCH", "/api/v1/users/100", data=raw, content_type="application/json"
    )
    assert response.status_code == 413 and response.json["error"]
    assert dump(world) == before
