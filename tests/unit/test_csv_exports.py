"""CSV exports cannot carry spreadsheet formulas (OWASP "CSV injection"), and what the users
export writes, both imports (`pbx user import` and the web's) read back unchanged.

Every export goes through pbx.csvsafe: the call history (pbx.store.cdr.as_csv, used by
``pbx cdr --csv``, the call history page and the API) and the users export (page and API).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx import userscsv
from pbx.csvsafe import safe_cell, unquote_cell
from pbx.store import cdr, sites, users
from pbx.store.db import Store
from tests.web.api_support import ADMIN, World, api_world
from web import services

from .test_cli import pbx

FORMULAS = ["=1+1", "+4930123456", "-2+3", "@SUM(A1)", "\t=1", "\r=1", '=HYPERLINK("x")']
HARMLESS = ["", "1001", "Alice", "a=b", "'quoted", "x-1", "4930"]
ROUND_TRIP = FORMULAS + HARMLESS + ["'=1+1", "''+49", "'", "'-", "'abc"]


@pytest.mark.parametrize("text", FORMULAS)
def test_a_cell_starting_like_a_formula_gets_one_quote(text: str) -> None:
    assert safe_cell(text) == "'" + text


@pytest.mark.parametrize("text", HARMLESS)
def test_other_text_is_written_as_is(text: str) -> None:
    assert safe_cell(text) == text


def test_numbers_written_by_pbx_stay_numbers() -> None:
    assert [safe_cell(v) for v in (-5, 30.5, 0, None, True)] == [-5, 30.5, 0, None, True]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_unquote_reverses_safe_cell(text: str) -> None:
    assert unquote_cell(str(safe_cell(text))) == text


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_call_history_csv_neutralises_caller_controlled_cells(tmp_path: Path) -> None:
    store = Store(tmp_path / "pbx.sqlite")
    store.open()
    try:
        record = cdr.CallRecord(
            "=cmd|' /C calc'!A0", "+4930123456", "-1", 10.0, caller_name="@SUM(1+1)*cmd",
            callee="1002", answered_at=12.0, ended_at=42.0, duration=30.0,
        )  # fmt: skip
        store.write(cdr.open_record, record)
        [row] = _rows(cdr.as_csv(store.read(cdr.recent)))
    finally:
        store.close()
    assert row["call_id"] == "'=cmd|' /C calc'!A0"
    assert (row["caller"], row["dialled"]) == ("'+4930123456", "'-1")
    assert row["caller_name"] == "'@SUM(1+1)*cmd"
    assert (row["callee"], row["disposition"]) == ("1002", "open")
    assert (row["duration"], row["started_at"], row["id"]) == ("30.0", "10.0", "1")


def test_pbx_cdr_csv_is_neutralised(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("db", "migrate", data=data).returncode == 0
    store = Store(data / "pbx.sqlite")
    store.open()
    try:
        store.write(cdr.add_record, cdr.CallRecord("c1", "+491", "=2", 1.0, disposition="failed"))
    finally:
        store.close()
    [row] = _rows(pbx("cdr", "--csv", data=data).stdout)
    assert (row["caller"], row["dialled"]) == ("'+491", "'=2")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path / "one") as w:
        yield w


def test_users_export_is_neutralised_and_both_imports_read_it_back(
    world: World, tmp_path: Path
) -> None:
    for extension, name, group in (
        ("+100", "=1+1", "sales"),
        ("-7", "@boss", None),
        ("*9", "'=x", "-desk"),
        ("401", "-", None),
    ):
        services.create_user(
            world.ctx, ADMIN, {"extension": extension, "display_name": name, "pickup_group": group}
        )
    exported = services.export_users_csv(world.ctx, ADMIN)
    rows = {r["extension"]: r for r in _rows(exported)}
    assert rows["'+100"]["name"] == "'=1+1" and rows["'-7"]["name"] == "'@boss"
    assert rows["*9"]["name"] == "''=x" and rows["401"]["name"] == "'-"
    assert rows["100"]["enabled"] == "1"
    assert rows["*9"]["pickup_group"] == "'-desk" and rows["'+100"]["pickup_group"] == "sales"
    expected = {
        (u["extension"], u["display_name"], u["pickup_group"])
        for u in services.list_users(world.ctx, ADMIN)
    }

    with api_world(tmp_path / "two") as other:  # the web import, into the same sites
        for user in services.list_users(other.ctx, ADMIN):
            services.delete_user(other.ctx, ADMIN, user["extension"])
        services.import_users_csv(other.ctx, ADMIN, exported)
        imported = {
            (u.extension, u.display_name, u.pickup_group)
            for u in other.store.read(users.list_users)
        }
    assert imported == expected

    csv_file = tmp_path / "export.csv"  # pbx user import
    csv_file.write_text(exported, encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data / "pbx.sqlite")
    store.open()
    try:  # the same sites, by name
        for site in world.store.read(sites.list_sites):
            store.write(sites.add_site, site.name, site.timezone)
    finally:
        store.close()
    done = pbx("user", "import", str(csv_file), data=data)
    assert done.returncode == 0, done.stderr
    store.open()
    try:
        assert {
            (u.extension, u.display_name, u.pickup_group) for u in store.read(users.list_users)
        } == expected
    finally:
        store.close()


def test_pbx_user_import_reads_sites_and_pickup_groups(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert pbx("user", "add", "999", data=data).returncode == 0  # creates the database
    store = Store(data / "pbx.sqlite")
    store.open()
    try:
        berlin = store.write(sites.add_site, "Berlin", "Europe/Berlin")
    finally:
        store.close()
    header = ",".join(userscsv.EXPORT_HEADER)
    done = pbx(
        "user", "import", "-", data=data,
        stdin=f"{header}\n100,,Ann,Berlin,1,1,sales\n101,,Bob,{berlin.id},1,1,\n102,,Cy,,1,0,x\n",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = Store(data / "pbx.sqlite")
    store.open()
    try:
        found = {u.extension: (u.site_id, u.pickup_group) for u in store.read(users.list_users)}
    finally:
        store.close()
    assert found == {
        "999": (None, None),
        "100": (berlin.id, "sales"),
        "101": (berlin.id, None),
        "102": (None, "x"),
    }
    for line, error in (
        ("200,,Di,Paris,1,1,", "row 1: no site 'Paris'"),
        ("200,,Di,,1,1,a b", "row 1: pickup group: use 1 to 32"),
        ("201,,Ed\n201,,Ed", "row 2: extension 201 appears twice"),
    ):
        refused = pbx("user", "import", "-", data=data, stdin=f"{header}\n{line}\n")
        assert refused.returncode == 1 and error in refused.stderr, refused.stderr
    assert "200" not in pbx("user", "list", data=data).stdout
