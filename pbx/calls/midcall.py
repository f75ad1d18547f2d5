"""What happens inside an answered call: re-INVITE/UPDATE mirroring (hold) and session timers.

The switch hands every in-dialog request other than BYE to :class:`MidCall`. It owns:

- mirroring (RFC 3264 §8.4 hold): an offer from one phone that changes its hold state is sent
  on to the other phone as a re-INVITE (or UPDATE when that arrived and the other side allows
  it) carrying ``call.extra["sdp"][other side]`` (the last SDP pbx sent that phone) with the
  o= version bumped and only the direction attribute changed: pbx relays the media, so the
  direction the holder asked for is the one pbx offers the other phone (sendonly stays
  sendonly, inactive inactive, sendrecv sendrecv). The other phone's answer direction is
  then given back to the holder in ``call.extra["sdp"][its side]``. An offer that does not
  change the hold state (a session refresh) is answered locally;
- glare (RFC 3261 §14.2): 491 when pbx has an INVITE of its own pending on that dialog or
  another offer is being mirrored on the call, 500 with Retry-After for a second INVITE on a
  dialog whose first one is not answered yet;
- RFC 4028 session timers, one :class:`pbx.calls.session_timer.SessionTimer` per leg, set up
  when the call is answered; pbx refreshes where it is the refresher (UPDATE when allowed,
  else re-INVITE with the current SDP) and clears the call when a session expires or a
  refresh fails with 408/481 (cause 'session timer').

Must not import pbx.store or pbx.service.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from pbx.calls import anchor
from pbx.calls.model import Call, CallError
from pbx.calls.session_timer import (
    Negotiated,
    Refresher,
    SessionTimer,
    TooBrief,
    negotiate_uac,
    negotiate_uas,
    read_offer,
    renegotiate,
    request_headers,
)
from pbx.calls.sipleg import DIALOG_GONE, InboundLeg, OutboundLeg, SipLeg
from pbx.media.dtmf import DTMF, DTMF_RELAY, parse_info_body
from pbx.media.offer_answer import HoldState, hold_state, media_hold_state
from pbx.media.sdp import Attribute, Direction, SessionDescription, parse_or_none
from pbx.sip.message import Request, Response
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address

log = logging.getLogger(__name__)

SDP = "application/sdp"
_DIRECTIONS = frozenset(d.value for d in Direction)


# --- SDP direction helpers ------------------------------------------------------------------


_parse = parse_or_none


def _audio(desc: SessionDescription) -> int | None:
    return next((i for i, m in enumerate(desc.media) if m.media == "audio" and m.port), None)


def direction_of(body: bytes) -> Direction | None:
    """Direction of the first audio stream; c=0.0.0.0 (RFC 2543 hold) counts as inactive."""
    desc = _parse(body)
    index = None if desc is None else _audio(desc)
    if desc is None or index is None:
        return None
    if media_hold_state(desc, index) is HoldState.INACTIVE:
        return Direction.INACTIVE
    return desc.media_direction(index)


def hold_of(body: bytes) -> HoldState:
    desc = _parse(body)
    return HoldState.ACTIVE if desc is None else hold_state(desc)


def restamp(body: bytes, direction: Direction | None) -> bytes:
    """``body`` with its o= version bumped and the audio stream's direction set."""
    desc = _parse(body)
    if desc is None:
        return body
    index = _audio(desc)
    if direction is not None and index is not None:
        media = desc.media[index]
        kept = tuple(a for a in media.attributes if a.name not in _DIRECTIONS)
        changed = dataclasses.replace(media, attributes=(*kept, Attribute(direction.value)))
        streams = tuple(changed if i == index else m for i, m in enumerate(desc.media))
        desc = dataclasses.replace(desc, media=streams)
    origin = dataclasses.replace(desc.origin, session_version=desc.origin.session_version + 1)
    return dataclasses.replace(desc, origin=origin).serialize().encode()


def answer_direction(offered: Direction | None, answered: Direction | None) -> Direction | None:
    """What the other phone answered, limited to what is allowed for ``offered`` (§6.1)."""
    if answered is None:
        return None if offered is None else offered.answer()
    if offered is None:
        return answered
    return offered.answer(Direction.of(answered.sends, answered.receives))


# --- the in-dialog part of a call ---------------------------------------------------------


DEFAULT_INFO_MS = 160  # a dtmf-relay body without Duration


