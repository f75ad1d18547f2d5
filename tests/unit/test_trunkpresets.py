"""Provider presets: every shipped file loads; a bad file names the file and the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.config import ConfigError
from pbx.trunkpresets import load_preset, load_presets

GOOD = """title = "Example"
domain = "sip.example.net"
proxy = "proxy.example.net:5070"
transport = "tls"
register = true
expires = 600
number_format = "e164"
identity_headers = ["P-Asserted-Identity", "From"]
called_number = "to"
"""


def test_every_shipped_preset_loads() -> None:
    presets = load_presets()
    assert "generic" in presets
    for preset in presets.values():
        assert preset.title and preset.identity_headers


def test_a_good_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(GOOD, encoding="utf-8")
    preset = load_preset(path)
    assert (preset.name, preset.transport, preset.proxy) == (
        "example",
        "tls",
        "proxy.example.net:5070",
    )
    assert preset.identity_headers == ("P-Asserted-Identity", "From")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t: t.replace('title = "Example"\n', ""), "title: missing"),
        (lambda t: t + 'colour = "blue"\n', "colour: unknown key"),
        (lambda t: t.replace('"tls"', '"sctp"'), "transport: one of udp, tcp, tls"),
        (lambda t: t.replace("expires = 600", "expires = 5"), "expires"),
        (lambda t: t.replace("register = true", 'register = "yes"'), "register"),
        (lambda t: t.replace('"From"]', '"X-Caller"]'), "identity_headers"),
        (lambda t: t.replace(":5070", ":0"), "proxy"),
        (lambda t: t + 'allow_from = ["300.1.1.1"]\n', "allow_from"),
        (lambda t: t + "title = [\n", "not valid TOML"),
    ],
)
def test_a_bad_file_names_the_key_and_the_file(
    tmp_path: Path, change: object, message: str
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(change(GOOD), encoding="utf-8")  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message) as raised:
        load_preset(path)
    assert "bad.toml" in str(raised.value)
