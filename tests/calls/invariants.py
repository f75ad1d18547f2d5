"""The call-control invariants, checked on a recorded event feed (every scenario test).

:func:`check` asserts, over the events of one run:

1. ``seq`` strictly increases, and ``at`` never goes back;
2. every leg that was created ends exactly once (LegEnded), and no event names a leg after
   its end;
3. a leg is in at most one bridge at a time (a move publishes BridgeLeft before BridgeJoined)
   and has left its bridge before it ends;
4. every call that started ends exactly once (CallEnded), after all its legs ended, and no
   event names it afterwards;
5. with ``records``: one record per ended call (a call merged into another has none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pbx.calls import events as ev


def check(events: Sequence[ev.Event], records: Sequence[Any] | None = None, *, finished: bool = True) -> None:
    """Raise AssertionError naming the first broken invariant. ``finished``: every call and
    leg must have ended by the end of ``events``."""
    last_seq, last_at = 0, 0.0
    created: set[str] = set()
    ended: set[str] = set()
    bridge_of: dict[str, str] = {}
    calls_started: set[str] = set()
    calls_ended: set[str] = set()
    merged: set[str] = set()
    legs_of: dict[str, set[str]] = {}
    for event in events:
        assert event.seq > last_seq, f"seq not increasing at {event}"
        assert event.at >= last_at - 1e-9, f"time went back at {event}"
        last_seq, last_at = event.seq, event.at
        assert event.call not in calls_ended, f"event after CallEnded: {event}"
        leg = getattr(event, "leg", None)
        if isinstance(event, ev.CallStarted):
            assert event.call not in calls_started, f"call started twice: {event}"
            calls_started.add(event.call)
            continue
        if isinstance(event, ev.LegCreated):
            assert leg not in ended, f"leg created after its end: {event}"
            created.add(event.leg)
            for members in legs_of.values():  # adopted by another call (attended transfer)
                members.discard(event.leg)
            legs_of.setdefault(event.call, set()).add(event.leg)
            continue
        if leg is not None:
            assert leg not in ended, f"event names a leg after its end: {event}"
        if isinstance(event, ev.BridgeJoined):
            assert event.leg not in bridge_of, (
                f"{event.leg} joined {event.bridge} while in {bridge_of.get(event.leg)}"
            )
            assert event.leg in event.members, f"joined but not a member: {event}"
            bridge_of[event.leg] = event.bridge
        elif isinstance(event, ev.BridgeLeft):
            assert bridge_of.get(event.leg) == event.bridge, f"left a bridge it was not in: {event}"
            assert event.leg not in event.members, f"left but still a member: {event}"
            del bridge_of[event.leg]
        elif isinstance(event, ev.LegEnded):
            assert event.leg in created, f"ended a leg never created: {event}"
            assert event.leg not in bridge_of, f"ended while in bridge {bridge_of[event.leg]}: {event}"
            ended.add(event.leg)
        elif isinstance(event, ev.CallEnded):
            assert event.call in calls_started, f"ended a call never started: {event}"
            live = [x for x in legs_of.get(event.call, set()) if x not in ended]
            assert not live, f"call ended with live legs {live}: {event}"
            calls_ended.add(event.call)
            if event.disposition == "merged":
                merged.add(event.call)
    if finished:
        assert created <= ended, f"legs never ended: {sorted(created - ended)}"
        assert calls_started <= calls_ended, f"calls never ended: {sorted(calls_started - calls_ended)}"
    if records is not None:
        recorded = len(calls_ended - merged)
        assert len(records) == recorded, f"{len(records)} records for {recorded} ended calls"



__all__ = ["check"]
