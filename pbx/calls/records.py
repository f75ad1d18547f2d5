"""Call records built from the event feed: one record per call, crash-safe.

:class:`CallRecords` subscribes to the :class:`~pbx.calls.events.EventFeed` and keeps, per
call (conversation), what its record needs: caller, dialled number, who answered, codecs, and
the call's **history**: talk segments (who talked with whom, from when until when, from the
members of its bridges) and notes for transfers, parks, unparks and pickups. When the call's
last leg ends (``CallEnded``) the record is completed with its disposition, hang-up side and
cause and its history, in one write.

An answered call's row is committed *before* its caller hears the 200 OK
(:meth:`CallRecords.commit_answer`, which the dial waits for), so a crash or a kill never loses
an answered call: rows still open at start-up are marked 'interrupted' by the store. A call
that ends while its row is being written is closed as soon as the row exists; a row that
cannot be written fails the Deferred (the caller then gets 500 and a complete 'failed' row is
tried once more at the end).

``write(kind, ...)`` is the store hand-off: ``("open", CallRecord) -> id``,
``("close", id, ended_at=…, disposition=…, hangup_side=…, hangup_cause=…, history=[…])`` and
``("add", CallRecord, history=[…])``; each returns a Deferred. History entries are plain
dicts: ``kind`` ("talk", "transfer", "park", "unpark", "pickup"), ``at``, ``until`` (talk),
``parties`` (numbers) and ``detail`` (a sentence for people). Records can be rebuilt by
replaying a recorded feed into a new :class:`CallRecords` (the tests do).
Must not import pbx.store's SQL side beyond its dataclass, or pbx.sip.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from pbx.calls import events as ev
from pbx.store.cdr import CallRecord

log = logging.getLogger(__name__)

Writer = Callable[..., "defer.Deferred[Any]"]


@dataclass
class _Party:
    number: str
    name: str
    direction: str
    answered: bool = False
    codec: str = ""


@dataclass
class _Call:
    """What the record of one call collects while it lasts."""

    id: str
    sip_call_id: str
    caller: str
    caller_name: str
    dialled: str
    started_at: float
    direction: str = "internal"
    parties: dict[str, _Party] = field(default_factory=dict)
    origin: str = ""  # the first leg
    answered_at: float | None = None
    callee: str = ""
    callee_codec: str = ""
    record_id: int | None = None
    opening: defer.Deferred[Any] | None = None
    open_failed: bool = False
    final: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    bridges: dict[str, set[str]] = field(default_factory=dict)  # bridge -> member legs
    talking: dict[str, tuple[tuple[str, ...], float]] = field(default_factory=dict)


class CallRecords:
    """One record per call, from the feed; see the module docstring."""

    def __init__(self, write: Writer) -> None:
        self._write = write
        self._calls: dict[str, _Call] = {}

    def __call__(self, event: ev.Event) -> None:
        handler = _HANDLERS.get(type(event))
        call = self._calls.get(event.call)
        if isinstance(event, ev.CallStarted):
            self._calls[event.call] = _Call(
                event.call,
                event.sip_call_id,
                event.caller,
                event.caller_name,
                event.dialled,
                event.at,
                event.direction,
            )
            return
        if call is None or handler is None:
            return
        handler(self, call, event)

    def set_direction(self, call_id: str, direction: str) -> None:
        """The call turned out to go ``direction`` (e.g. out through a trunk)."""
        call = self._calls.get(call_id)
        if call is not None:
            call.direction = direction

    # -- the answered row -----------------------------------------------------------------

    def commit_answer(
        self, call_id: str, leg_id: str, at: float, codecs: tuple[str, str] = ("", "")
    ) -> defer.Deferred[bool]:
        """Write the open row of call ``call_id`` answered by leg ``leg_id``; fires True when
        committed and the call goes on, False when it ended meanwhile (the row is then
        closed at once), fails when the row could not be written."""
        call = self._calls.get(call_id)
        if call is None:
            return defer.succeed(False)
        if call.record_id is not None:
            return defer.succeed(call.final is None)
        if call.opening is not None:
            waiting: defer.Deferred[bool] = defer.Deferred()

            def settled(result: Any) -> Any:
                waiting.callback(call.final is None and not call.open_failed)
                return result

            call.opening.addBoth(settled)
            return waiting
        party = call.parties.get(leg_id)
        call.answered_at = at
        if party is not None:
            call.callee = party.number
        caller_codec, callee_codec = codecs
        call.callee_codec = callee_codec or (party.codec if party is not None else "")
        origin = call.parties.get(call.origin)
        if origin is not None and caller_codec:
            origin.codec = caller_codec
        record = self._record(call, answered_at=at)
        opening = self._write("open", record)
        call.opening = opening
        done: defer.Deferred[bool] = defer.Deferred()

        def opened(record_id: int) -> int:
            call.record_id = record_id
            call.opening = None
            if call.final is not None:  # ended while the row was being written
                self._close(call)
                done.callback(False)
            else:
                done.callback(True)
            return record_id

        def not_written(failure: Any) -> None:
            log.error("[%s] call record not written: %s", call.sip_call_id, failure.getErrorMessage())
            call.opening = None
            call.open_failed = True
            call.answered_at = None
            if call.final is not None:
                self._close(call)
            done.errback(failure)

        opening.addCallbacks(opened, not_written)
        return done

    # -- building ------------------------------------------------------------------------

    def _record(self, call: _Call, **fields: Any) -> CallRecord:
        origin = call.parties.get(call.origin)
        return CallRecord(
            call_id=call.sip_call_id,
            caller=call.caller,
            dialled=call.dialled,
            caller_name=call.caller_name,
            caller_user=(call.caller or None) if call.direction == "internal" else None,
            direction=call.direction,
            started_at=call.started_at,
            callee=call.callee,
            callee_user=call.callee or None,
            caller_codec=(origin.codec if origin is not None else "") or None,
            callee_codec=call.callee_codec or None,
            **fields,
        )

    def _close(self, call: _Call) -> None:
        final = call.final
        assert final is not None
        history = list(call.history)
        self._calls.pop(call.id, None)
        if call.record_id is not None:
            d = self._write("close", call.record_id, history=history, **final)
        else:
            record = self._record(
                call,
                answered_at=None,
                ended_at=final["ended_at"],
                disposition=final["disposition"],
                hangup_side=final["hangup_side"],
                hangup_cause=final["hangup_cause"],
            )
            d = self._write("add", record, history=history)
        d.addErrback(
            lambda f: log.error("[%s] record not completed: %s", call.sip_call_id, f.getErrorMessage())
        )

    def _talk(self, call: _Call, bridge: str, at: float) -> None:
        """The talking parties of ``bridge`` may have changed: close and open segments."""
        members = call.bridges.get(bridge, set())
        talking = tuple(
            sorted(
                (p.number for leg, p in call.parties.items() if leg in members and p.answered),
            )
        )
        current = call.talking.get(bridge)
        if current is not None and current[0] == talking:
            return
        if current is not None and len(current[0]) >= 2:
            call.history.append(
                {
                    "kind": "talk",
                    "at": current[1],
                    "until": at,
                    "parties": list(current[0]),
                    "detail": " and ".join(current[0]) + " talked",
                }
            )
        if len(talking) >= 2:
            call.talking[bridge] = (talking, at)
        else:
            call.talking.pop(bridge, None)

    def _note(self, call: _Call, kind: str, at: float, parties: list[str], detail: str) -> None:
        call.history.append(
            {"kind": kind, "at": at, "until": None, "parties": parties, "detail": detail}
        )

    def _number(self, call: _Call, leg: str) -> str:
        party = call.parties.get(leg)
        return party.number if party is not None else leg


# -- event handlers -----------------------------------------------------------------------


def _leg_created(records: CallRecords, call: _Call, event: ev.LegCreated) -> None:
    call.parties[event.leg] = _Party(event.party, event.party_name, event.direction)
    if not call.origin:
        call.origin = event.leg


def _leg_answered(records: CallRecords, call: _Call, event: ev.LegAnswered) -> None:
    party = call.parties.get(event.leg)
    if party is None:
        return
    party.answered, party.codec = True, event.codec
    if event.leg != call.origin and not call.callee:
        call.callee, call.callee_codec = party.number, event.codec
    for bridge, members in call.bridges.items():
        if event.leg in members:
            records._talk(call, bridge, event.at)


def _leg_ended(records: CallRecords, call: _Call, event: ev.LegEnded) -> None:
    for bridge, members in call.bridges.items():
        if event.leg in members:
            members.discard(event.leg)
            records._talk(call, bridge, event.at)


def _joined(records: CallRecords, call: _Call, event: ev.BridgeJoined) -> None:
    call.bridges[event.bridge] = set(event.members)  # the snapshot: members of other calls too
    records._talk(call, event.bridge, event.at)


def _left(records: CallRecords, call: _Call, event: ev.BridgeLeft) -> None:
    call.bridges[event.bridge] = set(event.members)
    records._talk(call, event.bridge, event.at)


def _transferred(records: CallRecords, call: _Call, event: ev.Transferred) -> None:
    who, by = records._number(call, event.leg), records._number(call, event.by)
    detail = f"{by} transferred {who} to {event.target} ({event.kind})"
    if event.outcome != "connected":
        detail += f": {event.outcome}"
    records._note(call, "transfer", event.at, [by, who, event.target], detail)


def _parked(records: CallRecords, call: _Call, event: ev.Parked) -> None:
    who = records._number(call, event.leg)
    by = records._number(call, event.by) if event.by else ""
    detail = f"{who} parked in {event.slot}" + (f" by {by}" if by else "")
    records._note(call, "park", event.at, [p for p in (who, by) if p], detail)


def _unparked(records: CallRecords, call: _Call, event: ev.Unparked) -> None:
    who = records._number(call, event.leg)
    by = records._number(call, event.by) if event.by else ""
    if event.reason == "retrieved":
        detail = f"{who} retrieved from {event.slot}" + (f" by {by}" if by else "")
    else:
        detail = f"{who} left {event.slot} ({event.reason})"
    records._note(call, "unpark", event.at, [p for p in (who, by) if p], detail)


def _picked_up(records: CallRecords, call: _Call, event: ev.PickedUp) -> None:
    by = records._number(call, event.by)
    ringing = records._number(call, event.ringing) if event.ringing else call.dialled
    records._note(call, "pickup", event.at, [by, ringing], f"picked up by {by} (rang {ringing})")
    call.callee = by


def _ended(records: CallRecords, call: _Call, event: ev.CallEnded) -> None:
    if event.disposition == "merged":  # its legs belong to another call now: no record
        records._calls.pop(call.id, None)
        return
    for bridge in list(call.talking):
        call.bridges[bridge] = set()
        records._talk(call, bridge, event.at)
    if not call.callee:
        call.callee = event.callee or next(
            (p.number for p in call.parties.values() if p.direction == "out"), ""
        )
    call.final = {
        "ended_at": event.at,
        "disposition": event.disposition,
        "hangup_side": event.side,
        "hangup_cause": event.cause,
    }
    if call.answered_at is not None and call.record_id is None and not call.open_failed:
        return  # the open row is being written: closed when it is committed
    if call.open_failed:
        call.final["disposition"] = "failed"
    records._close(call)


_HANDLERS: dict[type, Callable[..., None]] = {
    ev.LegCreated: _leg_created,
    ev.LegAnswered: _leg_answered,
    ev.LegEnded: _leg_ended,
    ev.BridgeJoined: _joined,
    ev.BridgeLeft: _left,
    ev.Transferred: _transferred,
    ev.Parked: _parked,
    ev.Unparked: _unparked,
    ev.PickedUp: _picked_up,
    ev.CallEnded: _ended,
}


__all__ = ["CallRecords"]
