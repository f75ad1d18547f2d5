"""Media anchoring of SDP bodies: where a phone's media is, and pointing it at pbx instead.

Built on :mod:`pbx.media.sdp` and :mod:`pbx.media.offer_answer`. :func:`remote` reads the
address and ports of the first audio stream (an IP literal only: a host name is never resolved
here); :func:`rewrite` returns the body with that stream
pointed at one of pbx's media legs (c=, m= port, a=rtcp) and the o= version increased
(RFC 3264 §8). Codecs, telephone-event, direction and crypto pass unchanged, so the two phones
negotiate end to end and packets are relayed untouched. Other streams are refused (port 0):
pbx relays one audio stream per call for now. A body that does not parse is passed through
unchanged by :func:`rewrite` (the phone then gets what it sent) and has no :func:`remote`.

SRTP is terminated per leg (pbx.media.sdes, pbx.media.srtp): :func:`srtp_offered` reads a
phone's SDES offer and makes pbx's own key for the answer (:func:`secure`), :func:`plain`
makes an offer plain RTP/AVP for a phone that gets no SRTP, :func:`secure_offer` offers SRTP
with fresh keys and :func:`srtp_answered` matches the phone's answer to it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
from collections.abc import Callable

from pbx.media import sdes
from pbx.media.offer_answer import rewrite_connection
from pbx.media.relay import MediaLeg
from pbx.media.sdes import CryptoAttribute
from pbx.media.sdp import SessionDescription, parse_or_none

log = logging.getLogger(__name__)


_parse = parse_or_none


def _first_audio(desc: SessionDescription) -> int | None:
    for index, media in enumerate(desc.media):
        if media.media == "audio" and media.port:
            return index
    return None


def _is_ip_literal(address: str) -> bool:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return False
    return True


def _audio(body: bytes) -> tuple[SessionDescription, int] | None:
    """``body`` parsed with the index of its first audio stream; None without one."""
    desc = _parse(body)
    index = None if desc is None else _first_audio(desc)
    return None if desc is None or index is None else (desc, index)


def remote(body: bytes) -> tuple[str, int, int | None] | None:
    """(address, rtp port, RFC 3605 rtcp port or None) of the first audio stream; None when
    there is none or it is on hold with the RFC 2543 address 0.0.0.0."""
    found = _audio(body)
    if found is None:
        return None
    desc, index = found
    connection = desc.media_connection(index)
    if connection is None or connection.address in ("0.0.0.0", "::"):
        return None
    if not _is_ip_literal(connection.address):
        # a host name (RFC 4566 allows one): never resolved on the reactor; the phone's first
        # packet from its signalling address latches its media instead
        log.info(
            "SDP address %r is not an IP address: media waits for the phone", connection.address
        )
        return None
    media = desc.media[index]
    rtcp = media.rtcp
    return connection.address, media.port, rtcp.port if rtcp is not None else None


def rewrite(body: bytes, address: str, media: MediaLeg | None) -> bytes:
    """``body`` with its first audio stream pointed at ``media``'s ports on ``address``."""
    desc = rewritten(body, address, media)
    return body if desc is None else desc.serialize().encode()


def rewritten(body: bytes, address: str, media: MediaLeg | None) -> SessionDescription | None:
    """:func:`rewrite` as a description (None when ``body`` has no audio stream or there
    is no media leg), for a caller that changes it further before it is serialised."""
    found = None if media is None else _audio(body)
    if found is None or media is None:
        return None
    desc, index = found
    streams = tuple(
        m if i == index or m.port == 0 else dataclasses.replace(m, port=0)
        for i, m in enumerate(desc.media)
    )
    desc = dataclasses.replace(desc, media=streams)
    anchored = rewrite_connection(desc, address, {index: media.local_ports})
    origin = anchored.origin
    bumped = dataclasses.replace(
        origin,
        session_version=origin.session_version + 1,
        addrtype="IP6" if ":" in address else "IP4",
        address=address,
    )
    return dataclasses.replace(anchored, origin=bumped)


@dataclasses.dataclass(frozen=True)
class SrtpTerms:
    """SDES keys of one leg: the phone's (``theirs``), pbx's (``ours``), the RTP profile."""

    theirs: CryptoAttribute
    ours: CryptoAttribute
    proto: str


def offers_srtp(body: bytes) -> bool:
    """Whether the first audio stream of ``body`` is SRTP only (RTP/SAVP or RTP/SAVPF)."""
    found = _audio(body)
    return found is not None and found[0].media[found[1]].proto in sdes.SECURE_PROTOS


def srtp_offered(body: bytes) -> SrtpTerms | None:
    """The SDES terms for answering ``body`` when its first audio stream is SRTP (None for
    plain RTP). Raises :class:`SdesError` for an SRTP offer without a usable a=crypto line
    (the caller then gets 488)."""
    found = _audio(body)
    if found is None:
        return None
    desc, index = found
    proto = desc.media[index].proto
    if proto not in sdes.SECURE_PROTOS:
        return None
    theirs, ours = sdes.accept_offer(desc, index)
    return SrtpTerms(theirs, ours, proto)


def _on_first_audio(
    body: bytes, change: Callable[[SessionDescription, int], SessionDescription]
) -> bytes:
    found = _audio(body)
    if found is None:
        return body
    return change(*found).serialize().encode()


def plain(body: bytes) -> bytes:
    """``body`` with its first audio stream as plain RTP/AVP without a=crypto lines."""
    found = _audio(body)
    if found is not None:
        media = found[0].media[found[1]]
        if media.proto == sdes.PLAIN_PROTO and all(a.name != "crypto" for a in media.attributes):
            return body  # already plain: not serialised again
    return _on_first_audio(body, sdes.strip_crypto)


def secure(body: bytes, terms: SrtpTerms) -> bytes:
    """The answer ``body`` made SRTP with pbx's key of ``terms`` and the offer's profile."""
    return _on_first_audio(
        body, lambda desc, index: sdes.secure_stream(desc, index, terms.ours, proto=terms.proto)
    )


def secure_offer(body: bytes) -> tuple[bytes, list[CryptoAttribute]]:
    """``body`` offered as SRTP (RTP/SAVP) with fresh pbx keys; returns them too."""
    offered = sdes.make_offer_crypto()
    return _on_first_audio(
        body, lambda desc, index: sdes.secure_stream(desc, index, offered)
    ), offered


def srtp_answered(body: bytes, offered: list[CryptoAttribute]) -> SrtpTerms | None:
    """The SDES terms a phone's answer accepted from ``offered``; None when it answered plain
    RTP. Raises :class:`SdesError` when the answer's crypto does not match the offer."""
    found = _audio(body)
    if found is None:
        return None
    desc, index = found
    proto = desc.media[index].proto
    if proto not in sdes.SECURE_PROTOS:
        return None
    ours, theirs = sdes.accept_answer(offered, desc, index)
    return SrtpTerms(theirs, ours, proto)
