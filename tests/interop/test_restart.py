"""Crash recovery of the real pbx: registrations answered with 200 survive ``kill -9``.

Covers: 50 users register with SIPp (each 200 OK is sent only after the binding is committed),
the server is killed with SIGKILL, started again on the same data directory, and every binding
is back in ``pbx status --json`` with its contact, source and user agent; the SQLite file
passes ``PRAGMA integrity_check``, both as the crash left it (a copy of the file and its WAL,
checked before the restart) and after the restart. Imports nothing from ``pbx``; reads DATA/pbx.sqlite directly.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

from .harness.pbx_server import PbxServer
from .harness.sipp import Sipp, write_users_csv


def test_fifty_bindings_survive_kill9_and_the_database_is_intact(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    pbx = pbx_factory(md5_only=True)
    users = [(str(7000 + i), f"pw-{7000 + i}-restart") for i in range(50)]
    source = tmp_path / "import.csv"
    source.write_text("".join(f"{ext},{pw}\n" for ext, pw in users), encoding="utf-8")
    pbx.cli("user", "import", str(source), check=True)
    sipp = sipp_factory(
        "reg_auth",
        remote=("127.0.0.1", pbx.sip_port),
        inf=[write_users_csv(tmp_path / "users.csv", users)],
        calls=50,
        rate=100,
        timeout_s=30,
        trace_msg=False,
    )
    result = sipp.run()
    assert (result.returncode, result.successful, result.failed) == (0, 50, 0), result.log_tail

    first_pid = pbx.pid
    assert pbx.kill9() == -9  # right after the last 200 OK: no clean shutdown
    crashed = _copy_database(pbx.data_dir, tmp_path / "crashed")
    assert _check(crashed) == 50  # what was on disk at the crash, before any recovery
    pbx.start()
    assert pbx.pid != first_pid

    regs = {r["extension"]: r for r in pbx.status()["registrations"]}
    assert sorted(regs) == [ext for ext, _ in users]
    for ext, reg in regs.items():
        assert reg["contact"] == f"sip:{ext}@127.0.0.1:{sipp.local_port};transport=UDP"
        assert reg["source"] == f"127.0.0.1:{sipp.local_port}"
        assert (reg["transport"], reg["user_agent"]) == ("udp", "sipp-reg_auth")
        assert 3500 <= reg["expires"] <= 3600

    assert _check(pbx.data_dir / "pbx.sqlite", read_only=True) == 50


def _copy_database(data_dir: Path, into: Path) -> Path:
    """Copy pbx.sqlite and its WAL (not the -shm index, SQLite rebuilds it) into ``into``."""
    into.mkdir()
    for suffix in ("", "-wal"):
        src = data_dir / f"pbx.sqlite{suffix}"
        if src.exists():
            shutil.copyfile(src, into / src.name)
    return into / "pbx.sqlite"


def _check(path: Path, read_only: bool = False) -> int:
    """``PRAGMA integrity_check`` must say "ok"; returns the number of bindings."""
    conn = sqlite3.connect(f"file:{path}{'?mode=ro' if read_only else ''}", uri=True, timeout=5)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        (count,) = conn.execute("SELECT count(*) FROM bindings").fetchone()
    finally:
        conn.close()
    return int(count)
