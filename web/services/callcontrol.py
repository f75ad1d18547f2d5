"""Call control for the REST API: click-to-call, hanging up and blind-transferring active
calls, through the running server's call commands (web.backend.Live).

Owns the permission rules of call commands: administrators any call; site administrators
calls with a party (caller, dialled number or a leg) that is one of their site's extensions,
and click-to-call from their site's extensions; a user account only its own extension's
calls and click-to-call from it; read-only accounts none. Calls are named by the ``id`` of
Live.active_calls() rows (rows without one by their ``call_id``). Validation errors are
``ValidationError`` (the routes answer them 400 with the field); refusals of the server are
web.backend.CallCommandError. Each command that went through is audited. Must not import flask
or twisted.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from pbx.store import audit, users
from web import validate
from web.auth import Account, check
from web.backend import CallCommandError, WebContext
from web.errors import Forbidden, ValidationError
from web.services._common import _now, _write

log = logging.getLogger(__name__)

NUMBER_MAX = 32
_NUMBER = re.compile(rf"[0-9A-Za-z*#+_.-]{{1,{NUMBER_MAX}}}")
ORIGINATE_FIELDS = ("from", "to")
TRANSFER_FIELDS = ("to", "leg")


def number(data: dict[str, Any], field: str) -> str:
    """A number to call: an extension, a feature code or an outside number (digits, letters,
    ``* # + - _ .``, at most 32)."""
    value = validate.text(data, field, required=True, max_len=NUMBER_MAX)
    if not _NUMBER.fullmatch(value):
        raise ValidationError(
            field, f"{field}: use 1 to {NUMBER_MAX} digits, letters or * # + - _ ."
        )
    return value


def _check_role(actor: Account) -> None:
    """Forbidden unless the role controls calls at all (a user: its own extension's)."""
    check(actor, "self.write" if actor.role == "user" else "calls.control")


def _may_control(actor: Account, ctx: WebContext, extensions: set[str]) -> bool:
    """Whether ``actor`` may control a call with these party extensions."""
    if actor.role == "user":
        return actor.extension is not None and actor.extension in extensions
    if not actor.site_bound:
        return True
    site = ctx.store.read(users.list_users, site_id=actor.site_id if actor.site_id else -1)
    return bool(extensions & {u.extension for u in site})


def _call_id(row: dict[str, Any]) -> str:
    return str(row.get("id") or row.get("call_id") or "")


def _parties(row: dict[str, Any]) -> set[str]:
    found = {str(row.get(key)) for key in ("caller", "dialled", "callee") if row.get(key)}
    found |= {str(leg["party"]) for leg in row.get("legs", []) if leg.get("party")}
    return found


def _find_call(ctx: WebContext, actor: Account, call_id: str) -> dict[str, Any]:
    """The active call the actor may control; 404 (not_found) for one it may not see."""
    for row in ctx.live.active_calls():
        if call_id in (row.get("id"), row.get("call_id")):
            if _may_control(actor, ctx, _parties(row)):
                return row
            break
    raise CallCommandError(404, "not_found", f"no active call {call_id}")


def _audit(ctx: WebContext, actor: Account, action: str, target: str, new: Any) -> None:
    _write(ctx, audit.record, actor=actor.actor, action=action, target=target, new=new, at=_now())


def originate_call(ctx: WebContext, actor: Account, data: dict[str, Any]) -> dict[str, Any]:
    """Click-to-call: the server rings ``from`` (the caller's own phone), then ``to``."""
    _check_role(actor)
    validate.reject_unknown(data, ORIGINATE_FIELDS)
    source = validate.extension(data.get("from"), "from")
    target = number(data, "to")
    user = ctx.store.read(users.get_user, source)
    if actor.role == "user" and source != actor.extension:
        raise Forbidden("you can only call from your own extension")
    if actor.site_bound and (user is None or user.site_id != actor.site_id):
        raise Forbidden("you can only call from your own site's extensions")
    if user is None:
        raise ValidationError("from", f"from: no extension {source}")
    if not user.enabled:
        raise ValidationError("from", f"from: extension {source} is disabled")
    result = dict(ctx.live.originate(source, target))
    _audit(ctx, actor, "call.originate", source, {"to": target, **result})
    return result


def hang_up_call(ctx: WebContext, actor: Account, call_id: str) -> None:
    """End an active call (every leg of it)."""
    _check_role(actor)
    row = _find_call(ctx, actor, call_id)
    ctx.live.hang_up_call(_call_id(row))
    _audit(ctx, actor, "call.hang_up", _call_id(row), {"caller": row.get("caller")})


def _default_leg(actor: Account, row: dict[str, Any]) -> str | None:
    """The party to transfer when none is named: for a user the other party (not their own
    leg); None otherwise, or when the server lists no legs: the server then transfers the
    callee."""
    if actor.role != "user":
        return None
    others = [leg for leg in row.get("legs") or [] if leg.get("party") != actor.extension]
    return str(others[0]["id"]) if others else None


def transfer_call(
    ctx: WebContext, actor: Account, call_id: str, data: dict[str, Any]
) -> dict[str, Any]:
    """Blind-transfer a party of an active call to ``to``; ``leg`` names the party."""
    _check_role(actor)
    validate.reject_unknown(data, TRANSFER_FIELDS)
    target = number(data, "to")
    leg = data.get("leg")
    if leg is not None:
        leg = validate.text(data, "leg", required=True, max_len=64)
    row = _find_call(ctx, actor, call_id)
    legs = {str(item.get("id")) for item in row.get("legs") or []}
    if leg is not None and legs and leg not in legs:
        raise ValidationError("leg", f"leg: call {call_id} has no leg {leg}")
    chosen = leg if leg is not None else _default_leg(actor, row)
    result = dict(ctx.live.transfer_call(_call_id(row), target, chosen))
    _audit(ctx, actor, "call.transfer", _call_id(row), {"to": target, "leg": chosen, **result})
    return result
