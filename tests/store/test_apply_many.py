"""registrations.apply_many: several REGISTERs in one writer job, each in its own savepoint."""

from __future__ import annotations

from typing import Any

import pytest

from pbx.store.db import Store
from pbx.store.errors import NotFound
from pbx.store.registrations import apply_many, list_bindings
from pbx.store.users import add_user, set_user_enabled

from .conftest import make_binding


@pytest.fixture
def three(store: Store) -> Store:
    for ext in ("100", "200", "300"):
        store.write(add_user, ext, ext)
    return store


def _change(ext: str, contact: str, **kw: Any) -> tuple[str, dict[str, Any]]:
    upserts = [make_binding(ext, contact, 100.0, **kw)]
    return ext, {"upserts": upserts, "removes": [], "remove_all": False, "now": 0.0}


def _contacts(store: Store) -> list[tuple[str, str]]:
    return [(b.extension, b.contact) for b in store.read(list_bindings, now=0.0)]


def test_each_change_gets_its_own_extensions_bindings(three: Store) -> None:
    results = three.write(
        apply_many,
        [_change("100", "sip:a@h"), _change("200", "sip:b@h"), _change("100", "sip:c@h")],
    )
    assert [[b.contact for b in r] for r in results] == [  # type: ignore[union-attr]
        ["sip:a@h"],
        ["sip:b@h"],
        ["sip:a@h", "sip:c@h"],
    ]
    assert _contacts(three) == [("100", "sip:a@h"), ("100", "sip:c@h"), ("200", "sip:b@h")]


def test_a_failing_change_is_rolled_back_alone_and_returned_as_its_exception(
    three: Store,
) -> None:
    three.write(apply_many, [_change("300", "sip:old@h")])
    three.write(set_user_enabled, "200", False)
    replace_all = (
        "300",
        {
            "upserts": [make_binding("300", None, 100.0)],  # type: ignore[arg-type]
            "removes": [],
            "remove_all": True,  # runs first, then the insert fails: NOT NULL contact
            "now": 0.0,
        },
    )
    results = three.write(
        apply_many,
        [_change("100", "sip:a@h"), _change("200", "sip:b@h"), replace_all, _change("999", "x")],
    )
    assert isinstance(results[1], NotFound) and isinstance(results[3], NotFound)
    assert isinstance(results[2], Exception)
    assert _contacts(three) == [("100", "sip:a@h"), ("300", "sip:old@h")]
