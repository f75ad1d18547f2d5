"""Web accounts and roles, API tokens, temporary support access, and the 'user' role's own
settings page.

Must not import twisted or the store.
"""

from __future__ import annotations

from flask import render_template, request, url_for
from werkzeug.wrappers import Response

from web import accounts as account_service
from web import services, validate
from web.auth import ROLES, require
from web.errors import ValidationError
from web.pages import actor, bp, ctx, done, form


def _accounts_page(**extra: object) -> str:
    return render_template(
        "accounts.html",
        accounts=account_service.list_accounts(ctx(), actor()),
        sites=services.list_sites(ctx(), actor()),
        roles=ROLES,
        **extra,
    )


@bp.route("/accounts", methods=["GET", "POST"])
@require("accounts.read")
def accounts() -> str | tuple[str, int]:
    if request.method == "GET":
        return _accounts_page()
    data = form(("username", "role", "site_id", "extension", "expires_at", "password"))
    data = {k: v for k, v in data.items() if v != ""}
    try:
        created = account_service.create_account(ctx(), actor(), data)
    except ValidationError as exc:
        return _accounts_page(error=exc, values=data), 422
    return _accounts_page(created=created)


@bp.route("/accounts/<username>", methods=["POST"])
@require("accounts.write")
def account_update(username: str) -> Response | tuple[str, int]:
    data = form(("role", "site_id", "extension", "expires_at"), ("disabled",))
    for key in ("site_id", "extension", "expires_at"):
        data[key] = data.get(key) or None
    try:
        account_service.update_account(ctx(), actor(), username, data)
    except ValidationError as exc:
        return _accounts_page(error=exc), 422
    return done(f"Account {username} saved.", url_for("pages.accounts"))


@bp.route("/accounts/<username>/delete", methods=["POST"])
@require("accounts.write")
def account_delete(username: str) -> Response:
    account_service.delete_account(ctx(), actor(), username)
    return done(f"Account {username} deleted.", url_for("pages.accounts"))


@bp.route("/accounts/<username>/reset", methods=["POST"])
@require("accounts.write")
def account_reset(username: str) -> str:
    password = account_service.reset_account_password(ctx(), actor(), username)
    return _accounts_page(reset={"username": username, "password": password})


def _tokens_page(**extra: object) -> str:
    return render_template(
        "tokens.html",
        tokens=services.list_tokens(ctx(), actor()),
        sites=services.list_sites(ctx(), actor()),
        roles=[r for r in ROLES if r != "user"],
        **extra,
    )


@bp.route("/tokens", methods=["GET", "POST"])
@require("tokens.read")
def tokens() -> str | tuple[str, int]:
    if request.method == "GET":
        return _tokens_page()
    data = form(("name", "role", "site_id", "expires_at"))
    data = {k: v for k, v in data.items() if v != ""}
    try:
        created = services.create_token(ctx(), actor(), data)
    except ValidationError as exc:
        return _tokens_page(error=exc, values=data), 422
    return _tokens_page(created=created)


@bp.route("/tokens/<int:token_id>/revoke", methods=["POST"])
@require("tokens.write")
def token_revoke(token_id: int) -> Response:
    services.revoke_token(ctx(), actor(), token_id)
    return done("Token revoked.", url_for("pages.tokens"))


@bp.route("/support", methods=["GET", "POST"])
@require("accounts.write")
def support() -> str | tuple[str, int]:
    sites = services.list_sites(ctx(), actor())
    if request.method == "GET":
        return render_template("support.html", sites=sites, values={})
    data = form(("kind", "name", "role", "site_id", "expires_at"))
    data = {k: v for k, v in data.items() if v != ""}
    try:
        created = services.create_support_access(ctx(), actor(), data)
    except ValidationError as exc:
        return render_template("support.html", sites=sites, values=data, error=exc), 422
    return render_template("support.html", sites=sites, values={}, created=created)


@bp.route("/me", methods=["GET", "POST"])
@require("self.read")
def me() -> str | tuple[str, int] | Response:
    account = actor()
    user = services.get_user(ctx(), account, account.extension) if account.extension else None
    if request.method == "GET":
        return render_template("me.html", user=user)
    data = form(("display_name",), ("call_waiting",))
    try:
        services.update_own_user(ctx(), account, data)
    except ValidationError as exc:
        return render_template("me.html", user=user, error=exc), 422
    return done("Your settings were saved.", url_for("pages.me"))


@bp.route("/me/provisioning", methods=["POST"])
@require("self.read")
def me_provisioning() -> str:
    account = actor()
    extension = validate.extension(account.extension or "")
    summary = services.show_provisioning(ctx(), account, extension)
    return render_template("provisioning.html", summary=summary, own=True)
