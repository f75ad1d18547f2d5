"""Sites (name, time zone, country/area code, number block, hold music) and the devices page.

Must not import twisted or the store.
"""

from __future__ import annotations

from typing import Any

from flask import render_template, request, url_for
from werkzeug.wrappers import Response

from web import services, validate
from web.auth import can, require
from web.errors import ValidationError
from web.pages import actor, bp, ctx, done, form

_FIELDS = services.SITE_FIELDS


@bp.route("/sites")
@require("sites.read")
def sites() -> str:
    return render_template("sites.html", sites=services.list_sites(ctx(), actor()))


@bp.route("/sites/new", methods=["GET", "POST"])
@require("sites.write")
def site_new() -> str | tuple[str, int] | Response:
    if request.method == "GET":
        return render_template("site_form.html", site=None, values={})
    data = form(_FIELDS)
    try:
        site = services.create_site(ctx(), actor(), data)
    except ValidationError as exc:
        return render_template("site_form.html", site=None, values=data, error=exc), 422
    return done(f"Site {site['name']} created.", url_for("pages.sites"))


def _music(site_id: int) -> dict[str, Any] | None:
    """The site's hold music for accounts that may manage it, else None (section hidden)."""
    if not can(actor(), "music.manage", site_id):
        return None
    return services.get_site_music(ctx(), actor(), site_id)


def _site_page(site: dict[str, Any], values: dict[str, Any], **extra: Any) -> str:
    return render_template(
        "site_form.html", site=site, values=values, music=_music(site["id"]), **extra
    )


@bp.route("/sites/<int:site_id>", methods=["GET", "POST"])
@require("sites.read")
def site_edit(site_id: int) -> str | tuple[str, int] | Response:
    site = services.get_site(ctx(), actor(), site_id)
    if request.method == "GET":
        return _site_page(site, site)
    data = form(_FIELDS)
    try:
        services.update_site(ctx(), actor(), site_id, data)
    except ValidationError as exc:
        return _site_page(site, site | data, error=exc), 422
    return done("Site saved.", url_for("pages.sites"))


@bp.route("/sites/<int:site_id>/music", methods=["POST"])
@require("sites.read")
def site_music_upload(site_id: int) -> str | tuple[str, int] | Response:
    """Upload (and convert) the site's hold music; the form shows why a file is refused."""
    site = services.get_site(ctx(), actor(), site_id)
    upload = request.files.get("file")
    data = upload.read() if upload else b""
    name = (upload.filename or "") if upload else ""
    try:
        music = services.upload_site_music(ctx(), actor(), site_id, data, name)
    except ValidationError as exc:
        return _site_page(site, site, music_error=exc), 422
    return done(
        f"Hold music of {site['name']} is now {music['original_name']}.",
        url_for("pages.site_edit", site_id=site_id),
    )


@bp.route("/sites/<int:site_id>/music/delete", methods=["POST"])
@require("sites.read")
def site_music_delete(site_id: int) -> Response:
    site = services.get_site(ctx(), actor(), site_id)
    services.delete_site_music(ctx(), actor(), site_id)
    return done(
        f"{site['name']} plays the default music again.",
        url_for("pages.site_edit", site_id=site_id),
    )


@bp.route("/sites/<int:site_id>/delete", methods=["POST"])
@require("sites.write")
def site_delete(site_id: int) -> Response:
    services.delete_site(ctx(), actor(), site_id)
    return done("Site deleted.", url_for("pages.sites"))


@bp.route("/devices")
@require("devices.read")
def devices() -> str:
    site = validate.integer(request.args, "site", low=1, high=2**31)
    return render_template(
        "devices.html",
        devices=services.list_devices(ctx(), actor(), site),
        sites=services.list_sites(ctx(), actor()),
        site=site,
    )
