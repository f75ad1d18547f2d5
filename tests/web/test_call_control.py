"""REST call control: click-to-call, hang-up and blind transfer of active calls through the
Live double's call commands; permissions per role, 400 with the field for bad input, the
server's refusals (CallCommandError) as their status with error_id, and audit entries."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pbx.store import audit, users
from tests.web.api_support import World, api_world, dump
from web.backend import CallCommandError


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _originate(world: World, role: str, body: Any) -> Any:
    return world.call(role, "POST", "/api/v1/calls/originate", json=body)


def _transfer(world: World, role: str, call: str, body: Any) -> Any:
    return world.call(role, "POST", f"/api/v1/calls/active/{call}/transfer", json=body)


def _actions(world: World, action: str) -> list[audit.AuditEntry]:
    return world.store.read(audit.list_entries, action=action)


def test_originate_rings_the_users_phone_then_the_target(world: World) -> None:
    response = _originate(world, "admin", {"from": "100", "to": "+4930123"})
    assert response.status_code == 201
    assert response.json == {"call": "conv-9", "leg": "leg-9"}
    assert world.live.commands == [("originate", "100", "+4930123")]
    [entry] = _actions(world, "call.originate")
    assert (entry.actor, entry.target) == ("api:pbx_test_admin", "100")
    assert entry.new == {"to": "+4930123", "call": "conv-9", "leg": "leg-9"}


def test_originate_follows_the_roles(world: World) -> None:
    assert _originate(world, "site_admin", {"from": "100", "to": "300"}).status_code == 201
    assert _originate(world, "site_admin", {"from": "200", "to": "300"}).status_code == 403
    assert _originate(world, "site_admin", {"from": "300", "to": "100"}).status_code == 403
    assert _originate(world, "user", {"from": "100", "to": "*43"}).status_code == 201
    assert _originate(world, "user", {"from": "200", "to": "100"}).status_code == 403
    refused = _originate(world, "readonly", {"from": "100", "to": "300"})
    assert refused.status_code == 403 and refused.json["error_id"] == "forbidden"
    assert _originate(world, "readonly", {"from": "1 0", "to": ""}).status_code == 403
    assert world.live.commands == [("originate", "100", "300"), ("originate", "100", "*43")]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"from": "100"}, "to"),
        ({"to": "300"}, "from"),
        ({"from": "100", "to": "30 0"}, "to"),
        ({"from": "100", "to": ""}, "to"),
        ({"from": "100", "to": "x" * 33}, "to"),
        ({"from": "100", "to": 300}, "to"),
        ({"from": "10#0", "to": "300"}, "from"),
        ({"from": "999", "to": "300"}, "from"),
        ({"from": "100", "to": "300", "priority": 1}, "priority"),
    ],
)
def test_bad_originate_input_is_400_with_the_field(
    world: World, body: dict[str, Any], field: str
) -> None:
    before = dump(world)
    response = _originate(world, "admin", body)
    assert response.status_code == 400, response.json
    assert response.json["field"] == field and response.json["error_id"] == "invalid"
    assert world.live.commands == [] and dump(world) == before


def test_originate_from_a_disabled_extension_is_400(world: World) -> None:
    world.store.write(users.set_user_enabled, "100", False)
    response = _originate(world, "admin", {"from": "100", "to": "300"})
    assert response.status_code == 400 and "disabled" in response.json["error"]


def test_a_body_that_is_not_json_is_400_too(world: World) -> None:
    response = world.call(
        "admin", "POST", "/api/v1/calls/originate", data=b"[1]", content_type="application/json"
    )
    assert response.status_code == 400 and response.json["error_id"] == "bad_request"


@pytest.mark.parametrize(
    ("status", "error_id"),
    [(404, "not_found"), (404, "gone"), (409, "wrong_state"), (409, "refused"), (400, "refused")],
)
def test_the_servers_refusal_is_its_status_with_its_error_id(
    world: World, status: int, error_id: str
) -> None:
    world.live.refuse = CallCommandError(status, error_id, "no can do")
    for response in (
        _originate(world, "admin", {"from": "100", "to": "300"}),
        world.call("admin", "DELETE", "/api/v1/calls/active/conv-1"),
        _transfer(world, "admin", "conv-1", {"to": "200"}),
    ):
        assert response.status_code == status
        assert response.json == {"error": "no can do", "error_id": error_id}
    assert _actions(world, "call.originate") == [] and _actions(world, "call.transfer") == []


def test_hang_up_by_call_id_and_roles(world: World) -> None:
    assert world.call("admin", "DELETE", "/api/v1/calls/active/conv-1").status_code == 204
    assert world.call("admin", "DELETE", "/api/v1/calls/active/c1").status_code == 204
    assert world.call("admin", "DELETE", "/api/v1/calls/active/c2").status_code == 204
    assert world.live.commands == [
        ("hang_up_call", "conv-1"),
        ("hang_up_call", "conv-1"),  # named by its SIP Call-ID: the command gets the call's id
        ("hang_up_call", "c2"),  # a row without an id is named by its call_id
    ]
    gone = world.call("admin", "DELETE", "/api/v1/calls/active/nope")
    assert gone.status_code == 404 and gone.json["error_id"] == "not_found"
    assert world.call("site_admin", "DELETE", "/api/v1/calls/active/c2").status_code == 404
    assert world.call("user", "DELETE", "/api/v1/calls/active/c2").status_code == 404
    assert world.call("readonly", "DELETE", "/api/v1/calls/active/conv-1").status_code == 403
    assert world.call("user", "DELETE", "/api/v1/calls/active/conv-1").status_code == 204
    newest_first = [e.target for e in _actions(world, "call.hang_up")]
    assert newest_first == ["conv-1", "c2", "conv-1", "conv-1"]


def test_transfer_picks_the_party_and_checks_the_leg(world: World) -> None:
    assert _transfer(world, "admin", "conv-1", {"to": "200"}).status_code == 202
    assert _transfer(world, "user", "conv-1", {"to": "200"}).json["leg"] == "leg-300"
    named = _transfer(world, "site_admin", "conv-1", {"to": "200", "leg": "leg-100"})
    assert named.status_code == 202 and named.json == {
        "call": "conv-1",
        "leg": "leg-100",
        "to": "200",
    }
    assert _transfer(world, "admin", "c2", {"to": "100", "leg": None}).status_code == 202
    assert world.live.commands == [
        ("transfer_call", "conv-1", "200", None),  # the server transfers the callee
        ("transfer_call", "conv-1", "200", "leg-300"),  # the user's other party
        ("transfer_call", "conv-1", "200", "leg-100"),
        ("transfer_call", "c2", "100", None),  # no legs listed: the server picks the callee
    ]
    entry = _actions(world, "call.transfer")[0]  # newest first
    assert entry.target == "c2" and entry.new["to"] == "100"


def test_transfer_refusals(world: World) -> None:
    before = dump(world)
    bad_leg = _transfer(world, "admin", "conv-1", {"to": "200", "leg": "leg-x"})
    assert bad_leg.status_code == 400 and bad_leg.json["field"] == "leg"
    assert _transfer(world, "admin", "conv-1", {"to": "2 0"}).json["field"] == "to"
    assert _transfer(world, "admin", "conv-1", {}).status_code == 400
    assert _transfer(world, "admin", "nope", {"to": "200"}).status_code == 404
    assert _transfer(world, "site_admin", "c2", {"to": "100"}).status_code == 404
    assert _transfer(world, "readonly", "conv-1", {"to": "200"}).status_code == 403
    assert world.live.commands == [] and dump(world) == before


def test_the_user_role_sees_only_its_own_calls_and_others_are_404(world: World) -> None:
    assert _transfer(world, "user", "c2", {"to": "100"}).status_code == 404
    assert world.call("user", "GET", "/api/v1/calls/active").status_code == 403


def test_openapi_documents_400_for_the_call_commands(world: World) -> None:
    paths = world.call(None, "GET", "/api/v1/openapi.json").json["paths"]
    for path, method, status in (
        ("/api/v1/calls/originate", "post", "201"),
        ("/api/v1/calls/active/{call_id}/transfer", "post", "202"),
    ):
        responses = paths[path][method]["responses"]
        assert status in responses and "400" in responses and "422" not in responses
    hang_up = paths["/api/v1/calls/active/{call_id}"]["delete"]["responses"]
    assert {"204", "403", "404", "409"} <= set(hang_up)
