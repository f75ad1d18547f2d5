"""DATA/run/status.json: the small live part is written every time, the active calls are
rebuilt and encoded only when the call-event feed moved (or the last build got old), and
``pbx calls`` counts durations from when each call's state began."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

from pbx.health import CachedPart, StatusFile

from .test_cli import pbx


def test_the_cached_part_is_rebuilt_only_when_its_version_moves_or_it_gets_old(
    tmp_path: Path,
) -> None:
    clock = Clock()
    version = [1]
    built: list[int] = []

    def build() -> list[dict[str, Any]]:
        built.append(version[0])
        return [{"id": f"c{version[0]}", "since": 5.0}]

    calls = CachedPart("calls", build, version=lambda: version[0], clock=clock.seconds, max_age=15)
    path = tmp_path / "status.json"
    ticks = [0]

    def snapshot() -> dict[str, Any]:
        ticks[0] += 1
        return {"pid": 1, "tick": ticks[0]}

    status = StatusFile(clock, path, snapshot, (calls,))
    for _ in range(5):
        status.write_now()
        clock.advance(1)
    assert json.loads(path.read_text()) == {
        "pid": 1,
        "tick": 5,
        "calls": [{"id": "c1", "since": 5.0}],
    }
    assert built == [1]
    version[0] = 2
    status.write_now()
    assert json.loads(path.read_text())["calls"] == [{"id": "c2", "since": 5.0}]
    clock.advance(14.5)
    status.write_now()
    assert built == [1, 2]
    clock.advance(0.5)  # 15 s since the last build: rebuilt whatever the version says
    status.write_now()
    assert built == [1, 2, 2] and calls.builds == 3


def test_an_empty_snapshot_still_gives_valid_json(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "status.json"
    part = CachedPart("calls", list, version=lambda: 0, clock=clock.seconds)
    StatusFile(clock, path, dict, (part,)).write_now()
    assert json.loads(path.read_text()) == {"calls": []}


def test_pbx_calls_counts_the_duration_from_since(tmp_path: Path) -> None:
    import time

    data = tmp_path / "data"
    (data / "run").mkdir(parents=True)
    call = {
        "id": "c1",
        "call_id": "x@y",
        "caller": "1001",
        "dialled": "1002",
        "state": "answered",
        "since": time.time() - 42,
        "codecs": ["PCMU"],
        "legs": [],
    }
    status = {"pid": os.getpid(), "calls": [call]}
    (data / "run" / "status.json").write_text(json.dumps(status))
    listed = pbx("calls", "--json", data=data)
    assert listed.returncode == 0, listed.stderr
    (shown,) = json.loads(listed.stdout)
    assert 41.5 <= shown["duration"] <= 50
    table = pbx("calls", data=data)
    assert "1001" in table.stdout and "1 active call(s)" in table.stdout
    assert any(f"{n}s" in table.stdout for n in range(42, 51))
