"""RFC 4028 session timers: header negotiation and the per-leg refresh/expiry state machine.

A session timer keeps a dialog alive with periodic refreshes (re-INVITE or UPDATE). For each
leg of a call one side is the *refresher*. When pbx is the refresher it refreshes at half the
interval (§10); when the phone is, pbx clears the call if no refresh arrives before the
interval minus min(32, interval/3) seconds (§10). This module owns:

- the header values: :func:`read_offer` (Session-Expires, Min-SE and Supported of a request),
  :func:`negotiate_uas` (what pbx answers a caller, or 422 when the interval is below our
  minimum, §5/§9), :func:`negotiate_uac` (what a callee's 2xx decided, §7.2),
  :func:`session_expires_value` and :func:`request_headers`;
- :class:`SessionTimer`, a small state machine run on an injected reactor
  (``callLater``); the switch tells it about refreshes and it calls back to refresh or expire.

Must not import pbx.store, pbx.service, sqlite3 or anything that does I/O itself.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

MIN_SE_FLOOR = 90  # RFC 4028 §4: the smallest Min-SE a UA may ask for (we accept smaller)


class Refresher(enum.Enum):
    """Who refreshes one leg's session, seen from pbx."""

    PBX = "pbx"
    PEER = "peer"


class TooBrief(Exception):
    """The requested Session-Expires is below our Min-SE: answer 422 with ``min_se`` (§5)."""

    def __init__(self, min_se: int) -> None:
        super().__init__(f"Session-Expires below {min_se}")
        self.min_se = min_se


@dataclass(frozen=True, slots=True)
class TimerOffer:
    """The session-timer headers of a request (RFC 4028 §4)."""

    session_expires: int | None = None
    refresher: str | None = None  # "uac", "uas" or None
    min_se: int | None = None
    supported: bool = False


@dataclass(frozen=True, slots=True)
class Negotiated:
    """One leg's agreed interval and refresher, and whether the 2xx needs Require: timer."""

    interval: int
    refresher: Refresher
    require: bool = False

    def response_value(self, pbx_is_uas: bool = True) -> str:
        """Session-Expires value of a 2xx pbx sends (pbx is the UAS of that transaction)."""
        pbx_role, peer_role = ("uas", "uac") if pbx_is_uas else ("uac", "uas")
        role = pbx_role if self.refresher is Refresher.PBX else peer_role
        return session_expires_value(self.interval, role)


