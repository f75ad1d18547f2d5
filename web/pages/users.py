"""Users and extensions: list with site filter, create, edit, delete, SIP credentials,
provisioning summary (showing the password is audited), CSV import and export.

Must not import twisted or the store.
"""

from __future__ import annotations

from typing import Any

from flask import Response as FlaskResponse
from flask import render_template, request, url_for
from werkzeug.wrappers import Response

from web import services, validate
from web.auth import require
from web.errors import ValidationError
from web.pages import actor, bp, ctx, done, form

_EDIT = ("display_name", "site_id", "static_contact", "pickup_group")
_BOXES = ("enabled", "call_waiting")


def _sites() -> list[dict[str, Any]]:
    return services.list_sites(ctx(), actor())


@bp.route("/users")
@require("users.read")
def users() -> str:
    site = validate.integer(request.args, "site", low=1, high=2**31)
    return render_template(
        "users.html",
        users=services.list_users(ctx(), actor(), site),
        sites=_sites(),
        site=site,
    )


@bp.route("/users/new", methods=["GET", "POST"])
@require("users.write")
def user_new() -> str | tuple[str, int]:
    if request.method == "GET":
        return render_template("user_form.html", user=None, values={}, sites=_sites())
    data = form(("extension", "password", *_EDIT), _BOXES)
    if not data.get("site_id"):
        data.pop("site_id", None)
    try:
        created = services.create_user(ctx(), actor(), data)
    except ValidationError as exc:
        page = render_template("user_form.html", user=None, values=data, sites=_sites(), error=exc)
        return page, 422
    summary = services.provisioning_summary(
        ctx(), actor(), created["extension"], with_password=False
    )
    summary["password"] = created["sip_password"]
    return render_template("provisioning.html", summary=summary, created=True)


@bp.route("/users/<extension>", methods=["GET", "POST"])
@require("users.read")
def user_edit(extension: str) -> str | tuple[str, int] | Response:
    user = services.get_user(ctx(), actor(), extension)
    summary = services.provisioning_summary(ctx(), actor(), extension, with_password=False)
    if request.method == "GET":
        return render_template(
            "user_form.html", user=user, values=user, sites=_sites(), summary=summary
        )
    data = form(_EDIT, _BOXES)
    data["site_id"] = data.get("site_id") or None
    try:
        services.update_user(ctx(), actor(), extension, data)
    except ValidationError as exc:
        page = render_template(
            "user_form.html",
            user=user,
            values=user | data,
            sites=_sites(),
            summary=summary,
            error=exc,
        )
        return page, 422
    return done(f"Extension {extension} saved.", url_for("pages.user_edit", extension=extension))


@bp.route("/users/<extension>/delete", methods=["POST"])
@require("users.write")
def user_delete(extension: str) -> Response:
    services.delete_user(ctx(), actor(), extension)
    return done(f"Extension {extension} deleted.", url_for("pages.users"))


@bp.route("/users/<extension>/password", methods=["POST"])
@require("users.secrets")
def user_password(extension: str) -> str:
    password = services.reset_sip_password(ctx(), actor(), extension)
    summary = services.provisioning_summary(ctx(), actor(), extension, with_password=False)
    summary["password"] = password
    return render_template("provisioning.html", summary=summary, reset=True)


@bp.route("/users/<extension>/provisioning", methods=["POST"])
@require("users.secrets")
def user_provisioning(extension: str) -> str:
    summary = services.show_provisioning(ctx(), actor(), extension)
    return render_template("provisioning.html", summary=summary)


@bp.route("/users/import", methods=["GET", "POST"])
@require("users.write")
def users_import() -> str | tuple[str, int]:
    if request.method == "GET":
        return render_template("users_import.html")
    upload = request.files.get("file")
    raw = upload.read() if upload else request.form.get("text", "").encode()
    try:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise ValidationError("file", "file: not UTF-8 text") from None
        generated = services.import_users_csv(ctx(), actor(), text)
    except ValidationError as exc:
        return render_template("users_import.html", error=exc), 422
    return render_template("users_import.html", generated=generated, imported=True)


@bp.route("/users/export.csv")
@require("users.read")
def users_export() -> FlaskResponse:
    site = validate.integer(request.args, "site", low=1, high=2**31)
    body = services.export_users_csv(ctx(), actor(), site)
    return FlaskResponse(
        body,
        mimetype="text/csv",
        headers={"Content-Disposition": "attachment; filename=users.csv"},
    )
