"""The ``pbx`` command: argument parsing and the small glue each sub-command needs.

Scripts, installers and tests rely on these forms, keep them stable::

    pbx serve [--data DIR] [--config FILE] [--bind ADDR] [--sip-port N] [--tls-port N]
              [--http-port N] [--rtp-ports LOW-HIGH]
    pbx user add EXT [--password PW] [--name NAME] [--contact URI]
    pbx user set EXT [--enabled on|off] [--call-waiting on|off] [--contact URI|none]
                     [--pickup-group NAME|none]
    pbx user list | show EXT | passwd EXT [--password PW] | del EXT
    pbx status [--json]
    pbx ban list | ban del ADDR
    pbx admin reset-password
    pbx db migrate
    pbx --version

Every command that reads data takes ``--data DIR``. This module imports no Twisted at import
time: ``serve`` installs the asyncio reactor before anything can import the global one.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from pbx import __version__
from pbx.config import ConfigError


def _data_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=os.environ.get("PBX_DATA", "data"),
        metavar="DIR",
        help="data directory (default ./data)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pbx", description="Self-hosted PBX server")
    parser.add_argument("--version", action="version", version=f"pbx {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the server in the foreground")
    _data_arg(serve)
    serve.add_argument(
        "--config", metavar="FILE", help="site configuration (default DATA/pbx.toml)"
    )
    serve.add_argument("--bind", metavar="ADDR", help="address to listen on (default all)")
    serve.add_argument("--sip-port", type=int, metavar="N", help="SIP UDP/TCP port (default 5060)")
    serve.add_argument(
        "--tls-port", type=int, metavar="N", help="SIP TLS port (default SIP port + 1)"
    )
    serve.add_argument("--http-port", type=int, metavar="N", help="HTTPS port (default 8443)")
    serve.add_argument(
        "--rtp-ports", metavar="LOW-HIGH", help="RTP port range (default 10000-30000)"
    )

    user = sub.add_parser("user", help="manage users and extensions")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user")
    add.add_argument("extension")
    add.add_argument("--password", help="SIP password (default: generate and print one)")
    add.add_argument("--name", default="", help="display name")
    add.add_argument(
        "--contact", metavar="URI", help="static contact sip:IP:PORT (phones that never register)"
    )
    _data_arg(add)
    user_set = user_sub.add_parser(
        "set",
        help="change call waiting, the static contact, the pickup group or whether the user "
        "is enabled",
    )
    user_set.add_argument("extension")
    user_set.add_argument(
        "--enabled",
        choices=("on", "off"),
        help="off: the extension cannot register or call and calls to it get 480",
    )
    user_set.add_argument(
        "--call-waiting", choices=("on", "off"), help="off: a second call gets busy (486)"
    )
    user_set.add_argument(
        "--contact", metavar="URI", help="static contact sip:IP:PORT, or 'none' to remove it"
    )
    user_set.add_argument(
        "--pickup-group",
        metavar="NAME",
        help="pickup group (1-32 letters, digits, - _ .), or 'none' to leave it",
    )
    _data_arg(user_set)
    imp = user_sub.add_parser(
        "import", help="add users from a CSV file (extension,password,name,site,...,pickup_group)"
    )
    imp.add_argument(
        "file", help="CSV file; '-' reads standard input; empty passwords are generated"
    )
    _data_arg(imp)
    for name, text in (("list", "list users"),):
        _data_arg(user_sub.add_parser(name, help=text))
    for name, text in (("show", "show a user's phone set-up"), ("del", "delete a user")):
        cmd = user_sub.add_parser(name, help=text)
        cmd.add_argument("extension")
        _data_arg(cmd)
    passwd = user_sub.add_parser("passwd", help="set a new SIP password")
    passwd.add_argument("extension")
    passwd.add_argument("--password", help="new password (default: generate and print one)")
    _data_arg(passwd)

    status = sub.add_parser("status", help="registrations and listening addresses")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    _data_arg(status)

    active = sub.add_parser("calls", help="active calls of the running server")
    active.add_argument("--json", action="store_true", help="machine-readable output")
    _data_arg(active)

    records = sub.add_parser("cdr", help="recent call records")
    records.add_argument("--limit", type=int, default=50, help="how many (newest first)")
    records.add_argument("--csv", action="store_true", help="CSV with every field")
    _data_arg(records)

    ban = sub.add_parser("ban", help="list or lift address bans")
    ban_sub = ban.add_subparsers(dest="ban_command", required=True)
    _data_arg(ban_sub.add_parser("list", help="active bans"))
    ban_del = ban_sub.add_parser("del", help="lift every ban of an address")
    ban_del.add_argument("address")
    _data_arg(ban_del)

    admin = sub.add_parser("admin", help="administrator accounts")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    reset = admin_sub.add_parser("reset-password", help="set a new password for an administrator")
    reset.add_argument("--user", default="admin")
    reset.add_argument("--password", help="new password (default: PBX_ADMIN_PASSWORD or generated)")
    _data_arg(reset)

    _trunk_parsers(sub)
    route = sub.add_parser("route", help="outbound routes: dial patterns and their trunks")
    route_sub = route.add_subparsers(dest="route_command", required=True)
    route_add = route_sub.add_parser("add", help="add an outbound route")
    route_add.add_argument("name")
    route_add.add_argument(
        "--pattern", required=True,
        help="dial pattern: digits, X Z N, [1-5], a final . or !; or re:REGEX",
    )  # fmt: skip
    route_add.add_argument(
        "--trunk", action="append", required=True, help="trunk to try (repeat: in order)"
    )
    route_add.add_argument("--priority", type=int, default=100, help="lower is tried first")
    route_add.add_argument("--exit-digit", default="", help="the digit users dial to get out")
    _data_arg(route_add)
    _data_arg(route_sub.add_parser("list", help="list the outbound routes"))
    route_del = route_sub.add_parser("del", help="delete a route")
    route_del.add_argument("name")
    _data_arg(route_del)
    did = sub.add_parser("did", help="public numbers (DIDs) and where calls to them go")
    did_sub = did.add_subparsers(dest="did_command", required=True)
    did_add = did_sub.add_parser("add", help="route calls to a public number")
    did_add.add_argument("number", help="E.164, e.g. +4930123456710")
    did_add.add_argument("--to", required=True, help="the extension calls to it ring")
    _data_arg(did_add)
    _data_arg(did_sub.add_parser("list", help="list the DIDs"))
    did_del = did_sub.add_parser("del", help="delete a DID")
    did_del.add_argument("number")
    _data_arg(did_del)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    _data_arg(db_sub.add_parser("migrate", help="apply pending schema migrations"))
    return parser


def _trunk_parsers(sub: Any) -> None:
    """The ``trunk`` sub-commands, added to ``pbx``'s parser."""
    trunk = sub.add_parser("trunk", help="SIP trunks to providers")
    trunk_sub = trunk.add_subparsers(dest="trunk_command", required=True)
    add = trunk_sub.add_parser("add", help="add a trunk from a provider preset")
    add.add_argument("name")
    add.add_argument("--preset", required=True, help="provider preset (config/trunks/NAME.toml)")
    add.add_argument("--username", default="")
    add.add_argument("--password", default="")
    add.add_argument("--domain", help="SIP domain / registrar (default: the preset's)")
    add.add_argument("--proxy", help="outbound proxy HOST[:PORT] (default: the preset's)")
    add.add_argument("--transport", choices=("udp", "tcp", "tls"))
    add.add_argument("--expires", type=int, help="registration expiry in seconds")
    add.add_argument("--no-register", action="store_true", help="IP-authenticated: no REGISTER")
    add.add_argument(
        "--allow-from", action="append", default=[], metavar="CIDR",
        help="a network the provider's INVITEs come from (repeatable)",
    )  # fmt: skip
    _data_arg(add)
    _data_arg(trunk_sub.add_parser("list", help="list trunks"))
    show = trunk_sub.add_parser("show", help="show a trunk")
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    _data_arg(show)
    delete = trunk_sub.add_parser("del", help="delete a trunk")
    delete.add_argument("name")
    _data_arg(delete)
    presets = trunk_sub.add_parser("presets", help="list the provider presets")
    _data_arg(presets)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "serve":
            from pbx.serve import serve

            return serve(args)
        if args.command in ("trunk", "did", "route"):
            from pbx import trunkcommands

            run = {"trunk": trunkcommands.run, "did": trunkcommands.run_did,
                   "route": trunkcommands.run_route}[args.command]  # fmt: skip
            return run(args)
        from pbx import commands

        return commands.run(args)
    except ConfigError as exc:
        print(f"pbx: configuration error: {exc}", file=sys.stderr)
        return 2
    except commands_error() as exc:
        print(f"pbx: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0


def commands_error() -> type[Exception]:
    from pbx.commands import CommandError

    return CommandError