def _delta(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.split(";")[0].strip()
    return int(text) if text.isdigit() else None


def _refresher_param(value: str | None) -> str | None:
    if value is None:
        return None
    for param in value.split(";")[1:]:
        name, _, arg = param.partition("=")
        if name.strip().lower() == "refresher" and arg.strip().lower() in ("uac", "uas"):
            return arg.strip().lower()
    return None


def _has_tag(values: Iterable[str], tag: str) -> bool:
    return any(item.strip().lower() == tag for value in values for item in value.split(","))


def read_offer(headers: Any) -> TimerOffer:
    """Session-Expires (``x``), Min-SE and Supported/Require of a request or response."""
    expires = headers.get("Session-Expires")
    supported = _has_tag([*headers.get_all("Supported"), *headers.get_all("Require")], "timer")
    return TimerOffer(
        session_expires=_delta(expires),
        refresher=_refresher_param(expires),
        min_se=_delta(headers.get("Min-SE")),
        supported=supported or expires is not None,
    )


def session_expires_value(interval: int, refresher: str | None = None) -> str:
    return f"{interval};refresher={refresher}" if refresher else str(interval)


def request_headers(session_expires: int, min_se: int) -> list[tuple[str, str]]:
    """What pbx adds to an INVITE it sends to a callee (§7.1)."""
    return [
        ("Supported", "timer"),
        ("Session-Expires", str(session_expires)),
        ("Min-SE", str(min_se)),
    ]


def negotiate_uas(offer: TimerOffer, session_expires: int, min_se: int) -> Negotiated:
    """What pbx, as the UAS of a caller's INVITE, agrees to (RFC 4028 §9).

    Raises :class:`TooBrief` when the caller asks for less than ``min_se``. The interval is
    the caller's, shortened to ours but never below the caller's own Min-SE. Without a
    refresher parameter the caller refreshes if it supports timers, else pbx does.
    """
    asked = offer.session_expires
    if asked is not None and asked < min_se:
        raise TooBrief(min_se)
    interval = session_expires if asked is None else min(asked, session_expires)
    interval = max(interval, offer.min_se or 0)
    if offer.refresher == "uas":
        refresher = Refresher.PBX
    elif offer.refresher == "uac" or offer.supported:
        refresher = Refresher.PEER
    else:
        refresher = Refresher.PBX
    return Negotiated(interval, refresher, require=offer.supported)


def negotiate_uac(response_headers: Any, asked: int) -> Negotiated | None:
    """What a callee's 2xx decided (§7.2): None when it carries no Session-Expires."""
    offer = read_offer(response_headers)
    if offer.session_expires is None:
        return None
    refresher = Refresher.PEER if offer.refresher == "uas" else Refresher.PBX
    return Negotiated(offer.session_expires or asked, refresher)


def renegotiate(offer: TimerOffer, current: Negotiated, session_expires: int) -> Negotiated:
    """A refresh the peer sent (pbx is the UAS): keep the roles unless it names a refresher."""
    interval = current.interval
    if offer.session_expires is not None:
        interval = max(min(offer.session_expires, session_expires), offer.min_se or 0)
    if offer.refresher == "uac":
        refresher = Refresher.PEER
    elif offer.refresher == "uas":
        refresher = Refresher.PBX
    else:
        refresher = current.refresher
    return Negotiated(interval, refresher, require=offer.supported)


def expiry_margin(interval: float) -> float:
    """§10: the non-refresher gives up this long before the interval ends."""
    return min(32.0, interval / 3.0)


# --- the state machine ----------------------------------------------------------------------


class TimerState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"  # running until the next refresh (ours) or the expiry (peer's)
    REFRESHING = "refreshing"  # pbx sent a refresh and waits for its final response
    EXPIRED = "expired"
    STOPPED = "stopped"


TIMER_TRANSITIONS: dict[TimerState, frozenset[TimerState]] = {
    TimerState.IDLE: frozenset({TimerState.WAITING, TimerState.STOPPED}),
    TimerState.WAITING: frozenset(
        {TimerState.WAITING, TimerState.REFRESHING, TimerState.EXPIRED, TimerState.STOPPED}
    ),
    TimerState.REFRESHING: frozenset({TimerState.WAITING, TimerState.EXPIRED, TimerState.STOPPED}),
    TimerState.EXPIRED: frozenset({TimerState.STOPPED}),
    TimerState.STOPPED: frozenset({TimerState.STOPPED}),
}


class SessionTimer:
    """One leg's session timer (RFC 4028 §10).

    ``on_refresh`` is called when pbx must refresh (it then reports :meth:`refreshed` or
    :meth:`refresh_failed`); ``on_expired`` when the session ran out without a refresh.
    """

    def __init__(
        self,
        reactor: Any,
        on_refresh: Callable[[], None],
        on_expired: Callable[[], None],
        name: str = "",
    ) -> None:
        self._reactor = reactor
        self._on_refresh = on_refresh
        self._on_expired = on_expired
        self.name = name
        self.state = TimerState.IDLE
        self.negotiated: Negotiated | None = None
        self._refresh_call: Any = None
        self._expiry_call: Any = None

    def _move(self, new: TimerState) -> None:
        if new not in TIMER_TRANSITIONS[self.state]:
            raise RuntimeError(f"session timer {self.name}: {self.state.value} -> {new.value}")
        self.state = new

    @property
    def active(self) -> bool:
        return self.state in (TimerState.WAITING, TimerState.REFRESHING)

    def start(self, negotiated: Negotiated) -> None:
        """Start (or restart after a refresh) with the agreed interval and refresher."""
        if self.state in (TimerState.EXPIRED, TimerState.STOPPED):
            return
        self._cancel()
        self.negotiated = negotiated
        interval = float(negotiated.interval)
        if negotiated.refresher is Refresher.PBX:
            self._refresh_call = self._reactor.callLater(interval / 2.0, self._refresh_due)
            self._expiry_call = self._reactor.callLater(interval, self._expire)
        else:
            self._expiry_call = self._reactor.callLater(
                interval - expiry_margin(interval), self._expire
            )
        self._move(TimerState.WAITING)

    def refreshed(self, negotiated: Negotiated | None = None) -> None:
        """A refresh succeeded (a 2xx to ours, or one we answered): start a new interval."""
        chosen = negotiated or self.negotiated
        if chosen is not None and self.active:
            self.start(chosen)

    def refresh_failed(self) -> None:
        """Our refresh got a non-fatal error: the session runs on until its expiry."""
        if self.state is TimerState.REFRESHING:
            self._move(TimerState.WAITING)

    def stop(self) -> None:
        self._cancel()
        self._move(TimerState.STOPPED)

    def _refresh_due(self) -> None:
        self._refresh_call = None
        if self.state is not TimerState.WAITING:
            return
        self._move(TimerState.REFRESHING)
        self._on_refresh()

    def _expire(self) -> None:
        self._expiry_call = None
        if not self.active:
            return
        self._cancel()
        self._move(TimerState.EXPIRED)
        log.info("session timer %s expired", self.name)
        self._on_expired()

    def _cancel(self) -> None:
        for name in ("_refresh_call", "_expiry_call"):
            call = getattr(self, name)
            if call is not None and call.active():
                call.cancel()
            setattr(self, name, None)
