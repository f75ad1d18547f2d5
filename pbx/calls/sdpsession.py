"""The SDP side of one SIP leg: offers and answers between pbx and one phone (RFC 3264).

pbx terminates every leg's media on its own ports, so each leg negotiates on its own with its
phone. :class:`SdpSession` keeps what that needs:

- ``local``: the last description pbx sent the phone, always pointing at the leg's media
  ports (pbx.calls.anchor), with one ``o=`` line whose version goes up exactly when the
  content changes (:class:`pbx.media.offer_answer.SdpVersioner`, RFC 3264 §8);
- ``remote``: the phone's last description, whose address the media leg sends to (and may
  latch from, pbx.media.relay);
- ``format``: the negotiated stream (codec, payload types, telephone-event, ptime);
- SRTP (SDES, RFC 4568): the phone's key and pbx's own, installed on the media leg
  (pbx.media.srtp). Keys are only offered or answered when the signalling is TLS (``secure``):
  SDES keys travel in the SDP, RFC 4568 §8.3;
- ``holding``: whether the phone's last offer put the call on hold (sendonly or inactive,
  RFC 3264 §8.4) and the direction pbx answered with.

It answers a phone's offer in three ways (:meth:`answer_with_plan` for the B2BUA case where
a peer's answer decided, :meth:`answer_locally` when pbx is the far end, :meth:`reanswer` for
a re-INVITE/UPDATE inside the dialog), makes pbx's offers (:meth:`offer`,
:meth:`hold_offer`) and takes the phone's answers (:meth:`take_answer`). Errors the phone must
hear as 488 are raised as :class:`MediaRefused`.

Must not import twisted, pbx.store or pbx.service (sans-IO apart from the media leg it points
the SDP at).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets

from pbx.calls import anchor, negotiate
from pbx.calls.negotiate import MediaPlan, NegotiationError, StreamFormat
from pbx.media.offer_answer import HoldState, SdpVersioner, hold_state, media_hold_state
from pbx.media.relay import MediaLeg
from pbx.media.sdes import CryptoAttribute, SdesError
from pbx.media.sdp import Attribute, Direction, SessionDescription, parse_or_none
from pbx.media.srtp import SrtpContext, secure_leg, unsecure_leg

log = logging.getLogger(__name__)

_DIRECTIONS = frozenset(d.value for d in Direction)


class MediaRefused(Exception):
    """The phone's SDP cannot be used (answered 488 Not Acceptable Here)."""


def _audio_index(desc: SessionDescription) -> int | None:
    return next((i for i, m in enumerate(desc.media) if m.media == "audio" and m.port), None)


def direction_of(body: bytes) -> Direction | None:
    """Direction of the first audio stream; c=0.0.0.0 (RFC 2543 hold) counts as inactive."""
    desc = parse_or_none(body)
    index = None if desc is None else _audio_index(desc)
    if desc is None or index is None:
        return None
    if media_hold_state(desc, index) is HoldState.INACTIVE:
        return Direction.INACTIVE
    return desc.media_direction(index)


def with_direction(body: bytes, direction: Direction) -> bytes:
    """``body`` with the first audio stream's direction attribute set to ``direction``."""
    desc = parse_or_none(body)
    index = None if desc is None else _audio_index(desc)
    if desc is None or index is None:
        return body
    media = desc.media[index]
    wanted = Attribute(direction.value)
    attributes = [wanted if a.name in _DIRECTIONS else a for a in media.attributes]
    if wanted not in attributes:
        attributes.append(wanted)
    deduplicated: list[Attribute] = []
    for attribute in attributes:  # one direction attribute, where the first one was
        if attribute.name not in _DIRECTIONS or attribute not in deduplicated:
            deduplicated.append(attribute)
    changed = dataclasses.replace(media, attributes=tuple(deduplicated))
    streams = tuple(changed if i == index else m for i, m in enumerate(desc.media))
    return bytes(dataclasses.replace(desc, media=streams))


def hold_of(body: bytes) -> HoldState:
    desc = parse_or_none(body)
    return HoldState.ACTIVE if desc is None else hold_state(desc)


