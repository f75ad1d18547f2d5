"""The SIP implementation of a call leg: one INVITE dialog usage per leg (RFC 3261 §13-15).

:class:`InboundLeg` is a phone that called pbx: pbx is the UAS of its INVITE. It rings (180,
or 183 with early media), answers with a 2xx it retransmits until the ACK (§13.3.1.4; no ACK
within 64*T1 ends it), or refuses with a final error; a CANCEL ends it.
:class:`OutboundLeg` is a phone pbx calls: pbx is the UAC of an INVITE to one contact. It ACKs
a 2xx itself, can be CANCELled before an answer, and ACKs and BYEs a 2xx that arrives after pbx
gave up.

Both negotiate their media on their own (pbx.calls.sdpsession: each leg's SDP points at the
leg's own media ports), keep an RFC 4028 session timer, and handle the phone's in-dialog
requests themselves (pbx.calls.indialog): BYE, re-INVITE and UPDATE (answered by the leg: a
hold from the phone is answered recvonly/inactive and reported, never forwarded to the other
party), INFO digits, REFER (a transfer request for the call control) and its NOTIFY progress.
pbx-initiated requests (hold and retrieve re-INVITEs, refreshes, NOTIFY) go through
:meth:`SipLeg.send_request`: a 491 is retried after the §14.1 delay, a 408/481 means the
dialog is gone (RFC 5057 §5.1) and ends the leg.

What happens is reported to the leg's ``owner`` (pbx.calls.model.LegOwner). Requests go
through :class:`pbx.sip.client.ClientTransactions`, always to the phone's flow address (where
its REGISTER or INVITE came from), which is what works behind NAT.
Must not import pbx.store or pbx.service.
"""

from __future__ import annotations

import functools
import logging
import random
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from pbx.calls.indialog import InDialog
from pbx.calls.model import CallError, Leg, LegState, Party
from pbx.calls.sdpsession import SdpSession
from pbx.calls.session_timer import (
    Negotiated,
    SessionTimer,
    negotiate_uac,
    negotiate_uas,
    read_offer,
)
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
ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"


def glare_delay(owner: bool, rng: random.Random | None = None) -> float:
    """RFC 3261 §14.1: wait 2.1-4 s when we generated the Call-ID, else 0-2 s (10 ms units)."""
    pick = (rng or random).randint
    return (pick(210, 400) if owner else pick(0, 200)) / 100.0


def allowed_methods(headers: Any) -> frozenset[str]:
    """The methods an Allow header lists (empty when absent). Phones of one kind send the
    same list: the set is shared (a set per leg was ~0.7 kB of every held call)."""
    return _allowed(tuple(headers.get_all("Allow")))


@functools.lru_cache(maxsize=64)
def _allowed(values: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        sys.intern(item.strip().upper())
        for value in values
        for item in value.split(",")
        if item.strip()
    )


@dataclass(frozen=True, slots=True)
class SipSettings:
    """What every SIP leg of the process shares: timers and RFC 4028 values."""

    t1: float = 0.5
    session_expires: int = 1800
    min_se: int = 90


def status_for(cause: str) -> int:
    """The final response that tells a caller whose call was not answered why it ended: a
    SIP status given as the cause (e.g. "486"), 487 when cancelled, else 480."""
    if cause.isdigit() and 400 <= int(cause) <= 699:
        return int(cause)
    return 487 if cause in ("CANCEL", "cancel", "cancelled") else 480


