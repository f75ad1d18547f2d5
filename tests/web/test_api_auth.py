"""Bearer-token authentication of the REST API: 401s, use tracking, support-token audit."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.store import audit, tokens
from tests.web.api_support import ApiResponse, World, add_token, api_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _assert_401(response: ApiResponse) -> None:
    assert response.status_code == 401
    assert response.json["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer",
        "Bearer   ",
        "Basic YWRtaW46YWRtaW4=",
        "Bearer not-a-known-token",
        "Bearer " + "x" * 5000,
        "Bearer pbx_\u00e9t\u00e9",
        "Bearer pbx_test_admin\x01",
    ],
)
def test_missing_malformed_or_unknown_token_is_401(world: World, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    _assert_401(world.call(None, "GET", "/api/v1/users", headers=headers))


def test_unknown_path_without_token_is_401_not_a_hint(world: World) -> None:
    _assert_401(world.call(None, "GET", "/api/v1/no-such-thing"))


def test_expired_token_is_401(world: World) -> None:
    add_token(world.store, "pbx_old", "admin", expires_at=time.time() - 1)
    _assert_401(world.call(None, "GET", "/api/v1/me", headers={"Authorization": "Bearer pbx_old"}))


def test_revoked_token_is_401_from_the_next_request(world: World) -> None:
    created = world.call("admin", "POST", "/api/v1/tokens", json={"name": "ci", "role": "admin"})
    assert created.status_code == 201
    secret = created.json["token"]
    auth = {"Authorization": f"Bearer {secret}"}
    assert world.call(None, "GET", "/api/v1/me", headers=auth).status_code == 200
    revoked = world.call("admin", "POST", f"/api/v1/tokens/{created.json['id']}/revoke")
    assert revoked.status_code == 204
    _assert_401(world.call(None, "GET", "/api/v1/me", headers=auth))


def test_token_secret_is_shown_once_and_stored_only_as_its_hash(world: World) -> None:
    created = world.call("admin", "POST", "/api/v1/tokens", json={"name": "ci", "role": "readonly"})
    secret = created.json["token"]
    listed = world.call("admin", "GET", "/api/v1/tokens").get_data(as_text=True)
    assert secret not in listed and "token_hash" not in listed
    stored = world.store.read(tokens.list_tokens)
    assert all(secret not in (t.token_hash, t.name) for t in stored)
    me = world.call(None, "GET", "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.json["role"] == "readonly"


def test_use_is_recorded_with_last_used_at(world: World) -> None:
    before = time.time()
    assert world.call("readonly", "GET", "/api/v1/me").status_code == 200
    token = world.store.read(tokens.token_by_hash, _hash("pbx_test_readonly"))
    assert token is not None and token.last_used_at is not None
    assert token.last_used_at >= before


def test_every_request_with_a_support_token_is_audited(world: World) -> None:
    add_token(world.store, "pbx_support", "admin", expires_at=time.time() + 3600)
    auth = {"Authorization": "Bearer pbx_support"}
    assert world.call(None, "GET", "/api/v1/users", headers=auth).status_code == 200
    assert world.call(None, "GET", "/api/v1/health", headers=auth).status_code == 200
    entries = world.store.read(audit.list_entries, actor="api:pbx_support")
    assert [e.target for e in entries if e.action == "support.api_request"] == [
        "GET /api/v1/health",
        "GET /api/v1/users",
    ]


def test_ordinary_token_reads_leave_no_audit_entry(world: World) -> None:
    count = len(world.store.read(audit.list_entries))
    assert world.call("admin", "GET", "/api/v1/users").status_code == 200
    assert len(world.store.read(audit.list_entries)) == count


def test_changes_are_audited_with_the_token_as_actor(world: World) -> None:
    response = world.call("admin", "PATCH", "/api/v1/users/100", json={"display_name": "Ann"})
    assert response.status_code == 200
    entry = world.store.read(audit.list_entries, limit=1)[0]
    assert (entry.actor, entry.action, entry.target) == ("api:pbx_test_admin", "user.update", "100")
    assert entry.new == {"display_name": "Ann"}


def test_user_token_whose_account_is_gone_is_401(world: World) -> None:
    add_token(world.store, "pbx_orphan", "user", created_by="web:nobody")
    _assert_401(
        world.call(None, "GET", "/api/v1/me", headers={"Authorization": "Bearer pbx_orphan"})
    )


def test_openapi_document_needs_no_token(world: World) -> None:
    response = world.call(None, "GET", "/api/v1/openapi.json")
    assert response.status_code == 200 and response.json["openapi"].startswith("3.1")


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()
