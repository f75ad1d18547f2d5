"""``pbx trunk add|list|show|del|presets``, ``pbx did add|list|del`` and ``pbx route
add|list|del``: SIP trunks, the public numbers (DIDs) calls from them are routed by, and the
outbound routes (dial pattern -> trunks), from the command line.

A trunk starts from a provider preset (``config/trunks/NAME.toml``, pbx.trunkpresets); the
options override what the preset says. Everything is checked before anything is saved: an
unknown preset, a registering trunk without credentials, an IP-authenticated trunk without
``--allow-from``, a bad host, port or network each get a message naming the option. The
password is stored encrypted (pbx.credentials) and never printed or audited. A running server
picks the change up within seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from pbx import dialpatterns, numbers, trunkpresets
from pbx.commands import CommandError, actor, data_dir, open_store, secret_box
from pbx.config import ConfigError
from pbx.store import audit, dids, routes, trunks, users
from pbx.store.errors import StoreError

_NAME_RULE = "lower-case letters, digits, - and _, at most 32, starting with a letter or digit"


def run(args: argparse.Namespace) -> int:
    handlers = {
        "add": trunk_add, "list": trunk_list, "show": trunk_show, "del": trunk_del,
        "presets": trunk_presets,
    }  # fmt: skip
    return handlers[args.trunk_command](args)


def _presets() -> dict[str, trunkpresets.Preset]:
    try:
        return trunkpresets.load_presets()
    except ConfigError as exc:
        raise CommandError(f"provider presets: {exc}") from None


def _write(directory: Path, change: Callable[[Any], Any], create: bool = False) -> Any:
    """Run ``change`` in one write transaction; a store refusal (taken, missing, too many)
    becomes the CommandError with the store's own message."""
    store = open_store(directory, create=create)
    try:
        return store.write(change)
    except StoreError as exc:
        raise CommandError(str(exc)) from None
    finally:
        store.close()


def _did_number(text: str) -> str:
    try:
        return numbers.e164(text)
    except ValueError as exc:
        raise CommandError(f"NUMBER: {exc}") from None


def trunk_from_args(args: argparse.Namespace, password_enc: str = "") -> trunks.Trunk:
    """The trunk the options describe (checked), with the password already encrypted."""
    if not trunkpresets.NAME_RE.fullmatch(args.name):
        raise CommandError(f"trunk name: {_NAME_RULE}")
    presets = _presets()
    preset = presets.get(args.preset)
    if preset is None:
        raise CommandError(
            f"--preset: no preset {args.preset!r}; one of {', '.join(sorted(presets))}"
        )
    domain = (args.domain if args.domain is not None else preset.domain).strip()
    proxy = (args.proxy if args.proxy is not None else preset.proxy).strip()
    try:
        if not domain:
            raise CommandError(f"--domain: the {preset.name} preset needs the provider's domain")
        if trunkpresets.check_host_port(domain, "--domain")[1] is not None:
            raise CommandError("--domain: a host name or address without a port (use --proxy)")
        if proxy:
            trunkpresets.check_host_port(proxy, "--proxy")
        networks = tuple(trunkpresets.check_network(n, "--allow-from") for n in args.allow_from)
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    register = preset.register and not args.no_register
    expires = args.expires if args.expires is not None else preset.expires
    if not 60 <= expires <= 86400:
        raise CommandError("--expires: seconds from 60 to 86400")
    if register and (not args.username or not args.password):
        raise CommandError("a registering trunk needs --username and --password")
    if not register and not (networks or preset.allow_from):
        raise CommandError(
            "an IP-authenticated trunk (--no-register) needs --allow-from with the provider's "
            "networks"
        )
    for value, option in ((args.username, "--username"), (args.password, "--password")):
        if any(c in value for c in '\r\n"\\') or (value and not value.isprintable()):
            raise CommandError(f"{option}: printable, without quotes or backslashes")
    return trunks.Trunk(
        name=args.name, preset=preset.name, domain=domain, proxy=proxy,
        transport=args.transport or preset.transport, username=args.username,
        password_enc=password_enc, register=register, expires=expires,
        allow_from=networks or preset.allow_from,
    )  # fmt: skip


