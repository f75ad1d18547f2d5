"""RFC 4028 session timers: negotiation and the per-leg state machine (pbx.calls.session_timer)."""

from __future__ import annotations

import pytest
from twisted.internet.task import Clock

from pbx.calls.session_timer import (
    Negotiated,
    Refresher,
    SessionTimer,
    TimerOffer,
    TimerState,
    TooBrief,
    expiry_margin,
    negotiate_uac,
    negotiate_uas,
    read_offer,
    renegotiate,
    request_headers,
)
from pbx.sip.message import Headers


def headers(*items: tuple[str, str]) -> Headers:
    h = Headers()
    for name, value in items:
        h.add(name, value)
    return h


def test_read_offer_parses_session_expires_refresher_min_se_and_supported() -> None:
    offer = read_offer(
        headers(
            ("Supported", "100rel, timer"),
            ("Session-Expires", "1800;refresher=uac"),
            ("Min-SE", "120"),
        )
    )
    assert offer == TimerOffer(1800, "uac", 120, True)
    assert read_offer(headers(("Supported", "replaces"))) == TimerOffer()
    assert read_offer(headers(("x", "600"))).session_expires == 600  # compact form


def test_interval_below_min_se_is_refused_with_422_and_our_min_se() -> None:
    with pytest.raises(TooBrief) as raised:
        negotiate_uas(TimerOffer(60, None, None, True), 1800, 90)
    assert raised.value.min_se == 90


def test_uas_shortens_to_our_interval_but_never_below_the_callers_min_se() -> None:
    assert negotiate_uas(TimerOffer(3600, None, None, True), 1800, 90).interval == 1800
    assert negotiate_uas(TimerOffer(600, None, None, True), 1800, 90).interval == 600
    assert negotiate_uas(TimerOffer(60, None, 60, True), 4, 2).interval == 60
    assert negotiate_uas(TimerOffer(), 1800, 90).interval == 1800


def test_caller_supporting_timers_refreshes_itself_otherwise_pbx_does() -> None:
    supporting = negotiate_uas(TimerOffer(None, None, None, True), 1800, 90)
    assert (supporting.refresher, supporting.require) == (Refresher.PEER, True)
    assert supporting.response_value() == "1800;refresher=uac"
    plain = negotiate_uas(TimerOffer(), 1800, 90)
    assert (plain.refresher, plain.require) == (Refresher.PBX, False)
    assert plain.response_value() == "1800;refresher=uas"
    asked = negotiate_uas(TimerOffer(900, "uas", None, True), 1800, 90)
    assert asked.refresher is Refresher.PBX and asked.interval == 900


def test_uac_side_follows_the_callees_2xx() -> None:
    assert negotiate_uac(headers(), 1800) is None
    ours = negotiate_uac(headers(("Session-Expires", "900;refresher=uac")), 1800)
    assert ours == Negotiated(900, Refresher.PBX)
    theirs = negotiate_uac(headers(("Session-Expires", "900;refresher=uas")), 1800)
    assert theirs == Negotiated(900, Refresher.PEER)
    assert dict(request_headers(1800, 90)) == {
        "Supported": "timer",
        "Session-Expires": "1800",
        "Min-SE": "90",
    }


def test_a_refresh_without_refresher_keeps_the_roles() -> None:
    current = Negotiated(600, Refresher.PEER)
    assert renegotiate(TimerOffer(), current, 1800).refresher is Refresher.PEER
    changed = renegotiate(TimerOffer(300, "uas", None, True), current, 1800)
    assert (changed.interval, changed.refresher) == (300, Refresher.PBX)


class Recorder:
    def __init__(self) -> None:
        self.refreshes = 0
        self.expired = 0

    def refresh(self) -> None:
        self.refreshes += 1

    def expire(self) -> None:
        self.expired += 1


def make_timer() -> tuple[Clock, Recorder, SessionTimer]:
    clock, rec = Clock(), Recorder()
    return clock, rec, SessionTimer(clock, rec.refresh, rec.expire, "t")


def test_pbx_refreshes_at_half_the_interval_and_a_success_restarts_the_interval() -> None:
    clock, rec, timer = make_timer()
    timer.start(Negotiated(100, Refresher.PBX))
    clock.advance(49.9)
    assert rec.refreshes == 0
    clock.advance(0.1)
    assert rec.refreshes == 1 and timer.state is TimerState.REFRESHING
    clock.advance(1)
    timer.refreshed()
    assert timer.state is TimerState.WAITING
    clock.advance(49.9)
    assert rec.refreshes == 1
    clock.advance(0.1)
    assert rec.refreshes == 2 and rec.expired == 0


def test_a_refresh_that_never_succeeds_expires_at_the_interval() -> None:
    clock, rec, timer = make_timer()
    timer.start(Negotiated(100, Refresher.PBX))
    clock.advance(50)
    timer.refresh_failed()
    assert timer.state is TimerState.WAITING
    clock.advance(49.9)
    assert rec.expired == 0
    clock.advance(0.1)
    assert rec.expired == 1 and timer.state is TimerState.EXPIRED
    assert clock.getDelayedCalls() == []


def test_peer_refresher_expires_early_by_a_third_or_32_seconds() -> None:
    assert expiry_margin(1800) == 32 and expiry_margin(6) == 2
    clock, rec, timer = make_timer()
    timer.start(Negotiated(6, Refresher.PEER))
    clock.advance(3.9)
    assert rec.expired == 0 and rec.refreshes == 0
    clock.advance(0.1)
    assert rec.expired == 1


def test_a_refresh_from_the_peer_restarts_the_countdown() -> None:
    clock, rec, timer = make_timer()
    timer.start(Negotiated(90, Refresher.PEER))
    clock.advance(50)
    timer.refreshed(Negotiated(90, Refresher.PEER))
    clock.advance(59.9)
    assert rec.expired == 0
    clock.advance(0.1)
    assert rec.expired == 1


def test_stop_cancels_everything_and_later_events_are_ignored() -> None:
    clock, rec, timer = make_timer()
    timer.start(Negotiated(90, Refresher.PBX))
    timer.stop()
    assert clock.getDelayedCalls() == []
    timer.refreshed()
    timer.start(Negotiated(90, Refresher.PBX))
    clock.advance(1000)
    assert (rec.refreshes, rec.expired, timer.state) == (0, 0, TimerState.STOPPED)
