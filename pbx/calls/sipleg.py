"""The SIP implementation of a call leg: one INVITE dialog usage per leg (RFC 3261 §13-15).

:class:`InboundLeg` is the caller's side: pbx is the UAS of an INVITE it received. It answers
with provisional responses, a 2xx that it retransmits until the ACK arrives (§13.3.1.4; no ACK
within 64*T1 ends the call), and BYE or a final error.
:class:`OutboundLeg` is a callee's side: pbx is the UAC of an INVITE it sent to one contact
(forking sends one per contact). It ACKs a 2xx itself, can be CANCELled before an answer, and
sends BYE.

Both turn SIP into calls-model transitions and callbacks to their owner (the switch); media
addresses come out as SDP bodies that the switch anchors. Requests go through
:class:`pbx.sip.client.ClientTransactions`, always to the phone's flow address (where its
REGISTER or INVITE came from), which is what works behind NAT.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pbx.calls.model import Leg, LegState
from pbx.sip.client import ClientTransactions, OutgoingRequest
from pbx.sip.dialog import Dialog
from pbx.sip.errors import SipError
from pbx.sip.message import Request, Response
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address

log = logging.getLogger(__name__)

SDP = "application/sdp"


class SipLeg(Leg):
    """What both directions share: the dialog, the target address, BYE."""

    client: ClientTransactions
    target: Address
    dialog: Dialog | None = None
    on_ended: Callable[[SipLeg, str], None] | None = None

    def _send_in_dialog(self, method: str, body: bytes = b"", handler: Any = None) -> None:
        if self.dialog is None:
            return
        request = self.dialog.create_request(method, body, SDP if body else None)
        self.client.send(request, self.target, handler or _ignore)

    def hang_up(self, cause: str = "normal") -> None:
        """End this leg from pbx's side (BYE once confirmed/answered)."""
        if self.ended:
            return
        if self.state in (LegState.ANSWERED, LegState.CONFIRMED):
            self._send_in_dialog("BYE")
        self._end(cause)

    def _end(self, cause: str) -> None:
        if self.ended:
            return
        self.move(LegState.ENDED)
        if self.on_ended is not None:
            self.on_ended(self, cause)


class InboundLeg(SipLeg):
    """The caller's INVITE, answered by pbx."""

    def __init__(
        self,
        name: str,
        party: str,
        incoming: IncomingRequest,
        client: ClientTransactions,
        reactor: Any,
        t1: float,
    ) -> None:
        super().__init__(name=name, party=party)
        self.incoming = incoming
        self.client = client
        self.target = incoming.source.remote
        self._reactor = reactor
        self._t1 = t1
        self._ok: Response | None = None
        self._retransmit: Any = None
        self._interval = t1
        self._waited = 0.0
        self.ringing_sent = False

    @property
    def offer(self) -> bytes:
        return self.incoming.request.body

    def ring(self, status: int = 180, body: bytes = b"") -> None:
        """180 Ringing, or 183 Session Progress with early media SDP."""
        if self.state not in (LegState.NEW, LegState.RINGING):
            return
        response = self.incoming.response(status)
        self._add_contact(response)
        if body:
            response.headers.add("Content-Type", SDP)
            response.body = body
        self.incoming.send(response)
        self.ringing_sent = True
        self.move(LegState.RINGING)

    def answer(self, body: bytes) -> None:
        """200 OK with our SDP; retransmitted with T1 doubling up to T2 until the ACK."""
        response = self.incoming.response(200)
        self._add_contact(response)
        response.headers.add("Content-Type", SDP)
        response.body = body
        self._ok = response
        self.dialog = Dialog.from_uas(self.incoming.request, response)
        self.move(LegState.ANSWERED)
        self.incoming.send(response)
        self._retransmit = self._reactor.callLater(self._interval, self._resend_ok)

    def _resend_ok(self) -> None:
        self._retransmit = None
        if self.state is not LegState.ANSWERED or self._ok is None:
            return
        self._waited += self._interval
        give_up = 64 * self._t1  # §13.3.1.4: 64*T1 after the first 2xx, not after a full step
        if self._waited >= give_up - 1e-6:
            log.info("[%s] no ACK for the 200 OK: ending the call", self.incoming.call_id)
            self.hang_up("no ACK")
            return
        self.incoming.retransmit(self._ok)
        self._interval = min(self._interval * 2, 4.0, give_up - self._waited)
        self._retransmit = self._reactor.callLater(self._interval, self._resend_ok)

    def acked(self) -> None:
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None
        if self.state is LegState.ANSWERED:
            self.move(LegState.CONFIRMED)

    def reject(self, status: int, reason: str | None = None) -> None:
        """A final error to the caller (the leg ends)."""
        if self.state in (LegState.ANSWERED, LegState.CONFIRMED, LegState.ENDED):
            return
        self.incoming.respond(status, reason)
        self._end(f"{status}")

    def hang_up(self, cause: str = "normal") -> None:
        if self.state in (LegState.NEW, LegState.RINGING):
            self.reject(480 if cause == "no answer" else 487 if cause == "cancel" else 480)
            return
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        super().hang_up(cause)

    def _add_contact(self, response: Response) -> None:
        response.headers.add("Contact", self.client.contact(self.target))


