"""Process configuration: shipped defaults, site overrides and command-line flags.

Precedence: command-line flags > ``DATA/pbx.toml`` (site overrides) > ``config/pbx.toml``
(shipped defaults, one comment per key, never edited on a site). The result is a tree of frozen
dataclasses. An unknown section or key, or a value of the wrong type or out of range, raises
:class:`ConfigError` naming the key, and start-up stops with that message.

Telephony settings that admins change later in the web UI live in the database (pbx.store.settings),
not here. Imports nothing from pbx but pbx.paths.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

import tomli_w

from pbx import paths


class ConfigError(Exception):
    """A configuration file or flag is invalid; the message names the key."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    bind: str = ""
    port: int = 5060
    tls_port: int = 5061
    transports: tuple[str, ...] = ("udp", "tcp", "tls")
    domains: tuple[str, ...] = ()
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    max_message_size: int = 65535
    max_headers: int = 128
    max_line_length: int = 8192
    tcp_idle_timeout: float = 600.0
    tls_certificate: str = ""
    tls_private_key: str = ""
    server_header: str = ""
    trunk_options_interval: float = 30.0


@dataclass(frozen=True, slots=True)
class HttpConfig:
    port: int = 8443
    redirect_port: int = 0


@dataclass(frozen=True, slots=True)
class RtpConfig:
    port_min: int = 10000
    port_max: int = 30000
    latch_any_address: bool = False


@dataclass(frozen=True, slots=True)
class AuthConfig:
    realm: str = "pbx"
    nonce_lifetime: float = 300.0
    algorithms: tuple[str, ...] = ("SHA-256", "MD5")
    accept_no_qop: bool = True


@dataclass(frozen=True, slots=True)
class RegistrarConfig:
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = 10


@dataclass(frozen=True, slots=True)
class GuardConfig:
    max_failures: int = 5
    window: float = 60.0
    ban_time: float = 300.0
    trusted_window: float = 600.0
    allowlist: tuple[str, ...] = ()
    scanner_agents: tuple[str, ...] = ("friendly-scanner", "sipvicious", "sipcli")


@dataclass(frozen=True, slots=True)
class CallsConfig:
    no_answer_timeout: float = 30.0
    max_duration: float = 14400.0
    media_timeout: float = 60.0
    session_expires: int = 1800
    min_se: int = 90
    transfer_recall: float = 30.0
    park_timeout: float = 120.0


@dataclass(frozen=True, slots=True)
class DnsConfig:
    # DNS servers pbx asks (IP[:port]); empty: the system's (/etc/resolv.conf)
    servers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "INFO"


