"""m008_api_token_owner: existing API tokens get the web account they belong to."""

from __future__ import annotations

from pathlib import Path

from sqlite_utils import Database

from pbx.store import tokens
from pbx.store.db import Store
from pbx.store.migrations import MIGRATIONS


def test_existing_tokens_get_their_owner_and_untraceable_ones_none(tmp_path: Path) -> None:
    path = tmp_path / "pbx.sqlite3"
    old = Database(path)
    MIGRATIONS.apply(old, stop_before="m008_api_token_owner")
    rows = [
        ("ci", "h1", "web:alice"),  # made in the UI by alice
        ("child", "h2", "api:ci"),  # made through the API with "ci"
        ("grandchild", "h3", "api:child"),
        ("orphan", "h4", "api:nobody"),  # made by a token that is not there
        ("early", "h5", "api:later"),  # names a token made only after it
        ("later", "h6", "web:bob"),
    ]
    for name, digest, created_by in rows:
        old.execute(
            "INSERT INTO api_tokens (name, token_hash, role, created_by, created_at) "
            "VALUES (?, ?, 'admin', ?, 1.0)",
            [name, digest, created_by],
        )
    old.close()
    with Store(path) as store:
        owners = {t.name: t.owner for t in store.read(tokens.list_tokens)}
    assert owners == {
        "ci": "alice",
        "child": "alice",
        "grandchild": "alice",
        "orphan": None,
        "early": None,
        "later": "bob",
    }
