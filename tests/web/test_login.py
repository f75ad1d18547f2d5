"""Login, logout, lock-out, rate limiting, forced password change, session cookie, CSRF."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from pbx.store import admins, audit
from tests.web.conftest import PASSWORD, add_account, csrf_token, https_client, login, post
from web.accounts import LOGIN_FAILED, MAX_FAILURES
from web.backend import WebContext
from web.pages import login as login_page


def test_pages_redirect_to_login_when_logged_out(client: FlaskClient) -> None:
    for path in ("/", "/users", "/sites", "/calls", "/settings", "/audit", "/tokens"):
        response = client.get(path)
        assert response.status_code == 302
        assert "/login" in response.headers["Location"]


def test_login_page_renders_with_csrf_token_and_security_headers(client: FlaskClient) -> None:
    response = client.get("/login")
    assert response.status_code == 200
    assert 'name="csrf_token"' in response.get_data(as_text=True)
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"


def test_login_sets_secure_httponly_strict_cookie(client: FlaskClient, ctx: WebContext) -> None:
    add_account(ctx, "alice")
    response = login(client, "alice")
    assert response.status_code == 302
    cookie = response.headers["Set-Cookie"]
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert client.get("/").status_code == 200


def test_wrong_password_and_unknown_user_get_the_same_generic_message(
    client: FlaskClient, ctx: WebContext
) -> None:
    add_account(ctx, "alice")
    wrong = login(client, "alice", "not the password")
    unknown = login(client, "nobody", "not the password")
    assert wrong.status_code == unknown.status_code == 401
    assert LOGIN_FAILED.split(":")[0] in wrong.get_data(as_text=True)

    # the pages may differ only in the form's CSRF token (signed with a time stamp)
    def page(response: Any, name: str) -> str:
        text = response.get_data(as_text=True).replace(name, "X")
        return re.sub(r'name="csrf_token"[^>]*value="[^"]*"', "CSRF", text)

    assert page(wrong, "alice") == page(unknown, "nobody")


def test_login_without_csrf_token_is_refused(client: FlaskClient, ctx: WebContext) -> None:
    add_account(ctx, "alice")
    client.get("/login")
    response = client.post("/login", data={"username": "alice", "password": PASSWORD})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_account_locks_after_repeated_failures_even_with_right_password(
    client: FlaskClient, ctx: WebContext
) -> None:
    add_account(ctx, "alice")
    for _ in range(MAX_FAILURES):
        assert login(client, "alice", "wrong password!").status_code == 401
    admin = ctx.store.read(admins.get_admin, "alice")
    assert admin is not None and admin.locked_until is not None
    assert login(client, "alice").status_code == 401
    actions = [e.action for e in ctx.store.read(audit.list_entries)]
    assert "account.locked" in actions


def test_rate_limit_per_address_answers_429(app: Flask, ctx: WebContext) -> None:
    add_account(ctx, "alice")
    client = https_client(app)
    limit = app.extensions["login_limiter"].limit
    codes = [login(client, f"u{i}", "x").status_code for i in range(limit + 1)]
    assert codes[-1] == 429 and 429 not in codes[:-1]


def test_limiter_window_slides() -> None:
    limiter = login_page.AttemptLimiter(limit=2, window=10)
    assert limiter.allow("a", 0) and limiter.allow("a", 1)
    assert not limiter.allow("a", 2)
    assert limiter.allow("b", 2)
    assert limiter.allow("a", 11)


def test_login_redirects_only_to_local_paths(client: FlaskClient, ctx: WebContext) -> None:
    add_account(ctx, "alice")
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/x",
        },
    )
    assert response.headers["Location"] == "/"


def test_logout_needs_post_with_csrf_and_ends_the_session(
    client: FlaskClient, ctx: WebContext
) -> None:
    add_account(ctx, "alice")
    login(client, "alice")
    assert client.post("/logout").status_code == 400
    assert client.get("/").status_code == 200
    assert post(client, "/logout").status_code == 302
    assert client.get("/").status_code == 302


def test_forced_password_change_blocks_other_pages_until_done(
    client: FlaskClient, ctx: WebContext
) -> None:
    add_account(ctx, "admin", must_change=True)
    response = login(client, "admin")
    assert response.headers["Location"].endswith("/account/password")
    assert client.get("/users").headers["Location"].endswith("/account/password")
    bad = post(
        client,
        "/account/password",
        {"current_password": PASSWORD, "new_password": "short", "confirm_password": "short"},
    )
    assert bad.status_code == 422
    good = post(
        client,
        "/account/password",
        {
            "current_password": PASSWORD,
            "new_password": "a much better password",
            "confirm_password": "a much better password",
        },
    )
    assert good.status_code == 302
    assert client.get("/users").status_code == 200
    admin = ctx.store.read(admins.get_admin, "admin")
    assert admin is not None and not admin.must_change_password


def test_password_change_rejects_wrong_current_and_mismatch(
    client: FlaskClient, ctx: WebContext
) -> None:
    add_account(ctx, "alice")
    login(client, "alice")
    before = ctx.store.read(admins.get_admin, "alice")
    for data in (
        {"current_password": "wrong", "new_password": "x" * 12, "confirm_password": "x" * 12},
        {"current_password": PASSWORD, "new_password": "x" * 12, "confirm_password": "y" * 12},
    ):
        assert post(client, "/account/password", data).status_code == 422
    assert ctx.store.read(admins.get_admin, "alice") == before


def test_password_change_ends_other_sessions(app: Flask, ctx: WebContext) -> None:
    add_account(ctx, "alice")
    first, second = https_client(app), https_client(app)
    login(first, "alice")
    login(second, "alice")
    new = "another good password"
    post(
        first,
        "/account/password",
        {"current_password": PASSWORD, "new_password": new, "confirm_password": new},
    )
    assert first.get("/").status_code == 200
    assert second.get("/").status_code == 302


def test_expired_or_disabled_accounts_cannot_log_in(client: FlaskClient, ctx: WebContext) -> None:
    add_account(ctx, "old", expires_at=1.0)
    add_account(ctx, "off")
    ctx.store.write(admins.update_admin, "off", disabled=True)
    assert login(client, "old").status_code == 401
    assert login(client, "off").status_code == 401
