"""Live telephony settings (the settings table) and process settings (DATA/pbx.toml).

Owns reading and changing both kinds of settings, with validation and audit entries; live
changes are announced to the running server, process settings take effect at restart.
Must not import flask or twisted.
"""

from __future__ import annotations

from typing import Any

from pbx import config as config_module
from pbx.media.codecs import CODECS
from pbx.store import audit
from pbx.store import settings as store_settings
from web import validate
from web.auth import Account, check
from web.backend import WebContext
from web.errors import ValidationError
from web.services._common import _now, _write

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
