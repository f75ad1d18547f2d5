"""Access to the WebContext of the running Flask app from API views.

Owns ``web_context()`` and ``account()`` (the token's Account of the current request).
Must not import twisted.
"""

from __future__ import annotations

import logging
from typing import cast

from flask import current_app, g

from web.auth import Account
from web.backend import WebContext

log = logging.getLogger(__name__)


def web_context() -> WebContext:
    """The WebContext create_app was given."""
    return cast(WebContext, current_app.extensions["pbx"])


def account() -> Account:
    """The Account the request's bearer token authenticated (set before every API view)."""
    return cast(Account, g.account)
