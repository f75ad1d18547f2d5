"""``pbx user set --pickup-group`` and ``pbx user show``: a user's pickup group."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from pbx.extensions import PICKUP_GROUP_ERROR

from .test_cli import pbx


def _group(data: Path, extension: str) -> str | None:
    with sqlite3.connect(data / "pbx.sqlite") as db:
        row = db.execute("SELECT pickup_group FROM users WHERE extension = ?", [extension])
        value: str | None = row.fetchone()[0]
    return value


def test_pickup_group_is_set_shown_cleared_and_audited(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "300", data=data).returncode == 0
    assert "pickup group: (none)" in pbx("user", "show", "300", data=data).stdout
    put = pbx("user", "set", "300", "--pickup-group", "sales.1", data=data)
    assert put.returncode == 0, put.stderr
    assert "300: pickup group sales.1" in put.stdout
    assert _group(data, "300") == "sales.1"
    assert "pickup group: sales.1" in pbx("user", "show", "300", data=data).stdout
    cleared = pbx("user", "set", "300", "--pickup-group", "none", data=data)
    assert cleared.returncode == 0 and "300: pickup group none" in cleared.stdout
    assert _group(data, "300") is None
    with sqlite3.connect(data / "pbx.sqlite") as db:
        rows = db.execute("SELECT old, new FROM audit_log WHERE action = 'user.set' ORDER BY id")
        entries = [(json.loads(old), json.loads(new)) for old, new in rows]
    assert entries[0][0]["pickup_group"] is None and entries[0][1] == {"pickup_group": "sales.1"}
    assert entries[1][0]["pickup_group"] == "sales.1" and entries[1][1] == {"pickup_group": None}


@pytest.mark.parametrize("bad", ["a b", "x" * 33, "sales!", ""])
def test_a_bad_pickup_group_gets_a_clear_error_and_nothing_is_saved(
    tmp_path: Path, bad: str
) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "300", data=data).returncode == 0
    assert pbx("user", "set", "300", "--pickup-group", "sales", data=data).returncode == 0
    refused = pbx("user", "set", "300", "--pickup-group", bad, data=data)
    assert refused.returncode == 1
    assert f"--pickup-group: {PICKUP_GROUP_ERROR}" in refused.stderr
    assert _group(data, "300") == "sales"


def test_pickup_group_of_a_missing_extension(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "300", data=data).returncode == 0
    missing = pbx("user", "set", "999", "--pickup-group", "sales", data=data)
    assert missing.returncode == 1 and "no extension 999" in missing.stderr
