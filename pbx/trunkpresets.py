"""Provider presets for SIP trunks: one TOML file per provider in ``config/trunks/``.

A preset fills in what an installer should not have to know (domain, proxy, transport,
registration, the number format and identity headers the provider expects, where it puts the
called number); the installer types the credentials. Adding a provider is adding a file:

    title = "Example Telecom"          # shown in the preset picker
    domain = "sip.example.net"         # SIP domain / registrar; "" = the installer types it
    proxy = ""                         # outbound proxy host[:port]; "" = the domain
    transport = "udp"                  # udp, tcp or tls
    register = true                    # false: IP-authenticated (allow_from networks)
    expires = 600                      # registration expiry asked for, seconds
    number_format = "e164"             # e164 (+4930...), e164-digits (4930...),
                                       # international (004930...), national (030...)
    identity_headers = ["P-Asserted-Identity"]   # any of P-Asserted-Identity,
                                       # P-Preferred-Identity, Remote-Party-ID, From
    called_number = "request-uri"      # request-uri, to or p-called-party-id
    allow_from = []                    # the provider's networks (IP-authenticated trunks)
    notes = "..."                      # optional, shown to the installer

:func:`load_presets` reads every file; a missing or unknown key, a wrong type or value raises
:class:`pbx.config.ConfigError` naming the file and the key. Imports nothing from pbx but
pbx.paths and pbx.config.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pbx import paths
from pbx.config import ConfigError

TRANSPORTS = ("udp", "tcp", "tls")
NUMBER_FORMATS = ("e164", "e164-digits", "international", "national")
IDENTITY_HEADERS = ("P-Asserted-Identity", "P-Preferred-Identity", "Remote-Party-ID", "From")
CALLED_NUMBER = ("request-uri", "to", "p-called-party-id")
NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_HOST = re.compile(r"[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]")


@dataclass(frozen=True)
class Preset:
    name: str  # the file name without .toml
    title: str
    domain: str
    proxy: str
    transport: str
    register: bool
    expires: int
    number_format: str
    identity_headers: tuple[str, ...]
    called_number: str
    allow_from: tuple[str, ...] = ()
    notes: str = ""


_OPTIONAL = {"allow_from", "notes"}


def presets_dir() -> Path:
    return paths.config_dir() / "trunks"


def load_presets(directory: Path | None = None) -> dict[str, Preset]:
    """Every preset of ``directory`` (the shipped ones by default), by name."""
    folder = presets_dir() if directory is None else directory
    found: dict[str, Preset] = {}
    for path in sorted(folder.glob("*.toml")):
        preset = load_preset(path)
        found[preset.name] = preset
    return found


def load_presets_or_none(log: logging.Logger) -> dict[str, Preset]:
    """The shipped presets for code that routes calls: a broken preset file is logged and
    leaves no presets (calls then use the defaults), it never stops the server."""
    try:
        return load_presets()
    except ConfigError as exc:
        log.error("provider presets not loaded: %s", exc)
        return {}


def load_preset(path: Path) -> Preset:
    name = path.stem
    if not NAME_RE.fullmatch(name):
        raise ConfigError(f"{path}: a preset file name is lower-case letters, digits, - and _")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc
    known = {f.name for f in fields(Preset)} - {"name"}
    for key in data:
        if key not in known:
            raise ConfigError(f"{key}: unknown key (in {path})")
    missing = sorted(known - _OPTIONAL - set(data))
    if missing:
        raise ConfigError(f"{missing[0]}: missing (in {path})")
    return Preset(
        name=name,
        title=_text(data, "title", path, required=True),
        domain=_host(data, "domain", path),
        proxy=_host_port(data, "proxy", path),
        transport=_choice(data, "transport", TRANSPORTS, path),
        register=_bool(data, "register", path),
        expires=_expires(data, path),
        number_format=_choice(data, "number_format", NUMBER_FORMATS, path),
        identity_headers=_headers(data, path),
        called_number=_choice(data, "called_number", CALLED_NUMBER, path),
        allow_from=_networks(data.get("allow_from", []), "allow_from", path),
        notes=_text(data, "notes", path) if "notes" in data else "",
    )


# -- values -------------------------------------------------------------------------------


def _text(data: dict[str, Any], key: str, path: Path, required: bool = False) -> str:
    value = data[key]
    if not isinstance(value, str) or (required and not value.strip()):
        raise ConfigError(f"{key}: expected a non-empty string (in {path})")
    return value.strip()


def _host(data: dict[str, Any], key: str, path: Path) -> str:
    value = _text(data, key, path)
    if value and not _HOST.fullmatch(value):
        raise ConfigError(f"{key}: {value!r} is not a host name or address (in {path})")
    return value


def _host_port(data: dict[str, Any], key: str, path: Path) -> str:
    value = _text(data, key, path)
    if value:
        check_host_port(value, f"{key} (in {path})")
    return value


def check_host_port(value: str, what: str) -> tuple[str, int | None]:
    """``host[:port]`` split; ConfigError naming ``what`` when it is not one."""
    host, port = value, None
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[: end + 1], value[end + 1 :]
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                raise ConfigError(f"{what}: {value!r} is not host[:port]")
            port = int(rest[1:])
    elif value.count(":") == 1:
        host, _, text = value.partition(":")
        if not text.isdigit():
            raise ConfigError(f"{what}: {value!r} is not host[:port]")
        port = int(text)
    if not _HOST.fullmatch(host) or (port is not None and not 0 < port < 65536):
        raise ConfigError(f"{what}: {value!r} is not host[:port]")
    return host.strip("[]"), port


def _choice(data: dict[str, Any], key: str, allowed: tuple[str, ...], path: Path) -> str:
    value = data[key]
    if value not in allowed:
        raise ConfigError(f"{key}: one of {', '.join(allowed)}, not {value!r} (in {path})")
    return str(value)


def _bool(data: dict[str, Any], key: str, path: Path) -> bool:
    value = data[key]
    if not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false (in {path})")
    return value


def _expires(data: dict[str, Any], path: Path) -> int:
    value = data["expires"]
    if isinstance(value, bool) or not isinstance(value, int) or not 60 <= value <= 86400:
        raise ConfigError(f"expires: seconds from 60 to 86400 (in {path})")
    return value


def _headers(data: dict[str, Any], path: Path) -> tuple[str, ...]:
    value = data["identity_headers"]
    if not isinstance(value, list) or not value or any(h not in IDENTITY_HEADERS for h in value):
        raise ConfigError(f"identity_headers: a list of {', '.join(IDENTITY_HEADERS)} (in {path})")
    return tuple(value)


def _networks(value: Any, key: str, path: Path) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ConfigError(f"{key}: expected a list of networks (in {path})")
    return tuple(check_network(item, f"{key} (in {path})") for item in value)


def check_network(value: Any, what: str) -> str:
    """A network (CIDR) or address in canonical form; ConfigError naming ``what``."""
    try:
        return str(ipaddress.ip_network(str(value), strict=False))
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a network like 192.0.2.0/24") from None
