"""The B2BUA core: calls between extensions.

An authenticated INVITE from a phone becomes a :class:`pbx.calls.model.Call` with an inbound
leg (the caller) and one outbound leg per registered contact of the dialled extension
(parallel forking). The switch:

- answers 404 for an unknown number and 480 for an extension with no registered contact;
- anchors media: each side gets its own RTP/RTCP port pair (pbx.media.relay) and SDP rewritten
  to point at it (pbx.calls.anchor); the media path of the call (pbx.calls.mediapath) decides
  the callee's offer (the caller's codecs first, then what pbx transcodes; SRTP for phones on
  TLS) and, once answered, relays untouched, translates events or transcodes;
- answers service numbers itself (pbx.calls.local: the echo test) with a media endpoint;
- relays 180 (and 183 with early media) to the caller once;
- takes the first 2xx, CANCELs the other forks, commits the call record, then sends the 200 OK
  to the caller (so a crash never loses an answered call) and bridges the media;
- answers 486 when every fork is busy, 480 after the no-answer time, the best failure otherwise;
- handles CANCEL from the caller, BYE from either side, a missing ACK and a stream that stops.

In-dialog requests, ending calls and their records are :mod:`pbx.calls.calltable`'s.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from pbx.calls import anchor
from pbx.calls.calltable import CallTable, Records, leg_media, record_of
from pbx.calls.local import FEATURES, Feature, LocalRefused, local_answer
from pbx.calls.mediapath import TRANSCODABLE, MediaPath, MediaRefused
from pbx.calls.model import Call, CallEvents, CallStarted, LegAnswered, LegState
from pbx.calls.sipleg import InboundLeg, OutboundLeg
from pbx.media.endpoint import MediaEndpoint
from pbx.media.relay import MediaLeg, NoPortsAvailable, PortPool
from pbx.media.srtp import SrtpContext, secure_leg
from pbx.sip.client import ClientTransactions
from pbx.sip.headers import NameAddr
from pbx.sip.message import Headers, Request, Response, new_call_id, new_tag
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address
from pbx.sip.uri import SipUri, parse_uri
from pbx.store.registrations import Binding

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Callee:
    """What the lookup of a dialled extension found: its contacts and call waiting."""

    exists: bool
    bindings: list[Binding]
    call_waiting: bool = True


Lookup = Callable[[str], "defer.Deferred[Callee]"]

# failure statuses in order of preference when every fork failed (RFC 3261 §16.7 step 6 spirit)
_BUSY = (486, 600)


class Switch(CallTable):
    """Routes new calls: forking, answering, media set-up (the call table it extends owns the
    active calls and how they end); runs on the reactor thread."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        ports: PortPool,
        lookup: Lookup,
        records: Records,
        *,
        t1: float = 0.5,
        no_answer: float = 30.0,
        max_duration: float = 4 * 3600.0,
        media_timeout: float = 60.0,
        events: CallEvents | None = None,
        session_expires: int = 1800,
        min_se: int = 90,
        services: dict[str, str] | None = None,
    ) -> None:
        super().__init__(
            reactor,
            client,
            ports,
            records,
            t1=t1,
            media_timeout=media_timeout,
            events=events,
            session_expires=session_expires,
            min_se=min_se,
        )
        self._lookup = lookup
        self.no_answer = no_answer
        self.max_duration = max_duration
        self.services = dict(services or {})  # dialled number -> pbx.calls.local feature name
        # codecs offered to callees besides the caller's own (pbx transcodes), in this order;
        # a live setting of the web UI
        self.codec_order: list[str] = list(TRANSCODABLE)

    def on_invite(self, incoming: IncomingRequest, username: str) -> None:
        request = incoming.request
        if request.to.tag:
            incoming.respond(481)  # an in-dialog INVITE we do not know (re-INVITE of a dead call)
            return
        uri = request.uri
        dialled = uri.user if isinstance(uri, SipUri) and uri.user else ""
        if not dialled:
            self._refuse(incoming, username, dialled, 404, "No Number Dialled")
            return
        if not self.midcall.check_invite(incoming):  # 422 Session Interval Too Small (§5)
            self._record_refused(incoming, username, dialled, 422)
            return
        if anchor.offers_srtp(request.body) and incoming.source.remote.transport != "TLS":
            # SDES keys travel in the SDP: answering them over plain UDP/TCP would hand the
            # media keys to anyone on the path (RFC 4568 §8.3), and RTP/SAVP cannot be
            # answered with plain RTP
            log.info("[%s] SRTP offered over %s: refused", request.call_id, incoming.source)
            self._refuse(
                incoming, username, dialled, 488, None, [("Warning", '399 pbx "SRTP needs TLS"')]
            )
            return
        feature = self.services.get(dialled)
        if feature is not None:
            answering = defer.maybeDeferred(
                self._answer_locally, incoming, username, dialled, FEATURES[feature]
            )
            answering.addErrback(self._failed, incoming, username, dialled)
            return
        d = self._lookup(dialled)
        d.addCallback(self._route, incoming, username, dialled)
        d.addErrback(self._failed, incoming, username, dialled)

    def _refuse(
        self,
        incoming: IncomingRequest,
        caller: str,
        dialled: str,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        disposition: str = "failed",
        side: str = "pbx",
        callee: str = "",
    ) -> None:
        """Answer a new INVITE with a final error and write its record."""
        incoming.respond(status, reason, headers or [])
        self._record_refused(incoming, caller, dialled, status, disposition, side, callee)

    def _record_refused(
        self,
        incoming: IncomingRequest,
        caller: str,
        dialled: str,
        status: int,
        disposition: str = "failed",
        side: str = "pbx",
        callee: str = "",
    ) -> None:
        """Every call leaves a record: one that pbx refused before it began, too."""
        request = incoming.request
        refused = Call(request.call_id, caller, dialled, request.from_.display_name or "")
        record = record_of(
            refused,
            callee=callee,
            callee_user=callee or None,
            ended_at=refused.started_at,
            disposition=disposition,
            hangup_side=side,
            hangup_cause=str(status),
        )
        self._records("add", record).addErrback(
            lambda f: log.error("[%s] record not written: %s", request.call_id, f.getErrorMessage())
        )

    def _answer_locally(
        self, incoming: IncomingRequest, caller: str, dialled: str, feature: Feature
    ) -> None:
        """A service number: pbx answers the call itself and hands it to ``feature`` with a
        media endpoint (play, record, collect DTMF) on the caller's leg."""
        request = incoming.request
        call, inbound = self._new_call(incoming, caller, dialled)
        self.calls[call.call_id] = call
        try:
            media = self._open_media(call, "A")
            media.expect(incoming.source.remote.host)
            answer = local_answer(request.body)
        except (NoPortsAvailable, LocalRefused) as exc:
            status = 503 if isinstance(exc, NoPortsAvailable) else 488
            log.info("[%s] %s refused: %s", call.call_id, dialled, exc)
            inbound.reject(status)
            self._finish(call, "failed", str(status), side="pbx")
            return
        remote = anchor.remote(request.body)
        if remote is not None:
            media.set_remote(*remote)
        if answer.srtp is not None:
            secure_leg(media, SrtpContext(answer.srtp.theirs, answer.srtp.ours))
        body = anchor.rewrite(answer.body, self._media_host(inbound.target), media)
        call.extra["sdp"] = {"A": body}
        call.answered_at = now = time.time()
        inbound.codec = answer.stream.codec
        incoming.on_cancel = lambda: self._caller_cancelled(call)

        def committed(going_on: bool) -> None:
            if not going_on or call.call_id not in self.calls:
                return
            if inbound.ended:
                self._end_call(call, "cancelled", "ended during answer")
                return
            inbound.answer(body)
            if inbound.dialog is not None:
                self._dialogs[inbound.dialog.dialog_id] = inbound
            endpoint = MediaEndpoint(media, answer.stream, reactor=self._reactor)
            call.extra["endpoint"] = endpoint
            endpoint.start()
            feature(call, endpoint, lambda cause: self._end_call(call, "answered", cause))
            call.extra["max_duration"] = self._reactor.callLater(
                self.max_duration, self._end_call, call, "max duration", "maximum call duration"
            )

        record = record_of(call, callee=dialled, answered_at=now, caller_codec=inbound.codec)
        self._open_record(call, record).addCallback(committed)

    def _failed(
        self, failure: Any, incoming: IncomingRequest, caller: str, dialled: str
    ) -> None:
        """Set-up went wrong (a lookup failed, a bug): 500, and nothing of the call is left
        behind (ports, timers, the entry in the call table); its record says 500."""
        log.error("[%s] call set-up failed: %s", incoming.call_id, failure.getTraceback())
        call = self.calls.get(incoming.call_id)
        if call is not None and call.legs and getattr(call.legs[0], "incoming", None) is incoming:
            self._end_call(call, "failed", "500")
        elif not incoming.final_sent:
            self._record_refused(incoming, caller, dialled, 500)
        if not incoming.final_sent:
            incoming.respond(500)

    def _route(
        self,
        found: Callee,
        incoming: IncomingRequest,
        caller: str,
        dialled: str,
    ) -> None:
        if not found.call_waiting and self._busy(dialled):
            self._refuse(
                incoming, caller, dialled, 486, disposition="busy", side="callee", callee=dialled
            )
            return
        exists, bindings = found.exists, found.bindings
        if not exists or not bindings:
            # a missed call to a phone that is not registered, or a number that does not exist
            status, reason = (404, "No Such Number") if not exists else (480, "Not Registered")
            self._refuse(incoming, caller, dialled, status, reason, callee=dialled if exists else "")
            return
        request = incoming.request
        call, inbound = self._new_call(incoming, caller, dialled)
        try:
            inbound_media = self._open_media(call, "A")
            outbound_media = self._open_media(call, "B")
        except NoPortsAvailable:
            self._close_media(call)
            self._refuse(incoming, caller, dialled, 503, "No Media Ports")
            return
        inbound_media.expect(incoming.source.remote.host)
        remote = anchor.remote(request.body)
        if remote is not None:
            inbound_media.set_remote(*remote)
        self.calls[call.call_id] = call
        try:
            path = MediaPath(
                call.call_id,
                inbound_media,
                outbound_media,
                request.body,
                reactor=self._reactor,
                transcodable=tuple(self.codec_order),
            )
        except MediaRefused as exc:
            log.info("[%s] media refused: %s", call.call_id, exc)
            inbound.reject(488)
            self._finish(call, "failed", "488", side="pbx")
            return
        call.extra["path"] = path
        incoming.on_cancel = lambda: self._caller_cancelled(call)
        self.events.publish(CallStarted(call.call_id, "A", time.time(), caller, dialled))
        for index, binding in enumerate(bindings):
            leg = self._fork(call, binding, f"B{index + 1}", path, outbound_media)
            leg.start()
        call.extra["no_answer"] = self._reactor.callLater(self.no_answer, self._no_answer, call)

    def _fork(
        self,
        call: Call,
        binding: Binding,
        name: str,
        media_path: MediaPath,
        media: MediaLeg,
        secure: bool | None = None,
    ) -> OutboundLeg:
        """An INVITE to one contact; SRTP is offered to phones on TLS unless ``secure``."""
        target = Address(binding.transport, binding.source_host, binding.source_port)
        host = self._media_host(target)
        if secure is None:
            secure = binding.transport.lower() == "tls"
        call.extra.setdefault("bindings", {})[name] = (binding, secure)
        media.expect(binding.source_host)
        offer = media_path.offer_for(name, secure)
        offer = anchor.rewrite(offer, host, media)
        inbound = call.legs[0]
        assert isinstance(inbound, InboundLeg)
        caller_request = inbound.incoming.request
        display = caller_request.from_.display_name
        identity = NameAddr(parse_uri(f"sip:{call.caller}@{host}"), display)
        headers = Headers()
        for path in binding.path:
            headers.add("Route", path)
        headers.add("Max-Forwards", "70")
        headers.add("From", str(identity.with_param("tag", new_tag())))
        headers.add("To", str(NameAddr(parse_uri(f"sip:{call.dialled}@{host}"))))
        headers.add("Call-ID", new_call_id())
        headers.add("CSeq", "1 INVITE")
        headers.add("Contact", self._client.contact(target))
        headers.add("P-Asserted-Identity", str(identity))
        headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE")
        for header, value in self.midcall.invite_headers():  # RFC 4028 session timer
            headers.add(header, value)
        if offer:
            headers.add("Content-Type", "application/sdp")
        request = Request("INVITE", parse_uri(binding.contact), headers, offer)
        leg = OutboundLeg(name, call.dialled, request, target, self._client, self._fork_response)
        leg.on_ended = self._leg_ended
        call.add(leg)
        return leg

    # -- responses from the forks ----------------------------------------------------------

    def _fork_response(self, leg: OutboundLeg, response: Response) -> None:
        call = leg.call
        if call is None or call.call_id not in self.calls:
            return
        inbound = call.legs[0]
        assert isinstance(inbound, InboundLeg)
        status = response.status
        if 100 < status < 200:
            if response.body and status == 183:
                self._early_media(call, inbound, leg, response.body)
            elif not inbound.ringing_sent:
                inbound.ring(180)
            return
        if 200 <= status < 300:
            if call.answered_at is None and inbound.state is not LegState.ENDED:
                self._answered(call, inbound, leg)
            return
        if status in (488, 606) and call.answered_at is None and self._retry_plain(call, leg):
            return
        call.extra.setdefault("statuses", []).append(status)
        if call.answered_at is None and all(o.ended for o in call.legs[1:]):
            self._all_failed(call, inbound)

    def _retry_plain(self, call: Call, leg: OutboundLeg) -> bool:
        """A phone on TLS refused our SRTP offer (488/606): offer it plain RTP once (not
        every TLS phone does SRTP, and SDES was our choice, not its)."""
        binding, secure = call.extra.get("bindings", {}).get(leg.name, (None, False))
        if binding is None or not secure:
            return False
        log.info("[%s] %s refused SRTP: offering plain RTP", call.call_id, leg.name)
        retry = self._fork(
            call, binding, f"{leg.name}p", call.extra["path"], leg_media(call), False
        )
        retry.start()
        return True

    def _early_media(self, call: Call, inbound: InboundLeg, leg: OutboundLeg, body: bytes) -> None:
        path: MediaPath = call.extra["path"]
        try:
            answer = path.connect(leg.name, body)
        except MediaRefused as exc:
            log.info("[%s] early media of %s not usable: %s", call.call_id, leg.name, exc)
            if not inbound.ringing_sent:
                inbound.ring(180)
            return
        path.start()
        inbound.ring(183, anchor.rewrite(answer, self._media_host(inbound.target), path.a))

    def _answered(self, call: Call, inbound: InboundLeg, winner: OutboundLeg) -> None:
        now = time.time()
        call.answered_at = now
        self._cancel_timer(call, "no_answer")
        for other in call.legs[1:]:
            if other is not winner and isinstance(other, OutboundLeg):
                other.cancel()
        if winner.dialog is not None:
            self._dialogs[winner.dialog.dialog_id] = winner
        path: MediaPath = call.extra["path"]
        try:
            answer = path.connect(winner.name, winner.answer_body)
        except MediaRefused as exc:
            log.info("[%s] answer of %s not usable: %s", call.call_id, winner.name, exc)
            winner.hang_up("488")
            inbound.reject(488)
            self._finish(call, "failed", "488", side="pbx")
            return
        inbound.codec, winner.codec = path.codecs
        answer = anchor.rewrite(answer, self._media_host(inbound.target), path.a)
        call.extra["sdp"] = {"A": answer, "B": winner.request.body}
        record = record_of(
            call,
            callee=winner.party,
            callee_user=winner.party,
            answered_at=now,
            caller_codec=inbound.codec,
            callee_codec=winner.codec,
        )

        def committed(going_on: bool) -> None:
            if not going_on or call.call_id not in self.calls:
                return  # ended meanwhile (its record is completed)
            if inbound.ended or winner.ended:
                self._end_call(call, "cancelled", "ended during answer")
                return
            self.midcall.answered(call, inbound, winner, answer)
            inbound.answer(answer)
            if inbound.dialog is not None:
                self._dialogs[inbound.dialog.dialog_id] = inbound
            path.start()
            self.events.publish(LegAnswered(call.call_id, winner.name, time.time(), winner.codec))
            call.extra["max_duration"] = self._reactor.callLater(
                self.max_duration, self._end_call, call, "max duration", "maximum call duration"
            )

        self._open_record(call, record).addCallback(committed)

    def _all_failed(self, call: Call, inbound: InboundLeg) -> None:
        statuses: list[int] = call.extra.get("statuses", [])
        if any(s in _BUSY for s in statuses):
            status = 486
        elif statuses:
            status = min(statuses, key=lambda s: (s // 100 != 4, s))
        else:
            status = 480
        disposition = "busy" if status == 486 else "failed"
        inbound.reject(status)
        self._finish(call, disposition, str(status), side="callee")

    def _no_answer(self, call: Call) -> None:
        call.extra.pop("no_answer", None)
        if call.answered_at is not None or call.call_id not in self.calls:
            return
        for leg in call.legs[1:]:
            leg.hang_up("no answer")
        inbound = call.legs[0]
        assert isinstance(inbound, InboundLeg)
        inbound.reject(480, "No Answer")
        self._finish(call, "no answer", "480", side="callee")