class SipLeg(InDialog, Leg):
    """What both directions share: the dialog, media negotiation, in-dialog requests, BYE."""

    __slots__ = (
        "_last_ack_cseq",
        "_refers",
        "_reinvite_ok",
        "client",
        "dialog",
        "early",
        "on_dialog",
        "owns_call_id",
        "peer_allow",
        "reactor",
        "rng",
        "sdp",
        "settings",
        "target",
        "timer",
        "uac_invite_pending",
        "uas_invite_pending",
    )

    def __init__(
        self,
        leg_id: str,
        party: Party,
        client: ClientTransactions,
        target: Address,
        sdp: SdpSession,
        reactor: Any,
        settings: SipSettings,
    ) -> None:
        Leg.__init__(self, leg_id, party)
        self.client = client
        self.target = target
        self.sdp = sdp
        self.media = sdp.media
        self.reactor = reactor
        self.settings = settings
        self.dialog: Dialog | None = None
        self.peer_allow: frozenset[str] = frozenset()
        self.owns_call_id = False  # True when pbx generated the Call-ID (§14.1 glare delay)
        self.rng: random.Random | None = None
        self.uac_invite_pending = False  # a re-INVITE pbx sent has no final response yet
        self.uas_invite_pending = False  # a re-INVITE pbx received is not answered/ACKed yet
        self.timer: SessionTimer | None = None
        self.early = False  # early media flows (183 with SDP)
        self.on_dialog: Callable[[SipLeg], None] | None = None  # dialog table registration
        self._last_ack_cseq: int | None = None
        self._reinvite_ok: tuple[Any, Response, Any, float, float] | None = None
        self._refers: dict[int, Any] = {}

    @property
    def call_id(self) -> str:
        if self.dialog is not None:
            return self.dialog.call_id
        return Leg.call_id.fget(self)  # type: ignore[attr-defined]

    def peer_allows(self, method: str) -> bool:
        return method.upper() in self.peer_allow

    # -- requests pbx sends in the dialog --------------------------------------------------

    def send_request(
        self,
        method: str,
        body: bytes = b"",
        headers: Iterable[tuple[str, str]] = (),
        content_type: str | None = None,
    ) -> defer.Deferred[Response]:
        """Send ``method`` in this dialog; the Deferred fires with the final response.

        A 2xx to a re-INVITE is ACKed here. A 491 is retried after :func:`glare_delay` (up to
        GLARE_RETRIES times); a 408/481 also ends the leg after the Deferred. Fails with
        :class:`CallError` when the leg has no dialog or has ended.
        """
        d: defer.Deferred[Response] = defer.Deferred()
        kind = content_type or (SDP if body else None)
        self._attempt(method, body, tuple(headers), kind, d, GLARE_RETRIES)
        return d

    def _attempt(
        self,
        method: str,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        content_type: str | None,
        d: defer.Deferred[Response],
        retries: int,
    ) -> None:
        if self.dialog is None or self.ended:
            d.errback(CallError(f"leg {self.id}: no dialog for {method}"))
            return
        if method == "INVITE" and (self.uac_invite_pending or self.uas_invite_pending):
            d.errback(CallError(f"leg {self.id}: an INVITE is already pending (§14.1)"))
            return
        extra = headers
        if method in ("INVITE", "UPDATE"):
            extra = ((("Contact", self.client.contact(self.target)),) + headers)
        request = self.dialog.create_request(method, body, content_type, extra)
        if method == "INVITE":
            self.uac_invite_pending = True

        def on_response(response: Response) -> None:
            self._in_dialog_response(request, response, body, headers, content_type, d, retries)

        self.client.send(request, self.target, on_response)

    def _in_dialog_response(
        self,
        request: Request,
        response: Response,
        body: bytes,
        headers: tuple[tuple[str, str], ...],
        content_type: str | None,
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
        if status == 491 and retries > 0 and not self.ended:
            delay = glare_delay(self.owns_call_id, self.rng)
            log.info("[%s] 491 to %s: retrying in %.2f s", request.call_id, method, delay)
            self.reactor.callLater(
                delay, self._attempt, method, body, headers, content_type, d, retries - 1
            )
            return
        d.callback(response)
        if status in DIALOG_GONE and not self.ended:
            log.info("[%s] %d to %s: the dialog is gone", request.call_id, status, method)
            self._gone(str(status))

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
        if not 200 <= response.status < 300:
            self.uas_invite_pending = False
            return
        t1 = self.settings.t1
        timer = self.reactor.callLater(t1, self._resend_reinvite_ok)
        self._reinvite_ok = (incoming, response, timer, t1, t1)

    def _resend_reinvite_ok(self) -> None:
        if self._reinvite_ok is None:
            return
        incoming, response, _, interval, waited = self._reinvite_ok
        t1 = self.settings.t1
        if waited >= 64 * t1 - 1e-6 or self.ended:
            self._reinvite_ok = None
            self.uas_invite_pending = False
            if not self.ended:
                log.info("[%s] no ACK for the re-INVITE's 2xx", incoming.call_id)
                self._gone("no ACK")
            return
        incoming.retransmit(response)
        interval = min(interval * 2, 4.0, 64 * t1 - waited)
        timer = self.reactor.callLater(interval, self._resend_reinvite_ok)
        self._reinvite_ok = (incoming, response, timer, interval, waited + interval)

    def _stop_reinvite_retransmit(self) -> None:
        if self._reinvite_ok is not None:
            timer = self._reinvite_ok[2]
            if timer.active():
                timer.cancel()
        self._reinvite_ok = None

    def acked(self, request: Request) -> None:
        """The ACK of a re-INVITE's 2xx (its CSeq matches): stop retransmitting; an ACK with
        a body carries the answer to the offer pbx put in that 2xx."""
        pending = self._reinvite_ok
        if pending is not None and request.cseq.seq == pending[0].request.cseq.seq:
            self._stop_reinvite_retransmit()
            self.uas_invite_pending = False
        if request.body:
            self.sdp.take_reanswer(request.body)

    # -- session timer (RFC 4028) ----------------------------------------------------------

    def start_session_timer(self, negotiated: Negotiated | None) -> None:
        if negotiated is None or self.ended:
            return
        timer = SessionTimer(self.reactor, self._refresh, self._session_expired, self.call_id)
        self.timer = timer
        timer.start(negotiated)

    def _refresh_headers(self) -> list[tuple[str, str]]:
        timer = self.timer
        if timer is None or timer.negotiated is None:
            return []
        return [
            ("Supported", "timer"),
            ("Session-Expires", timer.negotiated.response_value(pbx_is_uas=False)),
        ]

    def _refresh(self) -> None:
        timer = self.timer
        if timer is None:
            return
        if self.peer_allows("UPDATE"):
            d = self.send_request("UPDATE", b"", self._refresh_headers())
        else:
            d = self.send_request("INVITE", self.sdp.refresh_offer(), self._refresh_headers())

        def done(response: Response) -> None:
            negotiated = timer.negotiated
            if 200 <= response.status < 300 and negotiated is not None:
                timer.refreshed(negotiate_uac(response.headers, negotiated.interval))
            elif response.status not in DIALOG_GONE:
                timer.refresh_failed()

        d.addCallbacks(done, lambda failure: timer.refresh_failed())

    def _session_expired(self) -> None:
        log.info("[%s] session of %s expired: clearing it", self.call_id, self.id)
        self._gone("session timer")

    # -- hold and retrieve started by pbx -----------------------------------------------

    def hold(self) -> None:
        """pbx puts this phone on hold (RFC 3264 §8.4: re-INVITE with a=sendonly): its party
        hears music on hold and is out of its bridge's audio."""
        self._set_held(True)

    def retrieve(self) -> None:
        self._set_held(False)

    def _set_held(self, held: bool) -> None:
        if self.ended or not self.up:
            raise CallError(f"leg {self.id} is not answered")
        if self.held == held:
            return
        self.held = held
        if self.owner is not None:
            self.owner.leg_hold_changed(self)
        body = self.sdp.hold_offer(held)
        d = self.send_request("INVITE", body, self._refresh_headers())

        def done(response: Response) -> None:
            if 200 <= response.status < 300:
                self.sdp.take_reanswer(response.body)

        d.addCallbacks(done, lambda failure: None)

    def send_digits(self, digits: str, duration_ms: int = 160) -> None:
        owner = self.owner
        if owner is not None:
            send = getattr(owner, "send_digits_to", None)
            if send is not None:
                send(self, digits, duration_ms)

    # -- ending ------------------------------------------------------------------------

    def hang_up(self, cause: str = "normal") -> None:
        """End this leg from pbx's side (BYE once answered)."""
        if self.ended:
            return
        if self.up:
            self._send_bye()
        self._end(cause, by_peer=False)

    def _send_bye(self) -> None:
        if self.dialog is not None:
            request = self.dialog.create_request("BYE")
            self.client.send(request, self.target, _ignore)

    def _gone(self, cause: str) -> None:
        """The dialog failed (408/481, no ACK, session timer): BYE for good measure, end.
        A missing ACK is the phone's doing (its side hung up, in the record)."""
        if self.ended:
            return
        if self.up:
            self._send_bye()
        self._end(cause, by_peer=cause == "no ACK")

    def _end(self, cause: str, by_peer: bool) -> None:
        if self.ended:
            return
        self._stop_reinvite_retransmit()
        if self.timer is not None:
            self.timer.stop()
            self.timer = None
        self.move(LegState.ENDED)
        self.cause = cause
        self.ended_at = self.reactor.seconds()
        if self.owner is not None:
            self.owner.leg_ended(self, cause, by_peer)


class InboundLeg(SipLeg):
    """A phone's INVITE, answered by pbx."""

    __slots__ = (
        "_interval",
        "_ok",
        "_retransmit",
        "_waited",
        "incoming",
        "offer",
        "ringing_sent",
        "sip_call_id",
    )

    direction = "in"

    def __init__(
        self,
        leg_id: str,
        party: Party,
        incoming: IncomingRequest,
        client: ClientTransactions,
        sdp: SdpSession,
        reactor: Any,
        settings: SipSettings,
    ) -> None:
        super().__init__(
            leg_id, party, client, incoming.source.remote, sdp, reactor, settings
        )
        self.incoming: IncomingRequest | None = incoming
        self.peer_allow = allowed_methods(incoming.request.headers)
        self.offer = incoming.request.body
        self.sip_call_id = incoming.request.call_id
        self.ringing_sent = False
        self._ok: Response | None = None
        self._retransmit: Any = None
        self._interval = settings.t1
        self._waited = 0.0
        incoming.on_cancel = self._cancelled

    @property
    def call_id(self) -> str:
        return self.sip_call_id

    def ring(self, early_body: bytes = b"") -> None:
        """180 Ringing, or 183 Session Progress with early media SDP."""
        incoming = self.incoming
        if incoming is None or self.state not in (LegState.NEW, LegState.RINGING):
            return
        if self.ringing_sent and not early_body:
            return
        response = incoming.response(183 if early_body else 180)
        response.headers.add("Contact", self.client.contact(self.target))
        if early_body:
            response.headers.add("Content-Type", SDP)
            response.body = early_body
            self.early = True
        incoming.send(response)
        self.ringing_sent = True
        self.move(LegState.RINGING)

    def answer(self, body: bytes) -> None:
        """200 OK with our SDP; retransmitted with T1 doubling up to T2 until the ACK."""
        incoming = self.incoming
        if incoming is None or self.state not in (LegState.NEW, LegState.RINGING):
            raise CallError(f"leg {self.id} cannot be answered in state {self.state.value}")
        negotiated = negotiate_uas(
            read_offer(incoming.request.headers),
            self.settings.session_expires,
            self.settings.min_se,
        )
        response = incoming.response(200)
        response.headers.add("Contact", self.client.contact(self.target))
        response.headers.add("Allow", ALLOW)
        response.headers.add("Supported", "timer")
        response.headers.add("Session-Expires", negotiated.response_value())
        if negotiated.require:
            response.headers.add("Require", "timer")
        response.headers.add("Content-Type", SDP)
        response.body = body
        self._ok = response
        self.dialog = Dialog.from_uas(incoming.request, response)
        self.move(LegState.ANSWERED)
        self.answered_at = self.reactor.seconds()
        self.early = False
        if self.on_dialog is not None:
            self.on_dialog(self)
        incoming.send(response)
        self._retransmit = self.reactor.callLater(self._interval, self._resend_ok)
        self.start_session_timer(negotiated)
        if self.owner is not None:
            self.owner.leg_answered(self)

    def _resend_ok(self) -> None:
        self._retransmit = None
        incoming = self.incoming
        if self.state is not LegState.ANSWERED or self._ok is None or incoming is None:
            return
        self._waited += self._interval
        give_up = 64 * self.settings.t1  # §13.3.1.4: 64*T1 after the first 2xx
        if self._waited >= give_up - 1e-6:
            log.info("[%s] no ACK for the 200 OK: ending the call", self.call_id)
            self._gone("no ACK")
            return
        incoming.retransmit(self._ok)
        self._interval = min(self._interval * 2, 4.0, give_up - self._waited)
        self._retransmit = self.reactor.callLater(self._interval, self._resend_ok)

    def acked(self, request: Request) -> None:
        if self.state is not LegState.ANSWERED:
            super().acked(request)  # the ACK of a re-INVITE's 2xx
            return
        self._stop_ok_retransmit()
        self.move(LegState.CONFIRMED)
        self._ok = None
        # the INVITE is answered for good (its transaction keeps what retransmissions need):
        # the leg no longer holds the parsed request for the length of the call
        self.incoming = None

    def _stop_ok_retransmit(self) -> None:
        if self._retransmit is not None and self._retransmit.active():
            self._retransmit.cancel()
        self._retransmit = None

    def reject(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """A final error to the caller (the leg ends)."""
        if self.up or self.ended or self.incoming is None:
            return
        self.incoming.respond(status, reason, list(headers))
        self._end(str(status), by_peer=False)

    def _cancelled(self) -> None:
        """CANCEL from the phone (RFC 3261 §9.2): 487, the leg ends."""
        if self.up or self.ended or self.incoming is None:
            return  # too late: the 200 OK went out first
        self.incoming.respond(487)
        self._end("CANCEL", by_peer=True)

    def hang_up(self, cause: str = "normal") -> None:
        if self.state in (LegState.NEW, LegState.RINGING):
            self.reject(status_for(cause))
            return
        self._stop_ok_retransmit()
        super().hang_up(cause)

    def _end(self, cause: str, by_peer: bool) -> None:
        self._stop_ok_retransmit()
        if self.incoming is not None:
            self.incoming.on_cancel = None
        super()._end(cause, by_peer)


class OutboundLeg(SipLeg):
    """pbx calls one contact: an INVITE it sends."""

    __slots__ = (
        "_call_id",
        "_challenged",
        "answer_body",
        "authenticator",
        "early_body",
        "final_status",
        "outgoing",
        "request",
        "ringing_seen",
    )

    direction = "out"

    def __init__(
        self,
        leg_id: str,
        party: Party,
        request: Request,
        target: Address,
        client: ClientTransactions,
        sdp: SdpSession,
        reactor: Any,
        settings: SipSettings,
    ) -> None:
        super().__init__(leg_id, party, client, target, sdp, reactor, settings)
        self._call_id = request.call_id
        # the INVITE and its transaction, until the 2xx is ACKed (CANCEL needs them, nothing
        # after it: the dialog makes every later request)
        self.request: Request | None = request
        self.outgoing: OutgoingRequest | None = None
        # answers a 401/407 to the INVITE (a trunk's pbx.sip.digest_client.DigestClient)
        self.authenticator: Any = None
        self._challenged = 0
        self.answer_body = b""
        self.early_body = b""
        self.final_status: int | None = None
        self.owns_call_id = True
        self.ringing_seen = False

    @property
    def call_id(self) -> str:
        return self._call_id

    def start(self) -> None:
        assert self.request is not None
        self.move(LegState.CALLING)
        self.outgoing = self.client.send(self.request, self.target, self._response)

    def release(self) -> None:
        # the INVITE transaction outlives the leg (RFC 6026) and keeps calling _response for
        # late 2xx; the leg no longer needs the transaction
        super().release()
        self.outgoing = None

    def _response(self, response: Response) -> None:
        status = response.status
        if self.ended:
            if 200 <= status < 300:
                self._ack_and_bye(response)  # a late 2xx after we gave up: end it cleanly
            return
        if 100 < status < 200 and self.state in (LegState.CALLING, LegState.RINGING):
            self.move(LegState.RINGING)
            early = bool(response.body)
            if early:
                self.early_body = response.body
            if self.owner is not None and (early or not self.ringing_seen):
                self.ringing_seen = True
                self.owner.leg_ringing(self, early)
        elif 200 <= status < 300 and self.state in (LegState.CALLING, LegState.RINGING):
            assert self.request is not None
            try:
                self.dialog = Dialog.from_uac(self.request, response)
            except SipError as exc:
                log.info("[%s] bad 2xx from %s: %s", self.call_id, self.target, exc)
                self._ack_and_bye(response)
                self.final_status = 502
                self._end("bad answer", by_peer=True)
                return
            self.answer_body = response.body
            self.peer_allow = allowed_methods(response.headers)
            self._last_ack_cseq = self.request.cseq.seq
            self.move(LegState.ANSWERED)
            self.answered_at = self.reactor.seconds()
            self.early = False
            self._ack(response)
            self.request = self.outgoing = None  # 2xx retransmissions: stray_2xx ACKs them
            self.move(LegState.CONFIRMED)
            if self.on_dialog is not None:
                self.on_dialog(self)
            self.start_session_timer(
                negotiate_uac(response.headers, self.settings.session_expires)
            )
            if self.owner is not None:
                self.owner.leg_answered(self)
        elif (
            200 <= status < 300
            and self.dialog is not None
            and (response.to.tag or "") == self.dialog.remote_tag
        ):
            self.stray_2xx(response)  # a retransmission (our ACK was lost): ACK it again
        elif status in (401, 407) and self._answer_challenge(response):
            return
        elif status >= 300:
            self.final_status = status
            self._end(str(status), by_peer=True)

    def _answer_challenge(self, response: Response) -> bool:
        """The INVITE again with credentials (new CSeq and branch, same dialog identifiers,
        RFC 3261 §22.2); False when there is nothing to answer with or it was refused."""
        if (
            self.authenticator is None
            or self.request is None
            or self.state not in (LegState.CALLING, LegState.RINGING)
            or self._challenged >= 2
        ):
            return False
        request = self.request
        header_name = "Proxy-Authenticate" if response.status == 407 else "WWW-Authenticate"
        answered = "Proxy-Authorization" if response.status == 407 else "Authorization"
        try:
            name, value = self.authenticator.answer(
                response.status, response.headers.get_lines(header_name), "INVITE",
                str(request.uri), request.body,
                carried_credentials=request.headers.get(answered) is not None,
            )  # fmt: skip
        except Exception as exc:  # noqa: BLE001 - Unanswerable: the call fails with the status
            log.info("[%s] %s not answered: %s", self.call_id, response.status, exc)
            return False
        self._challenged += 1
        headers = request.headers.copy()
        headers.remove("Via")
        headers.remove(answered)
        headers.set("CSeq", f"{request.cseq.seq + 1} INVITE")
        headers.add(name, value)
        retry = Request("INVITE", request.uri, headers, request.body)
        self.request = retry
        self.outgoing = self.client.send(retry, self.target, self._response)
        return True

    def _ack(self, response: Response) -> None:
        assert self.request is not None
        dialog = self.dialog or Dialog.from_uac(self.request, response)
        ack = dialog.create_request("ACK", cseq=self.request.cseq.seq)
        self.client.send_ack(ack, self.target)

    def _ack_and_bye(self, response: Response) -> None:
        if self.request is None:  # a retransmission of the 2xx this leg confirmed
            self.stray_2xx(response)
            return
        try:
            dialog = Dialog.from_uac(self.request, response)
        except SipError:
            return
        self.client.send_ack(dialog.create_request("ACK", cseq=self.request.cseq.seq), self.target)
        self.client.send(dialog.create_request("BYE"), self.target, _ignore)

    def cancel(self, cause: str = "cancelled", reason: str | None = None) -> None:
        """Stop ringing this contact (CANCEL, §9.1); ``reason`` is an RFC 3326 Reason
        value (e.g. 'SIP;cause=200;text="Call completed elsewhere"')."""
        if self.ended:
            return
        if self.outgoing is not None and self.state in (LegState.CALLING, LegState.RINGING):
            self.client.cancel(self.outgoing, reason=reason)
        self._end(cause, by_peer=False)

    def hang_up(self, cause: str = "normal") -> None:
        if self.state in (LegState.NEW, LegState.CALLING, LegState.RINGING):
            self.cancel(cause)
            return
        super().hang_up(cause)


def _ignore(response: Response) -> None:
    """Responses to BYE and other requests nobody waits for."""


__all__ = [
    "ALLOW",
    "InboundLeg",
    "OutboundLeg",
    "SipLeg",
    "SipSettings",
    "allowed_methods",
    "glare_delay",
    "status_for",
]
