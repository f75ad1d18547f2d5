"""Call records: open at answer, closed at end, 'interrupted' after a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from pbx.store import cdr
from pbx.store.db import Store
from pbx.store.errors import NotFound


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = Store(tmp_path / "pbx.sqlite")
    s.open()
    yield s
    s.close()


def answered(call_id: str, at: float = 100.0) -> cdr.CallRecord:
    return cdr.CallRecord(
        call_id=call_id,
        caller="1001",
        dialled="1002",
        callee="1002",
        started_at=at - 5,
        answered_at=at,
        caller_codec="PCMU",
        callee_codec="PCMA",
    )


def test_answered_call_is_open_then_completed(store: Store) -> None:
    record_id = store.write(cdr.open_record, answered("c1"))
    [row] = store.read(cdr.recent)
    assert row.disposition == "open" and row.ended_at is None and row.id == record_id
    store.write(
        cdr.close_record, record_id, ended_at=160.0, hangup_side="caller", hangup_cause="BYE"
    )
    [row] = store.read(cdr.recent)
    assert (row.disposition, row.duration, row.hangup_side) == ("answered", 60.0, "caller")


def test_unanswered_calls_are_written_complete(store: Store) -> None:
    record = cdr.CallRecord(
        call_id="c2",
        caller="1001",
        dialled="1003",
        started_at=1.0,
        ended_at=31.0,
        disposition="no answer",
        hangup_cause="480",
    )
    store.write(cdr.add_record, record)
    assert store.read(cdr.recent, disposition="no answer")[0].call_id == "c2"
    with pytest.raises(ValueError):
        store.write(cdr.add_record, cdr.CallRecord("c3", "1", "2", 1.0, disposition="weird"))


def test_open_rows_become_interrupted_at_start_up(store: Store) -> None:
    ids = [store.write(cdr.open_record, answered(f"c{n}")) for n in range(50)]
    assert store.write(cdr.close_interrupted, 500.0) == 50
    rows = store.read(cdr.recent, 100)
    assert {r.disposition for r in rows} == {"interrupted"}
    assert all(r.duration == 400.0 for r in rows)
    with pytest.raises(NotFound):
        store.write(cdr.close_record, ids[1], ended_at=600.0)


def test_one_call_id_may_have_several_records_closed_one_by_one(store: Store) -> None:
    refused = cdr.CallRecord(
        "c1", "1001", "1002", 99.0, ended_at=99.0, disposition="failed", hangup_cause="422"
    )
    store.write(cdr.add_record, refused)  # the INVITE the phone retries with the same Call-ID
    record_id = store.write(cdr.open_record, answered("c1"))
    store.write(cdr.close_record, record_id, ended_at=160.0)
    rows = sorted(store.read(cdr.recent), key=lambda r: r.id or 0)
    assert [(r.call_id, r.disposition) for r in rows] == [("c1", "failed"), ("c1", "answered")]


def test_csv_export_has_a_header_and_one_line_per_call(store: Store) -> None:
    store.write(cdr.open_record, answered("c9"))
    text = cdr.as_csv(store.read(cdr.recent))
    lines = text.strip().splitlines()
    assert lines[0].startswith("id,call_id,caller") and "c9" in lines[1]
