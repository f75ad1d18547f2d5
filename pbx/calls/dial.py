"""Originating legs: ring every contact of a target in parallel, the first answer wins.

A :class:`Dial` is one attempt (FreeSWITCH's dial handle, one parallel group): an
:class:`~pbx.calls.sipleg.OutboundLeg` per contact, each with an offer built for it:

- with a waiting caller (``from_leg``, a phone's unanswered INVITE: the B2BUA case), from the
  caller's own offer plus the codecs pbx transcodes (pbx.calls.negotiate.offer_for_callee),
  so a shared codec wins and the call is relayed untouched; the caller gets 180 once, or 183
  with the early media of a contact that sends some, and is answered with the SDP derived
  from the winner's answer;
- otherwise (originate, transfer targets, recalls) pbx's own offer, the ``prefer``red format
  (the leg it will be bridged to) first.

SRTP (SDES) is offered to contacts reached over TLS; one that refuses it (488/606) is called
once more with plain RTP. The first 2xx wins: the other contacts get CANCEL with
``Reason: SIP;cause=200;text="Call completed elsewhere"`` (RFC 3326), a second 2xx is ACKed
and BYEd (cause ``lost_race``). Before the caller hears the 200 OK, the call record is
committed (pbx.calls.records), so a crash never loses an answered call. ``result`` fires with
the winner once it is answered (and the caller too), or fails with :class:`DialFailed`
(``disposition`` busy, no answer, failed or cancelled, and the SIP status to give a caller).
Every loser ends with a specific cause: cancelled, lost_race, no_answer, or its status.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet import defer

from pbx.calls import negotiate
from pbx.calls.model import Conversation, Party, Refused
from pbx.calls.negotiate import NegotiationError, StreamFormat
from pbx.calls.sdpsession import MediaRefused
from pbx.calls.sipleg import InboundLeg, OutboundLeg
from pbx.store.registrations import Binding

if TYPE_CHECKING:
    from pbx.calls.control import CallControl

log = logging.getLogger(__name__)

ELSEWHERE = 'SIP;cause=200;text="Call completed elsewhere"'
_BUSY = (486, 600)


class DialState(enum.Enum):
    RINGING = "ringing"
    ANSWERING = "answering"  # a winner answered; the record is being committed
    ANSWERED = "answered"
    FAILED = "failed"


class DialFailed(Exception):
    """Nobody answered: ``disposition`` for the record, ``status`` for a waiting caller."""

    def __init__(self, disposition: str, status: int, cause: str) -> None:
        super().__init__(f"{disposition} ({status}, {cause})")
        self.disposition = disposition
        self.status = status
        self.cause = cause


class Dial:
    """One originate attempt to ``contacts`` of ``callee``; see the module docstring."""

    def __init__(
        self,
        control: CallControl,
        conversation: Conversation,
        contacts: list[Binding],
        callee: Party,
        caller: Party,
        *,
        from_leg: InboundLeg | None = None,
        prefer: StreamFormat | None = None,
        timeout: float = 30.0,
        headers: tuple[tuple[str, str], ...] = (),
        on_ringing: Callable[[Dial, OutboundLeg, bool], None] | None = None,
        commit: bool = True,
        authenticator: Any = None,
        domain: str | None = None,
    ) -> None:
        self.control = control
        self.conversation = conversation
        self.contacts = contacts
        self.callee = callee
        self.caller = caller
        self.from_leg = from_leg
        self.prefer = prefer
        self.timeout = timeout
        self.headers = headers
        self.authenticator = authenticator  # a trunk's digest client (answers 401/407)
        self.domain = domain  # a trunk's provider domain for From and To
        self.on_ringing = on_ringing
        self.commit = commit  # False: this answer does not answer the call (click-to-call)
        self.state = DialState.RINGING
        self.legs: list[OutboundLeg] = []
        self.winner: OutboundLeg | None = None
        self.result: defer.Deferred[OutboundLeg] = defer.Deferred()
        self.statuses: list[int] = []
        self.early: OutboundLeg | None = None  # the contact whose early media the caller hears
        self._timer: Any = None
        self._secure: dict[str, Binding] = {}  # leg id -> contact offered SRTP (retry plain)
        if from_leg is not None:
            self._template = negotiate.offer_for_callee(from_leg.offer, control.codec_order)
        else:
            self._template = negotiate.own_offer(control.codec_order, prefer)

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> defer.Deferred[OutboundLeg]:
        for contact in self.contacts:
            self._ring(contact, secure=contact.transport.upper() == "TLS")
        if not self.legs:
            self._all_failed()  # no contact could even be called (no media ports: 503)
        else:
            self._timer = self.control.reactor.callLater(self.timeout, self._no_answer)
        return self.result

    def _ring(self, contact: Binding, secure: bool) -> OutboundLeg | None:
        try:
            leg = self.control.outbound_leg(
                self.conversation, contact, self.callee, self.caller, self._template,
                secure=secure, headers=self.headers, authenticator=self.authenticator,
                domain=self.domain,
            )
        except Exception as exc:  # no media ports, a contact pbx cannot reach
            log.warning("[%s] %s not called: %s", self.conversation.sip_call_id, contact.contact, exc)
            self.statuses.append(503 if isinstance(exc, Refused) else 500)
            return None
        self.control.dials[leg.id] = self
        self.legs.append(leg)
        if secure:
            self._secure[leg.id] = contact
        leg.start()
        return leg

    def hand_over(self) -> InboundLeg | None:
        """Someone else takes the waiting caller (a pickup): every contact stops ringing
        (CANCEL, Reason: call completed elsewhere), ``result`` fails with disposition
        "picked_up" and the caller is left unanswered for the taker; returns it."""
        caller = self.from_leg
        if self.state is not DialState.RINGING:
            return None
        if caller is not None and self.control.dials.get(caller.id) is self:
            del self.control.dials[caller.id]
        self._fail("picked_up", 487, "picked_up", cancel="picked_up", reason=ELSEWHERE)
        return caller

    def cancel(self, cause: str = "cancelled") -> None:
        """Stop ringing everything (the caller gave up, a pickup took the call)."""
        reason = ELSEWHERE if cause == "picked_up" else None
        self._fail("cancelled", 487, cause, cancel=cause, reason=reason)

    # -- what the legs report (routed here by the call control) -------------------------------

    def ringing(self, leg: OutboundLeg, early_media: bool) -> None:
        if self.state is not DialState.RINGING:
            return
        caller = self.from_leg
        if caller is not None and not caller.ended:
            if early_media and self.early is None and self._early_media(caller, leg):
                return
            if not caller.ringing_sent:
                caller.ring()
        if self.on_ringing is not None:
            self.on_ringing(self, leg, early_media)

    def _early_media(self, caller: InboundLeg, leg: OutboundLeg) -> bool:
        """183 with SDP: the caller hears this contact's early media (RFC 3960 gateway
        model) through pbx."""
        try:
            plan = negotiate.plan(caller.offer, leg.early_body)
            leg.sdp.take_answer(leg.early_body, plan)
            body = caller.sdp.answer_with_plan(caller.offer, plan)
        except (NegotiationError, MediaRefused) as exc:
            log.info("[%s] early media of %s not usable: %s", caller.call_id, leg.id, exc)
            return False
        leg.format, caller.format = plan.callee, plan.caller
        leg.early = True
        self.early = leg
        caller.ring(body)
        self.control.early_media(caller, leg)
        return True

    def answered(self, leg: OutboundLeg) -> None:
        if self.state is not DialState.RINGING:
            log.info("[%s] %s answered too: lost race", leg.call_id, leg.id)
            leg.hang_up("lost_race")
            return
        self.winner = leg
        self.state = DialState.ANSWERING
        self._cancel_timer()
        for other in self.legs:
            if other is not leg and not other.ended:
                other.cancel("cancelled", ELSEWHERE)
        caller = self.from_leg
        try:
            if caller is not None:
                plan = negotiate.plan(caller.offer, leg.answer_body)
                leg.sdp.take_answer(leg.answer_body, plan)
                answer = caller.sdp.answer_with_plan(caller.offer, plan)
                leg.format, caller.format = plan.callee, plan.caller
            else:
                leg.format = leg.sdp.take_answer(leg.answer_body)
                answer = b""
        except (NegotiationError, MediaRefused) as exc:
            log.info("[%s] answer of %s not usable: %s", leg.call_id, leg.id, exc)
            leg.hang_up("488")
            self._fail("failed", 488, "488")
            return
        if self.commit:
            d = self.control.commit_answer(self.conversation, leg)
        else:
            d = defer.succeed(True)
        d.addCallbacks(self._committed, self._not_committed, callbackArgs=(leg, answer))

    def _committed(self, going_on: bool, leg: OutboundLeg, answer: bytes) -> None:
        if self.state is not DialState.ANSWERING:
            return
        caller = self.from_leg
        if not going_on or leg.ended or (caller is not None and caller.ended):
            if not leg.ended:
                leg.hang_up("cancelled")
            self._fail("cancelled", 487, "ended during answer")
            return
        if caller is not None:
            caller.answer(answer)
        self.state = DialState.ANSWERED
        self._forget()
        self.result.callback(leg)

    def _not_committed(self, failure: Any) -> None:
        """The call record could not be written: the call does not go on (500)."""
        if self.state is DialState.ANSWERING:
            winner = self.winner
            self._fail("failed", 500, "500")
            if winner is not None and not winner.ended:
                winner.hang_up("500")

    def ended(self, leg: OutboundLeg, cause: str) -> None:
        """A contact's leg ended (its final error, a CANCEL we sent, a BYE)."""
        if self.state is DialState.ANSWERING and leg is self.winner:
            self._fail("cancelled", 487, "ended during answer")
            return
        if self.state is not DialState.RINGING:
            return
        status = leg.final_status
        if status in (488, 606) and leg.id in self._secure:
            contact = self._secure.pop(leg.id)
            log.info("[%s] %s refused SRTP: calling it with plain RTP", leg.call_id, leg.id)
            if self._ring(contact, secure=False) is not None:
                return
        if status is not None:
            self.statuses.append(status)
        if self.early is leg:
            self.early = None
        if all(other.ended for other in self.legs):
            self._all_failed()

    def caller_ended(self) -> None:
        """The waiting caller hung up (CANCEL) or was taken elsewhere."""
        self._fail("cancelled", 487, "CANCEL", cancel="cancelled")

    # -- endings -----------------------------------------------------------------------------

    def _no_answer(self) -> None:
        self._timer = None
        if self.state is DialState.RINGING:
            self._fail("no answer", 480, "no answer", cancel="no_answer")

    def _all_failed(self) -> None:
        statuses = self.statuses
        if any(s in _BUSY for s in statuses):
            status = 486
        elif statuses:
            status = min(statuses, key=lambda s: (s // 100 != 4, s))
        else:
            status = 480
        self._fail("busy" if status == 486 else "failed", status, str(status))

    def _fail(
        self,
        disposition: str,
        status: int,
        cause: str,
        cancel: str | None = None,
        reason: str | None = None,
    ) -> None:
        """The dial is over without an answer; with ``cancel``, every leg still ringing (or
        a winner not yet bridged) is ended with that cause first."""
        if self.state in (DialState.FAILED, DialState.ANSWERED):
            return
        self.state = DialState.FAILED
        self._cancel_timer()
        self._forget()
        if cancel is not None:
            for leg in list(self.legs):
                if not leg.ended:
                    if leg.up:
                        leg.hang_up(cancel)
                    else:
                        leg.cancel(cancel, reason)
        self.result.errback(DialFailed(disposition, status, cause))

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _forget(self) -> None:
        for leg in self.legs:
            if self.control.dials.get(leg.id) is self:
                del self.control.dials[leg.id]


__all__ = ["Dial", "DialFailed", "DialState"]
