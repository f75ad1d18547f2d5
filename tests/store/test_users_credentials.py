"""Users and their stored credentials."""

from __future__ import annotations

import pytest

from pbx.store.credentials import Credentials, get_credentials, set_credentials
from pbx.store.db import Store
from pbx.store.errors import AlreadyExists, NotFound
from pbx.store.registrations import apply_register, list_bindings
from pbx.store.users import (
    User,
    add_user,
    delete_user,
    get_user,
    list_users,
    set_user_enabled,
)

from .conftest import make_binding


def _creds(ext: str, pw_enc: str = "enc", at: float = 1.0) -> Credentials:
    return Credentials(ext, "pbx.local", pw_enc, "a" * 32, "b" * 64, at)


def test_add_and_get_user(store: Store) -> None:
    user = store.write(add_user, "100", "Alice", now=7.0)
    assert user == User("100", "Alice", True, 7.0)
    assert store.read(get_user, "100") == user
    assert store.read(get_user, "999") is None


def test_add_user_twice_raises_already_exists(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    with pytest.raises(AlreadyExists):
        store.write(add_user, "100", "Bob")
    assert store.read(get_user, "100").display_name == "Alice"  # type: ignore[union-attr]


def test_list_users_sorted_by_extension(store: Store) -> None:
    for ext in ["300", "100", "200"]:
        store.write(add_user, ext, f"user {ext}")
    assert [u.extension for u in store.read(list_users)] == ["100", "200", "300"]


def test_disable_user(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    store.write(set_user_enabled, "100", False)
    assert store.read(get_user, "100").enabled is False  # type: ignore[union-attr]
    with pytest.raises(NotFound):
        store.write(set_user_enabled, "404", True)


def test_delete_user_cascades_to_credentials_and_bindings(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    store.write(set_credentials, _creds("100"))
    b = make_binding("100", "sip:100@127.0.0.1:5062", 100.0)
    store.write(apply_register, "100", upserts=[b], removes=[], remove_all=False, now=0.0)
    store.write(delete_user, "100")
    assert store.read(get_user, "100") is None
    assert store.read(get_credentials, "100") is None
    assert store.read(list_bindings, now=0.0) == []


def test_delete_missing_user_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(delete_user, "404")


def test_set_credentials_upserts(store: Store) -> None:
    store.write(add_user, "100", "Alice")
    store.write(set_credentials, _creds("100", "old", 1.0))
    store.write(set_credentials, _creds("100", "new", 2.0))
    assert store.read(get_credentials, "100") == _creds("100", "new", 2.0)


def test_credentials_need_an_existing_user(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(set_credentials, _creds("404"))
