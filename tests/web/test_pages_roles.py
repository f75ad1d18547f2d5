"""Each role's allowed and forbidden pages and actions, and CSRF on every form."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pbx.credentials import SecretBox, make_credentials
from pbx.store import credentials as store_credentials
from pbx.store import users
from tests.web.conftest import add_account, login, post
from web.backend import WebContext

READ_PAGES = (
    "/",
    "/users",
    "/sites",
    "/devices",
    "/calls",
    "/settings",
    "/audit",
    "/tokens",
    "/accounts",
    "/users/export.csv",
    "/calls/export.csv",
    "/feature-codes",
)
ADMIN_ONLY_GET = ("/settings", "/audit", "/tokens", "/accounts", "/support", "/sites/new")


@pytest.fixture
def populated(ctx: WebContext, sites_ab: tuple[int, int]) -> tuple[int, int]:
    for ext, site in (("100", sites_ab[0]), ("200", sites_ab[1])):
        ctx.store.write(users.add_user, ext, f"User {ext}")
        ctx.store.write(users.set_user_site, ext, site)
        box = SecretBox(ctx.data_dir / "secret.key")
        creds = make_credentials(box, ext, "pbx", f"Pass-{ext}-word", 0.0)
        ctx.store.write(store_credentials.set_credentials, creds)
    return sites_ab


def test_admin_reaches_every_page(as_role: Any, populated: tuple[int, int]) -> None:
    client = as_role("admin")
    for path in (
        *READ_PAGES,
        *ADMIN_ONLY_GET,
        "/users/new",
        "/users/import",
        "/users/100",
        f"/sites/{populated[0]}",
    ):
        assert client.get(path).status_code == 200, path


def test_readonly_sees_everything_but_changes_nothing(
    as_role: Any, populated: tuple[int, int], ctx: WebContext
) -> None:
    client = as_role("readonly")
    for path in READ_PAGES:
        assert client.get(path).status_code == 200, path
    for path in ("/users/new", "/users/import", "/support", "/sites/new"):
        assert client.get(path).status_code == 403, path
    page = client.get("/users/100").get_data(as_text=True)
    assert "Show password" not in page and "Pass-100-word" not in page
    before = ctx.store.read(users.list_users)
    for path, data in (
        ("/users/new", {"extension": "300"}),
        ("/users/100", {"display_name": "X"}),
        ("/users/100/delete", {}),
        ("/users/100/password", {}),
        ("/users/100/provisioning", {}),
        ("/users/import", {"text": "301,,A"}),
        ("/sites/new", {"name": "X", "timezone": "UTC"}),
        (f"/sites/{populated[0]}/delete", {}),
        ("/settings/live", {"calls.retention_days": "30"}),
        ("/settings/process", {"sip.port": "5070"}),
        ("/tokens", {"name": "t", "role": "admin"}),
        ("/accounts", {"username": "x", "role": "admin"}),
        ("/support", {"kind": "token", "name": "x", "expires_at": "2999-01-01"}),
    ):
        assert post(client, path, data).status_code == 403, path
    assert ctx.store.read(users.list_users) == before


def test_site_admin_sees_and_changes_only_own_site(
    as_role: Any, populated: tuple[int, int], ctx: WebContext
) -> None:
    client = as_role("site_admin")
    page = client.get("/users").get_data(as_text=True)
    assert ">100<" in page and ">200<" not in page
    assert client.get("/users/200").status_code == 404
    assert post(client, "/users/200", {"display_name": "X"}).status_code == 404
    assert post(client, "/users/200/delete").status_code == 404
    assert client.get(f"/users?site={populated[1]}").status_code == 403
    assert post(client, "/users/100", {"display_name": "Mine"}).status_code == 302
    created = post(client, "/users/new", {"extension": "150"})
    assert created.status_code == 200
    new = ctx.store.read(users.get_user, "150")
    assert new is not None and new.site_id == populated[0]
    other = post(client, "/users/new", {"extension": "250", "site_id": str(populated[1])})
    assert other.status_code == 403
    assert ctx.store.read(users.get_user, "250") is None
    assert post(client, "/users/150/provisioning").status_code == 200
    for path in ("/settings", "/audit", "/tokens", "/accounts", "/sites/new"):
        assert client.get(path).status_code == 403, path
    sites_page = client.get("/sites").get_data(as_text=True)
    assert "Berlin" in sites_page and "Hamburg" not in sites_page


def test_site_admin_dashboard_shows_only_own_site(as_role: Any, populated: tuple[int, int]) -> None:
    page = as_role("site_admin").get("/").get_data(as_text=True)
    assert "Yealink" in page and "baresip" not in page


def test_user_role_only_has_own_settings(
    as_role: Any, populated: tuple[int, int], ctx: WebContext
) -> None:
    client = as_role("user")
    assert client.get("/").headers["Location"].endswith("/me")
    for path in READ_PAGES[1:]:
        assert client.get(path).status_code == 403, path
    assert "User 100" in client.get("/me").get_data(as_text=True)
    assert post(client, "/me", {"display_name": "Me", "call_waiting": "on"}).status_code == 302
    user = ctx.store.read(users.get_user, "100")
    assert user is not None and user.display_name == "Me"
    assert post(client, "/me", {"display_name": ""}).status_code == 422
    assert "Pass-100-word" in post(client, "/me/provisioning").get_data(as_text=True)
    assert post(client, "/users/200", {"display_name": "X"}).status_code == 403


@pytest.mark.parametrize(
    "path",
    [
        "/users/new",
        "/users/100",
        "/users/100/delete",
        "/users/100/password",
        "/users/100/provisioning",
        "/users/import",
        "/sites/new",
        "/settings/live",
        "/settings/process",
        "/tokens",
        "/accounts",
        "/support",
        "/account/password",
        "/logout",
        "/me",
    ],
)
def test_every_form_refuses_a_post_without_csrf_token(
    app: Flask, ctx: WebContext, path: str, populated: tuple[int, int]
) -> None:
    add_account(ctx, "root")
    from tests.web.conftest import https_client

    client: FlaskClient = https_client(app)
    login(client, "root")
    before = ctx.store.read(users.list_users)
    response = client.post(path, data={"extension": "300", "display_name": "X", "name": "x"})
    assert response.status_code == 400
    assert "Form expired" in response.get_data(as_text=True)
    assert ctx.store.read(users.list_users) == before