class MidCall:
    """In-dialog requests of answered calls and their session timers."""

    def __init__(
        self,
        reactor: Any,
        contact: Callable[[Address], str],
        media_host: Callable[[Address], str],
        end_call: Callable[[Call, str, str], None],
        *,
        t1: float = 0.5,
        session_expires: int = 1800,
        min_se: int = 90,
    ) -> None:
        self._reactor = reactor
        self._contact = contact
        self._media_host = media_host
        self._end_call = end_call
        self._t1 = t1
        self.session_expires = session_expires
        self.min_se = min_se

    # -- set-up ----------------------------------------------------------------------------

    def check_invite(self, incoming: IncomingRequest) -> bool:
        """RFC 4028 §5: 422 with our Min-SE for a too short Session-Expires; False if sent."""
        try:
            negotiate_uas(read_offer(incoming.request.headers), self.session_expires, self.min_se)
        except TooBrief as exc:
            incoming.respond(422, None, [("Min-SE", str(exc.min_se))])
            return False
        return True

    def invite_headers(self) -> list[tuple[str, str]]:
        """Session-timer headers of the INVITEs pbx sends to callees (§7.1)."""
        return request_headers(self.session_expires, self.min_se)

    def answered(self, call: Call, inbound: InboundLeg, winner: OutboundLeg, answer: bytes) -> None:
        """Before the caller's 200 OK: wire both legs, negotiate and start session timers."""
        sdp = call.extra.setdefault("sdp", {})
        sdp.setdefault("A", answer)
        sdp.setdefault("B", winner.request.body)
        call.extra.setdefault("hold", {"A": HoldState.ACTIVE, "B": HoldState.ACTIVE})
        for leg in (inbound, winner):
            leg.reactor, leg.t1 = self._reactor, self._t1
            leg.on_dialog_gone = self._dialog_gone
        timers: dict[str, SessionTimer] = call.extra.setdefault("timers", {})
        caller = negotiate_uas(
            read_offer(inbound.incoming.request.headers), self.session_expires, self.min_se
        )
        inbound.answer_headers += [
            ("Supported", "timer"),
            ("Session-Expires", caller.response_value()),
        ]
        if caller.require:
            inbound.answer_headers.append(("Require", "timer"))
        timers["A"] = self._timer(call, "A", caller)
        callee = None
        if winner.answer_headers is not None:
            callee = negotiate_uac(winner.answer_headers, self.session_expires)
        if callee is not None:
            timers["B"] = self._timer(call, "B", callee)

    def _timer(self, call: Call, side: str, negotiated: Negotiated) -> SessionTimer:
        timer = SessionTimer(
            self._reactor,
            lambda: self._refresh(call, side),
            lambda: self._expired(call, side),
            f"{call.call_id}/{side}",
        )
        timer.start(negotiated)
        return timer

    def forget(self, call: Call) -> None:
        """The call ended: stop its timers."""
        for timer in call.extra.pop("timers", {}).values():
            timer.stop()

    # -- requests from the phones ------------------------------------------------------------

    def handle(self, leg: SipLeg, incoming: IncomingRequest) -> None:
        """An in-dialog request other than BYE on ``leg`` (already checked by its dialog)."""
        request = incoming.request
        method = request.method
        call = leg.call
        if call is None:
            incoming.respond(481)
            return
        if method == "INVITE":
            if leg.uas_invite_pending:
                incoming.respond(500, None, [("Retry-After", "1")])  # §14.2
                return
            if leg.uac_invite_pending or call.extra.get("mirroring"):
                incoming.respond(491)  # §14.2 glare
                return
            leg.uas_invite_pending = True
            self._offer(call, leg, incoming)
        elif method == "UPDATE" and request.body:
            if leg.uac_invite_pending or call.extra.get("mirroring"):
                incoming.respond(491)  # RFC 3311 §5.2
                return
            self._offer(call, leg, incoming)
        elif method == "UPDATE":
            self._reply(call, leg, incoming, b"")  # a session refresh without an offer
        elif method == "INFO":
            self._info(call, leg, incoming)
        elif method in ("NOTIFY", "OPTIONS"):
            incoming.respond(200)
        else:
            incoming.respond(405)

    def _info(self, call: Call, leg: SipLeg, incoming: IncomingRequest) -> None:
        """SIP INFO: a DTMF digit (application/dtmf-relay or application/dtmf) is played to
        the other phone (RFC 4733 or in-band, pbx.calls.mediapath); other INFO bodies are
        acknowledged (legacy INFO without an Info-Package, RFC 6086 §2)."""
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
        side = _side(call, leg)
        path = call.extra.get("path")
        endpoint = call.extra.get("endpoint")
        if path is not None:
            delivered = path.info_digit(side, info.digit, info.duration_ms or DEFAULT_INFO_MS)
        elif endpoint is not None:  # a call pbx answered itself: the digit is for pbx
            endpoint.digit_received(info.digit)
            delivered = True
        else:
            delivered = False
        log.info("[%s] INFO digit %s from %s", call.call_id, info.digit, side)
        incoming.respond(200 if delivered else 481)

    def on_ack(self, leg: SipLeg, request: Request) -> None:
        """The ACK of a re-INVITE's 2xx; it carries the answer when the INVITE had no offer."""
        leg.acked(request)
        call = leg.call
        if call is None or not request.body or "media" not in call.extra:
            return
        media = call.extra["media"].get(_side(call, leg))
        remote = anchor.remote(request.body)
        if media is not None and remote is not None:
            media.set_remote(*remote)

    def _offer(self, call: Call, leg: SipLeg, incoming: IncomingRequest) -> None:
        request = incoming.request
        side = _side(call, leg)
        other = call.other(leg)
        sdp: dict[str, bytes] = call.extra.setdefault("sdp", {})
        if not request.body:  # offer in our 2xx, answer in the ACK; mirror a plain refresh
            self._reply(call, leg, incoming, sdp.get(side, b""))
            if isinstance(other, SipLeg) and sdp.get(_other(side)):
                d = self._send_refresh(call, other, _other(side))
                d.addCallbacks(
                    lambda r: self._refreshed_by_response(call, _other(side), r),
                    lambda failure: None,  # an INVITE of ours is pending there: nothing to do
                )
            return
        media = call.extra.get("media", {}).get(side)
        remote = anchor.remote(request.body)
        if media is not None and remote is not None:
            media.set_remote(*remote)
        holds = call.extra.setdefault("hold", {})
        state = hold_of(request.body)
        other_side = _other(side)
        if other is None and state is not holds.get(side, HoldState.ACTIVE):
            self._hold_alone(call, leg, incoming, media, state)
            return
        if (
            state is holds.get(side, HoldState.ACTIVE)
            or not isinstance(other, SipLeg)
            or other_side not in sdp
            or side not in sdp
        ):
            body = sdp.get(side) or anchor.rewrite(
                request.body, self._media_host(leg.target), media
            )
            self._reply(call, leg, incoming, body)
            return
        self._mirror(call, leg, other, incoming, state)

    def _hold_alone(
        self, call: Call, leg: SipLeg, incoming: IncomingRequest, media: Any, state: HoldState
    ) -> None:
        """A hold or resume on a call pbx answered itself: answered with the direction that
        answers the offer (RFC 3264 §6.1: recvonly to sendonly, inactive to inactive), and
        pbx stops sending while the phone does not want media."""
        request = incoming.request
        side = _side(call, leg)
        sdp: dict[str, bytes] = call.extra.setdefault("sdp", {})
        current = sdp.get(side) or anchor.rewrite(
            request.body, self._media_host(leg.target), media
        )
        sdp[side] = restamp(current, answer_direction(direction_of(request.body), None))
        call.extra["hold"][side] = state
        endpoint = call.extra.get("endpoint")
        if endpoint is not None:
            endpoint.held = state is not HoldState.ACTIVE
        log.info("[%s] %s: %s (answered by pbx)", call.call_id, side, state.value)
        self._reply(call, leg, incoming, sdp[side])

    def _mirror(
        self,
        call: Call,
        leg: SipLeg,
        other: SipLeg,
        incoming: IncomingRequest,
        state: HoldState,
    ) -> None:
        request = incoming.request
        side, other_side = _side(call, leg), _side(call, other)
        sdp: dict[str, bytes] = call.extra["sdp"]
        offered = direction_of(request.body)
        to_other = restamp(sdp[other_side], offered)
        method = request.method
        if method == "UPDATE" and not other.peer_allows("UPDATE"):
            method = "INVITE"
        call.extra["mirroring"] = True
        log.info("[%s] %s: mirroring %s to %s", call.call_id, side, state.value, other_side)

        def done(response: Response) -> None:
            call.extra["mirroring"] = False
            if incoming.final_sent:
                return
            if not 200 <= response.status < 300:
                status = 481 if response.status in DIALOG_GONE else response.status
                leg.answer_in_dialog(incoming, incoming.response(status))
                return
            sdp[other_side] = to_other
            other_media = call.extra.get("media", {}).get(other_side)
            remote = anchor.remote(response.body)
            if other_media is not None and remote is not None:
                other_media.set_remote(*remote)
            self._refreshed_by_response(call, other_side, response)
            back = answer_direction(offered, direction_of(response.body))
            sdp[side] = restamp(sdp[side], back)
            call.extra.setdefault("hold", {})[side] = state
            self._reply(call, leg, incoming, sdp[side])

        def failed(failure: Any) -> None:
            call.extra["mirroring"] = False
            if not incoming.final_sent:
                leg.answer_in_dialog(incoming, incoming.response(500))
            if not failure.check(CallError):
                log.error("[%s] mirroring failed: %s", call.call_id, failure.getTraceback())

        d = other.send_request(method, to_other, self._refresh_headers(call, other_side))
        d.addCallbacks(done, failed)

    def _reply(self, call: Call, leg: SipLeg, incoming: IncomingRequest, body: bytes) -> None:
        """200 to a re-INVITE/UPDATE, with the session-timer headers of a received refresh."""
        response = incoming.response(200)
        response.headers.add("Contact", self._contact(leg.target))
        timer = call.extra.get("timers", {}).get(_side(call, leg))
        if timer is not None and timer.negotiated is not None:
            offer = read_offer(incoming.request.headers)
            negotiated = renegotiate(offer, timer.negotiated, self.session_expires)
            response.headers.add("Supported", "timer")
            response.headers.add("Session-Expires", negotiated.response_value())
            if offer.supported:
                response.headers.add("Require", "timer")
            timer.refreshed(negotiated)
        if body:
            response.headers.add("Content-Type", SDP)
            response.body = body
        leg.answer_in_dialog(incoming, response)

    # -- refreshes pbx sends -------------------------------------------------------------

    def _refresh_headers(self, call: Call, side: str) -> list[tuple[str, str]]:
        timer = call.extra.get("timers", {}).get(side)
        if timer is None or timer.negotiated is None:
            return []
        negotiated = timer.negotiated
        return [
            ("Supported", "timer"),
            ("Session-Expires", negotiated.response_value(pbx_is_uas=False)),
        ]

    def _refreshed_by_response(self, call: Call, side: str, response: Response) -> None:
        timer = call.extra.get("timers", {}).get(side)
        if 200 <= response.status < 300 and timer is not None and timer.negotiated is not None:
            timer.refreshed(negotiate_uac(response.headers, timer.negotiated.interval))

    def _send_refresh(self, call: Call, leg: SipLeg, side: str) -> Any:
        sdp: dict[str, bytes] = call.extra.get("sdp", {})
        if leg.peer_allows("UPDATE"):
            d = leg.send_request("UPDATE", b"", self._refresh_headers(call, side))
        else:
            d = leg.send_request("INVITE", sdp.get(side, b""), self._refresh_headers(call, side))
        return d

    def _refresh(self, call: Call, side: str) -> None:
        leg = _leg(call, side)
        timer = call.extra.get("timers", {}).get(side)
        if leg is None or timer is None:
            return
        log.debug("[%s] refreshing the session of %s", call.call_id, side)

        def done(response: Response) -> None:
            if 200 <= response.status < 300:
                self._refreshed_by_response(call, side, response)
            elif response.status in DIALOG_GONE:
                self._expired(call, side)
            else:
                timer.refresh_failed()

        d = self._send_refresh(call, leg, side)
        d.addCallbacks(done, lambda failure: timer.refresh_failed())

    def _expired(self, call: Call, side: str) -> None:
        log.info("[%s] session of %s expired: clearing the call", call.call_id, side)
        self._end_call(call, "answered", "session timer")

    def _dialog_gone(self, leg: SipLeg, status: int) -> None:
        call = leg.call
        if call is not None:
            self._end_call(call, "answered", str(status))


def _side(call: Call, leg: SipLeg) -> str:
    return "A" if call.legs and leg is call.legs[0] else "B"


def _other(side: str) -> str:
    return "B" if side == "A" else "A"


def _leg(call: Call, side: str) -> SipLeg | None:
    if side == "A":
        first = call.legs[0] if call.legs else None
        return first if isinstance(first, SipLeg) and not first.ended else None
    other = call.other(call.legs[0]) if call.legs else None
    return other if isinstance(other, SipLeg) and not other.ended else None


__all__ = ["MidCall", "Refresher", "answer_direction", "direction_of", "restamp"]
