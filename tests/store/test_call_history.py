"""Call history (migration m010): entries written with their record in one transaction, read
back in order, gone with the record, and the one line for people."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlite_utils import Database

from pbx.store import cdr
from pbx.store.cdr import CallRecord, HistoryEntry
from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.migrations import MIGRATIONS

TALK = {"kind": "talk", "at": 100.0, "until": 112.4, "parties": ["1001", "1002"], "detail": "x"}
TRANSFER = {
    "kind": "transfer",
    "at": 112.4,
    "until": None,
    "parties": ["1002", "1003"],
    "detail": "1002 transferred 1001 to 1003",
}
PARK = {"kind": "park", "at": 130, "parties": ["1003"], "detail": "1003 parked 1001 on 701"}


def answered(call_id: str = "c1") -> CallRecord:
    return CallRecord(call_id, "1001", "1002", 95.0, callee="1002", answered_at=100.0)


def _rows(store: Store) -> list[tuple[Any, ...]]:
    return store.read(
        lambda db: db.execute(
            "SELECT record_id, position, kind FROM call_history ORDER BY id"
        ).fetchall()
    )


def test_closing_a_record_writes_its_history_in_order(store: Store) -> None:
    record_id = store.write(cdr.open_record, answered())
    store.write(
        cdr.close_record,
        record_id,
        ended_at=160.0,
        disposition="answered",
        hangup_side="caller",
        hangup_cause="BYE",
        history=[TALK, HistoryEntry.of(TRANSFER), PARK],
    )
    assert store.read(cdr.history_of, record_id) == [
        HistoryEntry("talk", 100.0, 112.4, ("1001", "1002"), "x"),
        HistoryEntry("transfer", 112.4, None, ("1002", "1003"), "1002 transferred 1001 to 1003"),
        HistoryEntry("park", 130.0, None, ("1003",), "1003 parked 1001 on 701"),
    ]
    assert [r[1] for r in _rows(store)] == [0, 1, 2]
    [row] = store.read(cdr.recent)
    assert (row.disposition, row.duration) == ("answered", 60.0)


def test_an_unanswered_call_is_added_with_its_history(store: Store) -> None:
    pickup = {"kind": "pickup", "at": 5.0, "parties": ["1004", "1002"], "detail": "picked up"}
    record = CallRecord("c2", "1001", "1002", 1.0, ended_at=6.0, disposition="cancelled")
    record_id = store.write(cdr.add_record, record, history=[pickup])
    assert [e.kind for e in store.read(cdr.history_of, record_id)] == ["pickup"]
    plain = store.write(cdr.add_record, CallRecord("c3", "1", "2", 1.0, disposition="busy"))
    assert store.read(cdr.history_of, plain) == []


@pytest.mark.parametrize(
    "bad",
    [
        {"kind": "dance", "at": 1.0},
        {"kind": "talk", "at": "soon"},
        {"kind": "talk", "at": float("nan")},
        {"kind": "talk", "at": 1.0, "until": True},
        {"kind": "park", "at": 1.0, "parties": "1001"},
        {"kind": "park", "at": 1.0, "parties": [1001]},
        {"kind": "park", "at": 1.0, "detail": 5},
        {"at": 1.0},
        "talk",
    ],
)
def test_a_bad_entry_refuses_the_whole_write(store: Store, bad: Any) -> None:
    record_id = store.write(cdr.open_record, answered())
    with pytest.raises(ValueError, match="history entry"):
        store.write(cdr.close_record, record_id, ended_at=160.0, history=[TALK, bad])
    [row] = store.read(cdr.recent)
    assert row.disposition == "open" and _rows(store) == []
    with pytest.raises(ValueError, match="history entry"):
        store.write(
            cdr.add_record,
            CallRecord("c9", "1", "2", 1.0, disposition="busy"),
            history=[bad],
        )
    assert len(store.read(cdr.recent)) == 1


def test_closing_a_record_that_is_not_open_writes_no_history(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(cdr.close_record, 404, ended_at=1.0, history=[TALK])
    assert _rows(store) == []


def test_histories_of_many_records(store: Store) -> None:
    ids = []
    for n in range(1200):
        history = [TALK] if n % 2 == 0 else []
        record = CallRecord(f"c{n}", "1", "2", float(n), disposition="answered")
        ids.append(store.write(cdr.add_record, record, history=history))
    histories = store.read(cdr.histories_of, [*ids, ids[0], 999_999])
    assert set(histories) == {*ids, 999_999}
    assert all(len(histories[i]) == (1 if n % 2 == 0 else 0) for n, i in enumerate(ids))
    assert store.read(cdr.histories_of, []) == {}


def test_history_goes_with_its_record_in_the_retention_purge(store: Store) -> None:
    old = store.write(
        cdr.add_record, CallRecord("old", "1", "2", 10.0, disposition="answered"), history=[TALK]
    )
    new = store.write(
        cdr.add_record, CallRecord("new", "1", "2", 500.0, disposition="answered"), history=[PARK]
    )
    assert store.write(cdr.purge_before, 100.0) == 1
    assert store.read(cdr.history_of, old) == [] and len(store.read(cdr.history_of, new)) == 1
    assert [r[0] for r in _rows(store)] == [new]


def test_history_text_is_one_line_for_people() -> None:
    assert cdr.history_text([TALK, TRANSFER, PARK]) == (
        "1001 + 1002 talked 12 s; 1002 transferred 1001 to 1003; 1003 parked 1001 on 701"
    )
    assert cdr.history_text([]) == ""
    backwards = {"kind": "talk", "at": 10.0, "until": 9.0, "parties": ["a", "b"]}
    assert cdr.entry_text(backwards) == "a + b talked 0 s"
    ongoing = {"kind": "talk", "at": 10.0, "until": None, "parties": ["a"], "detail": "talking"}
    assert cdr.entry_text(ongoing) == "talking"
    assert cdr.entry_text({"kind": "unpark", "at": 1.0}) == "unpark"


def test_csv_has_the_history_column_through_csvsafe(store: Store) -> None:
    formula = {"kind": "transfer", "at": 1.0, "detail": "=HYPERLINK(1)"}
    record_id = store.write(
        cdr.add_record, CallRecord("c1", "1", "2", 1.0, disposition="answered"), history=[formula]
    )
    plain = store.write(cdr.add_record, CallRecord("c2", "1", "2", 2.0, disposition="busy"))
    records = store.read(cdr.recent)
    text = cdr.as_csv(records, store.read(cdr.histories_of, [record_id, plain]))
    header, second, first = text.splitlines()
    assert header.endswith(",callee_codec,history")
    assert first.endswith(",'=HYPERLINK(1)") and second.endswith(",")
    assert cdr.as_csv(records).splitlines()[1].endswith(",")


def test_records_of_before_m010_survive_and_take_history(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m010_call_history")
    old.execute(
        "INSERT INTO call_records (call_id, caller, dialled, started_at, answered_at, "
        "disposition) VALUES ('c1', '100', '200', 5.0, 6.0, 'open')"
    )
    old.conn.commit()
    old.close()
    with Store(path) as store:
        [row] = store.read(cdr.recent)
        assert row.id is not None
        store.write(cdr.close_record, row.id, ended_at=9.0, history=[TALK])
        assert len(store.read(cdr.history_of, row.id)) == 1
