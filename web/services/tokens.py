"""API tokens and temporary support access.

Owns listing, creating and revoking API tokens (stored only as a sha256 hash, the secret shown
once) and support access (a temporary account via web.accounts, or a temporary token).
Must not import flask or twisted.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import asdict
from typing import Any

from pbx.store import audit, tokens
from web import accounts, validate
from web.auth import ROLES, Account, check
from web.backend import WebContext
from web.errors import NotFound, ValidationError
from web.services._common import _check_site_exists, _now, _write

TOKEN_PREFIX = "pbx_"


def hash_token(token: str) -> str:
    """How tokens are stored: sha256 hex of the whole token string."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_dict(token: tokens.ApiToken) -> dict[str, Any]:
    data = asdict(token)
    data.pop("token_hash", None)
    return data


def list_tokens(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "tokens.read")
    return [token_dict(t) for t in ctx.store.read(tokens.list_tokens)]


def create_token(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """A new API token; the result's ``token`` is shown once and never stored in clear."""
    check(actor, "tokens.write")
    validate.reject_unknown(data, ("name", "role", "site_id", "expires_at"))
    name = validate.text(data, "name", required=True, max_len=64)
    role = validate.role(data, ROLES)
    site_id = validate.integer(data, "site_id", low=1, high=2**31)
    if role == "site_admin" and site_id is None:
        raise ValidationError("site_id", "site_id: a site administrator token needs a site")
    if role == "user":
        raise ValidationError("role", "role: user tokens are not supported")
    expires_at = validate.future(validate.timestamp(data, "expires_at"), "expires_at")
    return _add_token(ctx, actor, name, role, site_id, expires_at, "token.add")


def _add_token(
    ctx: WebContext,
    actor: Account,
    name: str,
    role: str,
    site_id: int | None,
    expires_at: float | None,
    action: str,
) -> dict[str, Any]:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now = _now()

    def add(db: Any) -> tokens.ApiToken:
        _check_site_exists(db, site_id)
        token = tokens.add_token(
            db,
            name,
            hash_token(secret),
            role,
            site_id,
            actor.actor,
            expires_at,
            now,
            owner=actor.principal,
        )
        audit.record(
            db, actor=actor.actor, action=action, target=name, new=token_dict(token), at=now
        )
        return token

    return token_dict(_write(ctx, add)) | {"token": secret}


def revoke_token(ctx: WebContext, actor: Account, token_id: int) -> None:
    check(actor, "tokens.write")
    now = _now()

    def apply(db: Any) -> None:
        match = [t for t in tokens.list_tokens(db) if t.id == token_id]
        if not match:
            raise NotFound(f"no token {token_id}")
        tokens.revoke_token(db, token_id, now)
        audit.record(db, actor=actor.actor, action="token.revoke", target=match[0].name, at=now)

    _write(ctx, apply)


def create_support_access(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """A temporary account or token valid until ``expires_at`` (at most 30 days ahead).

    ``kind`` is "account" (result has ``password``) or "token" (result has ``token``).
    """
    check(actor, "accounts.write")
    check(actor, "tokens.write")
    validate.reject_unknown(data, ("kind", "name", "role", "site_id", "expires_at"))
    kind = data.get("kind")
    if kind not in ("account", "token"):
        raise ValidationError("kind", "kind: account or token")
    expires_at = validate.future(
        validate.timestamp(data, "expires_at", required=True), "expires_at"
    )
    assert expires_at is not None
    if expires_at > _now() + 30 * 86400:
        raise ValidationError("expires_at", "expires_at: support access lasts at most 30 days")
    fields = {k: v for k, v in data.items() if k != "kind"}
    fields["expires_at"] = expires_at
    fields.setdefault("role", "admin")
    if kind == "account":
        fields["username"] = fields.pop("name", None)
        return accounts.create_account(ctx, actor, fields, action="support.account")
    name = validate.text(fields, "name", required=True, max_len=64)
    role = validate.role(fields, ("admin", "site_admin", "readonly"))
    site_id = validate.integer(fields, "site_id", low=1, high=2**31)
    if role == "site_admin" and site_id is None:
        raise ValidationError("site_id", "site_id: a site administrator needs a site")
    return _add_token(ctx, actor, name, role, site_id, expires_at, "support.token")
