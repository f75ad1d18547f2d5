"""Per-user call options of migration m005: call waiting and the static contact."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.migrations import MIGRATIONS
from pbx.store.users import add_user, get_user, set_call_waiting, set_static_contact


def test_new_users_have_call_waiting_on_and_no_static_contact(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    user = store.read(get_user, "100")
    assert user is not None and user.call_waiting is True and user.static_contact is None
    store.write(add_user, "300", "Door", static_contact="sip:127.0.0.1:5090")
    assert store.read(get_user, "300").static_contact == "sip:127.0.0.1:5090"  # type: ignore[union-attr]


def test_call_waiting_and_contact_can_be_set_and_cleared(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    store.write(set_call_waiting, "100", False)
    store.write(set_static_contact, "100", "sip:127.0.0.2:5070;transport=tcp")
    user = store.read(get_user, "100")
    assert user is not None and user.call_waiting is False
    assert user.static_contact == "sip:127.0.0.2:5070;transport=tcp"
    store.write(set_static_contact, "100", None)
    store.write(set_call_waiting, "100", True)
    user = store.read(get_user, "100")
    assert user is not None and (user.call_waiting, user.static_contact) == (True, None)
    with pytest.raises(NotFound):
        store.write(set_call_waiting, "404", False)
    with pytest.raises(NotFound):
        store.write(set_static_contact, "404", None)


def test_existing_users_get_call_waiting_on_when_m005_is_applied(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m005_user_call_options")
    old.execute("INSERT INTO users VALUES ('100', 'Alice', 1, 1.0)")
    old.conn.commit()
    old.close()
    store = Store(path)
    store.open()
    try:
        user = store.read(get_user, "100")
        assert user is not None and (user.call_waiting, user.static_contact) == (True, None)
    finally:
        store.close()
