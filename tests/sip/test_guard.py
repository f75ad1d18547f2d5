"""Tests for pbx.sip.guard: failure counting, bans, trust, allowlist, scanners, bounds."""

from __future__ import annotations

import pytest

from pbx.sip import guard as guard_mod
from pbx.sip.guard import Ban, Guard, GuardConfig


class FakeClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_guard(clock: FakeClock, **overrides: object) -> Guard:
    return Guard(GuardConfig(**overrides), clock)  # type: ignore[arg-type]


def fail(guard: Guard, address: str, username: str | None, times: int) -> list[Ban | None]:
    return [guard.record_failure(address, username) for _ in range(times)]


def test_five_wrong_passwords_ban_the_address_and_not_its_neighbour(clock: FakeClock) -> None:
    guard = make_guard(clock)
    results = fail(guard, "127.0.0.3", "alice", 5)
    assert results[:4] == [None] * 4
    ban = results[4]
    assert ban is not None
    assert (ban.address, ban.username) == ("127.0.0.3", None)
    assert ban.until == clock.now + 300.0 and ban.created_at == clock.now
    assert guard.is_blocked("127.0.0.3")
    assert guard.is_blocked("127.0.0.3", "bob")
    assert not guard.is_blocked("127.0.0.4")
    assert not guard.is_blocked("127.0.0.4", "alice")


def test_four_failures_do_not_ban(clock: FakeClock) -> None:
    guard = make_guard(clock)
    assert fail(guard, "127.0.0.3", "alice", 4) == [None] * 4
    assert not guard.is_blocked("127.0.0.3")


def test_failures_with_different_usernames_count_together_for_untrusted_address(
    clock: FakeClock,
) -> None:
    guard = make_guard(clock)
    for name in ["100", "101", "102", "103"]:
        assert guard.record_failure("127.0.0.3", name) is None
    assert guard.record_failure("127.0.0.3", "104") is not None
    assert guard.is_blocked("127.0.0.3")


def test_failures_spread_beyond_the_window_do_not_ban(clock: FakeClock) -> None:
    guard = make_guard(clock)
    for _ in range(10):
        assert guard.record_failure("127.0.0.3", "alice") is None
        clock.advance(15.1)  # never 5 within 60 s
    assert not guard.is_blocked("127.0.0.3")


def test_ban_expires_after_ban_time(clock: FakeClock) -> None:
    guard = make_guard(clock)
    fail(guard, "127.0.0.3", "alice", 5)
    clock.advance(299.0)
    assert guard.is_blocked("127.0.0.3")
    clock.advance(1.0)
    assert not guard.is_blocked("127.0.0.3")
    assert guard.active_bans() == []


def test_counting_restarts_after_a_ban_expires(clock: FakeClock) -> None:
    guard = make_guard(clock)
    fail(guard, "127.0.0.3", "alice", 5)
    clock.advance(300.0)
    assert fail(guard, "127.0.0.3", "alice", 4) == [None] * 4
    assert not guard.is_blocked("127.0.0.3")


