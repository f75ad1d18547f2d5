"""Trunks, DIDs, outbound routes and provider presets as the web and the API see them
(read-only for now; the command line manages them: ``pbx trunk|did|route``).

Trunks serve every site, so only accounts that see the whole system get them: a site
administrator gets empty lists. Passwords are never returned. A trunk's row carries its live
state (registration and reachability) when the running server reports one.
Must not import flask or twisted.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pbx import trunkpresets
from pbx.config import ConfigError
from pbx.store import dids, routes, trunks
from web.auth import Account, check
from web.backend import WebContext


def _system_view(actor: Account) -> bool:
    check(actor, "health.read")
    return not actor.site_bound


def list_trunk_configs(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    if not _system_view(actor):
        return []
    live = {row.get("name"): row for row in ctx.live.trunks()}
    return [t.public() | {"status": live.get(t.name)} for t in ctx.store.read(trunks.list_trunks)]


def list_dids(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    if not _system_view(actor):
        return []
    return [asdict(d) for d in ctx.store.read(dids.list_dids)]


def list_routes(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    if not _system_view(actor):
        return []
    return [asdict(r) | {"trunks": list(r.trunks)} for r in ctx.store.read(routes.list_routes)]


def list_presets(ctx: WebContext, actor: Account) -> list[dict[str, Any]]:
    check(actor, "health.read")
    try:
        presets = trunkpresets.load_presets()
    except ConfigError as exc:
        return [{"name": "", "title": f"presets not loaded: {exc}"}]
    return [
        asdict(p) | {"identity_headers": list(p.identity_headers), "allow_from": list(p.allow_from)}
        for p in presets.values()
    ]
