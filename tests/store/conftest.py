"""Fixtures for pbx.store tests: an opened Store on a temporary file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.store.db import Store
from pbx.store.registrations import Binding


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pbx.sqlite3")
    s.open()
    yield s
    s.close()


def make_binding(extension: str, contact: str, expires_at: float, **changes: object) -> Binding:
    values: dict[str, object] = {
        "extension": extension,
        "contact": contact,
        "expires_at": expires_at,
        "call_id": "call-1@127.0.0.1",
        "cseq": 1,
        "transport": "udp",
        "source_host": "127.0.0.1",
        "source_port": 5062,
        "user_agent": "test-phone/1.0",
        "instance_id": None,
        "reg_id": None,
        "path": (),
        "q": None,
        "updated_at": 0.0,
    }
    values.update(changes)
    return Binding(**values)  # type: ignore[arg-type]
