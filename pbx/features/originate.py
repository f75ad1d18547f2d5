"""Click-to-call: pbx rings the user's own phone, then the number they want to reach.

:class:`Originate` is the ``originate`` feature behind ``POST /api/v1/calls/originate`` (and
the CTI socket later). The user's phones ring first, showing the target as the caller; when
one is picked up it hears ringback while the target rings (the target sees the user as the
caller, offered the codec the user's phone chose first, so the call is relayed untouched).
When the target answers they are connected; when it is busy, unknown or does not answer, the
user hears the busy tone for a few seconds and the call ends. It is one call, recorded as a
call from the user to the target. Uses the call-control API only.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer

from pbx.calls.control import CallControl
from pbx.calls.dial import DialFailed
from pbx.calls.model import Conversation, Leg, NotFound, Party, Refused
from pbx.calls.numberplan import Kind, NumberPlan

log = logging.getLogger(__name__)

BUSY_TONE_MS = 4000


class Originate:
    def __init__(self, control: CallControl, plan: NumberPlan) -> None:
        self.control = control
        self.plan = plan
        control.features["originate"] = self

    def originate(
        self, target: str, *, from_extension: str, call_id: str | None = None
    ) -> defer.Deferred[dict[str, str]]:
        """Start the call; fires with ``{"call": ID, "leg": ID}`` once the user's phones
        ring (NotFound when the user or target does not exist, Refused when the user has
        no phone registered)."""
        control = self.control
        if self.plan.resolve(target).kind is not Kind.EXTENSION:
            raise Refused(f"{target} is a feature code, not a number to call")
        d = control.directory.callee(from_extension)

        def found(user: Any) -> dict[str, str]:
            if not user.exists:
                raise NotFound(f"no extension {from_extension}")
            if not user.bindings:
                raise Refused(f"extension {from_extension} has no phone registered")
            conversation = control.new_call(
                Party(from_extension, user.name), target, call_id=call_id
            )
            conversation.site_id, conversation.country = user.site_id, user.country
            dial = control.dial(
                conversation,
                user.bindings,
                Party(from_extension, user.name),
                Party(target, "Click-to-call"),
                commit=False,  # the call is answered when the target answers
            )
            dial.result.addCallbacks(
                self._user_answered,
                self._user_failed,
                callbackArgs=(conversation, target),
                errbackArgs=(conversation,),
            )
            first = dial.legs[0].id if dial.legs else ""
            return {"call": conversation.id, "leg": first}

        return d.addCallback(found)

    def _user_failed(self, failure: Any, conversation: Conversation) -> None:
        if failure.check(DialFailed):
            failed: DialFailed = failure.value
            self.control.set_outcome(conversation, failed.disposition, str(failed.status), "caller")
            if conversation.id in self.control.calls and not conversation.live_legs:
                self.control._call_ended(conversation)
            return
        log.error("click-to-call failed: %s", failure.getTraceback())

    def _user_answered(self, user_leg: Leg, conversation: Conversation, target: str) -> None:
        control = self.control
        ringback = control.tone(user_leg, "ringback")
        d = control.directory.callee(target)

        def found(callee: Any) -> None:
            if user_leg.ended:
                return
            if not callee.exists or not callee.bindings:
                self._busy(user_leg, ringback, 404 if not callee.exists else 480)
                return
            conversation.callee = target
            dial = control.dial(
                conversation,
                callee.bindings,
                Party(target, callee.name),
                user_leg.party,
                prefer=user_leg.format,
            )
            dial.result.addCallbacks(
                lambda leg: self._connected(user_leg, leg, ringback),
                lambda f: self._busy(user_leg, ringback, f.value.status if f.check(DialFailed) else 500),
            )

        d.addCallbacks(found, lambda f: self._busy(user_leg, ringback, 500))

    def _connected(self, user_leg: Leg, target_leg: Leg, ringback: Any) -> None:
        self.control.stop_source(user_leg, ringback)
        if user_leg.ended:
            target_leg.hang_up("normal")
            return
        self.control.connect(user_leg, target_leg)

    def _busy(self, user_leg: Leg, ringback: Any, status: int) -> None:
        control = self.control
        control.stop_source(user_leg, ringback)
        if user_leg.ended:
            return
        conversation = user_leg.conversation
        if conversation is not None:
            control.set_outcome(conversation, "answered", str(status), "callee")
        control.tone(user_leg, "busy", max_ms=BUSY_TONE_MS)
        control.reactor.callLater(BUSY_TONE_MS / 1000, user_leg.hang_up, str(status))


__all__ = ["Originate"]
