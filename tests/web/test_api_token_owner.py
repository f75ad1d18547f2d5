"""An API token works only while the web account it belongs to does.

The owner is the account that made the token in the UI, or, for a token made through the API,
the owner of the token that made it. Disabling, deleting (UI, API, CLI or store alike: it is
checked at every request) or the expiry of a support account stop its tokens with 401.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.store import admins, tokens
from tests.web.api_support import ADMIN, World, api_world
from web import accounts, services
from web.auth import Account

ALICE = Account("alice", "admin", via="web")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        w.store.write(admins.create_admin, "alice", "x", False, role="admin")
        yield w


def _made_by_alice(world: World, name: str = "alice-ci") -> dict[str, str]:
    created = services.create_token(world.ctx, ALICE, {"name": name, "role": "admin"})
    assert created["owner"] == "alice" and created["created_by"] == "web:alice"
    return {"Authorization": f"Bearer {created['token']}"}


def _status(world: World, auth: dict[str, str]) -> int:
    return world.call(None, "GET", "/api/v1/me", headers=auth).status_code


def test_disabling_the_owner_stops_the_token_at_the_next_request(world: World) -> None:
    auth = _made_by_alice(world)
    assert _status(world, auth) == 200
    accounts.update_account(world.ctx, ADMIN, "alice", {"disabled": True})
    assert _status(world, auth) == 401
    accounts.update_account(world.ctx, ADMIN, "alice", {"disabled": False})
    assert _status(world, auth) == 200


def test_deleting_the_owner_in_the_store_stops_the_token(world: World) -> None:
    """As `pbx` commands or another process would: nothing revokes the token."""
    auth = _made_by_alice(world)
    world.store.write(admins.delete_admin, "alice")
    assert _status(world, auth) == 401
    assert all(t.revoked_at is None for t in world.store.read(tokens.list_tokens))


def test_deleting_the_owner_through_the_api_stops_the_token(world: World) -> None:
    auth = _made_by_alice(world)
    assert world.call("admin", "DELETE", "/api/v1/accounts/alice").status_code == 204
    assert _status(world, auth) == 401


def test_a_token_made_by_a_token_belongs_to_the_same_account(world: World) -> None:
    auth = _made_by_alice(world)
    made = world.call(
        None, "POST", "/api/v1/tokens", headers=auth, json={"name": "child", "role": "readonly"}
    )
    assert made.status_code == 201
    assert (made.json["owner"], made.json["created_by"]) == ("alice", "api:alice-ci")
    child = {"Authorization": f"Bearer {made.json['token']}"}
    assert _status(world, child) == 200
    world.store.write(admins.update_admin, "alice", disabled=True)
    assert _status(world, child) == 401


def test_tokens_of_an_expired_support_account_stop(world: World) -> None:
    world.store.write(
        admins.create_admin, "vendor", "x", False, role="admin", expires_at=time.time() + 60
    )
    vendor = Account("vendor", "admin", expires_at=time.time() + 60, via="web")
    created = services.create_token(world.ctx, vendor, {"name": "vendor-ci", "role": "admin"})
    auth = {"Authorization": f"Bearer {created['token']}"}
    assert _status(world, auth) == 200
    world.store.write(admins.update_admin, "vendor", expires_at=time.time() - 1)
    assert _status(world, auth) == 401


def test_a_token_without_an_owner_is_refused(world: World) -> None:
    """E.g. one made through the API whose maker could not be traced at the upgrade."""
    digest = services.hash_token("pbx_ownerless")
    world.store.write(tokens.add_token, "old", digest, "admin", None, "api:gone", None, time.time())
    assert _status(world, {"Authorization": "Bearer pbx_ownerless"}) == 401


def test_a_new_account_with_the_name_of_a_deleted_one_does_not_inherit_its_tokens(
    world: World,
) -> None:
    auth = _made_by_alice(world)
    world.store.write(admins.delete_admin, "alice")
    world.store.write(admins.create_admin, "alice", "y", False, role="admin", now=time.time() + 1)
    assert _status(world, auth) == 401
