"""Web accounts: logins with lock-out, password changes, and managing accounts and their roles.

Owns the account rules: who may log in (not disabled, not expired, not locked), the lock-out
after repeated failures (pbx.store.admins.login_failed), one generic error message for every
failed login, argon2id hashes via pbx.credentials, and creating/changing/deleting accounts
(audited). Must not import flask or twisted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import asdict
from typing import Any

from pbx.credentials import generate_admin_password, hash_admin_password, verify_admin_password
from pbx.store import admins, audit, sites
from pbx.store import errors as store_errors
from web import validate
from web.auth import ROLES, Account, check
from web.backend import WebContext
from web.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError

log = logging.getLogger(__name__)

MAX_FAILURES = 5
LOCK_SECONDS = 15 * 60
LOGIN_FAILED = (
    "Login failed: wrong user name or password, or the account is locked or expired. "
    "After 5 failures an account is locked for 15 minutes; "
    "an administrator can reset it with 'pbx admin reset-password'."
)
ACCOUNT_FIELDS = ("username", "role", "site_id", "extension", "expires_at", "disabled", "password")
# Compared against when the user name is unknown, so both cases take the same time.
_DUMMY_HASH = hash_admin_password("not a real password, only used for timing")


def _write(ctx: WebContext, fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return ctx.store.write(fn, *args, **kwargs)
    except store_errors.AlreadyExists as exc:
        raise Conflict(str(exc)) from None
    except store_errors.NotFound as exc:
        raise NotFound(str(exc)) from None


def fingerprint(admin: admins.Admin) -> str:
    """Changes whenever the password changes: sessions made before a change stop working."""
    return hashlib.sha256(admin.password_hash.encode()).hexdigest()[:16]


def to_account(admin: admins.Admin) -> Account:
    return Account(
        username=admin.username,
        role=admin.role,
        site_id=admin.site_id,
        extension=admin.extension,
        must_change_password=admin.must_change_password,
        expires_at=admin.expires_at,
        via="web",
    )


def usable(admin: admins.Admin | None, now: float) -> bool:
    """Not disabled and not expired (lock-out is checked only at login)."""
    return (
        admin is not None
        and not admin.disabled
        and (admin.expires_at is None or admin.expires_at > now)
    )


def load_account(ctx: WebContext, username: str, print_: str | None) -> Account | None:
    """The account of a session, or None if it is gone, disabled, expired or re-passworded."""
    admin = ctx.store.read(admins.get_admin, username)
    if admin is None or not usable(admin, time.time()):
        return None
    if print_ is not None and print_ != fingerprint(admin):
        return None
    return to_account(admin)


def authenticate(
    ctx: WebContext, username: str, password: str, *, address: str = ""
) -> tuple[Account, str]:
    """(account, session fingerprint) or Unauthorized with one generic message for all cases."""
    now = time.time()
    if not isinstance(username, str) or not isinstance(password, str) or len(password) > 1024:
        raise Unauthorized(LOGIN_FAILED)
    admin = ctx.store.read(admins.get_admin, username[:64])
    if admin is None:
        verify_admin_password(_DUMMY_HASH, password)
        raise Unauthorized(LOGIN_FAILED)
    if admin.locked_until is not None and admin.locked_until > now:
        raise Unauthorized(LOGIN_FAILED)
    if not verify_admin_password(admin.password_hash, password):
        after = ctx.store.write(admins.login_failed, username, now, MAX_FAILURES, LOCK_SECONDS)
        if after.locked_until is not None and after.locked_until > now:
            ctx.store.write(
                audit.record,
                actor=f"web:{username}",
                action="account.locked",
                target=username,
                new={"address": address, "failures": after.failed_logins},
                at=now,
            )
        raise Unauthorized(LOGIN_FAILED)
    if not usable(admin, now):
        raise Unauthorized(LOGIN_FAILED)

    def succeeded(db: Any) -> None:
        admins.login_succeeded(db, username)
        audit.record(
            db,
            actor=f"web:{username}",
            action="account.login",
            target=username,
            new={"address": address, "support": admin.expires_at is not None},
            at=now,
        )

    ctx.store.write(succeeded)
    return to_account(admin), fingerprint(admin)


def change_password(ctx: WebContext, actor: Account, current: str, new: str, confirm: str) -> str:
    """Change the actor's own password; returns the new session fingerprint."""
    admin = ctx.store.read(admins.get_admin, actor.username)
    if admin is None:
        raise Unauthorized("please log in")
    if not isinstance(current, str) or not verify_admin_password(admin.password_hash, current):
        raise ValidationError("current_password", "current password: not correct")
    new = validate.admin_password(new)
    if new != confirm:
        raise ValidationError("confirm_password", "the two new passwords differ")
    if new == current:
        raise ValidationError("new_password", "choose a password different from the current one")
    password_hash = hash_admin_password(new)
    now = time.time()

    def apply(db: Any) -> None:
        admins.set_admin_password(db, actor.username, password_hash, False)
        audit.record(
            db, actor=actor.actor, action="account.password", target=actor.username, at=now
        )

    _write(ctx, apply)
    updated = ctx.store.read(admins.get_admin, actor.username)
    assert updated is not None
    return fingerprint(updated)