@dataclass(frozen=True, slots=True)
class Config:
    """The whole process configuration."""

    sip: SipConfig = field(default_factory=SipConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    rtp: RtpConfig = field(default_factory=RtpConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    registrar: RegistrarConfig = field(default_factory=RegistrarConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    calls: CallsConfig = field(default_factory=CallsConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    data_dir: Path = Path("data")

    @property
    def tls_port(self) -> int:
        """The effective TLS port (0 in the file means SIP port + 1)."""
        return self.sip.tls_port or self.sip.port + 1


SECTIONS: dict[str, type] = {
    "sip": SipConfig,
    "http": HttpConfig,
    "rtp": RtpConfig,
    "auth": AuthConfig,
    "registrar": RegistrarConfig,
    "guard": GuardConfig,
    "calls": CallsConfig,
    "dns": DnsConfig,
    "log": LogConfig,
}


def _coerce(key: str, hint: Any, value: Any) -> Any:
    """Check one value against its declared type; tuples come from TOML arrays."""
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    if hint == tuple[str, ...]:
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    raise ConfigError(f"{key}: unsupported type {hint!r}")  # pragma: no cover - programming error


def _merge_section(name: str, base: Any, overrides: dict[str, Any], source: str) -> Any:
    cls = SECTIONS[name]
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        dotted = f"{name}.{key}"
        if key not in known:
            raise ConfigError(f"{dotted}: unknown key (in {source})")
        changes[key] = _coerce(dotted, hints[key], value)
    return dataclasses.replace(base, **changes)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _apply_file(config: Config, path: Path) -> Config:
    return _apply_data(config, _read_toml(path), path)


def _apply_data(config: Config, data: dict[str, Any], path: Path) -> Config:
    changes: dict[str, Any] = {}
    for section, values in data.items():
        if section not in SECTIONS:
            raise ConfigError(f"{section}: unknown section (in {path})")
        if not isinstance(values, dict):
            raise ConfigError(f"{section}: expected a table (in {path})")
        changes[section] = _merge_section(section, getattr(config, section), values, str(path))
    return dataclasses.replace(config, **changes)


def _validate(config: Config) -> None:
    def port(key: str, value: int, allow_zero: bool = False) -> None:
        if not (0 if allow_zero else 1) <= value <= 65535:
            raise ConfigError(f"{key}: {value} is not a valid port")

    port("sip.port", config.sip.port)
    port("sip.tls_port", config.sip.tls_port, allow_zero=True)
    port("http.port", config.http.port, allow_zero=True)
    port("http.redirect_port", config.http.redirect_port, allow_zero=True)
    if config.http.redirect_port and config.http.redirect_port == config.http.port:
        raise ConfigError("http.redirect_port: must differ from http.port")
    port("rtp.port_min", config.rtp.port_min)
    port("rtp.port_max", config.rtp.port_max)
    if config.rtp.port_min >= config.rtp.port_max:
        raise ConfigError("rtp.port_min: must be lower than rtp.port_max")
    for transport in config.sip.transports:
        if transport not in ("udp", "tcp", "tls"):
            raise ConfigError(f"sip.transports: unknown transport {transport!r}")
    if config.sip.trunk_options_interval < 0:
        raise ConfigError("sip.trunk_options_interval: 0 (off) or more seconds")
    for key in ("t1", "t2", "t4"):
        if getattr(config.sip, key) <= 0:
            raise ConfigError(f"sip.{key}: must be positive")
    if config.sip.bind:
        try:
            ipaddress.ip_address(config.sip.bind)
        except ValueError as exc:
            raise ConfigError(f"sip.bind: {config.sip.bind!r} is not an IP address") from exc
    reg = config.registrar
    if not 1 <= reg.min_expires <= reg.default_expires <= reg.max_expires:
        raise ConfigError(
            "registrar.min_expires: need min_expires <= default_expires <= max_expires"
        )
    for entry in config.guard.allowlist:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError as exc:
            raise ConfigError(f"guard.allowlist: {entry!r} is not an address or network") from exc
    algorithms = config.auth.algorithms
    if (
        not algorithms
        or any(a not in ("SHA-256", "MD5") for a in algorithms)
        or len(set(algorithms)) != len(algorithms)
    ):
        raise ConfigError('auth.algorithms: use "SHA-256" and/or "MD5", each once')
    for key in (
        "no_answer_timeout",
        "max_duration",
        "media_timeout",
        "transfer_recall",
        "park_timeout",
    ):
        if getattr(config.calls, key) <= 0:
            raise ConfigError(f"calls.{key}: must be positive")
    if not 1 <= config.calls.min_se <= config.calls.session_expires:
        raise ConfigError("calls.min_se: need 1 <= min_se <= session_expires")
    for server in config.dns.servers:
        if dns_server(server) is None:
            raise ConfigError(f"dns.servers: {server!r} is not an IP address with an optional port")
    if config.log.level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"log.level: unknown level {config.log.level!r}")


def dns_server(text: str) -> tuple[str, int] | None:
    """``IP``, ``IP:PORT`` or ``[IPv6]:PORT`` as (address, port); None when it is not one."""
    host, port = text.strip(), 53
    if host.startswith("["):
        host, _, rest = host[1:].partition("]")
        if rest:
            if not rest.startswith(":") or not rest[1:].isdigit():
                return None
            port = int(rest[1:])
    elif host.count(":") == 1:
        host, _, number = host.partition(":")
        if not number.isdigit():
            return None
        port = int(number)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return None
    return (host, port) if 0 < port < 65536 else None


def parse_port_range(text: str) -> tuple[int, int]:
    """Parse ``LOW-HIGH`` (the ``--rtp-ports`` flag)."""
    low, sep, high = text.partition("-")
    if not sep or not low.isdigit() or not high.isdigit():
        raise ConfigError(f"rtp ports: expected LOW-HIGH, got {text!r}")
    return int(low), int(high)


def load(
    data_dir: Path | str = "data",
    config_file: Path | str | None = None,
    flags: dict[str, dict[str, Any]] | None = None,
    env: dict[str, str] | None = None,
) -> Config:
    """Build the configuration: shipped defaults, then the site file, then flags.

    ``config_file`` replaces the site file ``DATA/pbx.toml`` when given. ``flags`` maps
    section -> key -> value for command-line overrides. ``PBX_SIP_T1``/``T2``/``T4`` in ``env``
    shorten SIP timers (used by tests only).
    """
    data = Path(data_dir)
    config = _apply_file(Config(data_dir=data), paths.default_config_file())
    site = Path(config_file) if config_file else data / "pbx.toml"
    if config_file and not site.is_file():
        raise ConfigError(f"--config: {site} does not exist")
    if site.is_file():
        config = _apply_file(config, site)
    environ = os.environ if env is None else env
    timer_flags = {
        key: float(environ[f"PBX_SIP_{key.upper()}"])
        for key in ("t1", "t2", "t4")
        if environ.get(f"PBX_SIP_{key.upper()}")
    }
    all_flags: dict[str, dict[str, Any]] = {s: dict(v) for s, v in (flags or {}).items()}
    if timer_flags:
        all_flags.setdefault("sip", {}).update(timer_flags)
    changes = {
        section: _merge_section(section, getattr(config, section), values, "command line")
        for section, values in all_flags.items()
        if values
    }
    config = dataclasses.replace(config, **changes)
    _validate(config)
    return config


OVERRIDE_HEADER = (
    "# Site overrides of config/pbx.toml (same sections and keys), also written by the web UI's\n"
    "# settings page. Process settings take effect at restart.\n\n"
)


def override_path(data_dir: Path | str) -> Path:
    """The site override file, ``DATA/pbx.toml``."""
    return Path(data_dir) / "pbx.toml"


def read_override(data_dir: Path | str) -> dict[str, dict[str, Any]]:
    """The site override file as section -> key -> value (empty when there is none)."""
    path = override_path(data_dir)
    if not path.is_file():
        return {}
    return _read_toml(path)


def write_override(data_dir: Path | str, section: str, key: str, value: Any) -> Config:
    """Set (or, with ``value=None``, remove) one key in ``DATA/pbx.toml``.

    The changed file is checked with the same rules as :func:`load` (unknown key, wrong type,
    out of range, inconsistent with the other keys) before it replaces the old one
    atomically; a bad value raises :class:`ConfigError` naming the key and changes nothing.
    Returns the configuration the file now gives (without command-line flags). Takes effect
    at the next start. Comments in the file are not kept.
    """
    data_path = Path(data_dir)
    path = override_path(data_path)
    data = read_override(data_path)
    table = dict(data.get(section, {}))
    if value is None:
        table.pop(key, None)
    else:
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{section}.{key}: must be a finite number")
        table[key] = list(value) if isinstance(value, tuple) else value
    data = {**data, section: table}
    if not table:
        del data[section]
    config = _apply_data(Config(data_dir=data_path), _read_toml(paths.default_config_file()), path)
    config = _apply_data(config, data, path)
    _validate(config)
    data_path.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(OVERRIDE_HEADER + tomli_w.dumps(data))
    os.replace(tmp, path)
    return config
