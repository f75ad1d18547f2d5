"""The media path of one call: SRTP per leg, the codec plan, relay or transcoding bridge.

Owns :class:`MediaPath`, which the switch creates with a call's two anchored media legs
(A faces the caller, B the callee) and the caller's offer. It decides:

- the offer for the callees (:meth:`MediaPath.offer_for`): the caller's codecs first, then the
  codecs pbx can transcode (pbx.calls.negotiate), as plain RTP/AVP, or SRTP with pbx's own
  keys for a phone reached over TLS (SDES keys only travel on an encrypted signalling path,
  RFC 4568 §8.3);
- the answer for the caller once a callee answered (:meth:`MediaPath.connect`, for a 183 with
  early media and again for the 200): the caller's codec per RFC 3264, SRTP with pbx's key if
  the caller offered SRTP (pbx terminates SRTP on each leg, pbx.media.srtp);
- how packets flow (:meth:`MediaPath.start`): untouched relay when both phones use the same
  codec, payload types and telephone-event; the same audio but different telephone-event:
  audio untouched and events translated (:class:`pbx.media.event_relay.EventRelay`); else a
  :class:`pbx.media.transcode.TranscodingBridge`;
- DTMF from SIP INFO (:meth:`MediaPath.send_digit`): RFC 4733 or in-band into the other
  phone's stream; an untouched call switches to the bridge for that (pbx then has its own
  RTP stream to put the digit in).

Errors the caller must hear as 488 are raised as :class:`MediaRefused`.
"""

from __future__ import annotations

import logging
from typing import Any

from pbx.calls import anchor, negotiate
from pbx.calls.negotiate import MediaPlan, NegotiationError, StreamFormat
from pbx.media.codecs import UnsupportedCodec
from pbx.media.event_relay import EventRelay
from pbx.media.relay import MediaLeg, bridge, unbridge
from pbx.media.sdes import CryptoAttribute, SdesError
from pbx.media.srtp import SrtpContext, secure_leg, unsecure_leg
from pbx.media.transcode import TranscodingBridge

log = logging.getLogger(__name__)

# codecs pbx offers a callee besides the caller's own (pbx transcodes to them), in this order
TRANSCODABLE = ("G722", "PCMA", "PCMU", "opus")


class MediaRefused(Exception):
    """The media of the call cannot be set up (answered with 488 Not Acceptable Here)."""