class SdpSession:
    """Offer/answer state of one leg whose media is ``media``; ``host`` is pbx's media
    address as this phone reaches it; ``secure`` is True when its signalling is TLS."""

    def __init__(self, media: MediaLeg, host: str, secure: bool) -> None:
        self.media = media
        self.host = host
        self.secure = secure
        self.local = b""
        self.remote = b""
        self.format: StreamFormat | None = None
        self.holding = False  # the phone's last offer put the call on hold
        self.hold_offered = False  # pbx's last offer put the phone on hold (sendonly)
        self._versioner = SdpVersioner("pbx", str(secrets.randbelow(2**31) + 1), host)
        self._offered_keys: list[CryptoAttribute] | None = None
        self._srtp: SrtpContext | None = None
        self._pending_offer = b""  # our offer awaiting the phone's answer

    # -- the phone offers -------------------------------------------------------------------

    def check_offer(self, offer: bytes) -> None:
        """Refuse an SRTP-only offer when the keys would travel in clear (RFC 4568 §8.3)."""
        if anchor.offers_srtp(offer) and not self.secure:
            raise MediaRefused("SRTP offered over a plain transport")

    def answer_with_plan(self, offer: bytes, plan: MediaPlan) -> bytes:
        """The answer to the phone's ``offer`` once a peer's answer decided ``plan`` (the
        B2BUA case: the phone is plan's caller)."""
        self.check_offer(offer)
        self._take_remote(offer)
        body = self._secure_answer(offer, plan.caller_answer_body)
        self.format = plan.caller
        return self._stamp(body)

    def answer_locally(self, offer: bytes, prefer: str | None = None) -> bytes:
        """pbx answers the phone's ``offer`` itself, preferring the codec ``prefer``."""
        self.check_offer(offer)
        try:
            plan = negotiate.answer_locally(offer, prefer)
        except NegotiationError as exc:
            raise MediaRefused(str(exc)) from None
        return self.answer_with_plan(offer, plan)

    def reanswer(self, offer: bytes) -> bytes:
        """Answer an offer inside the dialog (re-INVITE/UPDATE): the address may move, the
        phone may hold (answered recvonly/inactive) or resume, keys may change. The codec is
        kept while still offered, else pbx picks another it can code (``format`` changes).
        Returns the (re-stamped) local description."""
        self.check_offer(offer)
        self._take_remote(offer)
        held = hold_of(offer) is not HoldState.ACTIVE
        offered = direction_of(offer)
        keep = self.format.codec if self.format is not None else None
        try:
            plan = negotiate.answer_locally(offer, keep)
        except NegotiationError as exc:
            raise MediaRefused(str(exc)) from None
        body = self._secure_answer(offer, plan.caller_answer_body)
        ours = Direction.SENDONLY if self.hold_offered else None  # pbx holds the phone
        direction = (offered or Direction.SENDRECV).answer(ours)
        body = with_direction(body, direction)
        self.holding = held
        if self.format is None or plan.caller.codec != self.format.codec:
            self.format = plan.caller
        return self._stamp(body)

    # -- pbx offers ----------------------------------------------------------------------

    def offer(self, template: bytes) -> bytes:
        """pbx's offer built from ``template`` (a peer's offer prepared by negotiate, or
        negotiate.own_offer): SRTP with fresh keys when the signalling is TLS."""
        body = anchor.plain(template)
        if self.secure:
            body, self._offered_keys = anchor.secure_offer(body)
        else:
            self._offered_keys = None
        self._pending_offer = body
        return self._stamp(body)

    def hold_offer(self, hold: bool) -> bytes:
        """The current description offered again with a=sendonly (pbx holds the phone: it
        will hear music) or a=sendrecv (retrieved), RFC 3264 §8.4."""
        self.hold_offered = hold
        direction = Direction.SENDONLY if hold else Direction.SENDRECV
        return self._stamp_raw(with_direction(self.local, direction))

    def refresh_offer(self) -> bytes:
        """The unchanged description (a session refresh re-INVITE, RFC 4028)."""
        return self.local

    def take_answer(self, answer: bytes, plan: MediaPlan | None = None) -> StreamFormat:
        """The phone answered our offer: its address, its SRTP key, and the format (from
        ``plan`` in the B2BUA case, where the phone is plan's callee; else from the offer
        and answer themselves). Raises MediaRefused."""
        if not answer:
            raise MediaRefused("the answer has no SDP")
        self._take_remote(answer)
        try:
            if self._offered_keys is not None:
                terms = anchor.srtp_answered(answer, self._offered_keys)
                self._install_srtp(terms)
            else:
                self._install_srtp(None)
            fmt = plan.callee if plan is not None else None
            if fmt is None:
                fmt = negotiate.answered_format(self._pending_offer or self.local, answer)
        except (SdesError, NegotiationError) as exc:
            raise MediaRefused(str(exc)) from None
        self.format = fmt
        return fmt

    def take_reanswer(self, answer: bytes) -> None:
        """The phone answered an offer pbx made inside the dialog (hold, retrieve)."""
        if answer:
            self._take_remote(answer)

    # -- helpers -------------------------------------------------------------------------

    def _take_remote(self, body: bytes) -> None:
        self.remote = body
        remote = anchor.remote(body)
        if remote is not None:
            self.media.set_remote(*remote)

    def _secure_answer(self, offer: bytes, body: bytes) -> bytes:
        try:
            terms = anchor.srtp_offered(offer) if self.secure else None
        except SdesError as exc:
            raise MediaRefused(f"SRTP offer: {exc}") from None
        if terms is not None and self._srtp is not None and self._srtp.inbound == terms.theirs:
            # the same key offered again: keep ours too (a re-INVITE that changes nothing)
            terms = dataclasses.replace(terms, ours=self._srtp.outbound)
        self._install_srtp(terms)
        return anchor.secure(body, terms) if terms is not None else anchor.plain(body)

    def _install_srtp(self, terms: anchor.SrtpTerms | None) -> None:
        if terms is None:
            if self._srtp is not None:
                unsecure_leg(self.media)
            self._srtp = None
            return
        current = self._srtp
        if current is None or current.inbound != terms.theirs or current.outbound != terms.ours:
            self._srtp = SrtpContext(terms.theirs, terms.ours)
            secure_leg(self.media, self._srtp)

    def _stamp(self, body: bytes) -> bytes:
        desc = anchor.rewritten(body, self.host, self.media)
        if desc is None:
            return self._stamp_raw(body)
        self.local = self._versioner.stamp_bytes(desc)  # parsed once, serialised once
        return self.local

    def _stamp_raw(self, body: bytes) -> bytes:
        desc = parse_or_none(body)
        if desc is None:
            self.local = body
            return body
        self.local = self._versioner.stamp_bytes(desc)
        return self.local


__all__ = ["MediaRefused", "SdpSession", "direction_of", "hold_of", "with_direction"]
