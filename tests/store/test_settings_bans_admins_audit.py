"""Settings, bans, admins and the audit log."""

from __future__ import annotations

import pytest

from pbx.store.admins import Admin, create_admin, get_admin, set_admin_password
from pbx.store.audit import AuditEntry, list_entries, record
from pbx.store.bans import Ban, active_bans, add_ban, delete_bans
from pbx.store.db import Store
from pbx.store.errors import AlreadyExists, NotFound
from pbx.store.settings import all_settings, get_setting, set_setting


def test_settings_round_trip_json(store: Store) -> None:
    assert store.read(get_setting, "missing", 42) == 42
    store.write(set_setting, "realm", "pbx.local")
    store.write(set_setting, "codecs", ["PCMU", "PCMA"])
    store.write(set_setting, "realm", "example.test")
    assert store.read(get_setting, "realm") == "example.test"
    assert store.read(all_settings) == {"codecs": ["PCMU", "PCMA"], "realm": "example.test"}


def test_ban_upsert_on_address_and_username(store: Store) -> None:
    store.write(add_ban, Ban("127.0.0.9", None, 100.0, "flood", 1.0))
    store.write(add_ban, Ban("127.0.0.9", None, 200.0, "flood again", 2.0))
    store.write(add_ban, Ban("127.0.0.9", "100", 150.0, "bad password", 3.0))
    assert store.read(active_bans, 0.0) == [
        Ban("127.0.0.9", None, 200.0, "flood again", 2.0),
        Ban("127.0.0.9", "100", 150.0, "bad password", 3.0),
    ]


def test_expired_bans_are_not_active(store: Store) -> None:
    store.write(add_ban, Ban("127.0.0.9", None, 100.0, "flood", 1.0))
    assert store.read(active_bans, 100.0) == []


def test_delete_bans_removes_user_pair_bans_too(store: Store) -> None:
    store.write(add_ban, Ban("127.0.0.9", None, 100.0, "flood", 1.0))
    store.write(add_ban, Ban("127.0.0.9", "100", 100.0, "bad password", 1.0))
    store.write(add_ban, Ban("127.0.0.8", None, 100.0, "flood", 1.0))
    assert store.write(delete_bans, "127.0.0.9") == 2
    assert [b.address for b in store.read(active_bans, 0.0)] == ["127.0.0.8"]


def test_admin_create_get_and_change_password(store: Store) -> None:
    admin = store.write(create_admin, "root", "hash1", True, now=5.0)
    assert admin == Admin("root", "hash1", True, 5.0)
    assert store.read(get_admin, "root") == admin
    store.write(set_admin_password, "root", "hash2", False)
    assert store.read(get_admin, "root") == Admin("root", "hash2", False, 5.0)
    assert store.read(get_admin, "nobody") is None


def test_admin_errors(store: Store) -> None:
    store.write(create_admin, "root", "hash1", True)
    with pytest.raises(AlreadyExists):
        store.write(create_admin, "root", "hash2", False)
    with pytest.raises(NotFound):
        store.write(set_admin_password, "nobody", "hash", False)


def test_audit_log_newest_first_with_filters(store: Store) -> None:
    store.write(record, actor="root", action="user.add", target="100", new={"name": "A"}, at=1.0)
    store.write(record, actor="bob", action="user.rename", target="100", old="A", new="B", at=2.0)
    store.write(record, actor="root", action="user.delete", target="200", at=3.0)
    entries = store.read(list_entries)
    assert [e.action for e in entries] == ["user.delete", "user.rename", "user.add"]
    assert entries[1] == AuditEntry(entries[1].id, 2.0, "bob", "user.rename", "100", "A", "B")
    assert [e.at for e in store.read(list_entries, actor="root")] == [3.0, 1.0]
    assert [e.at for e in store.read(list_entries, target="100", actor="root")] == [1.0]
    assert len(store.read(list_entries, limit=2)) == 2
