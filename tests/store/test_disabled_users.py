"""A disabled user (users.enabled = 0) has no usable credentials and no bindings."""

from __future__ import annotations

import pytest

from pbx.store.credentials import (
    Credentials,
    get_credentials,
    get_enabled_credentials,
    set_credentials,
)
from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.registrations import apply_register, list_bindings
from pbx.store.users import add_user, set_user_enabled

from .conftest import make_binding


def _creds(ext: str) -> Credentials:
    return Credentials(ext, "pbx", "enc", "a" * 32, "b" * 64, 1.0)


def _register(store: Store, ext: str, contact: str) -> None:
    binding = make_binding(ext, f"sip:{ext}@{contact}", 1000.0)
    store.write(apply_register, ext, upserts=[binding], removes=[], remove_all=False, now=0.0)


@pytest.fixture
def two_users(store: Store) -> Store:
    for ext in ("100", "200"):
        store.write(add_user, ext, f"user {ext}")
        store.write(set_credentials, _creds(ext))
    return store


def test_only_enabled_users_have_credentials_to_authenticate_with(two_users: Store) -> None:
    store = two_users
    assert store.read(get_enabled_credentials, "100") == _creds("100")
    store.write(set_user_enabled, "100", False)
    assert store.read(get_enabled_credentials, "100") is None
    assert store.read(get_enabled_credentials, "999") is None
    # the stored credentials are kept (pbx user show, re-enabling)
    assert store.read(get_credentials, "100") == _creds("100")
    store.write(set_user_enabled, "100", True)
    assert store.read(get_enabled_credentials, "100") == _creds("100")


def test_disabling_drops_the_users_bindings_and_only_theirs(two_users: Store) -> None:
    store = two_users
    _register(store, "100", "127.0.0.1:5062")
    _register(store, "100", "127.0.0.1:5064")
    _register(store, "200", "127.0.0.1:5066")
    store.write(set_user_enabled, "100", False)
    assert [b.extension for b in store.read(list_bindings, now=0.0)] == ["200"]
    store.write(set_user_enabled, "100", True)  # enabling does not bring them back
    assert [b.extension for b in store.read(list_bindings, now=0.0)] == ["200"]


def test_a_disabled_user_cannot_be_bound(two_users: Store) -> None:
    store = two_users
    store.write(set_user_enabled, "100", False)
    with pytest.raises(NotFound):
        _register(store, "100", "127.0.0.1:5062")
    assert store.read(list_bindings, now=0.0) == []
