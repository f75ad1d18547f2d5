"""Store functions of the admin web UI (migration m006): sites, accounts, tokens, users' sites,
audit filters."""

from __future__ import annotations

import pytest

from pbx.store import admins, audit, sites, tokens, users
from pbx.store.db import Store
from pbx.store.errors import AlreadyExists, InUse, NotFound


def test_site_create_get_list_update(store: Store) -> None:
    berlin = store.write(
        sites.add_site, "Berlin", "Europe/Berlin", "49", "30", "100", "199", now=1.0
    )
    store.write(sites.add_site, "aachen", "Europe/Berlin")
    assert store.read(sites.get_site, berlin.id) == berlin
    assert [s.name for s in store.read(sites.list_sites)] == ["aachen", "Berlin"]
    moved = store.write(sites.update_site, berlin.id, area_code="31", name="Berlin-Mitte")
    assert (moved.name, moved.area_code, moved.timezone) == ("Berlin-Mitte", "31", "Europe/Berlin")
    assert store.read(sites.get_site, 999) is None


def test_site_errors(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(sites.add_site, "B", "UTC")
    with pytest.raises(AlreadyExists):
        store.write(sites.add_site, "A", "UTC")
    with pytest.raises(AlreadyExists):
        store.write(sites.update_site, site.id, name="B")
    with pytest.raises(NotFound):
        store.write(sites.update_site, 999, name="C")
    with pytest.raises(ValueError):
        store.write(sites.update_site, site.id, id=5)
    with pytest.raises(NotFound):
        store.write(sites.delete_site, 999)


def test_site_with_users_cannot_be_deleted(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(users.add_user, "100", "Alice", site_id=site.id)
    with pytest.raises(InUse, match="1 users"):
        store.write(sites.delete_site, site.id)
    store.write(users.set_user_site, "100", None)
    store.write(sites.delete_site, site.id)
    assert store.read(sites.list_sites) == []


def test_site_with_a_site_admin_or_live_token_cannot_be_deleted(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(admins.create_admin, "sa", "h", False, role="site_admin", site_id=site.id)
    with pytest.raises(InUse, match="accounts"):
        store.write(sites.delete_site, site.id)
    store.write(admins.delete_admin, "sa")
    token = store.write(
        tokens.add_token, "t", "ab" * 32, "site_admin", site.id, "web:admin", None, 1.0
    )
    with pytest.raises(InUse, match="tokens"):
        store.write(sites.delete_site, site.id)
    store.write(tokens.revoke_token, token.id, 2.0)
    store.write(sites.delete_site, site.id)


def test_users_belong_to_sites_and_list_filters_by_site(store: Store) -> None:
    a = store.write(sites.add_site, "A", "UTC")
    b = store.write(sites.add_site, "B", "UTC")
    store.write(users.add_user, "100", "Alice", site_id=a.id)
    store.write(users.add_user, "200", "Bob")
    store.write(users.set_user_site, "200", b.id)
    store.write(users.set_display_name, "200", "Robert")
    assert [u.extension for u in store.read(users.list_users, a.id)] == ["100"]
    bob = store.read(users.get_user, "200")
    assert bob is not None and (bob.site_id, bob.display_name) == (b.id, "Robert")
    assert len(store.read(users.list_users)) == 2


def test_user_site_must_exist(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(users.add_user, "100", "Alice", site_id=42)
    store.write(users.add_user, "100", "Alice")
    with pytest.raises(NotFound):
        store.write(users.set_user_site, "100", 42)
    with pytest.raises(NotFound):
        store.write(users.set_display_name, "999", "x")


def test_admin_roles_and_fields(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    created = store.write(
        admins.create_admin, "sa", "h", True, role="site_admin", site_id=site.id, now=3.0
    )
    assert (created.role, created.site_id, created.disabled, created.failed_logins) == (
        "site_admin",
        site.id,
        False,
        0,
    )
    store.write(admins.create_admin, "support", "h", False, role="readonly", expires_at=100.0)
    store.write(admins.create_admin, "u100", "h", False, role="user", extension="100")
    assert [a.username for a in store.read(admins.list_admins)] == ["sa", "support", "u100"]
    support = store.read(admins.get_admin, "support")
    assert support is not None and support.expired(100.0) and not support.expired(99.0)
    changed = store.write(admins.update_admin, "sa", role="admin", site_id=None, disabled=True)
    assert (changed.role, changed.site_id, changed.disabled) == ("admin", None, True)


def test_admin_update_and_delete_errors(store: Store) -> None:
    with pytest.raises(ValueError):
        store.write(admins.create_admin, "x", "h", False, role="root")
    store.write(admins.create_admin, "x", "h", False)
    with pytest.raises(ValueError):
        store.write(admins.update_admin, "x", role="root")
    with pytest.raises(ValueError):
        store.write(admins.update_admin, "x", password_hash="h2")
    with pytest.raises(NotFound):
        store.write(admins.update_admin, "nobody", disabled=True)
    with pytest.raises(NotFound):
        store.write(admins.update_admin, "x", site_id=77)
    store.write(admins.delete_admin, "x")
    with pytest.raises(NotFound):
        store.write(admins.delete_admin, "x")


def test_login_failures_lock_the_account_until_success_or_reset(store: Store) -> None:
    store.write(admins.create_admin, "admin", "h", False)
    for _ in range(4):
        admin = store.write(admins.login_failed, "admin", 10.0, 5, 60.0)
        assert not admin.locked(10.0)
    admin = store.write(admins.login_failed, "admin", 10.0, 5, 60.0)
    assert admin.failed_logins == 5 and admin.locked_until == 70.0
    assert admin.locked(69.9) and not admin.locked(70.0)
    # after the lock has run out, one more failure locks again
    assert store.write(admins.login_failed, "admin", 80.0, 5, 60.0).locked(81.0)
    store.write(admins.login_succeeded, "admin")
    fresh = store.read(admins.get_admin, "admin")
    assert fresh is not None and (fresh.failed_logins, fresh.locked_until) == (0, None)
    store.write(admins.login_failed, "admin", 90.0, 1, 60.0)
    store.write(admins.set_admin_password, "admin", "h2", False)  # pbx admin reset-password
    reset = store.read(admins.get_admin, "admin")
    assert reset is not None and not reset.locked(91.0)
    with pytest.raises(NotFound):
        store.write(admins.login_failed, "nobody", 1.0, 5, 60.0)


def test_tokens_add_find_revoke_touch(store: Store) -> None:
    token = store.write(tokens.add_token, "ci", "aa" * 32, "readonly", None, "web:admin", 50.0, 1.0)
    assert store.read(tokens.token_by_hash, "aa" * 32) == token
    assert store.read(tokens.token_by_hash, "bb" * 32) is None
    assert token.usable(49.0) and not token.usable(50.0)
    store.write(tokens.touch_token, token.id, 5.0)
    revoked = store.write(tokens.revoke_token, token.id, 6.0)
    assert (revoked.revoked_at, revoked.last_used_at) == (6.0, 5.0)
    assert not revoked.usable(2.0)
    assert store.write(tokens.revoke_token, token.id, 9.0).revoked_at == 6.0
    with pytest.raises(AlreadyExists):
        store.write(tokens.add_token, "dup", "aa" * 32, "admin", None, "web:admin", None, 1.0)
    store.write(tokens.add_token, "two", "cc" * 32, "admin", None, "web:admin", None, 2.0)
    assert [t.name for t in store.read(tokens.list_tokens)] == ["two", "ci"]
    with pytest.raises(NotFound):
        store.write(tokens.revoke_token, 999, 1.0)
    with pytest.raises(NotFound):
        store.write(tokens.touch_token, 999, 1.0)


def test_audit_filters_and_paging(store: Store) -> None:
    for i in range(6):
        action = "user.create" if i % 2 else "site.update"
        store.write(audit.record, actor=f"web:a{i % 3}", action=action, target=str(i), at=float(i))
    newest = store.read(audit.list_entries, 2)
    assert [e.target for e in newest] == ["5", "4"]
    page2 = store.read(audit.list_entries, 2, offset=2)
    assert [e.target for e in page2] == ["3", "2"]
    users_only = store.read(audit.list_entries, action="user.*")
    assert [e.target for e in users_only] == ["5", "3", "1"]
    assert [e.target for e in store.read(audit.list_entries, action="site.update", since=2.0)] == [
        "4",
        "2",
    ]
    assert [e.target for e in store.read(audit.list_entries, since=1.0, until=3.0)] == ["2", "1"]
    assert store.read(audit.count_entries, actor="web:a0") == 2
    assert store.read(audit.count_entries, action="user.*", until=4.0) == 2


def test_record_changes_keeps_only_the_fields_that_differ(store: Store) -> None:
    before = {"name": "Alice", "site": 1, "enabled": True}
    after = {"name": "Alice B.", "site": 1, "enabled": False}
    kw = {"actor": "web:admin", "action": "user.update", "target": "100", "at": 1.0}
    assert store.write(audit.record_changes, before=before, after=after, **kw)
    assert not store.write(audit.record_changes, before=after, after=after, **kw)
    (entry,) = store.read(audit.list_entries)
    assert entry.old == {"name": "Alice", "enabled": True}
    assert entry.new == {"name": "Alice B.", "enabled": False}
