"""The dashboard: registrations, active calls, trunks and system health, updated live.

The page renders the current state server-side; web/static/dashboard.js then listens to the
server-sent events of pbx.webhost's native ``/events`` resource (authenticated by the signed
token from web.auth.sse_token), so an open dashboard holds no WSGI thread.
Must not import twisted or the store.
"""

from __future__ import annotations

from flask import redirect, render_template, url_for
from werkzeug.wrappers import Response

from web import services
from web.auth import can, sse_token
from web.pages import actor, bp, ctx


@bp.route("/")
def dashboard() -> Response | str:
    account = actor()
    if not can(account, "dashboard.read"):
        return redirect(url_for("pages.me"))
    return render_template(
        "dashboard.html",
        registrations=services.list_registrations(ctx(), account),
        calls=services.list_active_calls(ctx(), account),
        health=services.health(ctx(), account),
        trunks=services.list_trunks(ctx(), account),
        token=sse_token(account),
    )
