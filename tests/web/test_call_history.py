"""Call history in the web UI and the REST API: each record's history on the call history
page (an expandable details element), in API record objects and in both CSV exports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from pbx.store import cdr, users
from tests.web.api_support import HISTORY, World, api_world
from tests.web.conftest import add_account, login
from web.backend import WebContext


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _records(world: World, role: str, query: str = "") -> dict[str, Any]:
    response = world.call(role, "GET", f"/api/v1/calls/records{query}")
    assert response.status_code == 200
    return {r["call_id"]: r for r in response.json["records"]}


def test_api_records_carry_their_history_in_order(world: World) -> None:
    records = _records(world, "admin")
    assert records["r1"]["history"] == [
        {"kind": e["kind"], "at": e["at"], "until": e["until"], "parties": e["parties"],
         "detail": e["detail"]}
        for e in HISTORY
    ]  # fmt: skip
    assert records["r2"]["history"] == []
    assert list(_records(world, "site_admin")) == ["r1"]  # site 1's only
    assert _records(world, "readonly")["r1"]["history"][0]["kind"] == "pickup"
    assert world.call("user", "GET", "/api/v1/calls/records").status_code == 403


def test_api_csv_has_the_history_column(world: World) -> None:
    response = world.call("admin", "GET", "/api/v1/calls/records.csv")
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True)))}
    assert rows["r1"]["history"] == "300 picked up the call ringing at 100; 100 + 300 talked 12 s"
    assert rows["r2"]["history"] == ""


def test_openapi_documents_history_entries(world: World) -> None:
    schemas = world.call(None, "GET", "/api/v1/openapi.json").json["components"]["schemas"]
    assert schemas["CallRecord"]["properties"]["history"]["items"] == {
        "$ref": "#/components/schemas/HistoryEntry"
    }
    assert schemas["HistoryEntry"]["properties"]["kind"]["enum"] == list(cdr.HISTORY_KINDS)


# -- the call history page ---------------------------------------------------------------------


def _add(ctx: WebContext, call_id: str, caller: str, history: list[dict[str, Any]]) -> None:
    record = cdr.CallRecord(
        call_id, caller, "300", 1_700_000_000.0, caller_user=caller, disposition="answered"
    )
    ctx.store.write(cdr.add_record, record, history=history)


@pytest.fixture
def calls(ctx: WebContext, sites_ab: tuple[int, int]) -> None:
    for ext, site in (("100", sites_ab[0]), ("200", sites_ab[1])):
        ctx.store.write(users.add_user, ext, f"User {ext}")
        ctx.store.write(users.set_user_site, ext, site)
    _add(ctx, "h1", "100", HISTORY)
    _add(ctx, "h2", "200", [{"kind": "park", "at": 5.0, "detail": "<b>200</b> parked on 701"}])
    _add(ctx, "h3", "100", [])


def test_page_shows_each_history_in_a_details_element(
    client: FlaskClient, ctx: WebContext, calls: None
) -> None:
    add_account(ctx, "root")
    login(client, "root")
    page = client.get("/calls").get_data(as_text=True)
    assert "<th>History</th>" in page
    assert page.count('<details class="history">') == 2
    assert "<summary>2 steps</summary>" in page and "<summary>1 step</summary>" in page
    assert "300 picked up the call ringing at 100</li>" in page
    assert "100 + 300 talked 12 s</li>" in page
    assert "&lt;b&gt;200&lt;/b&gt; parked on 701" in page and "<b>200</b>" not in page
    assert "<time>1970-01-01 00:16:40</time>" in page


def test_site_admin_page_shows_only_own_sites_histories(as_role: Any, calls: None) -> None:
    page = as_role("site_admin").get("/calls").get_data(as_text=True)
    assert page.count('<details class="history">') == 1 and "parked on 701" not in page


def test_page_csv_export_has_the_history_column(as_role: Any, calls: None) -> None:
    body = as_role("readonly").get("/calls/export.csv").get_data(as_text=True)
    rows = {r["call_id"]: r for r in csv.DictReader(io.StringIO(body))}
    assert rows["h1"]["history"] == "300 picked up the call ringing at 100; 100 + 300 talked 12 s"
    assert rows["h2"]["history"] == "<b>200</b> parked on 701" and rows["h3"]["history"] == ""
