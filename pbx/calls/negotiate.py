"""Codec negotiation across the B2BUA: what to offer the callee and how to bridge the answer.

Owns: :func:`offer_for_callee` (the caller's offer with the codecs pbx can transcode and
telephone-event appended after the caller's own, so a shared codec still wins),
:func:`plan` (from the caller's offer and the callee's answer: the answer pbx gives the caller,
the stream format of each side, and whether packets can be relayed untouched) and
:class:`StreamFormat`; for legs where pbx itself offers or answers (originate, transfer
targets, pickup, park, services): :func:`own_offer` (pbx's offer, a given format first so the
leg it will be bridged to is relayed untouched), :func:`answer_locally` (pbx answers an offer,
preferring a given codec) and :func:`answered_format` (what a phone chose from our offer). Media ports and addresses are left to :mod:`pbx.calls.anchor`, which
rewrites the bodies after these functions.

Sans-IO: bytes in, bytes and dataclasses out. Must not import: twisted, socket, sqlite3,
sqlite_utils, flask, pbx.store (setup.cfg contract "sans-io").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from pbx.media.codecs import CODECS, CodecInfo, parse_fmtp
from pbx.media.sdp import (
    Attribute,
    Codec,
    Connection,
    MediaDescription,
    Origin,
    SessionDescription,
    parse_or_none,
)

log = logging.getLogger(__name__)

# codecs pbx offers besides a caller's own (it transcodes to them), in this default order; the
# web UI's live setting calls.codec_order changes it
TRANSCODABLE = ("G722", "PCMA", "PCMU", "opus")
DEFAULT_PTIME = 20  # ms, RFC 3551 §4.2 default packetisation
TELEPHONE_EVENT = "telephone-event"
TELEPHONE_EVENT_FMTP = "0-16"  # RFC 4733 §7.1.1: DTMF digits and flash
DYNAMIC_PAYLOAD_TYPES = range(96, 128)  # RFC 3551 §6
PREFERRED_EVENT_PT = 101  # the usual choice; any free dynamic number works


class NegotiationError(ValueError):
    """The two sides cannot be bridged; the switch answers the caller 488 (RFC 3261 §21.4.26)."""


class UnusableSdp(NegotiationError):
    """A body does not parse, or has no audio stream pbx can use."""


class NoCommonCodec(NegotiationError):
    """Nothing the callee chose can reach the caller, even through a transcoder."""


@dataclass(frozen=True, slots=True)
class StreamFormat:
    """How RTP flows on one side: the audio codec and its telephone-event (RFC 4733) type.

    ``codec`` is the :data:`pbx.media.codecs.CODECS` key when pbx can transcode it, else the
    SDP encoding name. ``fmtp`` are that side's parameters for it (what the phone can
    receive); ``ptime`` is what the phone asked to receive (RFC 4566 §6 a=ptime).
    """

    codec: str
    payload_type: int
    clock_rate: int
    channels: int = 1
    fmtp: Mapping[str, str] = field(default_factory=dict, hash=False)
    ptime: int = DEFAULT_PTIME
    telephone_event: int | None = None
    telephone_event_rate: int = 8000

    @property
    def transcodable(self) -> bool:
        return self.codec in CODECS


@dataclass(frozen=True, slots=True)
class MediaPlan:
    """What the switch does with an answered call's media."""

    caller_answer_body: bytes  # RFC 3264 answer to the caller's offer; anchor.rewrite it
    caller: StreamFormat
    callee: StreamFormat
    untouched: bool  # relay packets as they are (same codec, PT, clock, ptime, events)


# --- helpers --------------------------------------------------------------------------------


_parse = parse_or_none


def _first_audio(desc: SessionDescription) -> int | None:
    """Index of the first accepted audio stream carried over RTP, as anchor.rewrite picks it."""
    for index, media in enumerate(desc.media):
        if media.media == "audio" and media.port and "RTP" in media.proto:
            return index
    return None


def _info(codec: Codec) -> CodecInfo | None:
    """pbx's facts for ``codec`` when pbx can transcode it (name case-blind, clock must match)."""
    for name, info in CODECS.items():
        if name.casefold() == codec.encoding.casefold() and info.clock_rate == codec.clock_rate:
            return info
    return None


def _same_format(a: Codec, b: Codec) -> bool:
    """Same encoding and clock; channels only matter when both say (opus is always /2)."""
    return (a.encoding.casefold(), a.clock_rate) == (b.encoding.casefold(), b.clock_rate)


def _audio_codecs(media: MediaDescription) -> list[Codec]:
    return [c for c in media.codecs() if not c.is_telephone_event]


