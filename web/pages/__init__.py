"""The HTML pages of the admin UI: one blueprint, one module per area.

Owns the ``pages`` blueprint and the small helpers its views share (the acting account, form
data as a plain dict for web.services, redirects with a message). The views only translate
between HTTP and web.services / web.accounts; they hold no business rules.
Must not import twisted or the store.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Blueprint, flash, redirect, request
from werkzeug.wrappers import Response

from web.auth import Account, current_account, current_ctx
from web.backend import WebContext
from web.errors import Unauthorized

bp = Blueprint("pages", __name__)


def actor() -> Account:
    account = current_account()
    if account is None:
        raise Unauthorized("please log in")
    return account


def ctx() -> WebContext:
    return current_ctx()


def form(fields: Iterable[str], checkboxes: Iterable[str] = ()) -> dict[str, Any]:
    """The submitted form as a dict of the named fields; an unticked checkbox is "false"."""
    data: dict[str, Any] = {f: request.form[f] for f in fields if f in request.form}
    for box in checkboxes:
        data[box] = "true" if request.form.get(box) else "false"
    return data


def args(fields: Iterable[str]) -> dict[str, Any]:
    """Query-string filters as a dict, empty values left out."""
    return {f: request.args[f] for f in fields if request.args.get(f, "").strip()}


def done(message: str, target: str) -> Response:
    flash(message, "ok")
    return redirect(target)


from web.pages import (  # noqa: E402  (the modules register their routes on bp)
    accounts,
    calls,
    dashboard,
    featurecodes,
    login,
    settings,
    sites,
    trunks,
    users,
)

__all__ = [
    "accounts",
    "actor",
    "args",
    "bp",
    "calls",
    "ctx",
    "dashboard",
    "done",
    "featurecodes",
    "form",
    "login",
    "settings",
    "sites",
    "trunks",
    "users",
]