def trunk_add(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    checked = trunk_from_args(args)  # every check before the key file or the database is touched
    encrypted = secret_box(directory).encrypt(args.password) if args.password else ""
    trunk = replace(checked, password_enc=encrypted)
    now = time.time()

    def add(db: Any) -> None:
        stored = trunks.add_trunk(db, trunk, now=now)
        audit.record(
            db, actor=actor(), action="trunk.add", target=trunk.name, new=stored.public(), at=now
        )

    _write(directory, add, create=True)
    print(f"added trunk {args.name} ({'registers' if trunk.register else 'IP-authenticated'})")
    return 0


def _live_states(directory: Any) -> dict[str, dict[str, Any]]:
    from pbx.commands import read_status_file

    live = read_status_file(directory) or {}
    return {t["name"]: t for t in live.get("trunks", []) if isinstance(t, dict) and "name" in t}


def trunk_list(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store = open_store(directory)
    try:
        stored = store.read(trunks.list_trunks)
    finally:
        store.close()
    states = _live_states(directory)
    for trunk in stored:
        state = states.get(trunk.name, {}).get("state", "-")
        target = trunk.proxy or trunk.domain
        print(f"{trunk.name:<16} {trunk.preset:<12} {trunk.transport:<4} {target:<30} {state}")
    return 0


def trunk_show(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store = open_store(directory)
    try:
        trunk = store.read(trunks.get_trunk, args.name)
    finally:
        store.close()
    if trunk is None:
        raise CommandError(f"no trunk {args.name}")
    shown = trunk.public() | {"status": _live_states(directory).get(trunk.name)}
    if args.json:
        json.dump(shown, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for key, value in shown.items():
        print(f"{key + ':':<11} {value}")
    return 0


def trunk_del(args: argparse.Namespace) -> int:
    now = time.time()

    def delete(db: Any) -> None:
        old = trunks.get_trunk(db, args.name)
        using = routes.routes_using(db, args.name)
        if old is not None and using:
            raise CommandError(
                f"trunk {args.name} is used by route(s) {', '.join(using)}: change or "
                "delete them first"
            )
        trunks.delete_trunk(db, args.name)
        audit.record(
            db, actor=actor(), action="trunk.del", target=args.name,
            old=old.public() if old else None, at=now,
        )  # fmt: skip

    _write(data_dir(args), delete)
    print(f"deleted trunk {args.name}")
    return 0


def trunk_presets(args: argparse.Namespace) -> int:
    for preset in _presets().values():
        mode = "registers" if preset.register else "IP-authenticated"
        print(f"{preset.name:<16} {preset.title:<40} {preset.transport:<4} {mode}")
    return 0


# -- DIDs ------------------------------------------------------------------------------------


def did_add(args: argparse.Namespace) -> int:
    """``pbx did add NUMBER --to TARGET``: calls from a trunk to NUMBER go to TARGET."""
    number = _did_number(args.number)
    now = time.time()

    def add(db: Any) -> None:
        if users.get_user(db, args.to) is None:
            raise CommandError(f"--to: no extension {args.to}")
        dids.add_did(db, number, args.to, now=now)
        audit.record(
            db, actor=actor(), action="did.add", target=number, new={"target": args.to}, at=now
        )

    _write(data_dir(args), add)
    print(f"{number} -> {args.to}")
    return 0


def did_list(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    try:
        for did in store.read(dids.list_dids):
            print(f"{did.number:<18} {did.target}")
    finally:
        store.close()
    return 0


def did_del(args: argparse.Namespace) -> int:
    number = _did_number(args.number)
    now = time.time()

    def delete(db: Any) -> None:
        dids.delete_did(db, number)
        audit.record(db, actor=actor(), action="did.del", target=number, at=now)

    _write(data_dir(args), delete)
    print(f"deleted {number}")
    return 0


def run_did(args: argparse.Namespace) -> int:
    return {"add": did_add, "list": did_list, "del": did_del}[args.did_command](args)


# -- outbound routes -------------------------------------------------------------------------


def route_add(args: argparse.Namespace) -> int:
    """``pbx route add NAME --pattern P --trunk NAME... [--priority N] [--exit-digit D]``."""
    if not trunkpresets.NAME_RE.fullmatch(args.name):
        raise CommandError(f"route name: {_NAME_RULE}")
    try:
        dialpatterns.compile_pattern(args.pattern)
    except ValueError as exc:
        raise CommandError(f"--pattern: {exc}") from None
    if args.exit_digit and not (len(args.exit_digit) == 1 and args.exit_digit in "0123456789*#"):
        raise CommandError("--exit-digit: one digit (e.g. 0), or none")
    if not 0 <= args.priority <= 10000:
        raise CommandError("--priority: 0 to 10000 (lower is tried first)")
    if len(set(args.trunk)) != len(args.trunk):
        raise CommandError("--trunk: each trunk once")
    now = time.time()
    route = routes.Route(args.name, args.pattern.strip(), tuple(args.trunk), args.priority,
                         args.exit_digit or "")  # fmt: skip

    def add(db: Any) -> None:
        missing = [t for t in route.trunks if trunks.get_trunk(db, t) is None]
        if missing:
            raise CommandError(f"--trunk: no trunk {missing[0]}")
        routes.add_route(db, route, now=now)
        audit.record(
            db, actor=actor(), action="route.add", target=route.name,
            new={"pattern": route.pattern, "trunks": list(route.trunks),
                 "priority": route.priority, "exit_digit": route.exit_digit},
            at=now,
        )  # fmt: skip

    _write(data_dir(args), add)
    print(f"added route {args.name}: {args.pattern} -> {', '.join(args.trunk)}")
    return 0


def route_list(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    try:
        for route in store.read(routes.list_routes):
            exit_digit = f" exit {route.exit_digit}" if route.exit_digit else ""
            print(f"{route.priority:>5} {route.name:<16} {route.pattern:<20} "
                  f"{', '.join(route.trunks)}{exit_digit}")  # fmt: skip
    finally:
        store.close()
    return 0


def route_del(args: argparse.Namespace) -> int:
    now = time.time()

    def delete(db: Any) -> None:
        routes.delete_route(db, args.name)
        audit.record(db, actor=actor(), action="route.del", target=args.name, at=now)

    _write(data_dir(args), delete)
    print(f"deleted route {args.name}")
    return 0


def run_route(args: argparse.Namespace) -> int:
    return {"add": route_add, "list": route_list, "del": route_del}[args.route_command](args)
