"""``ensure_first_admin`` (run by ``pbx serve`` at every start): only a fresh system without
any administrator gets the ``admin`` account."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.commands import ensure_first_admin
from pbx.credentials import verify_admin_password
from pbx.store import admins
from pbx.store.db import Store


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    monkeypatch.delenv("PBX_ADMIN_PASSWORD", raising=False)
    s = Store(tmp_path / "pbx.sqlite")
    s.open()
    yield s
    s.close()


def _names(store: Store) -> list[str]:
    return [a.username for a in store.read(admins.list_admins)]


def test_first_start_creates_admin_with_a_generated_password(store: Store) -> None:
    password = ensure_first_admin(store)
    assert password is not None
    admin = store.read(admins.get_admin, "admin")
    assert admin is not None and admin.role == "admin" and admin.must_change_password
    assert verify_admin_password(admin.password_hash, password)
    assert ensure_first_admin(store) is None  # the next start leaves it alone
    assert _names(store) == ["admin"]


def test_first_start_uses_pbx_admin_password(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PBX_ADMIN_PASSWORD", "chosen-admin-pw")
    assert ensure_first_admin(store) is None
    admin = store.read(admins.get_admin, "admin")
    assert admin is not None and not admin.must_change_password
    assert verify_admin_password(admin.password_hash, "chosen-admin-pw")


def test_deleted_admin_is_not_recreated_while_another_administrator_exists(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The known PBX_ADMIN_PASSWORD must not bring a deleted ``admin`` back at a restart."""
    monkeypatch.setenv("PBX_ADMIN_PASSWORD", "chosen-admin-pw")
    ensure_first_admin(store)
    store.write(admins.create_admin, "alice", "x", False, role="admin")
    store.write(admins.delete_admin, "admin")
    assert ensure_first_admin(store) is None
    assert _names(store) == ["alice"]


def test_a_disabled_administrator_still_counts(store: Store) -> None:
    store.write(admins.create_admin, "alice", "x", False, role="admin")
    store.write(admins.update_admin, "alice", disabled=True)
    assert ensure_first_admin(store) is None
    assert _names(store) == ["alice"]


def test_accounts_without_an_administrator_get_one(store: Store) -> None:
    store.write(admins.create_admin, "rita", "x", False, role="readonly")
    assert ensure_first_admin(store) is not None
    assert _names(store) == ["admin", "rita"]


def test_admin_name_taken_by_a_non_administrator_is_left_alone(store: Store) -> None:
    store.write(admins.create_admin, "admin", "x", False, role="readonly")
    assert ensure_first_admin(store) is None
    admin = store.read(admins.get_admin, "admin")
    assert admin is not None and admin.role == "readonly" and admin.password_hash == "x"
