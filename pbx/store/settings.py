"""Key/value settings stored as JSON.

Owns the ``settings`` table. Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlite_utils import Database

log = logging.getLogger(__name__)


def get_setting(db: Database, key: str, default: Any = None) -> Any:
    """The JSON-decoded value of ``key``, or ``default`` when unset."""
    row = db.execute("SELECT value FROM settings WHERE key = ?", [key]).fetchone()
    return default if row is None else json.loads(row[0])


def set_setting(db: Database, key: str, value: Any) -> None:
    """Store ``value`` (anything JSON-serialisable) under ``key``, replacing any old value."""
    db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [key, json.dumps(value)],
    )


def all_settings(db: Database) -> dict[str, Any]:
    rows = db.execute("SELECT key, value FROM settings ORDER BY key").fetchall()
    return {key: json.loads(value) for key, value in rows}
