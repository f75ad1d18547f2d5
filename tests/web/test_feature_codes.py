"""Feature codes in the web UI and the REST API: the read-only page and GET
/api/v1/feature-codes show the running server's table (Live.feature_codes), and no extension
may be created on a code, a park slot or behind the directed-pickup prefix."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbx.featurecodes import FeatureCodes
from pbx.store import users
from tests.web.api_support import ADMIN, World, api_world, dump
from web import services
from web.errors import Conflict, ValidationError


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def test_api_lists_the_running_servers_table(world: World) -> None:
    response = world.call("readonly", "GET", "/api/v1/feature-codes")
    assert response.status_code == 200
    assert response.json == FeatureCodes().describe()
    custom = [{"key": "park", "code": "*70", "name": "Park", "description": "parks"}]
    world.live.feature_codes = lambda: custom  # type: ignore[attr-defined]
    assert world.call("site_admin", "GET", "/api/v1/feature-codes").json == custom
    assert world.call("user", "GET", "/api/v1/feature-codes").status_code == 403
    assert world.call(None, "GET", "/api/v1/feature-codes").status_code == 401


def test_page_shows_the_table_to_every_role_with_a_dashboard(as_role: Any) -> None:
    for role in ("admin", "site_admin", "readonly"):
        client = as_role(role)
        page = client.get("/feature-codes").get_data(as_text=True)
        assert "<code>*8</code>" in page and "<code>701-720</code>" in page, role
        assert "Directed pickup" in page and "**1002" in page
        assert 'href="/feature-codes"' in client.get("/").get_data(as_text=True)
    user = as_role("user")
    assert user.get("/feature-codes").status_code == 403
    assert 'href="/feature-codes"' not in user.get("/me").get_data(as_text=True)


def test_page_marks_codes_that_are_off(as_role: Any, live: Any) -> None:
    live.feature_codes = lambda: FeatureCodes(echo_test="").describe()
    page = as_role("readonly").get("/feature-codes").get_data(as_text=True)
    assert '<span class="muted">off</span>' in page and "<code>*43</code>" not in page


@pytest.mark.parametrize(
    ("extension", "reason"),
    [
        ("700", "700 is the park feature code"),
        ("701", "701 is a park slot (701-720)"),
        ("**5", "**5 starts with the directed pickup prefix **"),
        ("*43", "*43 is the echo test feature code"),
    ],
)
def test_creating_an_extension_on_a_feature_code_is_refused(
    world: World, extension: str, reason: str
) -> None:
    before = dump(world)
    response = world.call("admin", "POST", "/api/v1/users", json={"extension": extension})
    assert response.status_code == 422
    assert response.json == {
        "error": f"extension: {reason}; choose another number",
        "error_id": "invalid",
        "field": "extension",
    }
    with pytest.raises(ValidationError) as refused:
        services.import_users_csv(world.ctx, ADMIN, f"400,,Ok\n{extension},,Code\n")
    assert refused.value.message == f"row 2: extension: {reason}; choose another number"
    assert dump(world) == before


def test_the_site_file_decides_and_a_broken_one_blocks_creation(world: World) -> None:
    (world.ctx.data_dir / "feature_codes.toml").write_text('park = "800"\npark_slots = ""\n')
    for extension in ("700", "701"):
        created = world.call("admin", "POST", "/api/v1/users", json={"extension": extension})
        assert created.status_code == 201, created.json
    refused = world.call("admin", "POST", "/api/v1/users", json={"extension": "800"})
    assert refused.status_code == 422 and "park feature code" in refused.json["error"]
    (world.ctx.data_dir / "feature_codes.toml").write_text("park = 5\n")
    with pytest.raises(Conflict, match="park: expected a string"):
        services.create_user(world.ctx, ADMIN, {"extension": "900"})
    assert world.store.read(users.get_user, "900") is None


def test_user_form_shows_the_reason(as_role: Any) -> None:
    from tests.web.conftest import post

    client = as_role("admin")
    page = post(client, "/users/new", {"extension": "705"})
    assert page.status_code == 422
    assert "705 is a park slot (701-720); choose another number" in page.get_data(as_text=True)
