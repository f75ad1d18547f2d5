"""Settings (live telephony settings and process settings effective at restart) and the
filterable audit log.

Must not import twisted or the store.
"""

from __future__ import annotations

from flask import render_template, url_for
from werkzeug.wrappers import Response

from web import services
from web.auth import require
from web.errors import ValidationError
from web.pages import actor, args, bp, ctx, done, form

_LIVE = (*services.LIVE_NUMBERS, services.LIVE_CODECS_KEY)
_PROCESS = tuple(f"{s}.{k}" for s, k, _ in services.PROCESS_SETTINGS)


def _page(**extra: object) -> str:
    return render_template(
        "settings.html",
        live=services.live_settings(ctx(), actor()),
        process=services.process_settings(ctx(), actor()),
        codecs=list(services.CODECS),
        **extra,
    )


@bp.route("/settings")
@require("settings.read")
def settings() -> str:
    return _page()


@bp.route("/settings/live", methods=["POST"])
@require("settings.write")
def settings_live() -> Response | tuple[str, int]:
    data = form(_LIVE)
    try:
        services.update_settings(ctx(), actor(), data)
    except ValidationError as exc:
        return _page(live_error=exc, live_values=data), 422
    return done("Telephony settings saved; they apply now.", url_for("pages.settings"))


@bp.route("/settings/process", methods=["POST"])
@require("settings.write")
def settings_process() -> Response | tuple[str, int]:
    data = form(_PROCESS)
    try:
        services.update_process_settings(ctx(), actor(), data)
    except ValidationError as exc:
        return _page(process_error=exc, process_values=data), 422
    return done(
        "Process settings written to pbx.toml; they take effect at the next restart.",
        url_for("pages.settings"),
    )


@bp.route("/audit")
@require("audit.read")
def audit() -> str | tuple[str, int]:
    data = args(services.AUDIT_FILTERS)
    try:
        entries = services.list_audit(ctx(), actor(), data)
    except ValidationError as exc:
        return render_template("audit.html", entries=[], filters=data, error=exc, page=1), 422
    page = int(data.get("page", 1))
    return render_template("audit.html", entries=entries, filters=data, page=page)
