"""The permission table, SSE tokens and the SVG chart, without a request."""

from __future__ import annotations

from web.auth import ACTIONS, Account, can, check_sse_token, sse_token
from web.chart import bar_chart

KEY = b"k" * 32


def test_admin_may_do_everything_and_nobody_does_unknown_actions() -> None:
    admin = Account("a", "admin")
    assert all(can(admin, action) for action in ACTIONS)
    assert not can(admin, "launch.missiles")
    assert not can(None, "users.read")


def test_site_admin_is_bound_to_their_site() -> None:
    sa = Account("s", "site_admin", site_id=1)
    assert can(sa, "users.write", 1) and not can(sa, "users.write", 2)
    assert can(sa, "users.secrets", 1) and not can(sa, "users.secrets", 2)
    assert can(sa, "calls.read") and can(sa, "devices.read")
    for action in ("settings.write", "sites.write", "tokens.write", "audit.read", "settings.read"):
        assert not can(sa, action), action


def test_readonly_reads_but_never_writes_or_sees_secrets() -> None:
    ro = Account("r", "readonly")
    assert all(can(ro, a) for a in ACTIONS if a.endswith(".read"))
    assert not any(can(ro, a) for a in ACTIONS if not a.endswith(".read"))
    assert not can(ro, "users.secrets")


def test_user_role_has_only_self_actions() -> None:
    user = Account("u", "user", extension="100")
    assert [a for a in ACTIONS if can(user, a)] == ["self.read", "self.write"]


def test_sse_token_round_trip_and_tampering() -> None:
    token = sse_token(Account("s", "site_admin", site_id=3), KEY)
    assert check_sse_token(KEY, token) == {"u": "s", "r": "site_admin", "s": 3}
    assert check_sse_token(KEY, token[:-2]) is None
    assert check_sse_token(b"x" * 32, token) is None
    assert check_sse_token(KEY, "") is None


def test_bar_chart_escapes_labels_and_scales_bars() -> None:
    svg = str(bar_chart([("<b>", 10), ("2025-01-02", 5)], "Calls & more"))
    assert svg.startswith("<svg") and "&lt;b&gt;" in svg and "<b>" not in svg
    assert "Calls &amp; more" in svg
    assert 'width="440"' in svg and 'width="220"' in svg
    assert "no calls" in str(bar_chart([], "empty"))
