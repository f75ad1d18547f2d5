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

In-dialog requests pbx sends on a confirmed leg (re-INVITE with its ACK, UPDATE, INFO) go
through :meth:`SipLeg.send_request`, whose Deferred fires with the final response. A 491 to a
re-INVITE or UPDATE is retried after the RFC 3261 §14.1 random delay; a 408 or 481 means the
dialog is gone (RFC 5057 §5.1) and is reported to ``on_dialog_gone``. A re-INVITE pbx answers
with a 2xx is retransmitted until its ACK (§13.3.1.4) by :meth:`SipLeg.answer_in_dialog`.
Must not import pbx.store or pbx.service.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet import defer

from pbx.calls.model import CallError, Leg, LegState
from pbx.sip.client import ClientTransactions, OutgoingRequest
from pbx.sip.dialog import Dialog
from pbx.sip.errors import SipError
from pbx.sip.message import Request, Response
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address

log = logging.getLogger(__name__)

SDP = "application/sdp"
GLARE_RETRIES = 3  # re-sends of one request after 491 before giving up
DIALOG_GONE = frozenset({408, 481})  # RFC 5057 §5.1: the dialog (and its usages) is gone


def glare_delay(owner: bool, rng: random.Random | None = None) -> float:
    """RFC 3261 §14.1: wait 2.1-4 s when we generated the Call-ID, else 0-2 s (10 ms units)."""
    pick = (rng or random).randint
    return (pick(210, 400) if owner else pick(0, 200)) / 100.0


def allowed_methods(headers: Any) -> frozenset[str]:
    """The methods an Allow header lists (empty when absent)."""
    return frozenset(
        item.strip().upper()
        for value in headers.get_all("Allow")
        for item in value.split(",")
        if item.strip()
    )


