"""``pbx user add --contact`` and ``pbx user set``: call waiting and static contacts."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from .test_cli import pbx


def _row(data: Path, extension: str) -> tuple[int, str | None]:
    with sqlite3.connect(data / "pbx.sqlite") as db:
        row = db.execute(
            "SELECT call_waiting, static_contact FROM users WHERE extension = ?", [extension]
        ).fetchone()
    return row[0], row[1]


def test_user_add_with_a_static_contact_and_user_set_changes_the_options(tmp_path: Path) -> None:
    data = tmp_path / "data"
    added = pbx("user", "add", "300", "--contact", "sip:127.0.0.1:5090", data=data)
    assert added.returncode == 0, added.stderr
    assert _row(data, "300") == (1, "sip:127.0.0.1:5090")
    changed = pbx("user", "set", "300", "--call-waiting", "off", "--contact", "none", data=data)
    assert changed.returncode == 0, changed.stderr
    assert "call waiting off" in changed.stdout
    assert _row(data, "300") == (0, None)
    again = pbx("user", "set", "300", "--contact", "sip:127.0.0.2:5070;transport=tcp", data=data)
    assert again.returncode == 0, again.stderr
    assert _row(data, "300") == (0, "sip:127.0.0.2:5070;transport=tcp")
    shown = pbx("user", "show", "300", data=data).stdout
    assert "call waiting: off" in shown and "sip:127.0.0.2:5070;transport=tcp" in shown
    with sqlite3.connect(data / "pbx.sqlite") as db:
        actions = [r[0] for r in db.execute("SELECT action FROM audit_log ORDER BY id")]
    assert actions.count("user.set") == 2


@pytest.mark.parametrize(
    "uri",
    ["sip:door.example.com:5060", "http://127.0.0.1/", "sip:127.0.0.1;transport=sctp", "nonsense"],
)
def test_a_bad_contact_gets_a_clear_error_and_nothing_is_saved(tmp_path: Path, uri: str) -> None:
    data = tmp_path / "data"
    refused = pbx("user", "add", "300", "--contact", uri, data=data)
    assert refused.returncode == 1 and "--contact" in refused.stderr, refused.stderr
    assert not (data / "pbx.sqlite").exists() or "300" not in pbx("user", "list", data=data).stdout
    assert pbx("user", "add", "301", data=data).returncode == 0
    set_bad = pbx("user", "set", "301", "--contact", uri, data=data)
    assert set_bad.returncode == 1 and "--contact" in set_bad.stderr
    assert _row(data, "301") == (1, None)


def test_user_set_needs_an_option_and_an_existing_extension(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "301", data=data).returncode == 0
    nothing = pbx("user", "set", "301", data=data)
    assert nothing.returncode == 1 and "nothing to change" in nothing.stderr
    missing = pbx("user", "set", "999", "--call-waiting", "off", data=data)
    assert missing.returncode == 1 and "no extension 999" in missing.stderr


def test_user_set_enabled_off_disables_and_drops_the_registrations(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "302", data=data).returncode == 0
    with sqlite3.connect(data / "pbx.sqlite") as db:
        db.execute(
            "INSERT INTO bindings (extension, contact, expires_at, call_id, cseq, transport, "
            "source_host, source_port, user_agent, path, updated_at) VALUES ('302', "
            "'sip:302@127.0.0.1:5062', 4e9, 'c', 1, 'UDP', '127.0.0.1', 5062, 'ua', '[]', 0)"
        )
    off = pbx("user", "set", "302", "--enabled", "off", data=data)
    assert off.returncode == 0, off.stderr
    assert "302: enabled off" in off.stdout
    with sqlite3.connect(data / "pbx.sqlite") as db:
        assert db.execute("SELECT enabled FROM users WHERE extension = '302'").fetchone() == (0,)
        assert db.execute("SELECT COUNT(*) FROM bindings").fetchone() == (0,)
    assert "enabled:      no" in pbx("user", "show", "302", data=data).stdout
    on = pbx("user", "set", "302", "--enabled", "on", data=data)
    assert on.returncode == 0, on.stderr
    assert "enabled:      yes" in pbx("user", "show", "302", data=data).stdout
