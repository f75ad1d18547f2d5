"""The feature codes page: the running server's table of the numbers pbx answers itself
(pickup, park, park slots, echo test), read-only; changed in DATA/feature_codes.toml.

Must not import twisted or the store.
"""

from __future__ import annotations

from flask import render_template

from web import services
from web.auth import require
from web.pages import actor, bp, ctx


@bp.route("/feature-codes")
@require("dashboard.read")
def feature_codes() -> str:
    return render_template("feature_codes.html", codes=services.list_feature_codes(ctx(), actor()))