class OutboundLeg(SipLeg):
    """One fork: an INVITE pbx sends to one registered contact."""

    def __init__(
        self,
        name: str,
        party: str,
        request: Request,
        target: Address,
        client: ClientTransactions,
        on_response: Callable[[OutboundLeg, Response], None],
    ) -> None:
        super().__init__(name=name, party=party)
        self.request = request
        self.target = target
        self.client = client
        self._on_response = on_response
        self.outgoing: OutgoingRequest | None = None
        self.answer_body = b""

    def start(self) -> None:
        self.move(LegState.CALLING)
        self.outgoing = self.client.send(self.request, self.target, self._response)

    def _response(self, response: Response) -> None:
        if self.ended and response.status < 300:
            if 200 <= response.status < 300:
                self._ack_and_bye(response)  # a late 2xx after we gave up: end it cleanly
            return
        if 100 < response.status < 200 and self.state in (LegState.CALLING, LegState.RINGING):
            self.move(LegState.RINGING)
        elif 200 <= response.status < 300 and self.state in (LegState.CALLING, LegState.RINGING):
            try:
                self.dialog = Dialog.from_uac(self.request, response)
            except SipError as exc:
                log.info("[%s] bad 2xx from %s: %s", self.request.call_id, self.target, exc)
                self._ack_and_bye(response)
                self._end("bad answer")
                return
            self.answer_body = response.body
            self.move(LegState.ANSWERED)
            self._ack(response)
            self.move(LegState.CONFIRMED)
        elif response.status >= 300 and not self.ended:
            self._end(str(response.status))
        self._on_response(self, response)

    def _ack(self, response: Response) -> None:
        dialog = self.dialog or Dialog.from_uac(self.request, response)
        ack = dialog.create_request("ACK", cseq=self.request.cseq.seq)
        self.client.send_ack(ack, self.target)

    def _ack_and_bye(self, response: Response) -> None:
        try:
            dialog = Dialog.from_uac(self.request, response)
        except SipError:
            return
        self.client.send_ack(dialog.create_request("ACK", cseq=self.request.cseq.seq), self.target)
        self.client.send(dialog.create_request("BYE"), self.target, _ignore)

    def cancel(self) -> None:
        """Stop ringing this contact (CANCEL, §9.1); the 487 ends the leg."""
        if self.outgoing is not None and self.state in (LegState.CALLING, LegState.RINGING):
            self.client.cancel(self.outgoing)
            self._end("cancelled")

    def hang_up(self, cause: str = "normal") -> None:
        if self.state in (LegState.CALLING, LegState.RINGING):
            self.cancel()
            return
        super().hang_up(cause)


def _ignore(response: Response) -> None:
    """Responses to BYE and other requests nobody waits for."""
