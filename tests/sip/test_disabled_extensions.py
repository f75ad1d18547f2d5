"""A disabled extension is, to a phone, exactly an unknown user or a wrong password.

The stack, Access and the registrar of tests/sip/test_stack_registrar.py, with credentials
read from a real pbx.store (``get_enabled_credentials``, as pbx.service looks them up) and
bindings committed to it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from twisted.internet import defer

from pbx.credentials import SecretBox, make_credentials
from pbx.sip.message import Response
from pbx.store import credentials as store_credentials
from pbx.store import registrations, users
from pbx.store.db import Store
from pbx.store.registrations import Binding

from .test_stack_registrar import PASSWORD, REALM, Harness, authorization, register


class StoreHarness(Harness):
    def __init__(self, store: Store) -> None:
        super().__init__(users=())
        self.store = store

    def lookup(self, username: str) -> defer.Deferred[store_credentials.Credentials | None]:
        return defer.succeed(self.store.read(store_credentials.get_enabled_credentials, username))

    def commit(self, extension: str, **changes: object) -> defer.Deferred[list[Binding]]:
        return defer.succeed(self.store.write(registrations.apply_register, extension, **changes))  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "pbx.sqlite3")
    s.open()
    box = SecretBox(tmp_path / "secret.key")
    for ext in ("1001", "1002"):
        s.write(users.add_user, ext, ext)
        s.write(store_credentials.set_credentials, make_credentials(box, ext, REALM, PASSWORD, 0.0))
    yield s
    s.close()


def _shape(resp: Response) -> tuple[object, ...]:
    return resp.status, resp.reason, [name for name, _ in resp.headers.items()]


def _attempt(h: Harness, user: str, password: str, tag: str) -> tuple[Response, Response]:
    """A challenge, then an answer to it with ``password`` on the same Call-ID."""
    [challenge] = h.send(register(user, branch=f"z9hG4bK{tag}1", call_id=tag))
    extra = authorization(challenge, user=user, password=password)
    [answer] = h.send(register(user, branch=f"z9hG4bK{tag}2", cseq=2, call_id=tag, extra=extra))
    return challenge, answer


def test_disabled_user_with_the_right_password_gets_the_wrong_password_answers(
    store: Store,
) -> None:
    store.write(users.set_user_enabled, "1001", False)
    h = StoreHarness(store)
    disabled = _attempt(h, "1001", PASSWORD, "d")
    wrong = _attempt(h, "1002", "wrong-password", "w")
    unknown = _attempt(h, "9999", PASSWORD, "u")
    for a, b, c in zip(disabled, wrong, unknown, strict=True):
        assert _shape(a) == _shape(b) == _shape(c)
    assert disabled[1].status == 401
    assert store.read(registrations.list_bindings, now=0.0) == []
    # the same failure accounting: a second failure on the Call-ID is 403, and it counts
    extra = authorization(disabled[1], user="1001", nc="00000002")
    [again] = h.send(register("1001", branch="z9hG4bKd3", cseq=3, call_id="d", extra=extra))
    assert again.status == 403
    assert h.bans == []  # four failures so far: d, w, u, d again; the fifth bans
    _attempt(h, "1001", PASSWORD, "f")
    assert [b.address for b in h.bans] == ["127.0.0.9"]


def test_disabled_user_is_banned_like_a_wrong_password(store: Store) -> None:
    store.write(users.set_user_enabled, "1001", False)
    h = StoreHarness(store)
    for n in range(5):
        _attempt(h, "1001", PASSWORD, f"b{n}")
    assert [b.address for b in h.bans] == ["127.0.0.9"]


def test_enabled_again_registers(store: Store) -> None:
    store.write(users.set_user_enabled, "1001", False)
    store.write(users.set_user_enabled, "1001", True)
    h = StoreHarness(store)
    _, ok = _attempt(h, "1001", PASSWORD, "e")
    assert ok.status == 200
    assert [b.extension for b in store.read(registrations.list_bindings, now=0.0)] == ["1001"]
