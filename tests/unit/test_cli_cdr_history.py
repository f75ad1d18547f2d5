"""``pbx cdr``: each record's history under it, and a ``history`` column in ``--csv``."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path

from pbx.store import cdr
from pbx.store.db import Store

from .test_cli import pbx


def test_cdr_prints_history_lines_under_each_record_and_csv_has_the_column(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    assert pbx("db", "migrate", data=data).returncode == 0
    at = time.mktime((2025, 1, 31, 14, 0, 0, 0, 0, -1))
    history = [
        {"kind": "talk", "at": at, "until": at + 12, "parties": ["1001", "1002"], "detail": ""},
        {"kind": "transfer", "at": at + 12, "parties": ["1002"], "detail": "-> 1003 by 1002"},
    ]
    with Store(data / "pbx.sqlite") as store:
        record = cdr.CallRecord("c1", "1001", "1002", at - 3, disposition="answered")
        store.write(cdr.add_record, record, history=history)
        store.write(
            cdr.add_record, cdr.CallRecord("c2", "1001", "1004", at + 60, disposition="busy")
        )
    lines = pbx("cdr", data=data).stdout.splitlines()
    assert lines[1].split()[2:4] == ["1001", "1004"]
    assert lines[2].split()[2:4] == ["1001", "1002"]
    assert lines[3:] == ["    14:00:00  1001 + 1002 talked 12 s", "    14:00:12  -> 1003 by 1002"]
    rows = list(csv.DictReader(io.StringIO(pbx("cdr", "--csv", data=data).stdout)))
    assert [r["history"] for r in rows] == [
        "",
        "1001 + 1002 talked 12 s; -> 1003 by 1002",
    ]
