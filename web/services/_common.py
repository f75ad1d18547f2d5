"""Helpers shared by the web.services modules: clock, secret box, store writes, site checks.

Owns _now (the clock the services stamp changes with), _box (the SecretBox for SIP passwords),
_write (one change on the store's writer thread, store errors mapped to web errors) and
_check_site_exists. Must not import flask, twisted or any other web.services module.
"""

from __future__ import annotations

import time
from typing import Any

from pbx.credentials import SecretBox
from pbx.store import errors as store_errors
from pbx.store import sites
from web.backend import WebContext
from web.errors import Conflict, NotFound, ValidationError


def _now() -> float:
    return time.time()


def _box(ctx: WebContext) -> SecretBox:
    return SecretBox(ctx.data_dir / "secret.key")


def _write(ctx: WebContext, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one change on the writer thread, mapping store errors to web errors."""
    try:
        return ctx.store.write(fn, *args, **kwargs)
    except store_errors.AlreadyExists as exc:
        raise Conflict(str(exc)) from None
    except store_errors.NotFound as exc:
        raise NotFound(str(exc)) from None
    except store_errors.StoreError as exc:  # InUse and friends
        raise Conflict(str(exc)) from None


def _check_site_exists(db: Any, site_id: int | None) -> None:
    if site_id is not None and sites.get_site(db, site_id) is None:
        raise ValidationError("site_id", f"site_id: no site {site_id}")
