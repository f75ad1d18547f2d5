"""Call park: park a call in a slot, retrieve it from any phone, or it rings back the parker.

:class:`ParkingLot` is the ``park`` feature. Slots are the number plan's park slots (default
701-720, config/feature_codes.toml). A call is parked:

- by a blind transfer to the park code (``700``): the transferee goes into the first free slot,
  and the parker hears the slot number (pbx.media.prompts, when its phone is not holding the
  call) before the final NOTIFY;
- by dialling the park code: the caller parks itself after hearing the slot number (this is
  also how an attended transfer to ``700`` works: the phone then replaces its parked
  consultation call with the call it transfers, and that call takes the slot).

A parked call waits alone in a parking bridge, hearing music on hold. Dialling the slot
retrieves it: the retriever is answered and connected, and it is still one call (the
retriever's call merges into it). Not retrieved within ``timeout`` seconds (``[calls]
park_timeout``), the parker's phones ring; on answer the parker gets the call back, with no
answer it goes back to its slot for another round. A parked call that hangs up frees its slot.
Every park and unpark is published (Parked, Unparked with retrieved/timeout/hangup).
Uses the call-control API only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pbx.calls import events as ev
from pbx.calls.bridge import Alone, Bridge, BridgeKind, BridgePolicy
from pbx.calls.control import CallControl
from pbx.calls.dial import Dial
from pbx.calls.model import Leg, NotFound, Party, Refused
from pbx.calls.numberplan import NumberPlan, Target

log = logging.getLogger(__name__)

PARKING = BridgePolicy(when_alone=Alone.KEEP, movable=True, transferable=True)


@dataclass(eq=False)
class Slot:
    number: str
    bridge: Bridge
    parker: str  # the extension that parked (rung back at the timeout)
    timer: Any = None
    recall: Dial | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def leg(self) -> Leg | None:
        live = [leg for leg in self.bridge.legs if not leg.ended]
        return live[0] if live else None


class ParkingLot:
    """The park feature; see the module docstring."""

    def __init__(self, control: CallControl, plan: NumberPlan, *, timeout: float = 120.0) -> None:
        self.control = control
        self.plan = plan
        self.timeout = timeout
        self.slots: dict[str, Slot] = {}
        control.features["park"] = self
        control.before_end.append(self._ending)

    # -- parking -----------------------------------------------------------------------------

    def free_slot(self) -> str:
        for number in self.plan.park_slots:
            if number not in self.slots:
                return number
        raise Refused("every park slot is taken")

    def park(self, leg: Leg, by: Leg | None = None, progress: Any = None) -> str:
        """Park ``leg`` (a blind transfer to the park code by ``by``); returns the slot."""
        number = self.free_slot()
        parker = by.party.number if by is not None else leg.party.number
        self._occupy(number, leg, parker, by)
        if by is None or by.ended:
            if progress is not None:
                progress.done(200, "OK")
            return number
        self.control.leave(by)
        said = self.control.say_digits(by, number)

        def announced(_: Any) -> None:
            if progress is not None:
                progress.done(200, "OK")
            transfers = self.control.features.get("transfer")
            if transfers is not None:
                transfers.let_go(by)

        said.addBoth(announced)
        return number

    def park_caller(self, caller: Leg, target: Target) -> None:
        """The caller dialled the park code: it is answered, hears its slot, and waits."""
        number = self.free_slot()
        control = self.control
        answering = control.answer_locally(caller)  # type: ignore[arg-type]

        def answered(going_on: bool) -> None:
            if not going_on:
                return
            slot = self._occupy(number, caller, caller.party.number, caller)
            slot.extra["announcing"] = True
            control.say_digits(caller, number).addBoth(lambda _: slot.extra.pop("announcing", None))

        answering.addCallback(answered)
        answering.addErrback(lambda f: log.error("[%s] park: %s", caller.call_id, f.getTraceback()))

    def _occupy(self, number: str, leg: Leg, parker: str, by: Leg | None) -> Slot:
        control = self.control
        bridge = control.create_bridge(BridgeKind.PARKING, PARKING, bridge_id=f"park-{number}-{leg.id}")
        slot = Slot(number, bridge, parker)
        self.slots[number] = slot
        control.join(leg, bridge)
        self._publish(ev.Parked, leg, slot=number, by=by.id if by else "")
        slot.timer = control.reactor.callLater(self.timeout, self._time_out, slot)
        log.info("[%s] %s parked in %s by %s", leg.call_id, leg.party.number, number, parker)
        return slot

    # -- leaving the slot --------------------------------------------------------------------

    def retrieve(self, retriever: Leg, target: Target) -> None:
        """Someone dialled the slot: answer them and connect them with the parked call."""
        slot = self.slots.get(target.argument)
        parked = slot.leg if slot is not None else None
        if slot is None or parked is None:
            raise NotFound(f"nobody is parked in {target.argument}")
        control = self.control
        own, target_call = retriever.conversation, parked.conversation
        if own is not None and target_call is not None and own is not target_call:
            control.merge(own, target_call)  # it is the parked call that goes on
        self._release(slot)
        self._publish(ev.Unparked, parked, slot=slot.number, reason="retrieved", by=retriever.id)
        answering = control.answer_locally(retriever, parked.codec or None)  # type: ignore[arg-type]

        def answered(going_on: bool) -> None:
            if not going_on or parked.ended:
                if not retriever.ended:
                    retriever.hang_up("nothing parked")
                return
            control.connect(parked, retriever)

        answering.addCallback(answered)
        answering.addErrback(lambda f: log.error("[%s] unpark: %s", retriever.call_id, f.getTraceback()))

    def _time_out(self, slot: Slot) -> None:
        slot.timer = None
        parked = slot.leg
        if parked is None or self.slots.get(slot.number) is not slot:
            return
        if parked.party.number == slot.parker:  # it parked itself: nobody to ring back
            self._release(slot)
            self._publish(ev.Unparked, parked, slot=slot.number, reason="timeout")
            parked.hang_up("park timeout")
            return
        control = self.control
        log.info("[%s] %s: park timeout, ringing %s", parked.call_id, slot.number, slot.parker)

        def found(callee: Any) -> None:
            if parked.ended or self.slots.get(slot.number) is not slot:
                return
            if not callee.exists or not callee.bindings:
                self._again(slot)
                return
            conversation = parked.conversation
            assert conversation is not None
            slot.recall = control.dial(
                conversation,
                callee.bindings,
                Party(slot.parker, callee.name),
                Party(parked.party.number, f"Parked {slot.number}"),
                prefer=parked.format,
            )
            slot.recall.result.addCallbacks(lambda leg: self._recalled(slot, leg), lambda f: self._again(slot))

        control.directory.callee(slot.parker).addCallbacks(found, lambda f: self._again(slot))

    def _recalled(self, slot: Slot, leg: Leg) -> None:
        parked = slot.leg
        if parked is None:
            leg.hang_up("nothing parked")
            return
        self._release(slot)
        self._publish(ev.Unparked, parked, slot=slot.number, reason="timeout", by=leg.id)
        self.control.connect(parked, leg)

    def _again(self, slot: Slot) -> None:
        """The parker did not take it back: the call waits another round in its slot."""
        slot.recall = None
        if self.slots.get(slot.number) is slot and slot.leg is not None:
            slot.timer = self.control.reactor.callLater(self.timeout, self._time_out, slot)

    def _release(self, slot: Slot) -> None:
        if self.slots.get(slot.number) is slot:
            del self.slots[slot.number]
        if slot.timer is not None and slot.timer.active():
            slot.timer.cancel()
        slot.timer = None
        if slot.recall is not None:
            slot.recall.cancel("cancelled")
            slot.recall = None

    def _ending(self, leg: Leg) -> None:
        """A leg is about to end (before its LegEnded): a parked call that hangs up frees
        its slot."""
        for slot in list(self.slots.values()):
            if leg in slot.bridge.legs:
                self._release(slot)
                self._publish(ev.Unparked, leg, slot=slot.number, reason="hangup")

    def _publish(self, kind: type, leg: Leg, **fields: Any) -> None:
        conversation = leg.conversation
        self.control.feed.publish(
            kind(call=conversation.id if conversation else "", leg=leg.id, **fields)
        )

    def snapshot(self) -> list[dict[str, Any]]:
        return [
            {"slot": s.number, "parker": s.parker, "leg": s.leg.id if s.leg else None}
            for s in self.slots.values()
        ]


__all__ = ["ParkingLot", "Slot"]