def _event_codec(media: MediaDescription, audio_clock: int | None) -> Codec | None:
    """telephone-event of a stream, preferring the audio's clock rate (RFC 4733 §7.1.1)."""
    events = [c for c in media.codecs() if c.is_telephone_event]
    same = [c for c in events if c.clock_rate == audio_clock]
    found = same or events
    return found[0] if found else None


# --- the offer pbx sends to the callees ------------------------------------------------------


def offer_for_callee(caller_offer: bytes, transcodable: Sequence[str]) -> bytes:
    """The caller's offer with what pbx can transcode appended to its first audio stream.

    Codecs named in ``transcodable`` (CODECS keys) that the caller did not offer are added
    after the caller's own, so a callee that shares a caller codec picks it (RFC 3264 §6.1:
    the answerer should prefer the offerer's order) and packets stay untouched. Each gets its
    static payload type when it has one and it is free (PCMU 0, PCMA 8, G722 9, RFC 3551 §6),
    else a free dynamic one; telephone-event/8000 (0-16) is added when the caller lacks it.
    The caller's payload types are kept. Unparseable bodies and bodies without audio come back
    unchanged; c=/m= ports are left for anchor.rewrite.
    """
    desc = _parse(caller_offer)
    index = None if desc is None else _first_audio(desc)
    if desc is None or index is None:
        return caller_offer
    media = desc.media[index]
    offered = media.codecs()
    used = {int(f) for f in media.formats if f.isascii() and f.isdigit()}
    added: list[Codec] = []
    for name in transcodable:
        info = CODECS.get(name) or next(
            (i for n, i in CODECS.items() if n.casefold() == name.casefold()), None
        )
        if info is None:
            log.warning("cannot offer %r: pbx has no such codec", name)
            continue
        wanted = Codec(0, info.name, info.clock_rate, info.channels)
        if any(_same_format(wanted, c) for c in [*offered, *added]):
            continue
        pt = _free_payload_type(used, info.payload_type)
        if pt is None:
            break
        added.append(replace(wanted, payload_type=pt))
    if not any(c.is_telephone_event for c in offered):
        pt = _free_payload_type(used, PREFERRED_EVENT_PT)
        if pt is not None:
            added.append(Codec(pt, TELEPHONE_EVENT, 8000, 1, TELEPHONE_EVENT_FMTP))
    if not added:
        return caller_offer
    streams = list(desc.media)
    streams[index] = _append_codecs(media, added)
    return bytes(replace(desc, media=tuple(streams)))


def _free_payload_type(used: set[int], preferred: int | None) -> int | None:
    """``preferred`` when free (a static type must still mean its codec), else a dynamic one."""
    candidates = ([preferred] if preferred is not None else []) + list(DYNAMIC_PAYLOAD_TYPES)
    for pt in candidates:
        if pt not in used and (pt >= 96 or pt == preferred):
            used.add(pt)
            return pt
    log.warning("no free RTP payload type left to offer")
    return None


def _append_codecs(media: MediaDescription, codecs: list[Codec]) -> MediaDescription:
    """Add ``codecs`` to the m= line and their rtpmap/fmtp after the existing ones."""
    attrs = list(media.attributes)
    last = max((i for i, a in enumerate(attrs) if a.name in ("rtpmap", "fmtp")), default=-1)
    new = [attr for codec in codecs for attr in codec.attributes()]
    attrs[last + 1 : last + 1] = new
    formats = (*media.formats, *(str(c.payload_type) for c in codecs))
    return replace(media, formats=formats, attributes=tuple(attrs))


# --- the plan once the callee answered -------------------------------------------------------