def test_trusted_address_only_gets_the_pair_banned(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.record_success("127.0.0.3", "bob")
    clock.advance(10.0)
    ban = fail(guard, "127.0.0.3", "alice", 5)[-1]
    assert ban is not None
    assert (ban.address, ban.username) == ("127.0.0.3", "alice")
    assert guard.is_blocked("127.0.0.3", "alice")
    assert not guard.is_blocked("127.0.0.3", "bob")
    assert not guard.is_blocked("127.0.0.3")


def test_trusted_address_counts_failures_per_username(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.record_success("127.0.0.3", "bob")
    for name in ["100", "101", "102", "103", "104", "105"]:
        assert guard.record_failure("127.0.0.3", name) is None
    assert not guard.is_blocked("127.0.0.3", "100")


def test_trust_ends_after_trusted_window(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.record_success("127.0.0.3", "bob")
    assert guard.is_trusted("127.0.0.3")
    clock.advance(601.0)
    assert not guard.is_trusted("127.0.0.3")
    ban = fail(guard, "127.0.0.3", "alice", 5)[-1]
    assert ban is not None and ban.username is None


def test_success_resets_the_pair_failure_count(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.record_success("127.0.0.3", "alice")
    fail(guard, "127.0.0.3", "alice", 4)
    guard.record_success("127.0.0.3", "alice")
    assert fail(guard, "127.0.0.3", "alice", 4) == [None] * 4
    assert not guard.is_blocked("127.0.0.3", "alice")


def test_allowlisted_cidr_is_never_banned(clock: FakeClock) -> None:
    guard = make_guard(clock, allowlist=("127.0.0.0/29", "::1"))
    assert fail(guard, "127.0.0.5", "alice", 20) == [None] * 20
    assert not guard.is_blocked("127.0.0.5")
    assert fail(guard, "::1", "alice", 20) == [None] * 20
    assert fail(guard, "127.0.0.9", "alice", 5)[-1] is not None
    assert guard.is_blocked("127.0.0.9")


def test_allowlist_wins_over_a_loaded_ban(clock: FakeClock) -> None:
    guard = make_guard(clock, allowlist=("127.0.0.7",))
    guard.load([Ban("127.0.0.7", None, clock.now + 100, "old", clock.now)])
    assert not guard.is_blocked("127.0.0.7")


def test_invalid_allowlist_entry_is_rejected(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        make_guard(clock, allowlist=("not-an-ip",))


def test_ipv4_mapped_ipv6_is_the_same_address(clock: FakeClock) -> None:
    guard = make_guard(clock)
    fail(guard, "::ffff:127.0.0.3", "alice", 5)
    assert guard.is_blocked("127.0.0.3")
    assert guard.active_bans()[0].address == "127.0.0.3"


def test_lift_removes_address_and_pair_bans(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.record_success("127.0.0.3", "bob")
    fail(guard, "127.0.0.3", "alice", 5)
    fail(guard, "127.0.0.3", "carol", 5)
    fail(guard, "127.0.0.4", "alice", 5)
    assert guard.lift("127.0.0.3") == 2
    assert not guard.is_blocked("127.0.0.3", "alice")
    assert guard.is_blocked("127.0.0.4")
    assert guard.lift("127.0.0.3") == 0


def test_lift_clears_failure_history(clock: FakeClock) -> None:
    guard = make_guard(clock)
    fail(guard, "127.0.0.3", "alice", 5)
    guard.lift("127.0.0.3")
    assert guard.record_failure("127.0.0.3", "alice") is None


def test_load_restores_active_bans_and_skips_expired(clock: FakeClock) -> None:
    guard = make_guard(clock)
    guard.load(
        [
            Ban("127.0.0.3", None, clock.now + 50, "persisted", clock.now - 250),
            Ban("127.0.0.4", "alice", clock.now + 50, "persisted", clock.now - 250),
            Ban("127.0.0.5", None, clock.now - 1, "expired", clock.now - 301),
        ]
    )
    assert guard.is_blocked("127.0.0.3")
    assert guard.is_blocked("127.0.0.4", "alice")
    assert not guard.is_blocked("127.0.0.4", "bob")
    assert not guard.is_blocked("127.0.0.5")
    assert [b.address for b in guard.active_bans()] == ["127.0.0.3", "127.0.0.4"]
    clock.advance(50)
    assert guard.active_bans() == []


def test_active_bans_round_trip_through_load(clock: FakeClock) -> None:
    guard = make_guard(clock)
    fail(guard, "127.0.0.3", "alice", 5)
    restored = make_guard(clock)
    restored.load(guard.active_bans())
    assert restored.active_bans() == guard.active_bans()


def test_failures_from_banned_address_do_not_extend_the_ban(clock: FakeClock) -> None:
    guard = make_guard(clock)
    ban = fail(guard, "127.0.0.3", "alice", 5)[-1]
    clock.advance(100)
    assert fail(guard, "127.0.0.3", "alice", 5) == [None] * 5
    assert guard.active_bans() == [ban]


@pytest.mark.parametrize(
    ("agent", "expected"),
    [
        ("friendly-scanner", True),
        ("SIPVicious 0.3.4", True),
        ("sipcli/v1.8", True),
        ("Mozilla Friendly-Scanner x", True),
        ("Linphone/5.2", False),
        ("", False),
        (None, False),
    ],
)
def test_is_scanner_matches_known_agents_case_insensitively(
    clock: FakeClock, agent: str | None, expected: bool
) -> None:
    assert make_guard(clock).is_scanner(agent) is expected


def test_explicit_ban_blocks_for_ban_time(clock: FakeClock) -> None:
    guard = make_guard(clock)
    ban = guard.ban("127.0.0.8", None, "scanner")
    assert guard.is_blocked("127.0.0.8") and ban.until == clock.now + 300


def test_failure_tracking_is_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_mod, "MAX_TRACKED", 10)
    guard = make_guard(clock)
    for i in range(50):
        guard.record_failure(f"127.0.1.{i}", "alice")
        guard.record_success(f"127.0.2.{i}", "alice")
    assert len(guard._address_failures) == 10
    assert len(guard._pair_failures) == 10
    assert len(guard._successes) == 10


def test_ban_list_is_bounded(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guard_mod, "MAX_BANS", 3)
    guard = make_guard(clock)
    for i in range(5):
        clock.advance(1)
        guard.ban(f"127.0.0.{i + 10}", None, "test")
    assert [b.address for b in guard.active_bans()] == ["127.0.0.12", "127.0.0.13", "127.0.0.14"]
