"""Users (extensions) for the admin pages and the REST API.

Owns listing, reading, creating, changing and deleting users, their SIP credentials (password
reset), the provisioning summary, and CSV import/export in the `pbx user import` format.
Every change is one store write with its audit entry. Must not import flask or twisted.
"""

from __future__ import annotations

import csv
import io
from dataclasses import asdict
from typing import Any

from pbx import userscsv
from pbx.calls.contacts import parse_static_contact
from pbx.credentials import generate_sip_password, make_credentials
from pbx.csvsafe import safe_row
from pbx.store import audit, sites, users
from pbx.store import credentials as store_credentials
from pbx.store import errors as store_errors
from web import validate
from web.auth import Account, check, in_scope, scope_site
from web.backend import WebContext
from web.errors import Conflict, Forbidden, NotFound, ValidationError
from web.services._common import _box, _check_site_exists, _now, _write
from web.services.featurecodes import check_extension_is_free, feature_codes

USER_FIELDS = (
    "extension",
    "display_name",
    "site_id",
    "enabled",
    "call_waiting",
    "static_contact",
    "pickup_group",
)
MAX_IMPORT_ROWS = 5000


def user_dict(user: users.User) -> dict[str, Any]:
    return asdict(user)


def list_users(ctx: WebContext, actor: Account, site_id: int | None = None) -> list[dict[str, Any]]:
    check(actor, "users.read")
    scope = scope_site(actor, site_id)
    return [user_dict(u) for u in ctx.store.read(users.list_users, site_id=scope)]


def get_user(ctx: WebContext, actor: Account, extension: str) -> dict[str, Any]:
    """One user; a user account may read its own extension."""
    user = ctx.store.read(users.get_user, extension)
    own = actor.role == "user" and actor.extension == extension
    if user is None or not (own or in_scope(actor, user.site_id)):
        raise NotFound(f"no extension {extension}")
    if not own:
        check(actor, "users.read", user.site_id)
    return user_dict(user)


def _user_or_404(db: Any, actor: Account, extension: str) -> users.User:
    user = users.get_user(db, extension)
    if user is None or not in_scope(actor, user.site_id):
        raise NotFound(f"no extension {extension}")
    return user


def _site_field(data: dict[str, Any], actor: Account, default: int | None) -> int | None:
    if "site_id" not in data:
        site_id = default
    else:
        site_id = validate.integer(data, "site_id", low=1, high=2**31)
    if actor.site_bound:
        if site_id is None:
            site_id = actor.site_id
        if site_id != actor.site_id:
            raise Forbidden("you can only manage users of your own site")
    return site_id


def _contact(data: dict[str, Any]) -> str | None:
    raw = validate.text(data, "static_contact", max_len=200)
    if not raw:
        return None
    try:
        return str(parse_static_contact(raw))
    except ValueError as exc:
        raise ValidationError("static_contact", f"static_contact: {exc}") from None


