"""Bearer-token authentication of the REST API.

Owns turning ``Authorization: Bearer <token>`` into a web.auth.Account. Tokens are stored only
as the SHA-256 hex digest of the secret (pbx.store.tokens); an unknown, revoked or expired token
is answered 401 without saying which, and so is a token whose owner (the web account it
belongs to) is disabled, expired or gone (a new account with its name is not it): checked at
every request, whatever changed the account (UI, API, CLI). Each use is recorded with
touch_token (at most once a minute per token, so reads stay reads); every request made with a
temporary support token (one with an expiry) is written to the audit log. Must not import
twisted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any

from flask import request

from pbx.store import audit, tokens
from pbx.store.admins import Admin, get_admin
from web.accounts import usable
from web.api.schema import ApiError
from web.auth import ROLES, Account
from web.backend import WebContext

log = logging.getLogger(__name__)

TOUCH_INTERVAL = 60.0
MAX_TOKEN_LENGTH = 256


def token_hash(secret: str) -> str:
    """The stored form of a token secret."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def bearer_secret() -> str:
    """The token from the Authorization header, or ApiError(401)."""
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.strip().partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise ApiError(401, "send an API token as 'Authorization: Bearer <token>'")
    if len(secret) > MAX_TOKEN_LENGTH or not secret.isascii() or not secret.isprintable():
        raise ApiError(401, "invalid, expired or revoked token")
    return secret


def _token_and_owner(db: Any, digest: str) -> tuple[tokens.ApiToken | None, Admin | None]:
    """The token with this hash and the web account it belongs to, in one read."""
    token = tokens.token_by_hash(db, digest)
    if token is None or token.owner is None:
        return token, None
    return token, get_admin(db, token.owner)


def authenticate(ctx: WebContext, now: float | None = None) -> Account:
    """The Account the request's token acts as; ApiError(401) when there is none."""
    secret = bearer_secret()
    now = time.time() if now is None else now
    token, owner = ctx.store.read(_token_and_owner, token_hash(secret))
    if (
        token is None
        or not token.usable(now)
        or token.role not in ROLES
        or owner is None
        or not usable(owner, now)
        or owner.created_at > token.created_at  # a later account that reuses the name
    ):
        raise ApiError(401, "invalid, expired or revoked token")
    extension = None
    if token.role == "user":  # acts for the extension of the web account it belongs to
        extension = owner.extension
        if extension is None:
            raise ApiError(401, "this token's account has no extension")
    account = Account(
        username=token.name,
        role=token.role,
        site_id=token.site_id,
        extension=extension,
        expires_at=token.expires_at,
        via="api",
        owner=owner.username,
    )
    if token.last_used_at is None or now - token.last_used_at >= TOUCH_INTERVAL:
        ctx.store.write(tokens.touch_token, token.id, now)
    if token.expires_at is not None:
        ctx.store.write(
            audit.record,
            actor=account.actor,
            action="support.api_request",
            target=f"{request.method} {request.path}"[:300],
            at=now,
        )
    return account
