"""Requests a phone sends inside its dialog with pbx, answered by that phone's own leg.

:class:`InDialog` is the part of :class:`pbx.calls.sipleg.SipLeg` that handles them
(the dialog table routes each in-dialog request to its leg, pbx.calls.registry):

- BYE: 200, the leg ends (cause "BYE");
- re-INVITE and UPDATE with an offer: answered by the leg itself from its own SDP session
  (pbx.calls.sdpsession): a new address, new keys, a hold (answered recvonly or inactive,
  RFC 3264 §8.4) or a resume. The other party is never re-INVITEd for it: pbx anchors the
  media, and a held party hears music on hold instead (the leg reports ``holding`` to its
  owner). Without an offer, the 2xx carries the leg's current description and the ACK the
  answer. Glare (RFC 3261 §14.2, RFC 3311 §5.2): 491 while pbx's own INVITE is pending,
  500 with Retry-After for a second INVITE while the first is unanswered;
- RFC 4028 refreshes: the session-timer headers are renegotiated in the 2xx;
- INFO with a DTMF body (application/dtmf-relay, application/dtmf): the digit is reported
  (``leg_digit``); other INFO bodies are acknowledged (legacy INFO, RFC 6086 §2);
- REFER (RFC 3515): parsed (pbx.sip.refer) and handed to the owner's ``leg_refer`` with a
  :class:`ReferProgress` that sends the NOTIFYs (message/sipfrag); ``Refer-Sub: false``
  (RFC 4488) gets 202 with ``Refer-Sub: false`` and no NOTIFY at all;
- NOTIFY and OPTIONS: 200; anything else: 405 with Allow.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pbx.calls.model import CallError
from pbx.calls.sdpsession import MediaRefused
from pbx.calls.session_timer import read_offer, renegotiate
from pbx.media.dtmf import DTMF, DTMF_RELAY, parse_info_body
from pbx.sip.errors import RemoteProtocolError, SipError
from pbx.sip.refer import SIPFRAG, Refer, parse_refer, sipfrag
from pbx.sip.stack import IncomingRequest

if TYPE_CHECKING:
    from pbx.calls.sipleg import SipLeg

log = logging.getLogger(__name__)

SDP = "application/sdp"
DEFAULT_INFO_MS = 160  # a dtmf-relay body without Duration
REFER_EXPIRES = 60  # s, the implicit subscription of a REFER (RFC 3515 §2.4.4)


class ReferProgress:
    """Reports a transfer's progress to the phone that asked for it (RFC 3515 §2.4.4: one
    NOTIFY per state, the final one terminates the implicit subscription)."""

    def __init__(self, leg: SipLeg, refer: Refer, cseq: int) -> None:
        self.leg = leg
        self.refer = refer
        self.cseq = cseq
        self.finished = False
        self.outcome: tuple[int, str] | None = None  # the final state, once known
        self._open = False  # NOTIFYs wait until the 202 is out
        self._held: tuple[int, str, bool] | None = None

    def report(self, status: int, reason: str) -> None:
        """A provisional state of the referred call (100 Trying, 180 Ringing)."""
        self._notify(status, reason, final=False)

    def done(self, status: int, reason: str) -> None:
        """The referred call's final state (200 OK when connected, an error otherwise)."""
        self._notify(status, reason, final=True)

    def open(self) -> None:
        """The 202 went out: send what is known (RFC 3515 §2.4.4: a first NOTIFY at once)."""
        self._open = True
        held, self._held = self._held, None
        if held is not None and held[2]:
            self._notify(*held)
        else:
            self._notify(100, "Trying", final=False)

    def _notify(self, status: int, reason: str, final: bool) -> None:
        if final:
            self.outcome = (status, reason)
        if not self._open:
            if self._held is None or not self._held[2]:
                self._held = (status, reason, final)
            return
        if self.finished or not self.refer.subscribe or self.leg.ended:
            self.finished = self.finished or final
            return
        self.finished = final
        state = "terminated;reason=noresource" if final else f"active;expires={REFER_EXPIRES}"
        headers = [
            ("Event", f"refer;id={self.cseq}"),
            ("Subscription-State", state),
            ("Contact", self.leg.client.contact(self.leg.target)),
        ]
        d = self.leg.send_request("NOTIFY", sipfrag(status, reason), headers, SIPFRAG)
        d.addErrback(lambda failure: None)  # the transferor may be gone already


