"""Every read and change the admin pages and the REST API make, in one place.

Owns the web layer's business rules: permission checks (web.auth.can), input validation
(web.validate), one store write per change (all or nothing: each change runs as one job on the
store's writer thread, inside its own savepoint) with its audit entry (pbx.store.audit.record,
who/what/old/new). Functions take the WebContext, the acting Account and plain data (a dict from
a form or a JSON body) and return plain dicts/lists that pages render and the API serialises.
They raise web.errors.ValidationError / Forbidden / NotFound / Conflict.
Accounts, logins and passwords of web accounts live in web.accounts.
Must not import flask or twisted.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import secrets
import time
from dataclasses import asdict
from typing import Any

from pbx import config as config_module
from pbx.calls.contacts import parse_static_contact
from pbx.credentials import SecretBox, generate_sip_password, make_credentials
from pbx.media.codecs import CODECS
from pbx.store import audit, cdr, devices, sites, tokens, users
from pbx.store import credentials as store_credentials
from pbx.store import errors as store_errors
from pbx.store import settings as store_settings
from web import accounts, validate
from web.auth import ROLES, Account, check, in_scope, scope_site
from web.backend import WebContext
from web.errors import Conflict, Forbidden, NotFound, ValidationError

log = logging.getLogger(__name__)

USER_FIELDS = ("extension", "display_name", "site_id", "enabled", "call_waiting", "static_contact")
SITE_FIELDS = (
    "name",
    "timezone",
    "country_code",
    "area_code",
    "number_block_start",
    "number_block_end",
)
DIRECTIONS = ("internal", "inbound", "outbound")
TOKEN_PREFIX = "pbx_"
MAX_IMPORT_ROWS = 5000

# Live telephony settings (the settings table): key -> (default, low, high) for numbers.
LIVE_NUMBERS: dict[str, tuple[int, int, int]] = {
    "calls.no_answer_timeout": (30, 5, 600),
    "calls.max_duration": (14400, 60, 86400),
    "calls.retention_days": (180, 1, 3650),
}
LIVE_CODECS_KEY = "calls.codec_order"
DEFAULT_CODEC_ORDER = ["opus", "G722", "PCMU", "PCMA"]
# Process settings (DATA/pbx.toml): section, key, kind. They take effect at restart.
PROCESS_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("sip", "bind", "str"),
    ("sip", "port", "int"),
    ("sip", "tls_port", "int"),
    ("http", "port", "int"),
    ("rtp", "port_min", "int"),
    ("rtp", "port_max", "int"),
)


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


# -- users -------------------------------------------------------------------------------------


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


def _check_site_exists(db: Any, site_id: int | None) -> None:
    if site_id is not None and sites.get_site(db, site_id) is None:
        raise ValidationError("site_id", f"site_id: no site {site_id}")


def create_user(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """Create an extension with SIP credentials; the result carries ``sip_password`` once."""
    validate.reject_unknown(data, (*USER_FIELDS, "password"))
    ext = validate.extension(data.get("extension"))
    name = validate.text(data, "display_name") or ext
    site_id = _site_field(data, actor, None)
    check(actor, "users.write", site_id)
    enabled = validate.boolean(data, "enabled", True)
    call_waiting = validate.boolean(data, "call_waiting", True)
    contact = _contact(data)
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
    """Change name, site, enabled, call waiting or static contact (only the fields given)."""
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
        new = users.get_user(db, extension)
        assert new is not None
        before, after = user_dict(old), user_dict(new)
        diff_old = {k: v for k, v in before.items() if after[k] != v}
        if diff_old:
            audit.record(
                db,
                actor=actor.actor,
                action="user.update",
                target=extension,
                old=diff_old,
                new={k: after[k] for k in diff_old},
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
        before, after = user_dict(old), user_dict(new)
        changed = {k: v for k, v in before.items() if after[k] != v}
        if changed:
            audit.record(
                db,
                actor=actor.actor,
                action="user.update",
                target=extension,
                old=changed,
                new={k: after[k] for k in changed},
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


def _site_by_ref(all_sites: list[sites.Site], ref: str, row: int) -> int | None:
    if not ref:
        return None
    for site in all_sites:
        if ref == site.name or ref == str(site.id):
            return site.id
    raise ValidationError("file", f"row {row}: no site {ref!r}")


def import_users_csv(ctx: WebContext, actor: Account, text: str) -> list[tuple[str, str]]:
    """Add users from CSV ``extension,password,name[,site]``: all rows or none.

    Returns (extension, password) for rows whose password was generated. A header row starting
    with "extension" and lines starting with '#' are skipped (the format of `pbx user import`).
    """
    check(actor, "users.write")
    if not isinstance(text, str):
        raise ValidationError("file", "file: expected CSV text")
    try:
        rows = [r for r in csv.reader(io.StringIO(text)) if r and not r[0].startswith("#")]
    except csv.Error as exc:
        raise ValidationError("file", f"file: not valid CSV ({exc})") from None
    if rows and rows[0][0].strip().lower() == "extension":
        rows = rows[1:]
    if not rows:
        raise ValidationError("file", "file: no rows to import")
    if len(rows) > MAX_IMPORT_ROWS:
        raise ValidationError("file", f"file: at most {MAX_IMPORT_ROWS} rows per import")
    all_sites = ctx.store.read(sites.list_sites)
    box, realm, now = _box(ctx), ctx.config.auth.realm, _now()
    prepared, generated, seen = [], [], set()
    for number, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row] + ["", "", "", ""]
        try:
            ext = validate.extension(cells[0])
            name = validate.text({"name": cells[2]}, "name") or ext
            password = validate.sip_password(cells[1]) if cells[1] else ""
            site_id = _site_by_ref(all_sites, cells[3], number)
            site_id = _site_field({"site_id": site_id}, actor, None)
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
        prepared.append((number, ext, name, site_id, creds))

    def add_all(db: Any) -> None:
        for number, ext, name, site_id, creds in prepared:
            try:
                users.add_user(db, ext, name, now=now)
            except store_errors.AlreadyExists:
                raise ValidationError(
                    "file", f"row {number}: extension {ext} already exists"
                ) from None
            if site_id is not None:
                users.set_user_site(db, ext, site_id)
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
    """CSV in the import format; the password column stays empty (secrets are never exported)."""
    rows = list_users(ctx, actor, site_id)
    names = {s.id: s.name for s in ctx.store.read(sites.list_sites)}
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["extension", "password", "name", "site", "enabled", "call_waiting"])
    for user in rows:
        writer.writerow(
            [
                user["extension"],
                "",
                user["display_name"],
                names.get(user["site_id"] or 0, ""),
                int(user["enabled"]),
                int(user["call_waiting"]),
            ]
        )
    return out.getvalue()


# -- sites -------------------------------------------------------------------------------------


def site_dict(site: sites.Site) -> dict[str, Any]:
    return asdict(site)


def list_sites(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "sites.read")
    return [site_dict(s) for s in ctx.store.read(sites.list_sites) if in_scope(actor, s.id)]


def get_site(ctx: WebContext, actor: Account, site_id: int) -> dict[str, Any]:
    check(actor, "sites.read")
    site = ctx.store.read(sites.get_site, site_id)
    if site is None or not in_scope(actor, site.id):
        raise NotFound(f"no site {site_id}")
    return site_dict(site)


def _site_values(data: dict[str, Any], partial: bool) -> dict[str, Any]:
    validate.reject_unknown(data, SITE_FIELDS)
    values: dict[str, Any] = {}
    if not partial or "name" in data:
        values["name"] = validate.text(data, "name", required=True, max_len=64)
    if not partial or "timezone" in data:
        values["timezone"] = validate.timezone(data)
    for field, max_len in (
        ("country_code", 3),
        ("area_code", 6),
        ("number_block_start", 15),
        ("number_block_end", 15),
    ):
        if not partial or field in data:
            values[field] = validate.digits(data, field, max_len)
    return values


def _check_block(site: dict[str, Any]) -> None:
    start, end = site.get("number_block_start", ""), site.get("number_block_end", "")
    if bool(start) != bool(end):
        raise ValidationError("number_block_end", "number block: give both start and end")
    if start and (len(start) != len(end) or int(start) > int(end)):
        raise ValidationError(
            "number_block_end", "number block: start and end need the same length, start <= end"
        )


def create_site(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    check(actor, "sites.write")
    values = _site_values(data, partial=False)
    _check_block(values)
    now = _now()

    def add(db: Any) -> sites.Site:
        try:
            site = sites.add_site(db, **values)
        except store_errors.AlreadyExists:
            raise Conflict(f"a site named {values['name']!r} already exists") from None
        audit.record(
            db, actor=actor.actor, action="site.add", target=site.name, new=site_dict(site), at=now
        )
        return site

    return site_dict(_write(ctx, add))


def update_site(
    ctx: WebContext, actor: Account, site_id: int, data: dict[str, Any]
) -> dict[str, Any]:
    check(actor, "sites.write")
    values = _site_values(data, partial=True)
    now = _now()

    def apply(db: Any) -> sites.Site:
        old = sites.get_site(db, site_id)
        if old is None:
            raise NotFound(f"no site {site_id}")
        _check_block(site_dict(old) | values)
        try:
            new = sites.update_site(db, site_id, **values) if values else old
        except store_errors.AlreadyExists:
            raise Conflict(f"a site named {values.get('name')!r} already exists") from None
        before, after = site_dict(old), site_dict(new)
        changed = {k: v for k, v in before.items() if after[k] != v}
        if changed:
            audit.record(
                db,
                actor=actor.actor,
                action="site.update",
                target=new.name,
                old=changed,
                new={k: after[k] for k in changed},
                at=now,
            )
        return new

    return site_dict(_write(ctx, apply))


def delete_site(ctx: WebContext, actor: Account, site_id: int) -> None:
    """Delete a site; refused (Conflict) while users belong to it."""
    check(actor, "sites.write")
    now = _now()

    def remove(db: Any) -> None:
        old = sites.get_site(db, site_id)
        if old is None:
            raise NotFound(f"no site {site_id}")
        sites.delete_site(db, site_id)
        audit.record(
            db, actor=actor.actor, action="site.delete", target=old.name, old=site_dict(old), at=now
        )

    _write(ctx, remove)


# -- devices, registrations, calls ---------------------------------------------------------------


def _site_extensions(ctx: WebContext, actor: Account) -> set[str] | None:
    """Extensions a site admin may see; None means no restriction."""
    if not actor.site_bound:
        return None
    scope = scope_site(actor)
    return {u.extension for u in ctx.store.read(users.list_users, site_id=scope)}


def list_devices(
    ctx: WebContext, actor: Account, site_id: int | None = None
) -> list[dict[str, Any]]:
    check(actor, "devices.read")
    scope = scope_site(actor, site_id)
    return [asdict(d) for d in ctx.store.read(devices.list_devices, site_id=scope)]


def list_registrations(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "registrations.read")
    allowed = _site_extensions(ctx, actor)
    rows = ctx.live.registrations()
    return [r for r in rows if allowed is None or r.get("extension") in allowed]


def list_active_calls(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "calls.read")
    allowed = _site_extensions(ctx, actor)
    rows = ctx.live.active_calls()
    return [
        c
        for c in rows
        if allowed is None or c.get("caller") in allowed or c.get("dialled") in allowed
    ]


def health(ctx: WebContext, actor: Account) -> dict[str, Any]:
    check(actor, "health.read")
    return dict(ctx.live.health())


CALL_FILTERS = ("number", "user", "since", "until", "disposition", "direction", "page", "per_page")


def call_filters(data: dict[str, Any]) -> dict[str, Any]:
    """Validated search filters for call records (shared by the page and the API)."""
    validate.reject_unknown(data, (*CALL_FILTERS, "site_id"))
    filters: dict[str, Any] = {
        "number": validate.text(data, "number", max_len=64) or None,
        "user": validate.text(data, "user", max_len=64) or None,
        "since": validate.timestamp(data, "since"),
        "until": validate.timestamp(data, "until", end_of_day=True),
        "disposition": validate.text(data, "disposition", max_len=32) or None,
        "direction": validate.text(data, "direction", max_len=32) or None,
        "site_id": validate.integer(data, "site_id", low=1, high=2**31),
    }
    if filters["disposition"] and filters["disposition"] not in cdr.DISPOSITIONS:
        raise ValidationError("disposition", f"disposition: one of {', '.join(cdr.DISPOSITIONS)}")
    if filters["direction"] and filters["direction"] not in DIRECTIONS:
        raise ValidationError("direction", f"direction: one of {', '.join(DIRECTIONS)}")
    if filters["since"] and filters["until"] and filters["since"] > filters["until"]:
        raise ValidationError("until", "until: must not be before since")
    return filters


def search_calls(
    ctx: WebContext, actor: Account, data: dict[str, Any]
) -> tuple[list[dict[str, Any]], int, dict[str, Any]]:
    """(records, total, filters) for the given filters and page (1-based, per_page <= 500)."""
    check(actor, "calls.read")
    filters = call_filters(data)
    filters["site_id"] = scope_site(actor, filters["site_id"])
    page = validate.integer(data, "page", low=1, high=10**6, default=1) or 1
    per_page = validate.integer(data, "per_page", low=1, high=500, default=50) or 50
    records, total = ctx.store.read(
        cdr.search_records, **filters, limit=per_page, offset=(page - 1) * per_page
    )
    return [asdict(r) for r in records], total, filters | {"page": page, "per_page": per_page}


def export_calls_csv(ctx: WebContext, actor: Account, data: dict[str, Any]) -> str:
    """Every record matching the filters (at most 100,000 rows) as CSV."""
    check(actor, "calls.read")
    filters = call_filters({k: v for k, v in data.items() if k not in ("page", "per_page")})
    filters["site_id"] = scope_site(actor, filters["site_id"])
    records, _ = ctx.store.read(cdr.search_records, **filters, limit=100_000, offset=0)
    return cdr.as_csv(records)


def call_counts(
    ctx: WebContext, actor: Account, since: float, until: float, site_id: int | None = None
) -> dict[str, list[tuple[str, int]]]:
    """Calls per day and per user in [since, until] for the chart."""
    check(actor, "calls.read")
    scope = scope_site(actor, site_id)
    return {
        "per_day": list(ctx.store.read(cdr.counts_per_day, since, until, site_id=scope)),
        "per_user": list(ctx.store.read(cdr.counts_per_user, since, until, site_id=scope)),
    }


# -- settings ------------------------------------------------------------------------------------


def live_settings(ctx: WebContext, actor: Account) -> dict[str, Any]:
    check(actor, "settings.read")
    stored = ctx.store.read(store_settings.all_settings)
    values: dict[str, Any] = {
        key: stored.get(key, default) for key, (default, _, _) in LIVE_NUMBERS.items()
    }
    values[LIVE_CODECS_KEY] = stored.get(LIVE_CODECS_KEY, DEFAULT_CODEC_ORDER)
    return values


def process_settings(ctx: WebContext, actor: Account) -> dict[str, Any]:
    """Process settings as the site file sets them, else the running configuration."""
    check(actor, "settings.read")
    override = config_module.read_override(ctx.data_dir)
    result: dict[str, Any] = {}
    for section, key, _ in PROCESS_SETTINGS:
        running = getattr(getattr(ctx.config, section), key)
        result[f"{section}.{key}"] = override.get(section, {}).get(key, running)
    return result


def _codec_order(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in value.replace(",", " ").split() if v.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationError(LIVE_CODECS_KEY, "codec order: a list of codec names")
    by_folded = {name.casefold(): name for name in CODECS}
    order: list[str] = []
    for name in value:
        canonical = by_folded.get(name.casefold())
        if canonical is None:
            raise ValidationError(
                LIVE_CODECS_KEY, f"codec order: unknown codec {name[:20]!r} ({', '.join(CODECS)})"
            )
        if canonical in order:
            raise ValidationError(LIVE_CODECS_KEY, f"codec order: {canonical} appears twice")
        order.append(canonical)
    if not order:
        raise ValidationError(LIVE_CODECS_KEY, "codec order: name at least one codec")
    return order


def update_settings(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """Change live telephony settings (only the keys given); the server re-reads them."""
    check(actor, "settings.write")
    validate.reject_unknown(data, (*LIVE_NUMBERS, LIVE_CODECS_KEY))
    changes: dict[str, Any] = {}
    for key, (_default, low, high) in LIVE_NUMBERS.items():
        if key in data:
            changes[key] = validate.integer(data, key, low=low, high=high, required=True)
    if LIVE_CODECS_KEY in data:
        changes[LIVE_CODECS_KEY] = _codec_order(data[LIVE_CODECS_KEY])
    old = live_settings(ctx, actor)
    now = _now()

    def apply(db: Any) -> None:
        for key, value in changes.items():
            store_settings.set_setting(db, key, value)
        changed = {k: old[k] for k, v in changes.items() if old[k] != v}
        if changed:
            audit.record(
                db,
                actor=actor.actor,
                action="settings.update",
                target="live",
                old=changed,
                new={k: changes[k] for k in changed},
                at=now,
            )

    _write(ctx, apply)
    if changes:
        ctx.live.settings_changed()
    return live_settings(ctx, actor)


def update_process_settings(
    ctx: WebContext, actor: Account, data: dict[str, Any]
) -> dict[str, Any]:
    """Write process settings to DATA/pbx.toml (validated like start-up); effective at restart."""
    check(actor, "settings.write")
    kinds = {f"{s}.{k}": (s, k, kind) for s, k, kind in PROCESS_SETTINGS}
    validate.reject_unknown(data, kinds)
    changes: list[tuple[str, str, Any]] = []
    for dotted, (section, key, kind) in kinds.items():
        if dotted not in data:
            continue
        if kind == "int":
            value: Any = validate.integer(data, dotted, low=0, high=65535, required=True)
        else:
            value = validate.text(data, dotted, max_len=64)
        changes.append((section, key, value))
    old = process_settings(ctx, actor)
    candidate = dict(old) | {f"{s}.{k}": v for s, k, v in changes}
    if candidate["rtp.port_min"] >= candidate["rtp.port_max"]:
        raise ValidationError("rtp.port_min", "rtp.port_min: must be lower than rtp.port_max")
    changes = [c for c in changes if old[f"{c[0]}.{c[1]}"] != c[2]]
    # Raise the upper bound first when the range moves up, the lower one when it moves down,
    # so that every intermediate file is valid; restore the file if any step fails.
    changes.sort(
        key=lambda c: (
            c[1] == ("port_min" if candidate["rtp.port_min"] >= old["rtp.port_max"] else "port_max")
        )
    )
    path = config_module.override_path(ctx.data_dir)
    before = path.read_bytes() if path.is_file() else None
    try:
        for section, key, value in changes:
            config_module.write_override(ctx.data_dir, section, key, value)
    except config_module.ConfigError as exc:
        if before is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(before)
        field = next((f"{s}.{k}" for s, k, _ in changes if f"{s}.{k}" in str(exc)), "settings")
        raise ValidationError(field, str(exc)) from None
    new = process_settings(ctx, actor)
    changed = {k: old[k] for k in new if old[k] != new[k]}
    if changed:
        _write(
            ctx,
            audit.record,
            actor=actor.actor,
            action="settings.process",
            target="pbx.toml",
            old=changed,
            new={k: new[k] for k in changed},
            at=_now(),
        )
    return new


# -- audit -----------------------------------------------------------------------------------------


AUDIT_FILTERS = ("actor", "action", "target", "since", "until", "page", "per_page")


def list_audit(ctx: WebContext, actor: Account, data: dict[str, Any]) -> list[dict[str, Any]]:
    """Newest first, filtered by actor, action, target and date (page of per_page rows)."""
    check(actor, "audit.read")
    validate.reject_unknown(data, AUDIT_FILTERS)
    page = validate.integer(data, "page", low=1, high=10**6, default=1) or 1
    per_page = validate.integer(data, "per_page", low=1, high=500, default=100) or 100
    entries = ctx.store.read(
        audit.list_entries,
        limit=per_page,
        offset=(page - 1) * per_page,
        actor=validate.text(data, "actor", max_len=100) or None,
        action=validate.text(data, "action", max_len=100) or None,
        target=validate.text(data, "target", max_len=100) or None,
        since=validate.timestamp(data, "since"),
        until=validate.timestamp(data, "until", end_of_day=True),
    )
    return [asdict(e) for e in entries]


# -- API tokens and support access ------------------------------------------------------------


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
            db, name, hash_token(secret), role, site_id, actor.actor, expires_at, now
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
