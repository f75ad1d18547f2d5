"""Accounts, roles and the one permission model used by the pages and the REST API.

Owns ``Account`` (who is acting: a logged-in admin account or an API token), ``ROLES``,
``can()`` (the permission table), the ``require()`` view decorator, the current account of a
request, and the signed tokens the live-update (SSE) resource checks. Must not import twisted
or the store; hashing of passwords lives in pbx.credentials.

Roles:
- ``admin``: everything, global settings included.
- ``site_admin``: reads and changes users, reads devices, registrations and call records of
  their own site only; sees SIP passwords of their site's users; manages their site's hold
  music (``music.manage``, which no read-only or user account has); controls the calls of
  their site's extensions (``calls.control``).
- ``readonly``: every ``*.read`` action, never a secret (SIP passwords, tokens).
- ``user``: their own settings only (``self.read``/``self.write``), which include the calls
  from and to their own extension (click-to-call, hang up, transfer).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from flask import current_app, g
from itsdangerous import BadSignature, URLSafeTimedSerializer

from web.backend import WebContext
from web.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = ("admin", "site_admin", "readonly", "user")
ROLE_LABELS: dict[str, str] = {
    "admin": "Administrator",
    "site_admin": "Site administrator",
    "readonly": "Read-only",
    "user": "User",
}

# Every action the pages and the API check. "users.secrets" = see or set a SIP password.
ACTIONS: tuple[str, ...] = (
    "dashboard.read",
    "registrations.read",
    "calls.read",
    "calls.control",
    "health.read",
    "users.read",
    "users.write",
    "users.secrets",
    "devices.read",
    "sites.read",
    "sites.write",
    "music.manage",
    "settings.read",
    "settings.write",
    "audit.read",
    "tokens.read",
    "tokens.write",
    "accounts.read",
    "accounts.write",
    "self.read",
    "self.write",
)

_SITE_ADMIN_ACTIONS = frozenset(
    {
        "dashboard.read",
        "registrations.read",
        "calls.read",
        "calls.control",
        "health.read",
        "users.read",
        "users.write",
        "users.secrets",
        "devices.read",
        "sites.read",
        "music.manage",
        "self.read",
    }
)
_READONLY_ACTIONS = frozenset(a for a in ACTIONS if a.endswith(".read"))
_USER_ACTIONS = frozenset({"self.read", "self.write"})
# Actions whose objects belong to a site: a site_admin passes only for their own site.
_SITE_SCOPED = frozenset(
    {
        "registrations.read",
        "calls.read",
        "calls.control",
        "users.read",
        "users.write",
        "users.secrets",
        "music.manage",
    }
)
SSE_SALT = "sse"
SSE_MAX_AGE = 3600


@dataclass(frozen=True)
class Account:
    """Who is acting. ``via`` is "web" for a login session and "api" for a token."""

    username: str
    role: str
    site_id: int | None = None
    extension: str | None = None  # the own extension of a 'user' account
    must_change_password: bool = False
    expires_at: float | None = None  # temporary support access
    via: str = "web"
    owner: str | None = None  # for a token: the web account it belongs to

    @property
    def principal(self) -> str | None:
        """The web account whose authority this acts with: the login itself, or the owner of
        the API token (tokens this account makes belong to it)."""
        return self.owner if self.via == "api" else self.username

    @property
    def actor(self) -> str:
        """The name written to the audit log, e.g. ``web:alice`` or ``api:deploy-bot``."""
        return f"{self.via}:{self.username}"

    @property
    def site_bound(self) -> bool:
        """True when this account only sees one site's data."""
        return self.role == "site_admin"


def can(account: Account | None, action: str, site_id: int | None = None) -> bool:
    """May ``account`` do ``action``? ``site_id`` names the site of the object, if any.

    For a site administrator, ``site_id=None`` asks about the collection (the caller must then
    limit what it shows with :func:`scope_site`); a specific site must be their own.
    """
    if account is None or action not in ACTIONS:
        return False
    if account.role == "admin":
        return True
    if account.role == "site_admin":
        if action not in _SITE_ADMIN_ACTIONS:
            return False
        if action in _SITE_SCOPED and site_id is not None:
            return site_id == account.site_id
        return True
    if account.role == "readonly":
        return action in _READONLY_ACTIONS and action != "users.secrets"
    if account.role == "user":
        return action in _USER_ACTIONS
    return False


def in_scope(account: Account, object_site_id: int | None) -> bool:
    """Whether an object of ``object_site_id`` is visible to ``account`` (site rules only)."""
    if account.site_bound:
        return account.site_id is not None and object_site_id == account.site_id
    return True


def scope_site(account: Account, requested: int | None = None) -> int | None:
    """The site filter to apply to lists: a site admin always gets their own site."""
    if account.site_bound:
        if requested is not None and requested != account.site_id:
            raise Forbidden("you can only see your own site")
        return account.site_id if account.site_id is not None else -1
    return requested


def check(account: Account | None, action: str, site_id: int | None = None) -> Account:
    """Return the account if it may do ``action``; raise Unauthorized/Forbidden otherwise."""
    if account is None:
        raise Unauthorized("please log in")
    if not can(account, action, site_id):
        raise Forbidden("your role does not allow this")
    return account


def current_account() -> Account | None:
    """The account of the current request (set by the app's or the API's login check)."""
    return cast(Account | None, g.get("account"))


F = TypeVar("F", bound=Callable[..., Any])


def require(action: str) -> Callable[[F], F]:
    """View decorator: the current account must be allowed ``action`` (collection level).

    Raises web.errors.Unauthorized or Forbidden; each blueprint turns them into its answer
    (a redirect to the login page, or a JSON error).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            check(current_account(), action)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorate


def _serializer(secret_key: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret_key, salt=SSE_SALT)


def sse_token(account: Account, secret_key: bytes | None = None) -> str:
    """A signed token naming the account, for ``/events?token=...`` (valid one hour).

    ``secret_key`` defaults to the current Flask app's SECRET_KEY (the WebContext key).
    """
    key = secret_key if secret_key is not None else current_app.config["SECRET_KEY"]
    return str(
        _serializer(key).dumps({"u": account.username, "r": account.role, "s": account.site_id})
    )


def check_sse_token(secret_key: bytes, token: str) -> dict[str, Any] | None:
    """The payload {"u", "r", "s"} of a valid token not older than an hour, else None."""
    try:
        data = _serializer(secret_key).loads(token, max_age=SSE_MAX_AGE)
    except (BadSignature, UnicodeError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("r") not in ROLES or not data.get("u"):
        return None
    return data


def current_ctx() -> WebContext:
    """The WebContext of the running app (``create_app`` keeps it in app.extensions)."""
    return cast(WebContext, current_app.extensions["pbx"])
