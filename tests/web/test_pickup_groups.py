"""Pickup groups in the web UI and the REST API: the user form and list, user objects
(GET/POST/PATCH), validation (nothing saved on error), roles, audit and the CSV round trip."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from pbx.extensions import PICKUP_GROUP_ERROR
from pbx.store import audit, users
from tests.web.api_support import ADMIN, World, api_world, dump
from tests.web.conftest import add_account, login, post
from web import services
from web.backend import WebContext
from web.errors import ValidationError


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _group(world: World, extension: str) -> str | None:
    user = world.store.read(users.get_user, extension)
    assert user is not None
    return user.pickup_group


# -- pages -----------------------------------------------------------------------------------


def _admin(client: FlaskClient, ctx: WebContext) -> FlaskClient:
    add_account(ctx, "root")
    login(client, "root")
    return client


def test_user_form_sets_changes_and_clears_the_group_and_the_list_shows_it(
    client: FlaskClient, ctx: WebContext
) -> None:
    _admin(client, ctx)
    form = client.get("/users/new").get_data(as_text=True)
    assert 'name="pickup_group"' in form and "Pickup group" in form
    created = post(client, "/users/new", {"extension": "100", "pickup_group": " sales "})
    assert created.status_code == 200
    assert ctx.store.read(users.get_user, "100").pickup_group == "sales"  # type: ignore[union-attr]
    listing = client.get("/users").get_data(as_text=True)
    assert "<th>Pickup group</th>" in listing
    assert '<td data-label="Pickup group">sales</td>' in listing
    edit = client.get("/users/100").get_data(as_text=True)
    assert 'name="pickup_group" value="sales"' in edit
    assert (
        post(client, "/users/100", {"display_name": "A", "pickup_group": "support"}).status_code
        == 302
    )
    assert ctx.store.read(users.get_user, "100").pickup_group == "support"  # type: ignore[union-attr]
    entry = ctx.store.read(audit.list_entries, action="user.update")[0]
    assert entry.old["pickup_group"] == "sales" and entry.new["pickup_group"] == "support"
    assert post(client, "/users/100", {"display_name": "A", "pickup_group": ""}).status_code == 302
    assert ctx.store.read(users.get_user, "100").pickup_group is None  # type: ignore[union-attr]


def test_a_bad_group_on_the_form_is_named_and_nothing_is_saved(
    client: FlaskClient, ctx: WebContext
) -> None:
    _admin(client, ctx)
    refused = post(client, "/users/new", {"extension": "100", "pickup_group": "a b"})
    assert refused.status_code == 422
    assert PICKUP_GROUP_ERROR in refused.get_data(as_text=True)
    assert ctx.store.read(users.list_users) == []
    post(client, "/users/new", {"extension": "100", "pickup_group": "sales"})
    before = ctx.store.read(users.get_user, "100")
    page = post(client, "/users/100", {"display_name": "New name", "pickup_group": "x" * 33})
    assert page.status_code == 422 and "field invalid" in page.get_data(as_text=True)
    assert ctx.store.read(users.get_user, "100") == before


# -- REST API --------------------------------------------------------------------------------


def test_api_user_objects_carry_the_group(world: World) -> None:
    created = world.call(
        "admin", "POST", "/api/v1/users", json={"extension": "400", "pickup_group": "sales"}
    )
    assert created.status_code == 201 and created.json["pickup_group"] == "sales"
    assert world.call("admin", "GET", "/api/v1/users/400").json["pickup_group"] == "sales"
    assert world.call("admin", "GET", "/api/v1/users/100").json["pickup_group"] is None
    listed = {
        u["extension"]: u["pickup_group"] for u in world.call("admin", "GET", "/api/v1/users").json
    }
    assert listed == {"100": None, "200": None, "300": None, "400": "sales"}
    changed = world.call("admin", "PATCH", "/api/v1/users/400", json={"pickup_group": "desk"})
    assert changed.status_code == 200 and changed.json["pickup_group"] == "desk"
    cleared = world.call("admin", "PATCH", "/api/v1/users/400", json={"pickup_group": None})
    assert cleared.status_code == 200 and cleared.json["pickup_group"] is None
    again = world.call("admin", "PATCH", "/api/v1/users/400", json={"pickup_group": "desk"})
    assert again.json["pickup_group"] == "desk"
    empty = world.call("admin", "PATCH", "/api/v1/users/400", json={"pickup_group": ""})
    assert empty.status_code == 200 and empty.json["pickup_group"] is None


@pytest.mark.parametrize("bad", ["a b", "sales!", "grüppe", 7])
def test_api_bad_group_is_422_with_the_field_and_writes_nothing(world: World, bad: Any) -> None:
    before = dump(world)
    for method, path, body in (
        ("POST", "/api/v1/users", {"extension": "400", "pickup_group": bad}),
        ("PATCH", "/api/v1/users/100", {"pickup_group": bad}),
    ):
        response = world.call("admin", method, path, json=body)
        assert response.status_code == 422, response.json
        assert response.json["field"] == "pickup_group"
    assert dump(world) == before
    long = world.call("admin", "PATCH", "/api/v1/users/100", json={"pickup_group": "x" * 33})
    assert long.status_code == 422 and long.json["field"] == "pickup_group"


def test_api_group_changes_follow_the_roles(world: World) -> None:
    body = {"pickup_group": "sales"}
    assert world.call("site_admin", "PATCH", "/api/v1/users/100", json=body).status_code == 200
    assert _group(world, "100") == "sales"
    assert world.call("site_admin", "PATCH", "/api/v1/users/200", json=body).status_code == 404
    assert world.call("readonly", "PATCH", "/api/v1/users/300", json=body).status_code == 403
    assert (
        world.call("user", "PATCH", "/api/v1/users/100", json={"pickup_group": "x"}).status_code
        == 403
    )
    assert (_group(world, "200"), _group(world, "300"), _group(world, "100")) == (
        None,
        None,
        "sales",
    )
    assert world.call("readonly", "GET", "/api/v1/users/100").json["pickup_group"] == "sales"
    assert world.call("user", "GET", "/api/v1/users/100").json["pickup_group"] == "sales"


def test_openapi_documents_the_group(world: World) -> None:
    document = world.call(None, "GET", "/api/v1/openapi.json").json
    assert "pickup_group" in document["components"]["schemas"]["User"]["properties"]
    create = document["paths"]["/api/v1/users"]["post"]["requestBody"]["content"]
    assert "pickup_group" in create["application/json"]["schema"]["properties"]


# -- CSV -------------------------------------------------------------------------------------


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_export_has_the_group_column_and_imports_back(world: World, tmp_path: Path) -> None:
    services.update_user(world.ctx, ADMIN, "100", {"pickup_group": "sales"})
    exported = world.call("admin", "GET", "/api/v1/users.csv").get_data(as_text=True)
    assert exported.splitlines()[0] == (
        "extension,password,name,site,enabled,call_waiting,pickup_group"
    )
    groups = {r["extension"]: r["pickup_group"] for r in _rows(exported)}
    assert groups == {"100": "sales", "200": "", "300": ""}
    with api_world(tmp_path / "other") as other:
        for user in services.list_users(other.ctx, ADMIN):
            services.delete_user(other.ctx, ADMIN, user["extension"])
        services.import_users_csv(other.ctx, ADMIN, exported)
        imported = {u.extension: u.pickup_group for u in other.store.read(users.list_users)}
    assert imported == {"100": "sales", "200": None, "300": None}


def test_csv_import_group_column_is_optional_and_found_by_its_header(world: World) -> None:
    services.import_users_csv(world.ctx, ADMIN, "extension,password,name\n400,,Four\n")
    services.import_users_csv(
        world.ctx, ADMIN, "extension,pickup_group,password\n401,desk,\n402,,\n"
    )
    services.import_users_csv(world.ctx, ADMIN, "403,,Three,,1,1,desk\n404,,Four\n")
    assert [_group(world, e) for e in ("400", "401", "402", "403", "404")] == [
        None, "desk", None, "desk", None,
    ]  # fmt: skip


def test_csv_import_with_a_bad_group_names_the_row_and_adds_nothing(world: World) -> None:
    before = dump(world)
    with pytest.raises(ValidationError) as refused:
        services.import_users_csv(
            world.ctx, ADMIN, "extension,password,name,pickup_group\n400,,A,ok\n401,,B,not ok\n"
        )
    assert refused.value.field == "file"
    assert refused.value.message == f"row 2: {PICKUP_GROUP_ERROR}"
    assert dump(world) == before


def test_csv_import_with_an_unknown_site_names_the_row_once_and_adds_nothing(world: World) -> None:
    before = dump(world)
    with pytest.raises(ValidationError) as refused:
        services.import_users_csv(world.ctx, ADMIN, "400,,A,\n401,,B,Nowhere\n")
    assert refused.value.field == "file"
    assert refused.value.message == "row 2: no site 'Nowhere'"
    assert dump(world) == before
