"""The OpenAPI document at /api/v1/openapi.json matches the routes Flask serves, both ways,
is a valid OpenAPI 3.1 document, and the JSON the GET routes answer fits its schemas."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.web.api_support import World, api_world
from web.api.openapi import openapi_path

_IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with api_world(tmp_path_factory.mktemp("openapi")) as w:
        yield w


@pytest.fixture(scope="module")
def document(world: World) -> dict[str, Any]:
    response = world.call(None, "GET", "/api/v1/openapi.json")
    assert response.status_code == 200
    return dict(response.json)


def _served(world: World) -> set[tuple[str, str]]:
    served = set()
    for rule in world.app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.unknown_path":
            continue
        for method in (rule.methods or set()) - _IGNORED_METHODS:
            served.add((openapi_path(rule.rule.removeprefix("/api/v1")), method.lower()))
    return served


def _documented(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, item in document["paths"].items() for method in item}


def test_every_served_api_route_and_method_is_documented(
    world: World, document: dict[str, Any]
) -> None:
    served = _served(world)
    assert len(served) > 30
    assert served - _documented(document) == set()


def test_every_documented_path_and_method_is_served(world: World, document: dict[str, Any]) -> None:
    assert _documented(document) - _served(world) == set()


def test_document_is_valid_openapi_3_1(document: dict[str, Any]) -> None:
    validator = pytest.importorskip("openapi_spec_validator")
    assert document["openapi"] == "3.1.0"
    validator.validate(document)


def test_every_reference_resolves_and_operation_ids_are_unique(document: dict[str, Any]) -> None:
    text = repr(document)
    for name in re.findall(r"#/components/schemas/(\w+)", text):
        assert name in document["components"]["schemas"], name
    ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(ids) == len(set(ids))


def test_request_bodies_are_closed_objects(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            content = op.get("requestBody", {}).get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                assert schema["additionalProperties"] is False, (path, method)
                assert "422" in op["responses"] or "400" in op["responses"], (path, method)


def _concrete(path: str) -> str:
    values = {"extension": "100", "site_id": "1", "token_id": "1", "username": "ursula"}
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)], path)


def test_get_answers_fit_their_documented_schemas(world: World, document: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    checked = 0
    for path, item in document["paths"].items():
        op = item.get("get")
        if op is None:
            continue
        content = op["responses"]["200"].get("content", {})
        response = world.call("admin", "GET", _concrete(path))
        assert response.status_code == 200, path
        if "application/json" not in content:
            assert response.mimetype in content, path
            continue
        schema = content["application/json"]["schema"] | {"components": document["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json)
        checked += 1
    assert checked > 15


def test_documented_error_shape_is_what_errors_look_like(world: World, tmp_path: Path) -> None:
    response = world.call("admin", "POST", "/api/v1/users", json={"extension": 1})
    assert response.status_code == 422
    assert response.json == {
        "error": "must be a string",
        "error_id": "invalid",
        "field": "extension",
    }
