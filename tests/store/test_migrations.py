"""Schema migrations: applied at open, idempotent, and old databases are upgraded."""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from pbx.store.db import Store
from pbx.store.migrations import MIGRATIONS, migrate
from pbx.store.registrations import apply_register, list_bindings
from pbx.store.users import get_user

from .conftest import make_binding

ALL = [
    "m001_core",
    "m002_bindings",
    "m003_bans",
    "m004_call_records",
    "m005_user_call_options",
    "m006_web",
    "m007_call_records_not_unique",
    "m008_api_token_owner",
    "m009_pickup_groups",
    "m010_call_history",
    "m011_site_music",
    "m012_trunks",
]


def test_migrate_applies_everything_once(tmp_path: Path) -> None:
    db = Database(tmp_path / "x.sqlite3")
    assert migrate(db) == ALL
    assert migrate(db) == []
    assert {"users", "credentials", "bindings", "bans", "admins", "audit_log", "settings"} <= set(
        db.table_names()
    )


def test_open_twice_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    for _ in range(2):
        with Store(path) as store:
            applied = store.read(lambda db: [m.name for m in MIGRATIONS.applied(db)])
            assert applied == ALL


def test_old_version_database_is_upgraded_and_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m002_bindings")  # a database from before bindings
    old.execute("INSERT INTO users VALUES ('100', 'Alice', 1, 5.0)")
    assert "bindings" not in old.table_names()
    old.close()

    with Store(path) as store:
        assert store.read(lambda db: [m.name for m in MIGRATIONS.applied(db)]) == ALL
        assert store.read(get_user, "100") is not None
        store.write(
            apply_register,
            "100",
            upserts=[make_binding("100", "sip:100@127.0.0.1", 100.0)],
            removes=[],
            remove_all=False,
            now=0.0,
        )
        assert len(store.read(list_bindings, now=0.0)) == 1


def test_call_records_survive_the_rebuild_that_lifts_the_call_id_uniqueness(
    tmp_path: Path,
) -> None:
    path = tmp_path / "pbx.sqlite3"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m007_call_records_not_unique")
    old.execute(
        "INSERT INTO call_records (call_id, caller, dialled, started_at, disposition) "
        "VALUES ('c1', '100', '200', 5.0, 'answered')"
    )
    old.close()
    with Store(path) as store:
        rows = store.read(lambda db: db.execute("SELECT id, call_id FROM call_records").fetchall())
        assert rows == [(1, "c1")]
        store.write(
            lambda db: db.execute(
                "INSERT INTO call_records (call_id, caller, dialled, started_at) "
                "VALUES ('c1', '100', '200', 6.0)"
            )
        )
        count = store.read(lambda db: db.execute("SELECT COUNT(*) FROM call_records").fetchone())
        assert count == (2,)
