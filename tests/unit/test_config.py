"""Configuration precedence and validation (pbx.config)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pbx import config, paths


def test_shipped_defaults_cover_every_key_with_a_comment() -> None:
    text = paths.default_config_file().read_text()
    data = tomllib.loads(text)
    assert set(data) == set(config.SECTIONS)
    lines = text.splitlines()
    for section, cls in config.SECTIONS.items():
        assert set(data[section]) == set(cls.__dataclass_fields__), section
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            assert lines[index - 1].startswith("#"), f"key without a comment: {line}"


def test_defaults_load_without_site_file(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, env={})
    assert cfg.sip.port == 5060
    assert cfg.tls_port == 5061
    assert cfg.http.port == 8443
    assert (cfg.rtp.port_min, cfg.rtp.port_max) == (10000, 30000)
    assert cfg.sip.t1 == 0.5 and cfg.auth.realm == "pbx"


def test_site_file_overrides_defaults_and_flags_override_site(tmp_path: Path) -> None:
    (tmp_path / "pbx.toml").write_text(
        '[sip]\nport = 5070\nserver_header = "x"\n[auth]\nrealm = "acme"\n'
    )
    cfg = config.load(tmp_path, flags={"sip": {"port": 5080}}, env={})
    assert cfg.sip.port == 5080
    assert cfg.sip.server_header == "x"
    assert cfg.auth.realm == "acme"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sip]\nportt = 1\n", "sip.portt"),
        ("[nosuch]\na = 1\n", "nosuch"),
        ('[sip]\nport = "x"\n', "sip.port"),
        ("[sip]\nport = 70000\n", "sip.port"),
        ("[rtp]\nport_min = 3000\nport_max = 2000\n", "rtp.port_min"),
        ('[guard]\nallowlist = ["not-an-ip"]\n', "guard.allowlist"),
        ("[auth]\naccept_no_qop = 1\n", "auth.accept_no_qop"),
        ("[registrar]\nmin_expires = 9000\n", "registrar.min_expires"),
        ("[sip\n", "not valid TOML"),
        ("[calls]\ntransfer_recall = 0\n", "calls.transfer_recall"),
        ('[calls]\ntransfer_recall = "30"\n', "calls.transfer_recall"),
        ("[calls]\npark_timeout = -5\n", "calls.park_timeout"),
    ],
)
def test_bad_site_file_names_the_key(tmp_path: Path, text: str, needle: str) -> None:
    (tmp_path / "pbx.toml").write_text(text)
    with pytest.raises(config.ConfigError, match=needle.replace(".", r"\.")):
        config.load(tmp_path, env={})


def test_transfer_recall_and_park_timeout_have_defaults_and_site_values(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, env={})
    assert (cfg.calls.transfer_recall, cfg.calls.park_timeout) == (30.0, 120.0)
    (tmp_path / "pbx.toml").write_text("[calls]\ntransfer_recall = 15\npark_timeout = 45.5\n")
    cfg = config.load(tmp_path, env={})
    assert (cfg.calls.transfer_recall, cfg.calls.park_timeout) == (15.0, 45.5)


def test_timer_environment_shortens_sip_timers(tmp_path: Path) -> None:
    cfg = config.load(tmp_path, env={"PBX_SIP_T1": "0.05"})
    assert cfg.sip.t1 == 0.05


def test_port_range_flag() -> None:
    assert config.parse_port_range("20000-20100") == (20000, 20100)
    with pytest.raises(config.ConfigError):
        config.parse_port_range("20000")


def test_dns_servers_are_addresses_with_an_optional_port(tmp_path: Path) -> None:
    (tmp_path / "pbx.toml").write_text('[dns]\nservers = ["127.0.0.1:5353", "::1", "[::1]:53"]\n')
    assert config.load(tmp_path, env={}).dns.servers == ("127.0.0.1:5353", "::1", "[::1]:53")
    (tmp_path / "pbx.toml").write_text('[dns]\nservers = ["dns.example.net"]\n')
    with pytest.raises(config.ConfigError, match="dns.servers: 'dns.example.net'"):
        config.load(tmp_path, env={})
