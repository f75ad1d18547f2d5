"""The trunks page: SIP trunks with their live state, the DIDs and the outbound routes,
read-only (``pbx trunk|did|route`` manage them for now). Not shown to site administrators
(trunks serve every site). Must not import twisted or the store.
"""

from __future__ import annotations

from flask import render_template

from web import services
from web.auth import require
from web.pages import actor, bp, ctx


@bp.route("/trunks")
@require("health.read")
def trunks() -> str:
    context, account = ctx(), actor()
    return render_template(
        "trunks.html",
        trunks=services.list_trunk_configs(context, account),
        dids=services.list_dids(context, account),
        routes=services.list_routes(context, account),
        site_bound=account.site_bound,
    )