class MediaPath:
    """The media between the caller's leg ``a`` and the callee's leg ``b`` of one call."""

    def __init__(
        self,
        call_id: str,
        a: MediaLeg,
        b: MediaLeg,
        caller_offer: bytes,
        *,
        reactor: Any = None,
        transcodable: tuple[str, ...] = TRANSCODABLE,
    ) -> None:
        self.call_id = call_id
        self.a, self.b = a, b
        self.caller_offer = caller_offer
        self._reactor = reactor
        try:
            self.caller_srtp = anchor.srtp_offered(caller_offer)
        except SdesError as exc:
            raise MediaRefused(f"caller's SRTP offer: {exc}") from None
        self._callee_offer = anchor.plain(negotiate.offer_for_callee(caller_offer, transcodable))
        self._offered_keys: dict[str, list[CryptoAttribute]] = {}
        self._contexts: dict[str, SrtpContext] = {}
        self.plan: MediaPlan | None = None
        self.transcoder: TranscodingBridge | None = None
        self._event_relays: list[EventRelay] = []
        self.on_digit: Any = None  # (side, digit) for every digit the bridge sees

    # -- offer and answer ------------------------------------------------------------------

    def offer_for(self, leg_name: str, secure: bool) -> bytes:
        """The SDP offered to one callee contact (ports not yet anchored)."""
        if not secure or not self._callee_offer:
            return self._callee_offer
        body, keys = anchor.secure_offer(self._callee_offer)
        self._offered_keys[leg_name] = keys
        return body

    def connect(self, leg_name: str, callee_body: bytes) -> bytes:
        """The caller's SDP for the callee ``leg_name``'s answer (183 or 200), ports not yet
        anchored; sets up SRTP on both legs as negotiated. Raises :class:`MediaRefused`."""
        if not callee_body:
            raise MediaRefused("the callee answered without SDP")
        remote = anchor.remote(callee_body)
        if remote is not None:
            self.b.set_remote(*remote)
        callee_srtp = None
        offered = self._offered_keys.get(leg_name)
        try:
            if offered is not None:
                callee_srtp = anchor.srtp_answered(callee_body, offered)
            plan = negotiate.plan(self.caller_offer, callee_body)
        except (SdesError, NegotiationError) as exc:
            raise MediaRefused(str(exc)) from None
        self.plan = plan
        self._secure("A", self.a, self.caller_srtp)
        self._secure("B", self.b, callee_srtp)
        body = plan.caller_answer_body
        if self.caller_srtp is not None:
            body = anchor.secure(body, self.caller_srtp)
        return body

    def _secure(self, side: str, media: MediaLeg, terms: anchor.SrtpTerms | None) -> None:
        if terms is None:
            self._contexts.pop(side, None)
            unsecure_leg(media)
            return
        context = self._contexts.get(side)
        if context is None or context.inbound != terms.theirs or context.outbound != terms.ours:
            context = self._contexts[side] = SrtpContext(terms.theirs, terms.ours)
            secure_leg(media, context)

    @property
    def codecs(self) -> tuple[str, str]:
        """(caller's codec, callee's codec) for the call record."""
        if self.plan is None:
            return "", ""
        return self.plan.caller.codec, self.plan.callee.codec

    # -- packets ---------------------------------------------------------------------------

    def start(self) -> None:
        """Let media flow as the plan says (again after a new plan)."""
        plan = self.plan
        if plan is None:
            return
        bridge(self.a, self.b)
        self._stop_event_relays()
        if plan.untouched or _same_audio(plan.caller, plan.callee):
            self._stop_transcoder()
            if not plan.untouched:
                self._start_event_relays(plan)
            return
        self._start_transcoder(plan)

    def _start_event_relays(self, plan: MediaPlan) -> None:
        """Same audio, different telephone-event: audio untouched, events translated."""
        formats = {"A": plan.caller, "B": plan.callee}
        legs = {"A": self.a, "B": self.b}
        for src, dst in (("A", "B"), ("B", "A")):
            source, target = formats[src], formats[dst]
            if source.telephone_event is None or source.telephone_event == target.telephone_event:
                continue
            try:
                relay = EventRelay(
                    legs[src].rtp,
                    legs[dst].rtp,
                    source.telephone_event,
                    target.telephone_event,
                    codec=target.codec,
                    audio_pt=target.payload_type,
                    clock_rate=target.clock_rate,
                    ptime_ms=target.ptime,
                )
            except (UnsupportedCodec, ValueError) as exc:
                log.warning(
                    "[%s] DTMF from %s cannot be turned in-band: %s", self.call_id, src, exc
                )
                continue
            relay.on_digit = lambda digit, side=src: self._digit(side, digit)
            relay.start()
            self._event_relays.append(relay)

    def _stop_event_relays(self) -> None:
        for relay in self._event_relays:
            relay.stop()
        self._event_relays.clear()

    def _start_transcoder(self, plan: MediaPlan) -> TranscodingBridge:
        current = self.transcoder
        if current is not None and current.formats == {"A": plan.caller, "B": plan.callee}:
            current.start()
            return current
        self._stop_transcoder()
        self._stop_event_relays()
        transcoder = TranscodingBridge(
            self.a, self.b, plan.caller, plan.callee, reactor=self._reactor
        )
        transcoder.on_digit = self._digit
        self.transcoder = transcoder
        transcoder.start()
        log.info("[%s] transcoding %s <-> %s", self.call_id, plan.caller.codec, plan.callee.codec)
        return transcoder

    def _stop_transcoder(self) -> None:
        if self.transcoder is not None:
            self.transcoder.stop()
            self.transcoder = None

    def _digit(self, side: str, digit: str) -> None:
        if self.on_digit is not None:
            self.on_digit(side, digit)

    def send_digit(self, side: str, digit: str, duration_ms: int = 160) -> bool:
        """Play a digit to ``side``'s phone (RFC 4733 or in-band); False before media flows."""
        plan = self.plan
        if plan is None:
            return False
        transcoder = self.transcoder or self._start_transcoder(plan)
        transcoder.send_digit(side, digit, duration_ms)
        return True

    def info_digit(self, from_side: str, digit: str, duration_ms: int) -> bool:
        """A digit ``from_side``'s phone sent by SIP INFO: reported like any other digit and
        played to the other phone."""
        if self.plan is None:
            return False
        self._digit(from_side, digit)
        return self.send_digit("B" if from_side == "A" else "A", digit, duration_ms)

    def stop(self) -> None:
        """Media ends (the call is over): no more relaying or transcoding."""
        self._stop_event_relays()
        self._stop_transcoder()
        unbridge(self.a, self.b)


def _same_audio(a: StreamFormat, b: StreamFormat) -> bool:
    """Both phones send and take the very same audio packets (telephone-event aside)."""
    return (
        a.codec.casefold() == b.codec.casefold()
        and a.payload_type == b.payload_type
        and a.clock_rate == b.clock_rate
        and a.channels == b.channels
    )
