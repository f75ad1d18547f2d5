"""Sites (locations with a time zone and an optional number block) for pages and the API.

Owns listing, reading, creating, changing and deleting sites, with their validation and audit
entries (a site's hold music lives in web.services.music). Must not import flask or twisted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pbx.store import audit, sites
from pbx.store import errors as store_errors
from web import validate
from web.auth import Account, check, in_scope
from web.backend import WebContext
from web.errors import Conflict, NotFound, ValidationError
from web.services._common import _now, _write
from web.services.music import remove_music_file

SITE_FIELDS = (
    "name",
    "timezone",
    "country_code",
    "area_code",
    "number_block_start",
    "number_block_end",
)


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
        audit.record_changes(
            db,
            actor=actor.actor,
            action="site.update",
            target=new.name,
            before=site_dict(old),
            after=site_dict(new),
            at=now,
        )
        return new

    return site_dict(_write(ctx, apply))


def delete_site(ctx: WebContext, actor: Account, site_id: int) -> None:
    """Delete a site; refused (Conflict) while users belong to it. Its hold music (row and
    file) goes with it."""
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
    remove_music_file(ctx.data_dir, site_id)
