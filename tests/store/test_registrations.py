"""Registrar bindings: atomic apply_register, expiry, uniqueness, persistence."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlite_utils import Database

from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.registrations import apply_register, list_bindings, purge_expired
from pbx.store.users import add_user

from .conftest import make_binding

C1 = "sip:100@127.0.0.1:5062"
C2 = "sip:100@127.0.0.2:5064"


@pytest.fixture
def alice(store: Store) -> Store:
    store.write(add_user, "100", "Alice")
    store.write(add_user, "200", "Bob")
    return store


def _register(store: Store, ext: str = "100", **kw: object) -> list[object]:
    args: dict[str, object] = {"upserts": [], "removes": [], "remove_all": False, "now": 0.0}
    args.update(kw)
    return store.write(apply_register, ext, **args)  # type: ignore[arg-type]


def test_register_returns_active_bindings(alice: Store) -> None:
    b1 = make_binding("100", C1, 100.0, path=("<sip:edge@127.0.0.1;lr>",), q=0.5)
    b2 = make_binding("100", C2, 200.0, instance_id="<urn:uuid:1>", reg_id=1)
    result = _register(alice, upserts=[b1, b2])
    assert result == [b1, b2]
    assert alice.read(list_bindings, now=0.0, extension="100") == [b1, b2]


def test_refresh_updates_the_same_contact(alice: Store) -> None:
    _register(alice, upserts=[make_binding("100", C1, 100.0, cseq=1)])
    refreshed = make_binding("100", C1, 500.0, cseq=2, source_port=6000)
    assert _register(alice, upserts=[refreshed], now=50.0) == [refreshed]
    count = alice.read(lambda db: db.execute("SELECT count(*) FROM bindings").fetchone()[0])
    assert count == 1


def test_remove_one_contact(alice: Store) -> None:
    b1, b2 = make_binding("100", C1, 100.0), make_binding("100", C2, 100.0)
    _register(alice, upserts=[b1, b2])
    assert _register(alice, removes=[C1]) == [b2]


def test_remove_all_only_touches_that_extension(alice: Store) -> None:
    _register(alice, upserts=[make_binding("100", C1, 100.0)])
    bob = make_binding("200", "sip:200@127.0.0.1", 100.0)
    _register(alice, "200", upserts=[bob])
    assert _register(alice, remove_all=True) == []
    assert alice.read(list_bindings, now=0.0) == [bob]


def test_remove_all_then_upsert_in_one_register(alice: Store) -> None:
    _register(alice, upserts=[make_binding("100", C1, 100.0)])
    new = make_binding("100", C2, 100.0)
    assert _register(alice, remove_all=True, upserts=[new]) == [new]


def test_same_instance_and_reg_id_replaces_old_flow(alice: Store) -> None:
    """RFC 5626 §6: a new contact for the same instance-id/reg-id replaces the old one."""
    old = make_binding("100", C1, 100.0, instance_id="<urn:uuid:a>", reg_id=1)
    other_flow = make_binding("100", C2, 100.0, instance_id="<urn:uuid:a>", reg_id=2)
    _register(alice, upserts=[old, other_flow])
    new = make_binding("100", "sip:100@127.0.0.3:7000", 100.0, instance_id="<urn:uuid:a>", reg_id=1)
    assert {b.contact for b in _register(alice, upserts=[new])} == {C2, new.contact}  # type: ignore[attr-defined]


def test_expired_bindings_are_hidden_then_purged(alice: Store) -> None:
    _register(alice, upserts=[make_binding("100", C1, 100.0), make_binding("100", C2, 300.0)])
    active = alice.read(list_bindings, now=100.0)
    assert [b.contact for b in active] == [C2]
    assert alice.write(purge_expired, 100.0) == 1
    assert alice.write(purge_expired, 100.0) == 0
    assert alice.read(list_bindings, now=0.0) == active


def test_unknown_extension_raises_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        _register(store, "404", upserts=[make_binding("404", C1, 100.0)])


def test_binding_for_other_extension_is_rejected_atomically(alice: Store) -> None:
    with pytest.raises(ValueError):
        _register(alice, remove_all=True, upserts=[make_binding("200", C1, 100.0)])


def test_failure_mid_register_rolls_back_everything(alice: Store) -> None:
    keep = make_binding("100", C1, 100.0)
    _register(alice, upserts=[keep])

    def half_then_fail(db: Database) -> None:
        apply_register(db, "100", upserts=[], removes=[], remove_all=True, now=0.0)
        raise RuntimeError("crash after the delete")

    with pytest.raises(RuntimeError):
        alice.write(half_then_fail)
    assert alice.read(list_bindings, now=0.0) == [keep]


def test_bindings_survive_restart(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    b = make_binding("100", C1, 100.0, path=("<sip:a@127.0.0.1;lr>", "<sip:b@127.0.0.1;lr>"))
    with Store(path) as s:
        s.write(add_user, "100", "Alice")
        _register(s, upserts=[b])
    with Store(path) as s:
        assert s.read(list_bindings, now=0.0) == [b]
