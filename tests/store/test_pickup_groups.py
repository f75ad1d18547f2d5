"""Pickup groups (migration m009): a user's group, set and cleared, and a group's members."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from pbx.extensions import PICKUP_GROUP_ERROR
from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.migrations import MIGRATIONS
from pbx.store.users import (
    add_user,
    get_user,
    list_users,
    pickup_group_members,
    set_pickup_group,
    set_user_enabled,
)


def test_new_users_are_in_no_group_and_can_be_put_in_one_and_taken_out(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    user = store.read(get_user, "100")
    assert user is not None and user.pickup_group is None
    store.write(set_pickup_group, "100", "sales-1.a_b")
    assert store.read(get_user, "100").pickup_group == "sales-1.a_b"  # type: ignore[union-attr]
    assert store.read(list_users)[0].pickup_group == "sales-1.a_b"
    store.write(set_pickup_group, "100", None)
    assert store.read(get_user, "100").pickup_group is None  # type: ignore[union-attr]


def test_members_are_the_enabled_users_of_the_group_sorted(store: Store) -> None:
    for ext, group in (("300", "sales"), ("100", "sales"), ("200", "support"), ("400", "sales")):
        store.write(add_user, ext, f"User {ext}")
        store.write(set_pickup_group, ext, group)
    store.write(add_user, "500", "No group")
    store.write(set_user_enabled, "400", False)
    assert store.read(pickup_group_members, "sales") == ["100", "300"]
    assert store.read(pickup_group_members, "support") == ["200"]
    assert store.read(pickup_group_members, "nobody") == []
    assert store.read(pickup_group_members, "Sales") == []  # names are case-sensitive


@pytest.mark.parametrize("bad", ["", "a b", "x" * 33, "sales!", "grüppe", "a/b"])
def test_a_bad_group_name_is_refused_and_nothing_changes(store: Store, bad: str) -> None:
    store.write(add_user, "100", "Alice")
    store.write(set_pickup_group, "100", "sales")
    with pytest.raises(ValueError, match="pickup group") as refused:
        store.write(set_pickup_group, "100", bad)
    assert str(refused.value) == PICKUP_GROUP_ERROR
    assert store.read(get_user, "100").pickup_group == "sales"  # type: ignore[union-attr]


def test_a_group_for_no_such_user_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(set_pickup_group, "404", "sales")


def test_the_group_column_is_indexed(store: Store) -> None:
    plan = store.read(
        lambda db: db.execute(
            "EXPLAIN QUERY PLAN SELECT extension FROM users "
            "WHERE pickup_group = 'x' AND enabled = 1"
        ).fetchall()
    )
    assert "users_pickup_group" in repr(plan)


def test_existing_users_are_in_no_group_after_m009(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m009_pickup_groups")
    old.execute("INSERT INTO users (extension, display_name, created_at) VALUES ('100', 'A', 1)")
    old.conn.commit()
    old.close()
    with Store(path) as store:
        user = store.read(get_user, "100")
        assert user is not None and user.pickup_group is None
        store.write(set_pickup_group, "100", "sales")
        assert store.read(pickup_group_members, "sales") == ["100"]
