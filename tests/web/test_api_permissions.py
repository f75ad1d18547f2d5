"""Every REST API route with every role: allowed answers, refusals, and refusals write nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.web.api_support import ROLES, World, api_world, dump


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    expect: tuple[int, int, int, int]  # admin, site_admin, readonly, user
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"

    def send(self, world: World, role: str) -> Any:
        kwargs = {} if self.body is None else {"json": self.body}
        return world.call(role, self.method, self.path, **kwargs)


READS = [
    Case("GET", "/api/v1/users", (200, 200, 200, 403)),
    Case("GET", "/api/v1/users?site_id=2", (200, 403, 200, 403)),
    Case("GET", "/api/v1/users/100", (200, 200, 200, 200)),
    Case("GET", "/api/v1/users/200", (200, 404, 200, 403)),
    Case("GET", "/api/v1/users/100/provisioning", (200, 200, 200, 200)),
    Case("GET", "/api/v1/users/100/provisioning?with_password=true", (200, 200, 403, 200)),
    Case("GET", "/api/v1/users/200/provisioning?with_password=true", (200, 404, 403, 403)),
    Case("GET", "/api/v1/users.csv", (200, 200, 200, 403)),
    Case("GET", "/api/v1/sites", (200, 200, 200, 403)),
    Case("GET", "/api/v1/sites/1", (200, 200, 200, 403)),
    Case("GET", "/api/v1/sites/2", (200, 404, 200, 403)),
    Case("GET", "/api/v1/devices", (200, 200, 200, 403)),
    Case("GET", "/api/v1/devices?site_id=2", (200, 403, 200, 403)),
    Case("GET", "/api/v1/registrations", (200, 200, 200, 403)),
    Case("GET", "/api/v1/calls/active", (200, 200, 200, 403)),
    Case("GET", "/api/v1/calls/records", (200, 200, 200, 403)),
    Case("GET", "/api/v1/calls/records?site_id=2", (200, 403, 200, 403)),
    Case("GET", "/api/v1/calls/records.csv", (200, 200, 200, 403)),
    Case("GET", "/api/v1/calls/counts", (200, 200, 200, 403)),
    Case("GET", "/api/v1/settings", (200, 403, 200, 403)),
    Case("GET", "/api/v1/audit", (200, 403, 200, 403)),
    Case("GET", "/api/v1/tokens", (200, 403, 200, 403)),
    Case("GET", "/api/v1/accounts", (200, 403, 200, 403)),
    Case("GET", "/api/v1/health", (200, 200, 200, 403)),
    Case("GET", "/api/v1/feature-codes", (200, 200, 200, 403)),
    Case("GET", "/api/v1/trunks", (200, 200, 200, 403)),  # a site admin gets an empty list
    Case("GET", "/api/v1/trunks/states", (200, 200, 200, 403)),
    Case("GET", "/api/v1/trunk-presets", (200, 200, 200, 403)),
    Case("GET", "/api/v1/dids", (200, 200, 200, 403)),
    Case("GET", "/api/v1/routes", (200, 200, 200, 403)),
    Case("GET", "/api/v1/me", (200, 200, 200, 200)),
]

WRITES = [
    Case("POST", "/api/v1/users", (201, 201, 403, 403), {"extension": "400"}),
    Case("POST", "/api/v1/users", (201, 403, 403, 403), {"extension": "400", "site_id": 2}),
    Case("PATCH", "/api/v1/users/100", (200, 200, 403, 403), {"display_name": "X"}),
    Case("PATCH", "/api/v1/users/200", (200, 404, 403, 403), {"display_name": "X"}),
    Case("DELETE", "/api/v1/users/100", (204, 204, 403, 403)),
    Case("DELETE", "/api/v1/users/300", (204, 404, 403, 403)),
    Case("POST", "/api/v1/users/100/sip-password", (200, 200, 403, 403), {}),
    Case(
        "POST",
        "/api/v1/users/200/sip-password",
        (200, 404, 403, 403),
        {"password": "Secret-pass-1"},
    ),
    Case("POST", "/api/v1/users/import", (201, 201, 403, 403), {"csv": "400,,Four\n401,,Five\n"}),
    Case("POST", "/api/v1/sites", (201, 403, 403, 403), {"name": "New", "timezone": "UTC"}),
    Case("PATCH", "/api/v1/sites/1", (200, 403, 403, 403), {"area_code": "30"}),
    Case("DELETE", "/api/v1/sites/3", (204, 403, 403, 403)),
    Case("PATCH", "/api/v1/settings/live", (200, 403, 403, 403), {"calls.retention_days": 90}),
    Case("PATCH", "/api/v1/settings/process", (200, 403, 403, 403), {"rtp.port_min": 20000}),
    Case("POST", "/api/v1/tokens", (201, 403, 403, 403), {"name": "ci", "role": "readonly"}),
    Case("POST", "/api/v1/tokens/3/revoke", (204, 403, 403, 403)),
    Case("POST", "/api/v1/accounts", (201, 403, 403, 403), {"username": "bob", "role": "readonly"}),
    Case("PATCH", "/api/v1/accounts/ursula", (200, 403, 403, 403), {"disabled": True}),
    Case("DELETE", "/api/v1/accounts/ursula", (204, 403, 403, 403)),
    Case("POST", "/api/v1/accounts/ursula/reset-password", (200, 403, 403, 403)),
    Case("POST", "/api/v1/calls/originate", (201, 201, 403, 201), {"from": "100", "to": "300"}),
    Case("POST", "/api/v1/calls/originate", (201, 403, 403, 403), {"from": "200", "to": "300"}),
    Case("DELETE", "/api/v1/calls/active/conv-1", (204, 204, 403, 204)),
    Case("DELETE", "/api/v1/calls/active/c2", (204, 404, 403, 404)),
    Case("POST", "/api/v1/calls/active/conv-1/transfer", (202, 202, 403, 202), {"to": "200"}),
    Case("POST", "/api/v1/calls/active/c2/transfer", (202, 404, 403, 404), {"to": "100"}),
    Case(
        "POST",
        "/api/v1/support-access",
        (201, 403, 403, 403),
        {"kind": "token", "name": "vendor", "expires_at": time.time() + 3600},
    ),
]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with api_world(tmp_path_factory.mktemp("api-reads")) as world:
        yield world


@pytest.mark.parametrize("case", READS, ids=lambda c: c.id)
def test_read_route_answers_each_role_as_the_permission_model_says(
    shared: World, case: Case
) -> None:
    for role, expected in zip(ROLES, case.expect, strict=True):
        response = case.send(shared, role)
        assert response.status_code == expected, (role, response.get_data(as_text=True))
        if expected >= 400:
            assert response.is_json and response.json and response.json["error"]


@pytest.mark.parametrize("case", WRITES, ids=lambda c: c.id)
def test_write_route_allows_permitted_roles_and_refusals_write_nothing(
    tmp_path: Path, case: Case
) -> None:
    denied = tmp_path / "denied"
    denied.mkdir()
    with api_world(denied) as world:
        before = dump(world)
        for role, expected in zip(ROLES, case.expect, strict=True):
            if expected >= 400:
                response = case.send(world, role)
                assert response.status_code == expected, (role, response.get_data(as_text=True))
                assert response.json and response.json["error"]
        assert dump(world) == before
    for role, expected in zip(ROLES, case.expect, strict=True):
        if expected < 400:
            folder = tmp_path / role
            folder.mkdir()
            with api_world(folder) as world:
                before = dump(world)
                response = case.send(world, role)
                assert response.status_code == expected, (role, response.get_data(as_text=True))
                assert dump(world) != before


def test_site_admin_sees_only_their_sites_users_devices_calls_and_registrations(
    shared: World,
) -> None:
    def get(path: str) -> Any:
        response = shared.call("site_admin", "GET", path)
        assert response.status_code == 200
        return response.json

    assert [u["extension"] for u in get("/api/v1/users")] == ["100"]
    assert [d["extension"] for d in get("/api/v1/devices")] == ["100"]
    assert [r["extension"] for r in get("/api/v1/registrations")] == ["100"]
    assert [c["call_id"] for c in get("/api/v1/calls/active")] == ["c1"]
    page = get("/api/v1/calls/records")
    assert page["total"] == 1 and page["records"][0]["call_id"] == "r1"
    assert [s["id"] for s in get("/api/v1/sites")] == [1]
    assert "200" not in shared.call("site_admin", "GET", "/api/v1/users.csv").get_data(as_text=True)


def test_admin_sees_every_site(shared: World) -> None:
    users = shared.call("admin", "GET", "/api/v1/users").json
    assert [u["extension"] for u in users] == ["100", "200", "300"]
    only_two = shared.call("admin", "GET", "/api/v1/users?site_id=2").json
    assert [u["extension"] for u in only_two] == ["200"]


def test_readonly_never_receives_a_sip_password(shared: World) -> None:
    for case in READS:
        body = case.send(shared, "readonly").get_data(as_text=True)
        for password in shared.sip_passwords.values():
            assert password not in body, case.id
    summary = shared.call("readonly", "GET", "/api/v1/users/100/provisioning").json
    assert summary["password"] is None


def test_user_role_reads_only_its_own_extension(shared: World) -> None:
    own = shared.call("user", "GET", "/api/v1/users/100/provisioning?with_password=true")
    assert own.status_code == 200
    assert own.json["password"] == shared.sip_passwords["100"]
    assert shared.call("user", "GET", "/api/v1/users/200").status_code == 403
    assert shared.call("user", "GET", "/api/v1/users").status_code == 403
    assert shared.call("user", "PATCH", "/api/v1/users/100", json={}).status_code == 403
