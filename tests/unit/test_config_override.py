"""The site override file written by the web UI (pbx.config.read_override/write_override)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx import config


def test_no_override_file_reads_empty(tmp_path: Path) -> None:
    assert config.read_override(tmp_path) == {}


def test_write_override_round_trips_and_load_uses_it(tmp_path: Path) -> None:
    config.write_override(tmp_path, "rtp", "port_min", 20000)
    config.write_override(tmp_path, "rtp", "port_max", 20100)
    result = config.write_override(tmp_path, "sip", "transports", ("udp", "tcp"))
    assert result.rtp.port_min == 20000 and result.sip.transports == ("udp", "tcp")
    assert config.read_override(tmp_path) == {
        "rtp": {"port_min": 20000, "port_max": 20100},
        "sip": {"transports": ["udp", "tcp"]},
    }
    loaded = config.load(tmp_path, env={})
    assert (loaded.rtp.port_min, loaded.rtp.port_max) == (20000, 20100)
    assert (tmp_path / "pbx.toml").stat().st_mode & 0o077 == 0


def test_write_override_keeps_other_keys_and_none_removes(tmp_path: Path) -> None:
    (tmp_path / "pbx.toml").write_text('[auth]\nalgorithms = ["MD5"]\n[http]\nport = 9443\n')
    config.write_override(tmp_path, "http", "redirect_port", 8080)
    assert config.read_override(tmp_path)["http"] == {"port": 9443, "redirect_port": 8080}
    config.write_override(tmp_path, "http", "port", None)
    config.write_override(tmp_path, "http", "redirect_port", None)
    assert config.read_override(tmp_path) == {"auth": {"algorithms": ["MD5"]}}


@pytest.mark.parametrize(
    ("section", "key", "value", "needle"),
    [
        ("sip", "port", 70000, "sip.port"),
        ("sip", "port", "5060", "sip.port"),
        ("sip", "portt", 5060, "sip.portt"),
        ("nosuch", "a", 1, "nosuch"),
        ("rtp", "port_min", 40000, "rtp.port_min"),
        ("http", "redirect_port", 8443, "http.redirect_port"),
        ("calls", "max_duration", float("inf"), "calls.max_duration"),
        ("sip", "bind", "not-an-ip", "sip.bind"),
    ],
)
def test_bad_value_is_refused_and_changes_nothing(
    tmp_path: Path, section: str, key: str, value: object, needle: str
) -> None:
    config.write_override(tmp_path, "sip", "port", 5070)
    before = (tmp_path / "pbx.toml").read_bytes()
    with pytest.raises(config.ConfigError, match=needle.replace(".", r"\.")):
        config.write_override(tmp_path, section, key, value)
    assert (tmp_path / "pbx.toml").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["pbx.toml"]


def test_redirect_port_defaults_to_off(tmp_path: Path) -> None:
    assert config.load(tmp_path, env={}).http.redirect_port == 0