class SipLeg(Leg):
    """What both directions share: the dialog, the target address, in-dialog requests, BYE."""

    client: ClientTransactions
    target: Address
    dialog: Dialog | None = None
    on_ended: Callable[[SipLeg, str], None] | None = None
    on_dialog_gone: Callable[[SipLeg, int], None] | None = None
    reactor: Any = None
    t1: float = 0.5
    owns_call_id = False  # True when pbx generated the Call-ID (§14.1 glare delay)
    peer_allow: frozenset[str] = frozenset()
    rng: random.Random | None = None
    uac_invite_pending = False  # a re-INVITE pbx sent has no final response yet
    uas_invite_pending = False  # a re-INVITE pbx received is not answered (or not ACKed) yet
    _last_ack_cseq: int | None = None
    _reinvite_ok: tuple[Any, Response, Any, float, float] | None = None

    def _send_in_dialog(self, method: str, body: bytes = b"", handler: Any = None) -> None:
        if self.dialog is None:
            return
        request = self.dialog.create_request(method, body, SDP if body else None)
        self.client.send(request, self.target, handler or _ignore)

    def peer_allows(self, method: str) -> bool:
        return method.upper() in self.peer_allow

    # -- requests pbx sends in the dialog --------------------------------------------------

    def send_request(
        self, method: str, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()
    ) -> defer.Deferred[Response]:
        """Send ``method`` in this dialog; the Deferred fires with the final response.

        A 2xx to a re-INVITE is ACKed here. A 491 is retried after :func:`glare_delay` (up to
        GLARE_RETRIES times); a 408/481 also calls ``on_dialog_gone`` after the Deferred.
        Fails with :class:`CallError` when the leg has no dialog or has ended.
        """
        d: defer.Deferred[Response] = defer.Deferred()
        self._attempt(method, body, tuple(headers), d, GLARE_RETRIES)
        return d

    def _attempt(
        self,
        method: str,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        d: defer.Deferred[Response],
        retries: int,
    ) -> None:
        if self.dialog is None or self.ended:
            d.errback(CallError(f"leg {self.name}: no dialog for {method}"))
            return
        if method == "INVITE" and (self.uac_invite_pending or self.uas_invite_pending):
            d.errback(CallError(f"leg {self.name}: an INVITE is already pending (§14.1)"))
            return
        request = self.dialog.create_request(method, body, SDP if body else None, headers)
        if method == "INVITE":
            self.uac_invite_pending = True

        def on_response(response: Response) -> None:
            self._in_dialog_response(request, response, body, headers, d, retries)

        self.client.send(request, self.target, on_response)

    def _in_dialog_response(
        self,
        request: Request,
        response: Response,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        d: defer.Deferred[Response],
        retries: int,
    ) -> None:
        status = response.status
        if status < 200:
            return
        method = request.method
        if method == "INVITE":
            self.uac_invite_pending = False
        if 200 <= status < 300 and self.dialog is not None:
            self.dialog.receive_response(response)
            if method == "INVITE":
                self._last_ack_cseq = request.cseq.seq
                self._send_ack(request.cseq.seq)
        if status == 491 and retries > 0 and not self.ended and self.reactor is not None:
            delay = glare_delay(self.owns_call_id, self.rng)
            log.info("[%s] 491 to %s: retrying in %.2f s", request.call_id, method, delay)
            self.reactor.callLater(delay, self._attempt, method, body, headers, d, retries - 1)
            return
        d.callback(response)
        if status in DIALOG_GONE and not self.ended and self.on_dialog_gone is not None:
            log.info("[%s] %d to %s: the dialog is gone", request.call_id, status, method)
            self.on_dialog_gone(self, status)

    def _send_ack(self, cseq: int) -> None:
        if self.dialog is not None:
            self.client.send_ack(self.dialog.create_request("ACK", cseq=cseq), self.target)

    def stray_2xx(self, response: Response) -> None:
        """A retransmitted 2xx to an INVITE we already ACKed: ACK it again (§13.2.2.4)."""
        if response.cseq.seq == self._last_ack_cseq:
            self._send_ack(response.cseq.seq)

    # -- re-INVITEs pbx answers -----------------------------------------------------------

    def answer_in_dialog(self, incoming: IncomingRequest, response: Response) -> None:
        """Send the final response to an in-dialog request; a 2xx to a re-INVITE is
        retransmitted with T1 doubling (capped at 4 s) until :meth:`acked` (§13.3.1.4)."""
        incoming.send(response)
        if incoming.request.method != "INVITE":
            return
        self._stop_reinvite_retransmit()
        if not 200 <= response.status < 300 or self.reactor is None:
            self.uas_invite_pending = False
            return
        timer = self.reactor.callLater(self.t1, self._resend_reinvite_ok)
        self._reinvite_ok = (incoming, response, timer, self.t1, self.t1)

    def _resend_reinvite_ok(self) -> None:
        if self._reinvite_ok is None:
            return
        incoming, response, _, interval, waited = self._reinvite_ok
        if waited >= 64 * self.t1 - 1e-6 or self.ended:
            self._reinvite_ok = None
            self.uas_invite_pending = False
            if not self.ended and self.on_dialog_gone is not None:
                log.info("[%s] no ACK for the re-INVITE's 2xx", incoming.call_id)
                self.on_dialog_gone(self, 408)
            return
        incoming.retransmit(response)
        interval = min(interval * 2, 4.0, 64 * self.t1 - waited)
        timer = self.reactor.callLater(interval, self._resend_reinvite_ok)
        self._reinvite_ok = (incoming, response, timer, interval, waited + interval)

    def _stop_reinvite_retransmit(self) -> None:
        if self._reinvite_ok is not None:
            timer = self._reinvite_ok[2]
            if timer.active():
                timer.cancel()
        self._reinvite_ok = None

    def acked(self, request: Request | None = None) -> None:
        """The ACK of a re-INVITE's 2xx (its CSeq matches): stop retransmitting."""
        pending = self._reinvite_ok
        if request is None or pending is None:
            return
        if request.cseq.seq == pending[0].request.cseq.seq:
            self._stop_reinvite_retransmit()
            self.uas_invite_pending = False

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
        self._stop_reinvite_retransmit()
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
        self.reactor = reactor
        self.t1 = t1
        self.peer_allow = allowed_methods(incoming.request.headers)
        self.answer_headers: list[tuple[str, str]] = []
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
        response = self.incoming.response(200, headers=self.answer_headers)
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

    def acked(self, request: Request | None = None) -> None:
        if self.state is not LegState.ANSWERED:
            super().acked(request)  # the ACK of a re-INVITE's 2xx
            return
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None
        self.move(LegState.CONFIRMED)

    def reject(self, status: int, reason: str | None = None) -> None:
        """A final error to the caller (the leg ends)."""
        if self.state in (LegState.ANSWERED, LegState.CONFIRMED, LegState.ENDED):
            return
        self.incoming.respond(status, reason)
        self._end(f"{status}")

    def hang_up(self, cause: str = "normal") -> None:
        if self.state in (LegState.NEW, LegState.RINGING):
            self.reject(_status_for(cause))
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
        self.answer_headers: Any = None  # headers of the 2xx that answered (session timers)
        self.owns_call_id = True

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
            self.answer_headers = response.headers
            self.peer_allow = allowed_methods(response.headers)
            self._last_ack_cseq = self.request.cseq.seq
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


def _status_for(cause: str) -> int:
    """The final response that tells a caller whose call was not answered why it ended: a
    SIP status given as the cause (e.g. "500"), 487 when cancelled, else 480."""
    if cause.isdigit() and 400 <= int(cause) <= 699:
        return int(cause)
    return 487 if cause == "cancel" else 480


def _ignore(response: Response) -> None:
    """Responses to BYE and other requests nobody waits for."""