class InDialog:
    """In-dialog requests from the phone (a mixin of SipLeg)."""

    __slots__ = ()

    def receive(self: SipLeg, incoming: IncomingRequest) -> None:  # type: ignore[misc]
        """An in-dialog request of this leg's dialog."""
        request = incoming.request
        if self.dialog is None:
            incoming.respond(481)
            return
        try:
            self.dialog.receive_request(request)
        except SipError as exc:
            incoming.respond(exc.status, exc.reason)
            return
        method = request.method
        if method == "BYE":
            incoming.respond(200)
            self._end("BYE", by_peer=True)
        elif method == "INVITE":
            _reinvite(self, incoming)
        elif method == "UPDATE":
            _update(self, incoming)
        elif method == "INFO":
            _info(self, incoming)
        elif method == "REFER":
            _refer(self, incoming)
        elif method in ("NOTIFY", "OPTIONS"):
            incoming.respond(200)
        else:
            from pbx.calls.sipleg import ALLOW

            incoming.respond(405, None, [("Allow", ALLOW)])


def _reinvite(leg: SipLeg, incoming: IncomingRequest) -> None:
    if leg.uas_invite_pending:
        incoming.respond(500, None, [("Retry-After", "1")])  # RFC 3261 §14.2
        return
    if leg.uac_invite_pending:
        incoming.respond(491)  # §14.2 glare
        return
    leg.uas_invite_pending = True
    _offer(leg, incoming)


def _update(leg: SipLeg, incoming: IncomingRequest) -> None:
    if incoming.request.body and leg.uac_invite_pending:
        incoming.respond(491)  # RFC 3311 §5.2
        return
    _offer(leg, incoming)


def _offer(leg: SipLeg, incoming: IncomingRequest) -> None:
    """A re-INVITE or UPDATE: answer it from the leg's own SDP session."""
    request = incoming.request
    if not request.body:
        # a refresh without an offer: our current description (for a re-INVITE it is an
        # offer, answered in the ACK)
        _reply(leg, incoming, leg.sdp.local if request.method == "INVITE" else b"")
        return
    was_holding, codec = leg.holding, leg.codec
    try:
        body = leg.sdp.reanswer(request.body)
    except MediaRefused as exc:
        log.info("[%s] %s from %s refused: %s", leg.call_id, request.method, leg.id, exc)
        leg.answer_in_dialog(incoming, incoming.response(488))
        return
    leg.holding = leg.sdp.holding
    leg.format = leg.sdp.format
    _reply(leg, incoming, body)
    owner = leg.owner
    if owner is None:
        return
    if leg.codec != codec:
        owner.leg_format_changed(leg)
    if leg.holding != was_holding:
        log.info(
            "[%s] %s %s", leg.call_id, leg.id, "holds its call" if leg.holding else "resumed"
        )
        owner.leg_hold_changed(leg)


def _reply(leg: SipLeg, incoming: IncomingRequest, body: bytes) -> None:
    """200 to a re-INVITE/UPDATE, with the session-timer headers of a received refresh."""
    response = incoming.response(200)
    response.headers.add("Contact", leg.client.contact(leg.target))
    timer = leg.timer
    if timer is not None and timer.negotiated is not None:
        offer = read_offer(incoming.request.headers)
        negotiated = renegotiate(offer, timer.negotiated, leg.settings.session_expires)
        response.headers.add("Supported", "timer")
        response.headers.add("Session-Expires", negotiated.response_value())
        if offer.supported:
            response.headers.add("Require", "timer")
        timer.refreshed(negotiated)
    if body:
        response.headers.add("Content-Type", SDP)
        response.body = body
    leg.answer_in_dialog(incoming, response)


def _info(leg: SipLeg, incoming: IncomingRequest) -> None:
    request = incoming.request
    content_type = request.headers.get("Content-Type") or ""
    kind = content_type.split(";", 1)[0].strip().lower()
    if kind not in (DTMF, DTMF_RELAY) or not request.body:
        incoming.respond(200)
        return
    try:
        info = parse_info_body(content_type, request.body)
    except ValueError as exc:
        incoming.respond(400, f"Bad DTMF: {exc}"[:60])
        return
    log.info("[%s] INFO digit %s from %s", leg.call_id, info.digit, leg.id)
    incoming.respond(200)
    if leg.owner is not None:
        leg.owner.leg_digit(leg, info.digit, info.duration_ms or DEFAULT_INFO_MS)


def _refer(leg: SipLeg, incoming: IncomingRequest) -> None:
    request = incoming.request
    try:
        refer = parse_refer(request)
    except RemoteProtocolError as exc:
        incoming.respond(400, str(exc)[:60])
        return
    progress = ReferProgress(leg, refer, request.cseq.seq)
    owner: Any = leg.owner
    accept = getattr(owner, "leg_refer", None)
    if accept is None:
        incoming.respond(603, "Transfer Not Possible")
        return
    try:
        accept(leg, refer, progress)
    except CallError as exc:
        log.info("[%s] REFER from %s refused: %s", leg.call_id, leg.id, exc)
        status = 404 if exc.status == 404 else 603
        incoming.respond(status, str(exc)[:60] or None)
        return
    headers = [] if refer.subscribe else [("Refer-Sub", "false")]
    incoming.respond(202, None, headers)
    progress.open()


__all__ = ["InDialog", "ReferProgress"]
