"""New calls from phones: an authenticated INVITE becomes a call, routed by the number plan.

The switch is where a phone's INVITE enters the call layer (pbx.sip.methods routes it here
after digest authentication). It makes the call (pbx.calls.control.CallControl.new_call) and
the caller's leg, then goes where the number plan (pbx.calls.numberplan) says:

- an extension: 404 when it does not exist, 480 when no phone is registered (or it is
  disabled), 486 when it has a call and call waiting off; else every contact rings
  (pbx.calls.dial), the caller gets 180 or early media, and the first answer is bridged with
  the caller (relayed untouched when they share a codec);
- feature codes go to their features: the echo test (a local leg that sends back what it
  hears), park (``700``) and park slots, group and directed pickup;
- (an INVITE with ``Replaces``, RFC 3891, never gets here: pbx.features.pickup's handler is
  registered for INVITE before the switch and takes it.)

Every INVITE that gets this far leaves a call record, also when it is refused: an SRTP-only
offer over a plain transport (488: SDES keys would travel in clear, RFC 4568 §8.3), a session
interval below Min-SE (422, RFC 4028 §5), no media ports (503), a failed lookup (500).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from pbx.calls import anchor
from pbx.calls.control import CallControl
from pbx.calls.dial import DialFailed
from pbx.calls.directory import Callee, Directory
from pbx.calls.model import CallError, Conversation, Party, Refused
from pbx.calls.numberplan import Kind, NumberPlan, Target
from pbx.calls.sdpsession import MediaRefused
from pbx.calls.session_timer import TooBrief, negotiate_uas, read_offer
from pbx.calls.sipleg import InboundLeg, OutboundLeg
from pbx.sip.stack import IncomingRequest
from pbx.sip.uri import SipUri

log = logging.getLogger(__name__)

Feature = Callable[[InboundLeg, Target], Any]


class Switch:
    """Routes new calls; runs on the reactor thread."""

    def __init__(self, control: CallControl, directory: Directory, plan: NumberPlan) -> None:
        self.control = control
        self.directory = directory
        self.plan = plan
        self.features: dict[Kind, Feature] = {}
        # numbers that are no extension: pbx.calls.outbound.OutboundRouter (None: 404)
        self.outbound: Any = None

    # -- entry --------------------------------------------------------------------------------

    def on_invite(self, incoming: IncomingRequest, username: str) -> None:
        """A phone's new INVITE (``username`` authenticated): what it dialled is the
        Request-URI's user."""
        request = incoming.request
        uri = request.uri
        dialled = uri.user if isinstance(uri, SipUri) and uri.user else ""
        self.start(incoming, Party(username, request.from_.display_name or ""), dialled)

    def start(
        self, incoming: IncomingRequest, caller: Party, dialled: str, direction: str = "internal"
    ) -> None:
        """Route a new INVITE from ``caller`` to ``dialled`` (a phone's, or a trunk's with
        the number its DID maps to: ``direction`` "inbound")."""
        request = incoming.request
        if request.to.tag:
            incoming.respond(481)  # an in-dialog INVITE we do not know (a dead call)
            return
        conversation = self.control.new_call(
            caller, dialled, request.call_id, direction=direction
        )
        try:
            negotiate_uas(
                read_offer(request.headers),
                self.control.settings.session_expires,
                self.control.settings.min_se,
            )
        except TooBrief as exc:
            self.refuse(conversation, incoming, 422, None, [("Min-SE", str(exc.min_se))])
            return
        if not dialled:
            self.refuse(conversation, incoming, 404, "No Number Dialled")
            return
        if anchor.offers_srtp(request.body) and incoming.source.remote.transport != "TLS":
            log.info("[%s] SRTP offered over %s: refused", request.call_id, incoming.source)
            self.refuse(
                conversation, incoming, 488, None, [("Warning", '399 pbx "SRTP needs TLS"')]
            )
            return
        target = self.plan.resolve(dialled)
        routing: defer.Deferred[None]
        if target.kind is Kind.EXTENSION:
            routing = self.directory.callee(dialled).addCallback(
                self._route, conversation, incoming, target
            )
        else:
            routing = defer.maybeDeferred(self._feature, conversation, incoming, target)
        routing.addErrback(self._failed, conversation, incoming)

    def refuse(
        self,
        conversation: Conversation,
        incoming: IncomingRequest,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        disposition: str = "failed",
        side: str = "pbx",
    ) -> None:
        """Answer the INVITE with a final error before any leg exists; the call ends (and
        leaves its record)."""
        if not incoming.final_sent:
            incoming.respond(status, reason, headers or [])
        self.control.set_outcome(conversation, disposition, str(status), side)
        self.control._call_ended(conversation)

    def _failed(self, failure: Any, conversation: Conversation, incoming: IncomingRequest) -> None:
        """Set-up went wrong (a lookup failed, a bug): 500, and nothing of the call is left
        behind; its record says 500."""
        log.error("[%s] call set-up failed: %s", incoming.call_id, failure.getTraceback())
        self.control.set_outcome(conversation, "failed", "500", "pbx")
        if conversation.live_legs:
            for leg in conversation.live_legs:
                leg.hang_up("500")
        elif conversation.id in self.control.calls:
            self.refuse(conversation, incoming, 500)
        if not incoming.final_sent:
            incoming.respond(500)

    def caller_leg(self, conversation: Conversation, incoming: IncomingRequest) -> InboundLeg | None:
        """The caller's leg (media ports opened); None after answering 503."""
        request = incoming.request
        caller = conversation.caller
        try:
            return self.control.inbound_leg(incoming, caller, conversation)
        except Refused:
            log.info("[%s] no media ports", request.call_id)
            self.refuse(conversation, incoming, 503, "No Media Ports")
            return None

    # -- extensions ---------------------------------------------------------------------------

    def _route(
        self, found: Callee, conversation: Conversation, incoming: IncomingRequest, target: Target
    ) -> None:
        dialled = target.number
        if conversation.id not in self.control.calls:
            return
        if not found.exists:
            if self.outbound is not None and conversation.direction == "internal":
                d = self.outbound.route(conversation, incoming, dialled)
                d.addErrback(self._failed, conversation, incoming)
                return
            self.refuse(conversation, incoming, 404, "No Such Number")
            return
        conversation.callee = dialled
        if conversation.site_id is None:
            conversation.site_id, conversation.country = found.site_id, found.country
        if not found.bindings:
            self.refuse(conversation, incoming, 480, "Not Registered")
            return
        if not found.call_waiting and self.busy(dialled):
            self.refuse(conversation, incoming, 486, disposition="busy", side="callee")
            return
        leg = self.caller_leg(conversation, incoming)
        if leg is None:
            return
        dial = self.control.dial(
            conversation,
            found.bindings,
            Party(dialled, found.name),
            conversation.caller,
            from_leg=leg,
        )
        dial.result.addCallbacks(
            self._answered,
            self._not_answered,
            callbackArgs=(leg,),
            errbackArgs=(leg, conversation),
        )

    def _answered(self, winner: OutboundLeg, caller: InboundLeg) -> None:
        if caller.ended or winner.ended:
            return
        bridge = caller.bridge
        if bridge is not None:
            self.control.join(winner, bridge)
        else:
            self.control.connect(caller, winner)

    def _not_answered(self, failure: Any, caller: InboundLeg, conversation: Conversation) -> None:
        if not failure.check(DialFailed):
            log.error("[%s] dial failed: %s", caller.call_id, failure.getTraceback())
            self.control.set_outcome(conversation, "failed", "500", "pbx")
            caller.hang_up("500")
            return
        failed: DialFailed = failure.value
        if caller.ended or failed.disposition == "picked_up":
            return  # the caller cancelled (its leg's end says so), or a pickup took it
        side = "pbx" if failed.status in (500, 503) else "callee"
        self.control.set_outcome(conversation, failed.disposition, str(failed.status), side)
        caller.reject(failed.status, "No Answer" if failed.status == 480 else None)

    def busy(self, extension: str) -> bool:
        """Whether ``extension`` has a ringing or answered call (call waiting off)."""
        for conversation in self.control.calls.values():
            if conversation.caller.number == extension and conversation.live_legs:
                return True
            for leg in conversation.live_legs:
                if leg.direction == "out" and leg.party.number == extension:
                    return True
        return False

    # -- features -----------------------------------------------------------------------------

    def _feature(self, conversation: Conversation, incoming: IncomingRequest, target: Target) -> None:
        feature = self.features.get(target.kind)
        if feature is None:
            self.refuse(conversation, incoming, 404, "No Such Number")
            return
        leg = self.caller_leg(conversation, incoming)
        if leg is None:
            return
        try:
            feature(leg, target)
        except MediaRefused as exc:
            log.info("[%s] %s refused: %s", leg.call_id, target.number, exc)
            self.control.set_outcome(conversation, "failed", "488", "pbx")
            leg.reject(488)
        except CallError as exc:
            log.info("[%s] %s: %s", leg.call_id, target.number, exc)
            status = 404 if exc.status == 404 else 480
            self.control.set_outcome(conversation, "failed", str(status), "pbx")
            leg.reject(status)


__all__ = ["Switch"]