def plan(caller_offer: bytes, callee_answer: bytes) -> MediaPlan:
    """Decide how the answered call's media flows (RFC 3264 §6 for the caller's answer).

    The caller's codec is the callee's choice when the caller offered it, else the caller's
    first codec pbx can transcode; telephone-event is in the caller's answer iff the caller
    offered it. Raises :class:`UnusableSdp` for a body that does not parse or has no audio,
    :class:`NoCommonCodec` when the sides cannot be bridged.
    """
    offer = _parse(caller_offer)
    answer = _parse(callee_answer)
    if offer is None or answer is None:
        raise UnusableSdp("caller offer or callee answer is not SDP")
    index = _first_audio(offer)
    if index is None:
        raise UnusableSdp("the caller offered no audio stream")
    if index >= len(answer.media) or not answer.media[index].port:
        raise NoCommonCodec("the callee refused the audio stream")
    offered, answered = offer.media[index], answer.media[index]
    callee_codecs = _audio_codecs(answered)
    if not callee_codecs:
        raise NoCommonCodec("the callee answered no audio codec")
    chosen = callee_codecs[0]
    caller_codec = _caller_codec(_audio_codecs(offered), chosen)
    caller_te = _event_codec(offered, caller_codec.clock_rate)
    callee_te = _event_codec(answered, chosen.clock_rate)
    caller = _format(caller_codec, caller_te, offered.ptime)
    callee = _format(chosen, callee_te, answered.ptime)
    untouched = _relayable(caller, callee)
    if not untouched and not (caller.transcodable and callee.transcodable):
        if caller_codec.payload_type == chosen.payload_type and _same_format(caller_codec, chosen):
            # pbx cannot transcode this codec: relaying is the only way; a ptime or event
            # mismatch is then left to the phones
            log.warning("relaying %s untouched despite a ptime/event mismatch", caller.codec)
            untouched = True
        else:
            raise NoCommonCodec(f"pbx cannot transcode {caller.codec} <-> {callee.codec}")
    direction = answer.media_direction(index)
    body = _caller_answer(offer, answer, index, caller_codec, caller_te, direction.value)
    return MediaPlan(body, caller, callee, untouched)


def _caller_codec(offered: list[Codec], chosen: Codec) -> Codec:
    same = next((c for c in offered if _same_format(c, chosen)), None)
    if same is not None:
        return same
    if _info(chosen) is None:
        raise NoCommonCodec(f"the callee chose {chosen.encoding}, which the caller did not offer")
    usable = next((c for c in offered if _info(c) is not None), None)
    if usable is None:
        names = ", ".join(c.encoding for c in offered) or "nothing"
        raise NoCommonCodec(f"the caller offered {names}: nothing pbx can transcode")
    return usable


def _format(codec: Codec, event: Codec | None, ptime: int | None) -> StreamFormat:
    info = _info(codec)
    return StreamFormat(
        codec=info.name if info is not None else codec.encoding,
        payload_type=codec.payload_type,
        clock_rate=codec.clock_rate,
        channels=codec.channels,
        fmtp=parse_fmtp(codec.fmtp or ""),
        ptime=ptime or DEFAULT_PTIME,
        telephone_event=None if event is None else event.payload_type,
        telephone_event_rate=8000 if event is None else event.clock_rate,
    )


def _relayable(a: StreamFormat, b: StreamFormat) -> bool:
    return (
        a.codec.casefold() == b.codec.casefold()
        and a.payload_type == b.payload_type
        and a.clock_rate == b.clock_rate
        and a.ptime == b.ptime
        and a.telephone_event == b.telephone_event
    )


def _caller_answer(
    offer: SessionDescription,
    answer: SessionDescription,
    index: int,
    codec: Codec,
    event: Codec | None,
    direction: str,
) -> bytes:
    """RFC 3264 §6.1: same m-lines in the same order, only the audio one accepted."""
    offered = offer.media[index]
    codecs = [codec] + ([event] if event is not None else [])
    attrs = [a for c in codecs for a in c.attributes()]
    if offered.ptime is not None:
        attrs.append(Attribute("ptime", str(offered.ptime)))
    attrs.append(Attribute(direction))
    accepted = MediaDescription(
        media=offered.media,
        port=answer.media[index].port,
        proto=offered.proto,
        formats=tuple(str(c.payload_type) for c in codecs),
        attributes=tuple(attrs),
    )
    streams = tuple(
        accepted
        if i == index
        else MediaDescription(media=m.media, port=0, proto=m.proto, formats=m.formats)
        for i, m in enumerate(offer.media)
    )
    result = SessionDescription(
        origin=answer.origin,
        session_name=answer.session_name,
        connection=answer.media_connection(index) or Connection.for_address(answer.origin.address),
        media=streams,
    )
    return bytes(result)


# --- pbx as one end of the negotiation --------------------------------------------------------


