"""The feature-code table for the admin pages and the REST API, and the rule that keeps
extensions off it.

Owns :func:`list_feature_codes` (the running server's table, through web.backend.Live) and
:func:`check_extension_is_free` (an extension may not be a feature code or a park slot, or
start with the directed-pickup prefix: checked against ``DATA/feature_codes.toml`` over the
shipped defaults, the table the server loads). Must not import flask or twisted.
"""

from __future__ import annotations

import logging
from typing import Any

from pbx import featurecodes
from pbx.config import ConfigError
from web.auth import Account, check
from web.backend import WebContext
from web.errors import Conflict, ValidationError

log = logging.getLogger(__name__)


def list_feature_codes(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    """Rows key, code ("" when off), name and description; for every role with a dashboard."""
    check(actor, "dashboard.read")
    return [dict(row) for row in ctx.live.feature_codes()]


def feature_codes(ctx: WebContext) -> featurecodes.FeatureCodes:
    """The table in the data directory; Conflict while its site file is invalid."""
    try:
        return featurecodes.load(ctx.data_dir)
    except ConfigError as exc:
        log.warning("feature codes not readable: %s", exc)
        raise Conflict(f"the feature code table is invalid, fix it first: {exc}") from None


def check_extension_is_free(
    codes: featurecodes.FeatureCodes, extension: str, field: str = "extension"
) -> None:
    """ValidationError when ``extension`` collides with a feature code."""
    reason = codes.conflict(extension)
    if reason is not None:
        raise ValidationError(field, f"{field}: {reason}; choose another number")