def account_dict(admin: admins.Admin) -> dict[str, Any]:
    data = asdict(admin)
    data.pop("password_hash", None)
    return data


def list_accounts(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "accounts.read")
    return [account_dict(a) for a in ctx.store.read(admins.list_admins)]


def _scope_fields(db: Any, role: str, site_id: int | None, extension: str | None) -> None:
    if role == "site_admin":
        if site_id is None:
            raise ValidationError("site_id", "site_id: a site administrator needs a site")
        if sites.get_site(db, site_id) is None:
            raise ValidationError("site_id", f"site_id: no site {site_id}")
    if role == "user" and not extension:
        raise ValidationError("extension", "extension: a user account needs its extension")


def create_account(
    ctx: WebContext, actor: Account, data: dict[str, Any], *, action: str = "account.add"
) -> dict[str, Any]:
    """A new web account; the result's ``password`` (generated unless given) is shown once.

    Generated passwords must be changed at first login, except for support access accounts
    (``expires_at`` set), which expire by themselves.
    """
    check(actor, "accounts.write")
    validate.reject_unknown(data, ACCOUNT_FIELDS)
    username = validate.username(data.get("username"))
    role = validate.role(data, ROLES)
    site_id = validate.integer(data, "site_id", low=1, high=2**31)
    ext_raw = data.get("extension")
    extension = validate.extension(ext_raw) if ext_raw else None
    expires_at = validate.future(validate.timestamp(data, "expires_at"), "expires_at")
    given = data.get("password") or ""
    password = validate.admin_password(given, "password") if given else generate_admin_password()
    must_change = not given and expires_at is None
    password_hash = hash_admin_password(password)
    now = time.time()

    def add(db: Any) -> admins.Admin:
        _scope_fields(db, role, site_id, extension)
        try:
            admin = admins.create_admin(
                db,
                username,
                password_hash,
                must_change,
                role=role,
                site_id=site_id,
                extension=extension,
                expires_at=expires_at,
                now=now,
            )
        except store_errors.AlreadyExists:
            raise Conflict(f"an account named {username} already exists") from None
        audit.record(
            db, actor=actor.actor, action=action, target=username, new=account_dict(admin), at=now
        )
        return admin

    return account_dict(_write(ctx, add)) | {"password": password}


def update_account(
    ctx: WebContext, actor: Account, username: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Change role, site, extension, expiry or disabled; never one's own role or state."""
    check(actor, "accounts.write")
    validate.reject_unknown(data, ("role", "site_id", "extension", "expires_at", "disabled"))
    if username == actor.username:
        raise Forbidden("you cannot change your own role or state")
    changes: dict[str, Any] = {}
    if "role" in data:
        changes["role"] = validate.role(data, ROLES)
    if "site_id" in data:
        changes["site_id"] = validate.integer(data, "site_id", low=1, high=2**31)
    if "extension" in data:
        changes["extension"] = validate.extension(data["extension"]) if data["extension"] else None
    if "expires_at" in data:
        changes["expires_at"] = validate.timestamp(data, "expires_at")
    if "disabled" in data:
        changes["disabled"] = validate.boolean(data, "disabled")
    now = time.time()

    def apply(db: Any) -> admins.Admin:
        old = admins.get_admin(db, username)
        if old is None:
            raise NotFound(f"no account {username}")
        merged = asdict(old) | changes
        _scope_fields(db, merged["role"], merged["site_id"], merged["extension"])
        admins.update_admin(db, username, **changes)
        new = admins.get_admin(db, username)
        assert new is not None
        audit.record_changes(
            db,
            actor=actor.actor,
            action="account.update",
            target=username,
            before=account_dict(old),
            after=account_dict(new),
            at=now,
        )
        return new

    return account_dict(_write(ctx, apply))


def delete_account(ctx: WebContext, actor: Account, username: str) -> None:
    check(actor, "accounts.write")
    if username == actor.username:
        raise Forbidden("you cannot delete your own account")
    now = time.time()

    def remove(db: Any) -> None:
        old = admins.get_admin(db, username)
        if old is None:
            raise NotFound(f"no account {username}")
        admins.delete_admin(db, username)
        audit.record(
            db,
            actor=actor.actor,
            action="account.delete",
            target=username,
            old=account_dict(old),
            at=now,
        )

    _write(ctx, remove)


def reset_account_password(ctx: WebContext, actor: Account, username: str) -> str:
    """A new generated password (to be changed at next login); also lifts a lock-out."""
    check(actor, "accounts.write")
    password = generate_admin_password()
    password_hash = hash_admin_password(password)
    now = time.time()

    def apply(db: Any) -> None:
        if admins.get_admin(db, username) is None:
            raise NotFound(f"no account {username}")
        admins.set_admin_password(db, username, password_hash, True)
        admins.login_succeeded(db, username)
        audit.record(db, actor=actor.actor, action="account.reset", target=username, at=now)

    _write(ctx, apply)
    return password
