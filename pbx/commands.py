"""The administrative sub-commands of ``pbx`` (everything but ``serve``).

Each works on the data directory through the store (a second process beside a running server
is fine: SQLite WAL with a busy timeout), and writes an audit entry for every change, with the
actor ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pbx import config as config_module
from pbx import extensions, featurecodes, userscsv
from pbx.calls.contacts import parse_static_contact
from pbx.credentials import (
    SecretBox,
    generate_admin_password,
    generate_sip_password,
    hash_admin_password,
    make_credentials,
)
from pbx.store import admins, audit, bans, cdr, registrations, sites, users
from pbx.store import credentials as store_credentials
from pbx.store.db import Store
from pbx.store.errors import AlreadyExists, NotFound
from pbx.store.migrations import migrate

log = logging.getLogger(__name__)


class CommandError(Exception):
    """A sub-command cannot do what was asked; the message says why."""


def data_dir(args: argparse.Namespace) -> Path:
    return Path(args.data)


def open_store(directory: Path, create: bool = False) -> Store:
    path = directory / "pbx.sqlite"
    if not create and not path.exists():
        raise CommandError(
            f"no database at {path} (start 'pbx serve --data {directory}' once, "
            "or add a user to create it)"
        )
    store = Store(path)
    store.open()
    return store


def secret_box(directory: Path) -> SecretBox:
    return SecretBox(directory / "secret.key")


def actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # noqa: BLE001 - no login name in some containers
        return "cli"


def realm(directory: Path) -> str:
    return config_module.load(directory).auth.realm


def check_extension(extension: str) -> None:
    """The rule of pbx.extensions (shared with the web forms and the REST API)."""
    try:
        extensions.check_extension(extension)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def check_not_a_feature_code(codes: featurecodes.FeatureCodes, extension: str) -> None:
    """An extension may not be a feature code or a park slot, or start with the directed
    pickup prefix (the table of DATA/feature_codes.toml over config/feature_codes.toml)."""
    reason = codes.conflict(extension)
    if reason is not None:
        raise CommandError(f"extension: {reason}; choose another number")


def check_contact(text: str) -> str:
    """A static contact URI as stored (sip:HOST:PORT, IP literal host) or CommandError."""
    try:
        return str(parse_static_contact(text))
    except ValueError as exc:
        raise CommandError(f"--contact: {exc}") from None


def check_pickup_group(text: str) -> str | None:
    """A pickup group name as stored, None for 'none', or CommandError."""
    if text.strip().lower() == "none":
        return None
    try:
        return extensions.check_pickup_group(text.strip())
    except ValueError as exc:
        raise CommandError(f"--pickup-group: {exc}") from None


def check_password(password: str) -> None:
    if len(password) < 8:
        raise CommandError("SIP passwords need at least 8 characters")
    if any(c in password for c in '\r\n\t"\\') or not password.isprintable():
        raise CommandError("SIP passwords must be printable, without quotes or backslashes")


# -- users ---------------------------------------------------------------------------------


def user_add(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    check_extension(args.extension)
    check_not_a_feature_code(featurecodes.load(directory), args.extension)
    password = args.password or generate_sip_password()
    check_password(password)
    contact = check_contact(args.contact) if getattr(args, "contact", None) else None
    store = open_store(directory, create=True)
    try:
        box = secret_box(directory)
        now = time.time()
        creds = make_credentials(box, args.extension, realm(directory), password, now)

        def add(db: Any) -> Any:
            user = users.add_user(
                db, args.extension, args.name or args.extension, now=now, static_contact=contact
            )
            store_credentials.set_credentials(db, creds)
            new = {"extension": args.extension, "name": user.display_name}
            if contact:
                new["contact"] = contact
            audit.record(
                db, actor=actor(), action="user.add", target=args.extension, new=new, at=now
            )
            return user

        try:
            store.write(add)
        except AlreadyExists as exc:
            raise CommandError(f"extension {args.extension} already exists") from exc
    finally:
        store.close()
    print(f"added extension {args.extension}")
    if not args.password:
        print(f"SIP password: {password}")
    return 0


def user_import(args: argparse.Namespace) -> int:
    """Add many users in one transaction; all or nothing, with a message naming the bad row.

    The CSV of pbx.userscsv (what the web's users export writes): extension, password, name,
    site (name or id) and pickup group; an empty password is generated and printed.
    """
    directory = data_dir(args)
    source = sys.stdin if args.file == "-" else open(args.file, newline="", encoding="utf-8")  # noqa: SIM115
    with source:
        try:
            rows, columns = userscsv.import_columns(userscsv.read_rows(source))
        except csv.Error as exc:
            raise CommandError(f"{args.file}: not valid CSV ({exc})") from None
    codes = featurecodes.load(directory)
    store = open_store(directory, create=True)
    try:
        all_sites = store.read(sites.list_sites)
        box = secret_box(directory)
        site_realm = realm(directory)
        now = time.time()
        prepared: list[ImportedUser] = []
        generated = []
        seen: set[str] = set()
        for number, row in enumerate(rows, start=1):
            cells = userscsv.cells(row, columns)
            try:
                user = _imported_user(cells, codes, all_sites)
            except CommandError as exc:
                raise CommandError(f"row {number}: {exc}") from exc
            if user.extension in seen:
                raise CommandError(f"row {number}: extension {user.extension} appears twice")
            seen.add(user.extension)
            password = cells["password"]
            if not password:
                password = generate_sip_password()
                generated.append((user.extension, password))
            user.credentials = make_credentials(box, user.extension, site_realm, password, now)
            prepared.append(user)

        def add_all(db: Any) -> None:
            for user in prepared:
                try:
                    users.add_user(db, user.extension, user.name, now=now)
                except AlreadyExists as exc:
                    raise CommandError(f"extension {user.extension} already exists") from exc
                if user.site_id is not None:
                    users.set_user_site(db, user.extension, user.site_id)
                if user.pickup_group is not None:
                    users.set_pickup_group(db, user.extension, user.pickup_group)
                store_credentials.set_credentials(db, user.credentials)
                audit.record(
                    db,
                    actor=actor(),
                    action="user.add",
                    target=user.extension,
                    new={
                        "extension": user.extension,
                        "name": user.name,
                        "site_id": user.site_id,
                        "pickup_group": user.pickup_group,
                    },
                    at=now,
                )

        store.write(add_all)
    finally:
        store.close()
    print(f"added {len(prepared)} extension(s)")
    for extension, password in generated:
        print(f"{extension},{password}")
    return 0


@dataclass
class ImportedUser:
    """One checked row of `pbx user import`."""

    extension: str
    name: str
    site_id: int | None
    pickup_group: str | None
    credentials: Any = None


def _imported_user(
    cells: dict[str, str], codes: featurecodes.FeatureCodes, all_sites: list[sites.Site]
) -> ImportedUser:
    extension = cells["extension"]
    check_extension(extension)
    check_not_a_feature_code(codes, extension)
    if cells["password"]:
        check_password(cells["password"])
    group = None
    try:
        site_id = userscsv.site_id(cells["site"], all_sites)
        if cells["pickup_group"]:
            group = extensions.check_pickup_group(cells["pickup_group"])
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return ImportedUser(extension, cells["name"] or extension, site_id, group)


def user_list(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    try:
        rows = store.read(users.list_users)
        active = store.read(registrations.list_bindings, now=time.time())
    finally:
        store.close()
    registered: dict[str, int] = {}
    for binding in active:
        registered[binding.extension] = registered.get(binding.extension, 0) + 1
    print(f"{'EXTENSION':<12} {'NAME':<30} {'REGISTERED':>10}")
    for user in rows:
        print(
            f"{user.extension:<12} {user.display_name:<30} {registered.get(user.extension, 0):>10}"
        )
    return 0


def user_show(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store = open_store(directory)
    try:
        user = store.read(users.get_user, args.extension)
        creds = store.read(store_credentials.get_credentials, args.extension)
        if user is None or creds is None:
            raise CommandError(f"no extension {args.extension}")
        store.write(
            audit.record,
            actor=actor(),
            action="user.show_password",
            target=args.extension,
            at=time.time(),
        )
    finally:
        store.close()
    cfg = config_module.load(directory)
    password = secret_box(directory).decrypt(creds.password_enc)
    print(f"extension:    {user.extension}")
    print(f"name:         {user.display_name}")
    print(f"enabled:      {'yes' if user.enabled else 'no'}")
    print(f"server:       {cfg.sip.bind or '<this server address>'}")
    print(f"port:         {cfg.sip.port} (UDP/TCP), {cfg.tls_port} (TLS)")
    print(f"username:     {user.extension}")
    print(f"auth user:    {user.extension}")
    print(f"password:     {password}")
    print(f"realm:        {creds.realm}")
    print(f"call waiting: {'on' if user.call_waiting else 'off'}")
    print(f"contact:      {user.static_contact or '(registrations only)'}")
    print(f"pickup group: {user.pickup_group or '(none)'}")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    password = args.password or generate_sip_password()
    check_password(password)
    store = open_store(directory)
    try:
        if store.read(users.get_user, args.extension) is None:
            raise CommandError(f"no extension {args.extension}")
        now = time.time()
        creds = make_credentials(
            secret_box(directory), args.extension, realm(directory), password, now
        )

        def change(db: Any) -> None:
            store_credentials.set_credentials(db, creds)
            audit.record(db, actor=actor(), action="user.passwd", target=args.extension, at=now)

        store.write(change)
    finally:
        store.close()
    print(f"new SIP password set for {args.extension}")
    if not args.password:
        print(f"SIP password: {password}")
    return 0


def user_set(args: argparse.Namespace) -> int:
    """Change per-user options: enabled, call waiting, the static contact, the pickup group."""
    changes: dict[str, Any] = {}
    if getattr(args, "enabled", None) is not None:
        changes["enabled"] = args.enabled == "on"
    if args.call_waiting is not None:
        changes["call_waiting"] = args.call_waiting == "on"
    if args.contact is not None:
        clear = args.contact.strip().lower() == "none"
        changes["contact"] = None if clear else check_contact(args.contact)
    if getattr(args, "pickup_group", None) is not None:
        changes["pickup_group"] = check_pickup_group(args.pickup_group)
    if not changes:
        raise CommandError(
            "nothing to change: give --enabled on|off, --call-waiting on|off, "
            "--contact URI|none and/or --pickup-group NAME|none"
        )
    store = open_store(data_dir(args))
    try:

        def change(db: Any) -> None:
            old = users.get_user(db, args.extension)
            if old is None:
                raise NotFound(args.extension)
            if "enabled" in changes:  # disabling drops the registrations too
                users.set_user_enabled(db, args.extension, changes["enabled"])
            if "call_waiting" in changes:
                users.set_call_waiting(db, args.extension, changes["call_waiting"])
            if "contact" in changes:
                users.set_static_contact(db, args.extension, changes["contact"])
            if "pickup_group" in changes:
                users.set_pickup_group(db, args.extension, changes["pickup_group"])
            audit.record(
                db,
                actor=actor(),
                action="user.set",
                target=args.extension,
                old={
                    "enabled": old.enabled,
                    "call_waiting": old.call_waiting,
                    "contact": old.static_contact,
                    "pickup_group": old.pickup_group,
                },
                new=changes,
                at=time.time(),
            )

        try:
            store.write(change)
        except NotFound as exc:
            raise CommandError(f"no extension {args.extension}") from exc
    finally:
        store.close()
    for key, value in changes.items():
        shown = {True: "on", False: "off", None: "none"}.get(value, value)
        print(f"{args.extension}: {key.replace('_', ' ')} {shown}")
    return 0


def user_del(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    try:

        def delete(db: Any) -> None:
            users.delete_user(db, args.extension)
            audit.record(
                db,
                actor=actor(),
                action="user.del",
                target=args.extension,
                old={"extension": args.extension},
                at=time.time(),
            )

        try:
            store.write(delete)
        except NotFound as exc:
            raise CommandError(f"no extension {args.extension}") from exc
    finally:
        store.close()
    print(f"deleted extension {args.extension}")
    return 0


# -- status, bans, admin, db ----------------------------------------------------------------


def read_status_file(directory: Path) -> dict[str, Any] | None:
    path = directory / "run" / "status.json"
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    pid = data.get("pid")
    if isinstance(pid, int) and not _alive(pid):
        return None
    return data


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store = open_store(directory)
    now = time.time()
    try:
        active = store.read(registrations.list_bindings, now=now)
    finally:
        store.close()
    live = read_status_file(directory)
    result = {
        "running": live is not None,
        "pid": live.get("pid") if live else None,
        "listening": live.get("listening", []) if live else [],
        "loop_lag": {k: v for k, v in (live or {}).get("loop_lag", {}).items() if k != "hist"},
        "registrations": [
            {
                "extension": b.extension,
                "contact": b.contact,
                "transport": b.transport.lower(),
                "source": f"{b.source_host}:{b.source_port}",
                "user_agent": b.user_agent,
                "expires": max(0, int(b.expires_at - now)),
            }
            for b in active
        ],
        "trunks": live.get("trunks", []) if live else [],
    }
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print("server:", f"running (pid {result['pid']})" if live else "not running")
    for item in result["listening"]:
        print(f"  listening {item['transport']} {item['address']}:{item['port']}")
    for trunk in result["trunks"]:
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(trunk.get("since") or 0))
        detail = trunk.get("reason") or (
            f"expires {trunk['expires']}s" if trunk.get("expires") else ""
        )
        server = trunk.get("reachable") or "-"
        print(
            f"  trunk {trunk['name']:<16} {trunk['state']:<16} server {server:<7} "
            f"since {since}  {detail}"
        )
    print(f"registrations: {len(result['registrations'])}")
    for reg in result["registrations"]:
        print(
            f"  {reg['extension']:<10} {reg['transport']:<4} {reg['source']:<22} "
            f"{reg['expires']:>5}s {reg['contact']}  {reg['user_agent']}"
        )
    return 0


def active_calls(args: argparse.Namespace) -> int:
    live = read_status_file(data_dir(args))
    if live is None:
        raise CommandError("the server is not running")
    calls = live.get("calls", [])
    now = time.time()
    for call in calls:  # the status file keeps when each state began, not a duration
        call["duration"] = round(max(0.0, now - call["since"]), 1)
    if args.json:
        json.dump(calls, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{'FROM':<10} {'TO':<12} {'STATE':<9} {'DURATION':>8}  CODECS")
    for call in calls:
        print(
            f"{call['caller']:<10} {call['dialled']:<12} {call['state']:<9} "
            f"{call['duration']:>7.0f}s  {','.join(call['codecs'])}"
        )
    print(f"{len(calls)} active call(s)")
    return 0


def call_records(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    store = open_store(data_dir(args))
    try:
        rows, histories = store.read(_records_with_history, args.limit)
    finally:
        store.close()
    if args.csv:
        sys.stdout.write(cdr.as_csv(rows, histories))
        return 0
    print(f"{'START':<19} {'FROM':<10} {'TO':<12} {'DISPOSITION':<12} {'DURATION':>8}")
    for row in rows:
        start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.started_at))
        duration = f"{row.duration:.0f}s" if row.duration is not None else "-"
        print(f"{start:<19} {row.caller:<10} {row.dialled:<12} {row.disposition:<12} {duration:>8}")
        for entry in histories.get(row.id or 0, []):
            at = time.strftime("%H:%M:%S", time.localtime(entry.at))
            print(f"    {at}  {cdr.entry_text(entry)}")
    return 0


def _records_with_history(
    db: Any, limit: int
) -> tuple[list[cdr.CallRecord], dict[int, list[cdr.HistoryEntry]]]:
    """The newest records and their histories, in one read."""
    rows = cdr.recent(db, limit)
    return rows, cdr.histories_of(db, [row.id for row in rows if row.id is not None])


def ban_list(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    now = time.time()
    try:
        active = store.read(bans.active_bans, now)
    finally:
        store.close()
    if not active:
        print("no active bans")
    for ban in active:
        who = f" user {ban.username}" if ban.username else ""
        print(f"{ban.address}{who}  {int(ban.until - now)}s left  ({ban.reason})")
    return 0


def ban_del(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    try:

        def lift(db: Any) -> int:
            count = bans.delete_bans(db, args.address)
            audit.record(
                db,
                actor=actor(),
                action="ban.del",
                target=args.address,
                old={"bans": count},
                at=time.time(),
            )
            return count

        count = store.write(lift)
    finally:
        store.close()
    if count == 0:
        raise CommandError(f"{args.address} is not banned")
    print(f"lifted {count} ban(s) of {args.address}")
    return 0


def ensure_first_admin(store: Store) -> str | None:
    """Create the first administrator, ``admin``, when no account has the role admin at all
    (a fresh system); return the password if generated.

    Never at a later start: an ``admin`` account deleted by its administrators must not come
    back (with the known PBX_ADMIN_PASSWORD). A locked-out site recovers with
    ``pbx admin reset-password``.
    """
    if store.read(admins.has_role, "admin"):
        return None
    if store.read(admins.get_admin, "admin") is not None:
        log.warning(
            "no administrator account, and the name 'admin' is taken by another account: "
            "create one with 'pbx admin reset-password --user NAME'"
        )
        return None
    given = os.environ.get("PBX_ADMIN_PASSWORD")
    password = given or generate_admin_password()
    now = time.time()

    def create(db: Any) -> None:
        admins.create_admin(db, "admin", hash_admin_password(password), not given)
        audit.record(db, actor="system", action="admin.create", target="admin", at=now)

    store.write(create)
    return None if given else password


def admin_reset_password(args: argparse.Namespace) -> int:
    store = open_store(data_dir(args))
    given = args.password or os.environ.get("PBX_ADMIN_PASSWORD")
    password = given or generate_admin_password()
    try:

        def reset(db: Any) -> None:
            hashed = hash_admin_password(password)
            if admins.get_admin(db, args.user) is None:
                admins.create_admin(db, args.user, hashed, not given)
            else:
                admins.set_admin_password(db, args.user, hashed, not given)
            audit.record(
                db, actor=actor(), action="admin.reset_password", target=args.user, at=time.time()
            )

        store.write(reset)
    finally:
        store.close()
    print(f"password of {args.user} reset")
    if not given:
        print(f"new password (change it at first login): {password}")
    return 0


def db_migrate(args: argparse.Namespace) -> int:
    directory = data_dir(args)
    store = open_store(directory, create=True)
    try:
        applied = store.write(migrate)
        check = store.integrity_check()
    finally:
        store.close()
    print(f"schema up to date ({len(applied)} migration(s) applied now); integrity: {check}")
    return 0


HANDLERS = {
    ("user", "add"): user_add,
    ("user", "import"): user_import,
    ("user", "list"): user_list,
    ("user", "show"): user_show,
    ("user", "passwd"): user_passwd,
    ("user", "set"): user_set,
    ("user", "del"): user_del,
    ("ban", "list"): ban_list,
    ("ban", "del"): ban_del,
    ("admin", "reset-password"): admin_reset_password,
    ("db", "migrate"): db_migrate,
}


def run(args: argparse.Namespace) -> int:
    if args.command == "status":
        return status(args)
    if args.command == "cdr":
        return call_records(args)
    if args.command == "calls":
        return active_calls(args)
    sub = getattr(args, f"{args.command}_command")
    return HANDLERS[(args.command, sub)](args)
