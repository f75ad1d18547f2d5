"""What the REST API routes do: users, sites, calls, settings, audit, tokens, errors; plus one
bad-input case per body with the field named in the answer and nothing written."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbx.config import read_override
from pbx.store import audit
from tests.web.api_support import World, api_world, dump


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _audit(world: World, action: str) -> list[audit.AuditEntry]:
    return [e for e in world.store.read(audit.list_entries, limit=500) if e.action == action]


def test_created_user_gets_a_sip_password_that_provisioning_shows_and_audits(
    world: World,
) -> None:
    created = world.call("admin", "POST", "/api/v1/users", json={"extension": "401", "site_id": 1})
    assert created.status_code == 201
    password = created.json["sip_password"]
    assert created.json["site_id"] == 1 and len(password) >= 12
    summary = world.call("admin", "GET", "/api/v1/users/401/provisioning?with_password=true")
    assert summary.json["password"] == password and summary.json["username"] == "401"
    shown = _audit(world, "user.show_password")
    assert [(e.actor, e.target) for e in shown] == [("api:pbx_test_admin", "401")]
    assert password not in repr(world.store.read(audit.list_entries, limit=500))


def test_reset_sip_password_returns_the_new_one(world: World) -> None:
    response = world.call("admin", "POST", "/api/v1/users/100/sip-password")
    assert response.status_code == 200
    new = response.json["sip_password"]
    assert new != world.sip_passwords["100"]
    summary = world.call("admin", "GET", "/api/v1/users/100/provisioning?with_password=true")
    assert summary.json["password"] == new
    chosen = world.call(
        "admin", "POST", "/api/v1/users/100/sip-password", json={"password": "Chosen-pass-42"}
    )
    assert chosen.json["sip_password"] == "Chosen-pass-42"


def test_update_and_delete_user(world: World) -> None:
    changed = world.call(
        "admin", "PATCH", "/api/v1/users/300", json={"display_name": "Door", "site_id": 2}
    )
    assert changed.status_code == 200
    assert (changed.json["display_name"], changed.json["site_id"]) == ("Door", 2)
    assert world.call("admin", "DELETE", "/api/v1/users/300").status_code == 204
    assert world.call("admin", "GET", "/api/v1/users/300").status_code == 404


def test_csv_import_all_or_nothing_and_export(world: World) -> None:
    bad = world.call(
        "admin", "POST", "/api/v1/users/import", json={"csv": "500,,Five\n100,,Taken\n"}
    )
    assert bad.status_code == 422 and bad.json["field"] == "file"
    assert world.call("admin", "GET", "/api/v1/users/500").status_code == 404
    good = world.call(
        "admin", "POST", "/api/v1/users/import", json={"csv": "500,,Five,HQ\n501,Secret-pw-1,Six\n"}
    )
    assert good.status_code == 201
    assert [g["extension"] for g in good.json["generated"]] == ["500"]
    export = world.call("admin", "GET", "/api/v1/users.csv")
    assert export.mimetype == "text/csv"
    lines = export.get_data(as_text=True).splitlines()
    assert lines[0].startswith("extension,password,name,site")
    assert "500,,Five,HQ,1,1," in lines


def test_site_crud_and_delete_refused_while_users_belong(world: World) -> None:
    created = world.call(
        "admin",
        "POST",
        "/api/v1/sites",
        json={"name": "Lab", "timezone": "UTC", "country_code": "49", "area_code": "30"},
    )
    assert created.status_code == 201
    site_id = created.json["id"]
    assert world.call("admin", "GET", f"/api/v1/sites/{site_id}").json["name"] == "Lab"
    patched = world.call("admin", "PATCH", f"/api/v1/sites/{site_id}", json={"name": "Lab 2"})
    assert patched.json["name"] == "Lab 2"
    in_use = world.call("admin", "DELETE", "/api/v1/sites/1")
    assert in_use.status_code == 409 and in_use.json["error"]
    assert world.call("admin", "DELETE", f"/api/v1/sites/{site_id}").status_code == 204
    assert world.call("admin", "GET", f"/api/v1/sites/{site_id}").status_code == 404


def test_call_records_filter_and_page(world: World) -> None:
    first = world.call("admin", "GET", "/api/v1/calls/records?per_page=1").json
    assert first["total"] == 2 and len(first["records"]) == 1 and first["page"] == 1
    second = world.call("admin", "GET", "/api/v1/calls/records?per_page=1&page=2").json
    assert second["records"][0]["id"] != first["records"][0]["id"]
    by_user = world.call("admin", "GET", "/api/v1/calls/records?user=200").json
    assert [r["call_id"] for r in by_user["records"]] == ["r2"]
    none = world.call("admin", "GET", "/api/v1/calls/records?disposition=busy").json
    assert none["total"] == 0
    # the day the records started on (not today: the run may cross midnight UTC)
    day = time.strftime("%Y-%m-%d", time.gmtime(first["records"][0]["started_at"]))
    dated = world.call("admin", "GET", f"/api/v1/calls/records?since={day}&until={day}").json
    assert dated["total"] == 2
    csv_text = world.call("admin", "GET", "/api/v1/calls/records.csv?user=100").get_data(
        as_text=True
    )
    assert "r1" in csv_text and "r2" not in csv_text
    counts = world.call("admin", "GET", "/api/v1/calls/counts").json
    assert sum(day["count"] for day in counts["per_day"]) == 2


def test_live_settings_change_is_applied_and_announced(world: World) -> None:
    response = world.call(
        "admin",
        "PATCH",
        "/api/v1/settings/live",
        json={"calls.retention_days": 90, "calls.codec_order": ["pcma", "PCMU"]},
    )
    assert response.status_code == 200
    assert response.json["calls.retention_days"] == 90
    assert response.json["calls.codec_order"] == ["PCMA", "PCMU"]
    assert world.live.changed == 1
    live = world.call("readonly", "GET", "/api/v1/settings").json["live"]
    assert live["calls.retention_days"] == 90


def test_process_settings_go_to_the_override_file(world: World) -> None:
    response = world.call("admin", "PATCH", "/api/v1/settings/process", json={"sip.port": 5070})
    assert response.status_code == 200
    assert response.json["takes_effect"] == "at restart"
    assert read_override(world.ctx.data_dir)["sip"]["port"] == 5070
    assert world.call("admin", "GET", "/api/v1/settings").json["process"]["sip.port"] == 5070


def test_audit_log_filters(world: World) -> None:
    world.call("admin", "PATCH", "/api/v1/users/100", json={"display_name": "Ann"})
    entries = world.call("readonly", "GET", "/api/v1/audit?action=user.update").json
    assert [(e["action"], e["target"]) for e in entries] == [("user.update", "100")]
    assert world.call("readonly", "GET", "/api/v1/audit?actor=api:nobody").json == []
    paged = world.call("readonly", "GET", "/api/v1/audit?per_page=2").json
    assert len(paged) == 2


def test_support_token_is_created_expiring_and_audited(world: World) -> None:
    created = world.call(
        "admin",
        "POST",
        "/api/v1/support-access",
        json={
            "kind": "token",
            "name": "vendor",
            "role": "readonly",
            "expires_at": time.time() + 600,
        },
    )
    assert created.status_code == 201 and created.json["expires_at"] is not None
    auth = {"Authorization": f"Bearer {created.json['token']}"}
    assert world.call(None, "GET", "/api/v1/users", headers=auth).status_code == 200
    assert world.call(None, "POST", "/api/v1/sites", headers=auth, json={}).status_code in (
        403,
        422,
    )
    assert len(_audit(world, "support.api_request")) == 2


def test_unknown_api_path_and_wrong_method_are_json(world: World) -> None:
    missing = world.call("admin", "GET", "/api/v1/nothing/here")
    assert missing.status_code == 404 and missing.json["error"]
    wrong = world.call("admin", "PUT", "/api/v1/users/100", json={})
    assert wrong.status_code == 405 and wrong.json["error"]
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "PATCH", "DELETE"}
    trailing = world.call("admin", "GET", "/api/v1/sites/1/")
    assert trailing.status_code == 404 and trailing.is_json


def test_unknown_query_parameter_is_named(world: World) -> None:
    response = world.call("admin", "GET", "/api/v1/users?sight_id=1")
    assert response.status_code == 422 and response.json["field"] == "sight_id"


BAD_BODIES: list[tuple[str, str, Any, int, str | None]] = [
    ("POST", "/api/v1/users", {"extension": "1 0"}, 422, "extension"),
    ("POST", "/api/v1/users", {"extension": "100"}, 409, None),
    ("POST", "/api/v1/users", {"extension": "402", "site_id": 99}, 422, "site_id"),
    ("POST", "/api/v1/users", {"extension": "402", "password": "short"}, 422, "password"),
    ("POST", "/api/v1/users", {"extension": "402", "static_contact": "http://x"}, 422, "static_contact"),
    ("POST", "/api/v1/users", {"display_name": "no extension"}, 422, "extension"),
    ("PATCH", "/api/v1/users/100", {"extension": "101"}, 422, "extension"),
    ("PATCH", "/api/v1/users/100", {"enabled": "yes"}, 422, "enabled"),
    ("POST", "/api/v1/users/100/sip-password", {"password": "quote\"d-pass"}, 422, "password"),
    ("POST", "/api/v1/users/import", {"csv": ""}, 422, "file"),
    ("POST", "/api/v1/sites", {"name": "HQ", "timezone": "UTC"}, 409, None),
    ("POST", "/api/v1/sites", {"name": "X", "timezone": "Mars/Olympus"}, 422, "timezone"),
    ("POST", "/api/v1/sites", {"name": "X", "timezone": "UTC", "area_code": "3a"}, 422, "area_code"),
    ("PATCH", "/api/v1/sites/1", {"number_block_start": "200", "number_block_end": "100"}, 422, "number_block_end"),
    ("PATCH", "/api/v1/settings/live", {"calls.retention_days": 0}, 422, "calls.retention_days"),
    ("PATCH", "/api/v1/settings/live", {"calls.codec_order": ["MP3"]}, 422, "calls.codec_order"),
    ("PATCH", "/api/v1/settings/live", {"calls.codec_order": []}, 422, "calls.codec_order"),
    ("PATCH", "/api/v1/settings/process", {"rtp.port_min": 40000}, 422, "rtp.port_min"),
    ("PATCH", "/api/v1/settings/process", {"sip.bind": "not-an-ip"}, 422, "sip.bind"),
    ("POST", "/api/v1/tokens", {"name": "x", "role": "site_admin"}, 422, "site_id"),
    ("POST", "/api/v1/tokens", {"name": "x", "role": "admin", "expires_at": 1000}, 422, "expires_at"),
    ("POST", "/api/v1/tokens", {"name": "x", "role": "root"}, 422, "role"),
    ("POST", "/api/v1/accounts", {"username": "a b", "role": "admin"}, 422, "username"),
    ("POST", "/api/v1/accounts", {"username": "ursula", "role": "admin"}, 409, None),
    ("POST", "/api/v1/accounts", {"username": "u2", "role": "user"}, 422, "extension"),
    ("PATCH", "/api/v1/accounts/nobody", {"disabled": True}, 404, None),
    ("POST", "/api/v1/support-access", {"kind": "token", "name": "v", "expires_at": time.time() + 90 * 86400}, 422, "expires_at"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    BAD_BODIES,
    ids=[f"{m} {p} {next(iter(b))}" for m, p, b, _, _ in BAD_BODIES],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(
    world: World, method: str, path: str, body: Any, status: int, field: str | None
) -> None:
    before = dump(world)
    response = world.call("admin", method, path, json=body)
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.json["error"]
    assert response.json.get("field") == field
    assert dump(world) == before


def test_trunk_states_for_system_roles_none_for_a_site_administrator(world: World) -> None:
    states = world.call("admin", "GET", "/api/v1/trunks/states")
    assert states.status_code == 200 and states.json[0]["state"] == "registered"
    assert world.call("readonly", "GET", "/api/v1/trunks/states").json[0]["name"] == "sipgate"
    assert world.call("site_admin", "GET", "/api/v1/trunks/states").json == []
    assert world.call("user", "GET", "/api/v1/trunks/states").status_code == 403
    assert world.call(None, "GET", "/api/v1/trunks/states").status_code == 401


def test_trunks_dids_routes_and_presets_are_listed_without_passwords(world: World) -> None:
    from pbx.store import dids, routes, trunks

    world.store.write(trunks.add_trunk, trunks.Trunk(
        name="sipgate", preset="sipgate", domain="sipconnect.sipgate.de", username="1234567t0",
        password_enc="gAAAA-secret-token"))  # fmt: skip
    world.store.write(dids.add_did, "+4930123456710", "100")
    world.store.write(routes.add_route, routes.Route("national", "0Z.", ("sipgate",), 10, "0"))
    (trunk,) = world.call("admin", "GET", "/api/v1/trunks").json
    assert trunk["name"] == "sipgate" and trunk["status"]["state"] == "registered"
    assert "secret" not in str(trunk) and "password_enc" not in trunk
    assert world.call("admin", "GET", "/api/v1/dids").json[0]["target"] == "100"
    (route,) = world.call("readonly", "GET", "/api/v1/routes").json
    assert (route["pattern"], route["trunks"], route["exit_digit"]) == ("0Z.", ["sipgate"], "0")
    presets = {p["name"] for p in world.call("admin", "GET", "/api/v1/trunk-presets").json}
    assert {"generic", "sipgate", "twilio", "sipus"} <= presets
    for path in ("/api/v1/trunks", "/api/v1/dids", "/api/v1/routes"):
        assert world.call("site_admin", "GET", path).json == []
        assert world.call("user", "GET", path).status_code == 403