def own_offer(codecs: Sequence[str], prefer: StreamFormat | None = None) -> bytes:
    """pbx's own SDP offer (RFC 3264 §5) for a leg with no peer offer to build on.

    ``prefer`` (the format of the leg this one will be bridged to) comes first with its own
    payload type, so a phone that accepts it makes an untouched relay possible; then the codecs
    named in ``codecs`` (CODECS keys) with their static types or free dynamic ones, and
    telephone-event/8000 (``prefer``'s event type when it has one, else 101). Address and port
    are placeholders for anchor.rewrite.
    """
    chosen: list[Codec] = []
    used: set[int] = set()
    if prefer is not None:
        info = CODECS.get(prefer.codec)
        if info is not None:
            fmtp = ";".join(f"{k}={v}" for k, v in prefer.fmtp.items()) or None
            chosen.append(
                Codec(prefer.payload_type, info.name, info.clock_rate, info.channels, fmtp)
            )
            used.add(prefer.payload_type)
    event_pt = prefer.telephone_event if prefer is not None else None
    if event_pt is not None:
        used.add(event_pt)
    for name in codecs:
        info = CODECS.get(name) or next(
            (i for n, i in CODECS.items() if n.casefold() == name.casefold()), None
        )
        if info is None or any(c.encoding.casefold() == info.name.casefold() for c in chosen):
            continue
        pt = _free_payload_type(used, info.payload_type if info.payload_type is not None else 111)
        if pt is None:
            break
        chosen.append(Codec(pt, info.name, info.clock_rate, info.channels))
    if event_pt is None:
        event_pt = _free_payload_type(used, PREFERRED_EVENT_PT)
    if event_pt is not None:
        chosen.append(Codec(event_pt, TELEPHONE_EVENT, 8000, 1, TELEPHONE_EVENT_FMTP))
    attrs = [attr for codec in chosen for attr in codec.attributes()]
    attrs.append(Attribute("sendrecv"))
    media = MediaDescription(
        media="audio",
        port=9,
        proto="RTP/AVP",
        formats=tuple(str(c.payload_type) for c in chosen),
        attributes=tuple(attrs),
    )
    # a placeholder address (anchor.rewrite puts pbx's there; 0.0.0.0 would mean hold)
    desc = SessionDescription(
        origin=Origin("pbx", "1", 1, address="127.0.0.1"),
        session_name="pbx",
        connection=Connection.for_address("127.0.0.1"),
        media=(media,),
    )
    return bytes(desc)


def answer_locally(offer: bytes, prefer: str | None = None) -> MediaPlan:
    """pbx answers ``offer`` itself (RFC 3264 §6): the codec ``prefer`` (a CODECS key) when
    offered, else the phone's first codec pbx can code; telephone-event when offered. Raises
    :class:`NegotiationError` when nothing offered can be coded by pbx."""
    desc = _parse(offer)
    index = None if desc is None else _first_audio(desc)
    if desc is None or index is None:
        raise UnusableSdp("the offer has no audio stream")
    offered = _audio_codecs(desc.media[index])
    usable = [c for c in offered if _info(c) is not None]
    if not usable:
        names = ", ".join(c.encoding for c in offered) or "nothing"
        raise NoCommonCodec(f"pbx cannot code what was offered ({names})")
    first = next((c for c in usable if prefer and _info(c).name == prefer), usable[0])  # type: ignore[union-attr]
    media = desc.media[index]
    event = _event_codec(media, first.clock_rate)
    formats = [str(first.payload_type)] + ([str(event.payload_type)] if event else [])
    attrs = [a for a in media.attributes if a.name not in ("rtpmap", "fmtp")]
    attrs[:0] = [attr for codec in [first, *([event] if event else [])] for attr in codec.attributes()]
    chosen = replace(media, formats=tuple(formats), attributes=tuple(attrs))
    streams = list(desc.media)
    streams[index] = chosen
    # the phone's offer with only our codec: "answered" by an echo of it, which plan() turns
    # into the RFC 3264 answer and the stream format
    return plan(offer, bytes(replace(desc, media=tuple(streams))))


def offered_codecs(offer: bytes) -> list[str]:
    """The codecs pbx can code in ``offer``'s first audio stream (CODECS keys, in order)."""
    desc = _parse(offer)
    index = None if desc is None else _first_audio(desc)
    if desc is None or index is None:
        return []
    infos = (_info(c) for c in _audio_codecs(desc.media[index]))
    return [info.name for info in infos if info is not None]


def shared_codec(first: bytes, second: bytes) -> str | None:
    """The first codec of offer ``first`` that offer ``second`` has too (answering both
    with it lets pbx relay the pair untouched); None when they share none pbx can code."""
    theirs = set(offered_codecs(second))
    return next((codec for codec in offered_codecs(first) if codec in theirs), None)


def answered_format(offer: bytes, answer: bytes) -> StreamFormat:
    """The format a phone answered ``offer`` (pbx's own) with. Raises NegotiationError."""
    return plan(offer, answer).callee


__all__ = [
    "TRANSCODABLE",
    "MediaPlan",
    "NegotiationError",
    "NoCommonCodec",
    "StreamFormat",
    "UnusableSdp",
    "answer_locally",
    "answered_format",
    "offer_for_callee",
    "offered_codecs",
    "shared_codec",
    "own_offer",
    "plan",
]
