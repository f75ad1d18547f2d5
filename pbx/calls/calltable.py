"""The table of active calls: in-dialog requests, the end of a call and its record.

:class:`CallTable` owns ``calls`` (by Call-ID) and the dialogs of their legs, matches
in-dialog requests by dialog id before any authentication (an unknown dialog gets 481; the
mid-call work is :class:`pbx.calls.midcall.MidCall`'s), and ends calls: BYE or CANCEL from a
phone, a missing ACK, a stream that stops, a session timer, the maximum duration. Ending closes
the media, completes the call record (committed at answer time) or writes the record of a call
that never was answered, publishes ``CallEnded`` and frees the call's objects at once.
:class:`pbx.calls.switch.Switch` extends it with routing and answering new calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from twisted.internet import defer

from pbx.calls.midcall import MidCall
from pbx.calls.model import Call, CallEnded, CallEvents, LegState
from pbx.calls.sipleg import InboundLeg, OutboundLeg, SipLeg
from pbx.media.relay import MediaLeg, PortPool, StreamWatch, unbridge
from pbx.sip.client import ClientTransactions
from pbx.sip.dialog import dialog_id_of_request, dialog_id_of_response
from pbx.sip.errors import SipError
from pbx.sip.message import Request, Response
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address, Source
from pbx.store.cdr import CallRecord

log = logging.getLogger(__name__)

Records = Callable[..., "defer.Deferred[Any]"]


class CallTable:
    """The active calls and how they end; runs on the reactor thread."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        ports: PortPool,
        records: Records,
        *,
        t1: float = 0.5,
        media_timeout: float = 60.0,
        events: CallEvents | None = None,
        session_expires: int = 1800,
        min_se: int = 90,
    ) -> None:
        self._reactor = reactor
        self._client = client
        self._ports = ports
        self._records = records
        self._t1 = t1
        self.events = events or CallEvents()
        self.calls: dict[str, Call] = {}
        self._dialogs: dict[tuple[str, str, str], SipLeg] = {}
        self._watch = StreamWatch(reactor, media_timeout, self._media_stopped)
        self.midcall = MidCall(
            reactor,
            client.contact,
            self._media_host,
            self._end_call,
            t1=t1,
            session_expires=session_expires,
            min_se=min_se,
        )
        client.on_stray_2xx = self._stray_2xx

    def start(self) -> None:
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()
        for call in list(self.calls.values()):
            self._end_call(call, "interrupted", "server stopping")

    # -- new calls -------------------------------------------------------------------------

    def _new_call(
        self, incoming: IncomingRequest, caller: str, dialled: str
    ) -> tuple[Call, InboundLeg]:
        """The call of an INVITE from ``caller``, with its inbound leg A."""
        call = Call(
            call_id=incoming.request.call_id,
            caller=caller,
            dialled=dialled,
            caller_name=incoming.request.from_.display_name or "",
        )
        inbound = InboundLeg("A", caller, incoming, self._client, self._reactor, self._t1)
        inbound.on_ended = self._leg_ended
        call.add(inbound)
        return call, inbound

    def _caller_cancelled(self, call: Call) -> None:
        inbound = call.legs[0]
        if inbound.state in (LegState.ANSWERED, LegState.CONFIRMED):
            return  # too late: the 200 OK went out first (RFC 3261 §9.2)
        for leg in call.legs[1:]:
            leg.hang_up("cancel")
        assert isinstance(inbound, InboundLeg)
        inbound.reject(487)
        self._finish(call, "cancelled", "CANCEL", side="caller")

    # -- in-dialog requests ------------------------------------------------------------------

    def handle_in_dialog(self, incoming: IncomingRequest) -> bool:
        """BYE/re-INVITE/INFO/UPDATE of a known dialog; False if none matches."""
        leg = self._dialogs.get(dialog_id_of_request(incoming.request))
        if leg is None or leg.dialog is None:
            log.debug(
                "[%s] no dialog %s (known: %s)",
                incoming.call_id,
                dialog_id_of_request(incoming.request),
                list(self._dialogs),
            )
            return False
        request = incoming.request
        try:
            leg.dialog.receive_request(request)
        except SipError as exc:
            incoming.respond(exc.status, exc.reason)
            return True
        if request.method == "BYE":
            incoming.respond(200)
            call = leg.call
            if not leg.ended:
                leg.move(LegState.ENDED)
            if call is not None:
                side = "caller" if leg is call.legs[0] else "callee"
                self._end_call(call, "answered", "BYE", side=side)
            return True
        self.midcall.handle(leg, incoming)  # re-INVITE, UPDATE, INFO, ...
        return True

    def on_ack(self, request: Request, source: Source) -> None:
        leg = self._dialogs.get(dialog_id_of_request(request))
        if isinstance(leg, InboundLeg) and leg.state is LegState.ANSWERED:
            leg.acked()
        elif leg is not None:
            self.midcall.on_ack(leg, request)  # the ACK of a re-INVITE's 2xx

    def _stray_2xx(self, response: Response, source: Source) -> None:
        """A 2xx retransmitted after its INVITE transaction ended: ACK it again."""
        leg = self._dialogs.get(dialog_id_of_response(response))
        if leg is not None:
            leg.stray_2xx(response)

    def _busy(self, extension: str) -> bool:
        """Whether ``extension`` has a ringing or answered call (call waiting off)."""
        return any(extension in (call.caller, call.dialled) for call in self.calls.values())

    def _leg_ended(self, leg: SipLeg, cause: str) -> None:
        call = leg.call
        if call is None or call.call_id not in self.calls:
            return
        if cause == "no ACK":
            self._end_call(call, "answered", "no ACK", side="caller")

    def _media_stopped(self, media: MediaLeg) -> None:
        call = self.calls.get(media.name.split("/")[0])
        if call is not None and call.answered_at is not None:
            self._end_call(call, "answered", "media timeout", side="network")

    def _end_call(self, call: Call, disposition: str, cause: str, side: str = "pbx") -> None:
        if call.call_id not in self.calls:
            return
        for leg in call.legs:
            if not leg.ended:
                leg.hang_up(cause)
        self._finish(call, disposition, cause, side)

    def _finish(self, call: Call, disposition: str, cause: str, side: str) -> None:
        if self.calls.pop(call.call_id, None) is None:
            return
        now = time.time()
        call.ended_at = now
        for name in ("no_answer", "max_duration"):
            self._cancel_timer(call, name)
        self.midcall.forget(call)
        for leg in call.legs:
            if isinstance(leg, SipLeg) and leg.dialog is not None:
                self._dialogs.pop(leg.dialog.dialog_id, None)
        self._close_media(call)
        final = {
            "ended_at": now,
            "disposition": disposition,
            "hangup_side": side,
            "hangup_cause": cause,
        }
        if call.answered_at is not None:
            if call.record_id is None:  # the open row is not committed yet: closed when it is
                call.record_close = final
                d: defer.Deferred[Any] = defer.succeed(None)
            else:
                d = self._records("close", call.record_id, **final)
        else:
            # a call that rang an extension names it even when nobody answered
            callee = call.dialled if any(isinstance(x, OutboundLeg) for x in call.legs) else ""
            d = self._records(
                "add",
                record_of(
                    call,
                    callee=callee,
                    callee_user=callee or None,
                    ended_at=now,
                    disposition=disposition,
                    hangup_side=side,
                    hangup_cause=cause,
                ),
            )
        d.addErrback(
            lambda f: log.error("[%s] record not completed: %s", call.call_id, f.getErrorMessage())
        )
        self.events.publish(CallEnded(call.call_id, "", now, disposition, cause))
        log.info(
            "[%s] %s -> %s ended: %s (%s)",
            call.call_id,
            call.caller,
            call.dialled,
            disposition,
            cause,
        )
        _release(call)

    def _open_record(self, call: Call, record: CallRecord) -> defer.Deferred[bool]:
        """Commit the row of an answered call before the caller hears the 200 OK (a crash
        never loses an answered call). Fires True when it is committed and the call goes on;
        False when the call ended meanwhile (the row is then closed at once) or the write
        failed (the call is ended with 500 and recorded as failed)."""
        d = self._records("open", record)

        def opened(record_id: int) -> bool:
            call.record_id = record_id
            if call.record_close is not None:
                self._records("close", record_id, **call.record_close).addErrback(
                    lambda f: log.error(
                        "[%s] record not completed: %s", call.call_id, f.getErrorMessage()
                    )
                )
                return False
            return call.call_id in self.calls

        def not_written(failure: Any) -> bool:
            log.error("[%s] call record not written: %s", call.call_id, failure.getErrorMessage())
            call.answered_at = None
            if call.record_close is None:
                self._end_call(call, "failed", "500")
            else:  # it ended meanwhile: try once more, as one complete row
                complete = replace(record, answered_at=None, **call.record_close)
                self._records("add", complete).addErrback(
                    lambda f: log.error(
                        "[%s] record not written: %s", call.call_id, f.getErrorMessage()
                    )
                )
            return False

        d.addCallbacks(opened, not_written)
        return d

    # -- media -------------------------------------------------------------------------------

    def _open_media(self, call: Call, side: str) -> MediaLeg:
        media = MediaLeg(f"{call.call_id}/{side}")
        self._ports.open(media)
        call.extra.setdefault("media", {})[side] = media
        if side == "A":  # the caller's stream: a dead caller phone ends the call
            self._watch.add(media)
        return media

    def _close_media(self, call: Call) -> None:
        legs = call.extra.get("media", {})
        endpoint = call.extra.pop("endpoint", None)
        if endpoint is not None:
            endpoint.stop()
        path = call.extra.pop("path", None)
        if path is not None:
            path.stop()
        elif "A" in legs and "B" in legs:
            unbridge(legs["A"], legs["B"])
        for media in legs.values():
            self._watch.discard(media)
            self._ports.close(media)
        legs.clear()

    def _media_host(self, target: Address) -> str:
        return self._client.local_address(target)[0]

    def _cancel_timer(self, call: Call, name: str) -> None:
        timer = call.extra.pop(name, None)
        if timer is not None and timer.active():
            timer.cancel()

    def active_calls(self) -> list[dict[str, Any]]:
        """For ``pbx calls`` and the dashboard."""
        now = time.time()
        return [
            {
                "call_id": call.call_id,
                "caller": call.caller,
                "dialled": call.dialled,
                "state": "answered" if call.answered_at else "ringing",
                "duration": round(now - (call.answered_at or call.started_at), 1),
                "codecs": sorted({leg.codec for leg in call.legs if leg.codec}),
            }
            for call in self.calls.values()
        ]


def leg_media(call: Call) -> MediaLeg:
    """The media leg facing the callees."""
    media: MediaLeg = call.extra["media"]["B"]
    return media


def _release(call: Call) -> None:
    """Break an ended call's reference cycles so reference counting frees it at once.

    Its transactions live on for 32 s (RFC 6026 Accepted, timer J) and would otherwise keep
    the whole call (legs, dialogs, media, SDP) alive through their callbacks; at 100 calls/s
    that is hundreds of thousands of objects for the garbage collector's older generations
    to walk, in pauses of hundreds of milliseconds.
    """
    for leg in call.legs:
        if isinstance(leg, InboundLeg):
            leg.incoming.on_cancel = None
        leg.call = None
    call.extra.clear()


def record_of(call: Call, **fields: Any) -> CallRecord:
    """The call record of ``call``: what every row has, plus ``fields``."""
    return CallRecord(
        call_id=call.call_id,
        caller=call.caller,
        dialled=call.dialled,
        caller_name=call.caller_name,
        caller_user=call.caller,
        started_at=call.started_at,
        **fields,
    )
