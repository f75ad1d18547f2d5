"""A process killed with SIGKILL loses no write whose future had resolved."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from pbx.store.db import Store
from pbx.store.registrations import list_bindings

ROOT = Path(__file__).resolve().parents[2]

CHILD = textwrap.dedent(
    """
    import sys
    from pbx.store.db import Store
    from pbx.store.registrations import Binding, apply_register
    from pbx.store.users import add_user

    store = Store(sys.argv[1])
    store.open()
    store.write(add_user, "100", "Alice")
    i = 0
    while True:
        futures = []
        for _ in range(20):
            b = Binding("100", f"sip:100@127.0.0.1:{i}", 1e12, "cid", i, "udp",
                        "127.0.0.1", 5060, "ua", None, None, (), None, 0.0)
            futures.append((i, store.write_async(
                apply_register, "100", upserts=[b], removes=[], remove_all=False, now=0.0)))
            i += 1
        for n, f in futures:
            f.result()
            sys.stdout.write(f"{n}\\n")
            sys.stdout.flush()
    """
)


def test_sigkill_keeps_every_resolved_write(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, text=True, env=env
    )
    assert child.stdout is not None
    acknowledged: list[int] = []
    deadline = time.monotonic() + 30
    while len(acknowledged) < 500 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        acknowledged.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    acknowledged.extend(int(line) for line in child.stdout.read().split())  # printed pre-kill
    child.wait(10)
    assert child.returncode == -signal.SIGKILL
    assert len(acknowledged) >= 500

    with Store(path) as store:
        assert store.integrity_check() == "ok"
        stored = {b.cseq for b in store.read(list_bindings, now=0.0, extension="100")}
    missing = set(acknowledged) - stored
    assert not missing
