"""``pbx trunk add|list|show|del|presets``: checked before anything is saved, the password
encrypted and never shown or audited."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pbx.credentials import SecretBox

from .test_cli import pbx

REGISTERING = [
    "trunk", "add", "prov", "--preset", "generic", "--domain", "sip.provider.example",
    "--username", "u1", "--password", "Trunk-secret-1",
]  # fmt: skip


def _rows(data: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(data / "pbx.sqlite") as db:
        return list(db.execute(sql))


def test_a_trunk_is_added_shown_listed_and_deleted_with_the_password_encrypted(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    added = pbx(*REGISTERING, "--proxy", "192.0.2.10:5070", data=data)
    assert added.returncode == 0, added.stderr
    assert "added trunk prov (registers)" in added.stdout
    ((password_enc,),) = _rows(data, "SELECT password_enc FROM trunks WHERE name = 'prov'")
    assert isinstance(password_enc, str) and "Trunk-secret-1" not in password_enc
    assert SecretBox(data / "secret.key").decrypt(password_enc) == "Trunk-secret-1"
    shown = json.loads(pbx("trunk", "show", "prov", "--json", data=data).stdout)
    assert shown["proxy"] == "192.0.2.10:5070" and shown["domain"] == "sip.provider.example"
    assert shown["register"] is True and shown["expires"] == 600 and "password" not in str(shown)
    assert "prov" in pbx("trunk", "list", data=data).stdout
    ((new,),) = _rows(data, "SELECT new FROM audit_log WHERE action = 'trunk.add'")
    assert "Trunk-secret" not in str(new) and json.loads(str(new))["username"] == "u1"
    assert pbx("trunk", "del", "prov", data=data).returncode == 0
    assert _rows(data, "SELECT name FROM trunks") == []
    again = pbx("trunk", "del", "prov", data=data)
    assert again.returncode == 1 and "no trunk prov" in again.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--preset", "nope"], "--preset: no preset 'nope'; one of"),
        (["--domain", ""], "--domain: the generic preset needs the provider's domain"),
        (["--domain", "bad host!"], "--domain"),
        (["--domain", "sip.example:5060"], "without a port"),
        (["--proxy", "192.0.2.1:99999"], "--proxy"),
        (["--password", ""], "needs --username and --password"),
        (["--no-register"], "needs --allow-from"),
        (["--no-register", "--allow-from", "10.0.0.300"], "--allow-from: '10.0.0.300'"),
        (["--expires", "5"], "--expires"),
        (["--username", 'a"b'], "--username"),
    ],
)
def test_bad_options_get_a_clear_message_and_nothing_is_saved(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    data = tmp_path / "data"
    assert pbx(
            "trunk", "add", "other", "--preset", "generic", "--domain", "x.example",
               "--username", "u", "--password", "p", data=data).returncode == 0  # fmt: skip
    refused = pbx(*REGISTERING, *extra, data=data)
    assert refused.returncode == 1 and message in refused.stderr, refused.stderr
    assert _rows(data, "SELECT name FROM trunks") == [("other",)]


def test_a_bad_name_a_duplicate_and_the_seventeenth_trunk_are_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    bad = pbx("trunk", "add", "Bad Name", *REGISTERING[3:], data=data)
    assert bad.returncode == 1 and "trunk name" in bad.stderr
    for n in range(16):
        assert pbx("trunk", "add", f"t{n}", *REGISTERING[3:], data=data).returncode == 0
    assert "already exists" in pbx("trunk", "add", "t1", *REGISTERING[3:], data=data).stderr
    over = pbx("trunk", "add", "t16", *REGISTERING[3:], data=data)
    assert over.returncode == 1 and "at most 16 trunks" in over.stderr


def test_an_ip_authenticated_trunk_keeps_its_networks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = pbx(
        "trunk", "add", "ipt", "--preset", "generic", "--domain", "sip.example.net",
        "--no-register", "--allow-from", "192.0.2.7", "--allow-from", "198.51.100.0/24",
        data=data,
    )  # fmt: skip
    assert added.returncode == 0 and "IP-authenticated" in added.stdout
    shown = json.loads(pbx("trunk", "show", "ipt", "--json", data=data).stdout)
    assert shown["allow_from"] == ["192.0.2.7/32", "198.51.100.0/24"]
    assert shown["register"] is False


def test_presets_are_listed(tmp_path: Path) -> None:
    listed = pbx("trunk", "presets", data=tmp_path / "data")
    assert listed.returncode == 0 and "generic" in listed.stdout


def test_dids_are_added_listed_refused_when_taken_or_bad_and_deleted(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "10", data=data).returncode == 0
    added = pbx("did", "add", "+49 30 1234567-10", "--to", "10", data=data)
    assert added.returncode == 0 and "+4930123456710 -> 10" in added.stdout
    taken = pbx("did", "add", "004930123456710", "--to", "10", data=data)
    assert taken.returncode == 1 and "already taken (it goes to 10)" in taken.stderr
    bad = pbx("did", "add", "030123", "--to", "10", data=data)
    assert bad.returncode == 1 and "international number" in bad.stderr
    nobody = pbx("did", "add", "+4930123456711", "--to", "99", data=data)
    assert nobody.returncode == 1 and "--to: no extension 99" in nobody.stderr
    assert _rows(data, "SELECT number, target FROM dids") == [("+4930123456710", "10")]
    assert "+4930123456710" in pbx("did", "list", data=data).stdout
    assert pbx("did", "del", "+4930123456710", data=data).returncode == 0
    assert _rows(data, "SELECT number FROM dids") == []


def test_routes_are_checked_listed_in_priority_order_and_keep_their_trunks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx(*REGISTERING, data=data).returncode == 0
    national = pbx("route", "add", "national", "--pattern", "0Z.", "--exit-digit", "0",
                   "--trunk", "prov", data=data)  # fmt: skip
    assert national.returncode == 0, national.stderr
    emergency = pbx("route", "add", "emergency", "--pattern", "11[02]", "--priority", "1",
                    "--trunk", "prov", data=data)  # fmt: skip
    assert emergency.returncode == 0
    for extra, message in (
        (["--pattern", "0Q.", "--trunk", "prov"], "--pattern"),
        (["--pattern", "0.", "--trunk", "nope"], "--trunk: no trunk nope"),
        (["--pattern", "0.", "--trunk", "prov", "--trunk", "prov"], "each trunk once"),
        (["--pattern", "0.", "--trunk", "prov", "--exit-digit", "00"], "--exit-digit"),
        (["--pattern", "0.", "--trunk", "prov", "--priority", "-1"], "--priority"),
    ):
        refused = pbx("route", "add", "bad", *extra, data=data)
        assert refused.returncode == 1 and message in refused.stderr, (extra, refused.stderr)
    assert "already exists" in pbx("route", "add", "national", "--pattern", "0.", "--trunk",
                                   "prov", data=data).stderr  # fmt: skip
    listed = pbx("route", "list", data=data).stdout.splitlines()
    assert [line.split()[1] for line in listed] == ["emergency", "national"]
    in_use = pbx("trunk", "del", "prov", data=data)
    assert in_use.returncode == 1 and "used by route(s) emergency, national" in in_use.stderr
    assert pbx("route", "del", "national", data=data).returncode == 0
    assert _rows(data, "SELECT name FROM routes") == [("emergency",)]