def create_user(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """Create an extension with SIP credentials; the result carries ``sip_password`` once."""
    validate.reject_unknown(data, (*USER_FIELDS, "password"))
    ext = validate.extension(data.get("extension"))
    check_extension_is_free(feature_codes(ctx), ext)
    name = validate.text(data, "display_name") or ext
    site_id = _site_field(data, actor, None)
    check(actor, "users.write", site_id)
    enabled = validate.boolean(data, "enabled", True)
    call_waiting = validate.boolean(data, "call_waiting", True)
    contact = _contact(data)
    group = validate.pickup_group(data)
    password = data.get("password") or ""
    if password:
        check(actor, "users.secrets", site_id)
        password = validate.sip_password(password)
    else:
        password = generate_sip_password()
    now = _now()
    creds = make_credentials(_box(ctx), ext, ctx.config.auth.realm, password, now)

    def add(db: Any) -> users.User:
        _check_site_exists(db, site_id)
        try:
            users.add_user(db, ext, name, now=now, static_contact=contact)
        except store_errors.AlreadyExists:
            raise Conflict(f"extension {ext} already exists") from None
        if site_id is not None:
            users.set_user_site(db, ext, site_id)
        if not enabled:
            users.set_user_enabled(db, ext, False)
        if not call_waiting:
            users.set_call_waiting(db, ext, False)
        if group is not None:
            users.set_pickup_group(db, ext, group)
        store_credentials.set_credentials(db, creds)
        user = users.get_user(db, ext)
        assert user is not None
        audit.record(
            db, actor=actor.actor, action="user.add", target=ext, new=user_dict(user), at=now
        )
        return user

    user = _write(ctx, add)
    return user_dict(user) | {"sip_password": password}


def update_user(
    ctx: WebContext, actor: Account, extension: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Change name, site, enabled, call waiting, static contact or pickup group (only the
    fields given)."""
    validate.reject_unknown(data, USER_FIELDS)
    if "extension" in data and data["extension"] != extension:
        raise ValidationError("extension", "extension: cannot be changed (delete and re-create)")
    current = ctx.store.read(users.get_user, extension)
    if current is None or not in_scope(actor, current.site_id):
        raise NotFound(f"no extension {extension}")
    check(actor, "users.write", current.site_id)
    changes: dict[str, Any] = {}
    if "display_name" in data:
        changes["display_name"] = validate.text(data, "display_name", required=True)
    if "site_id" in data:
        changes["site_id"] = _site_field(data, actor, current.site_id)
    if "enabled" in data:
        changes["enabled"] = validate.boolean(data, "enabled")
    if "call_waiting" in data:
        changes["call_waiting"] = validate.boolean(data, "call_waiting")
    if "static_contact" in data:
        changes["static_contact"] = _contact(data)
    if "pickup_group" in data:
        changes["pickup_group"] = validate.pickup_group(data)
    now = _now()

    def apply(db: Any) -> users.User:
        old = _user_or_404(db, actor, extension)
        if "site_id" in changes:
            _check_site_exists(db, changes["site_id"])
            users.set_user_site(db, extension, changes["site_id"])
        if "display_name" in changes:
            users.set_display_name(db, extension, changes["display_name"])
        if "enabled" in changes:
            users.set_user_enabled(db, extension, changes["enabled"])
        if "call_waiting" in changes:
            users.set_call_waiting(db, extension, changes["call_waiting"])
        if "static_contact" in changes:
            users.set_static_contact(db, extension, changes["static_contact"])
        if "pickup_group" in changes:
            users.set_pickup_group(db, extension, changes["pickup_group"])
        new = users.get_user(db, extension)
        assert new is not None
        audit.record_changes(
            db,
            actor=actor.actor,
            action="user.update",
            target=extension,
            before=user_dict(old),
            after=user_dict(new),
            at=now,
        )
        return new

    return user_dict(_write(ctx, apply))


def update_own_user(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """A 'user' account changes its own extension's name and call waiting."""
    check(actor, "self.write")
    validate.reject_unknown(data, ("display_name", "call_waiting"))
    if not actor.extension:
        raise NotFound("your account has no extension")
    changes: dict[str, Any] = {}
    if "display_name" in data:
        changes["display_name"] = validate.text(data, "display_name", required=True)
    if "call_waiting" in data:
        changes["call_waiting"] = validate.boolean(data, "call_waiting")
    extension, now = actor.extension, _now()

    def apply(db: Any) -> users.User:
        old = users.get_user(db, extension)
        if old is None:
            raise NotFound(f"no extension {extension}")
        if "display_name" in changes:
            users.set_display_name(db, extension, changes["display_name"])
        if "call_waiting" in changes:
            users.set_call_waiting(db, extension, changes["call_waiting"])
        new = users.get_user(db, extension)
        assert new is not None
        audit.record_changes(
            db,
            actor=actor.actor,
            action="user.update",
            target=extension,
            before=user_dict(old),
            after=user_dict(new),
            at=now,
        )
        return new

    return user_dict(_write(ctx, apply))


def delete_user(ctx: WebContext, actor: Account, extension: str) -> None:
    current = ctx.store.read(users.get_user, extension)
    if current is None or not in_scope(actor, current.site_id):
        raise NotFound(f"no extension {extension}")
    check(actor, "users.write", current.site_id)
    now = _now()

    def remove(db: Any) -> None:
        old = _user_or_404(db, actor, extension)
        users.delete_user(db, extension)
        audit.record(
            db,
            actor=actor.actor,
            action="user.delete",
            target=extension,
            old=user_dict(old),
            at=now,
        )

    _write(ctx, remove)


def reset_sip_password(
    ctx: WebContext, actor: Account, extension: str, password: str | None = None
) -> str:
    """Set (or generate) a new SIP password; returns it. The audit entry never holds it."""
    current = ctx.store.read(users.get_user, extension)
    if current is None or not in_scope(actor, current.site_id):
        raise NotFound(f"no extension {extension}")
    check(actor, "users.secrets", current.site_id)
    check(actor, "users.write", current.site_id)
    new_password = validate.sip_password(password) if password else generate_sip_password()
    now = _now()
    creds = make_credentials(_box(ctx), extension, ctx.config.auth.realm, new_password, now)

    def apply(db: Any) -> None:
        _user_or_404(db, actor, extension)
        store_credentials.set_credentials(db, creds)
        audit.record(
            db,
            actor=actor.actor,
            action="user.password",
            target=extension,
            new={"generated": not password},
            at=now,
        )

    _write(ctx, apply)
    return new_password


def provisioning_summary(
    ctx: WebContext, actor: Account, extension: str, *, with_password: bool
) -> dict[str, Any]:
    """Server, ports, transports, user names and (audited, if asked) the SIP password."""
    user = ctx.store.read(users.get_user, extension)
    own = actor.role == "user" and actor.extension == extension
    if user is None or not (own or in_scope(actor, user.site_id)):
        raise NotFound(f"no extension {extension}")
    if not own:
        check(actor, "users.read", user.site_id)
    creds = ctx.store.read(store_credentials.get_credentials, extension)
    cfg = ctx.config
    summary: dict[str, Any] = {
        "extension": extension,
        "display_name": user.display_name,
        "server": cfg.sip.bind or "",
        "port": cfg.sip.port,
        "tls_port": cfg.tls_port,
        "transports": list(cfg.sip.transports),
        "username": extension,
        "auth_username": extension,
        "realm": creds.realm if creds else cfg.auth.realm,
        "password": None,
    }
    if with_password:
        if not own:
            check(actor, "users.secrets", user.site_id)
        if creds is None:
            raise NotFound(f"extension {extension} has no SIP credentials")
        summary["password"] = _box(ctx).decrypt(creds.password_enc)
        _write(
            ctx,
            audit.record,
            actor=actor.actor,
            action="user.show_password",
            target=extension,
            at=_now(),
        )
    return summary


def show_provisioning(ctx: WebContext, actor: Account, extension: str) -> dict[str, Any]:
    """The provisioning summary including the SIP password (audited)."""
    return provisioning_summary(ctx, actor, extension, with_password=True)


def import_users_csv(ctx: WebContext, actor: Account, text: str) -> list[tuple[str, str]]:
    """Add users from CSV ``extension,password,name[,site]``: all rows or none.

    Returns (extension, password) for rows whose password was generated. A header row starting
    with "extension" and lines starting with '#' are skipped (the format of `pbx user import`);
    a ``pickup_group`` column (optional: found by its header name, or the 7th column as the
    export writes it) puts the user in that group. Reads what :func:`export_users_csv` writes
    (pbx.csvsafe.unquote_cell on every cell but the password).
    """
    check(actor, "users.write")
    if not isinstance(text, str):
        raise ValidationError("file", "file: expected CSV text")
    try:
        rows = userscsv.read_rows(io.StringIO(text))
    except csv.Error as exc:
        raise ValidationError("file", f"file: not valid CSV ({exc})") from None
    rows, columns = userscsv.import_columns(rows)
    if not rows:
        raise ValidationError("file", "file: no rows to import")
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError("file", f"file: at most {MAX_IMPORT_ROWS} rows per import")
    all_sites = ctx.store.read(sites.list_sites)
    codes = feature_codes(ctx)
    box, realm, now = _box(ctx), ctx.config.auth.realm, _now()
    prepared, generated, seen = [], [], set()
    for number, row in enumerate(rows, start=1):
        cells = userscsv.cells(row, columns)
        try:
            ext = validate.extension(cells["extension"])
            check_extension_is_free(codes, ext)
            name = validate.text({"name": cells["name"]}, "name") or ext
            password = validate.sip_password(cells["password"]) if cells["password"] else ""
            try:
                site_id = userscsv.site_id(cells["site"], all_sites)
            except ValueError as exc:  # re-raised below with the row number
                raise ValidationError("site", str(exc)) from None
            site_id = _site_field({"site_id": site_id}, actor, None)
            group = validate.pickup_group(cells)
        except ValidationError as exc:
            raise ValidationError("file", f"row {number}: {exc.message}") from None
        if password:
            check(actor, "users.secrets", site_id)
        if ext in seen:
            raise ValidationError("file", f"row {number}: extension {ext} appears twice")
        seen.add(ext)
        if not password:
            password = generate_sip_password()
            generated.append((ext, password))
        creds = make_credentials(box, ext, realm, password, now)
        prepared.append((number, ext, name, site_id, group, creds))

    def add_all(db: Any) -> None:
        for number, ext, name, site_id, group, creds in prepared:
            try:
                users.add_user(db, ext, name, now=now)
            except store_errors.AlreadyExists:
                raise ValidationError(
                    "file", f"row {number}: extension {ext} already exists"
                ) from None
            if site_id is not None:
                users.set_user_site(db, ext, site_id)
            if group is not None:
                users.set_pickup_group(db, ext, group)
            store_credentials.set_credentials(db, creds)
        audit.record(
            db,
            actor=actor.actor,
            action="user.import",
            target=f"{len(prepared)} users",
            new=[p[1] for p in prepared],
            at=now,
        )

    _write(ctx, add_all)
    return generated


def export_users_csv(ctx: WebContext, actor: Account, site_id: int | None = None) -> str:
    """CSV in the import format; the password column stays empty (secrets are never exported).
    Cells are neutralised against spreadsheet formulas (pbx.csvsafe; the import undoes it)."""
    rows = list_users(ctx, actor, site_id)
    names = {s.id: s.name for s in ctx.store.read(sites.list_sites)}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(userscsv.EXPORT_HEADER)
    for user in rows:
        writer.writerow(
            safe_row(
                [
                    user["extension"],
                    "",
                    user["display_name"],
                    names.get(user["site_id"] or 0, ""),
                    int(user["enabled"]),
                    int(user["call_waiting"]),
                    user["pickup_group"] or "",
                ]
            )
        )
    return out.getvalue()
