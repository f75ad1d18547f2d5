"""SDP offer/answer for a media-anchoring B2BUA (RFC 3264) on top of :mod:`pbx.media.sdp`.

Owns: :func:`rewrite_connection` (point a description at our anchored address and ports),
:class:`SdpVersioner` (the ``o=`` line we keep per leg, RFC 3264 §8), :func:`answer` (the
answerer's rules of RFC 3264 §6: codecs, telephone-event, directions, rejected streams) and
hold detection (:func:`hold_state`, RFC 3264 §8.4 and the RFC 2543 ``c=0.0.0.0`` style).
Split from :mod:`pbx.media.sdp` (the model and wire format) to keep each module small.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace
from typing import Literal

from pbx.media.sdp import (
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    Origin,
    RtcpAttribute,
    SessionDescription,
)

log = logging.getLogger(__name__)

HOLD_ADDRESSES = frozenset({"0.0.0.0", "::"})  # RFC 2543 §B.5 style hold (and its IPv6 twin)
# Attributes dropped when media is anchored: they describe the phone's own addresses (RFC 8839).
ICE_ATTRIBUTES = frozenset(
    {"candidate", "remote-candidates", "end-of-candidates", "ice-ufrag", "ice-pwd"}
    | {"ice-options", "ice-lite", "ice-mismatch"}
)


class HoldState(enum.Enum):
    """Whether a description puts the call on hold (RFC 3264 §8.4)."""

    ACTIVE = "active"
    HELD = "held"  # a=sendonly: the holder may still send music on hold
    INACTIVE = "inactive"  # a=inactive or c=0.0.0.0: nothing flows


# --- anchoring ------------------------------------------------------------------------------


def rewrite_connection(
    desc: SessionDescription,
    address: str,
    ports_by_media_index: Mapping[int, int | tuple[int, int]],
) -> SessionDescription:
    """Point every accepted stream at our ``address`` and anchored ports.

    Each ``ports_by_media_index`` value is the RTP port or an (RTP, RTCP) pair; without a pair,
    RTCP is on RTP + 1 (RFC 3550 §11). Session- and media-level c= lines are rewritten, as is
    an ``a=rtcp`` port (RFC 3605), except that a hold address ``0.0.0.0`` stays (RFC 2543
    hold must reach the other leg). Rejected m-lines (port 0) stay as they are; ICE attributes
    are dropped because they name the phone's own addresses. ``o=`` is left to SdpVersioner.
    """
    ours = Connection.for_address(address)
    session = None if desc.connection is None else _anchor(desc.connection, ours)
    if session is None and any(not m.connections for m in desc.media if m.port):
        session = ours
    media = tuple(
        _rewrite_media(m, i, ours, ports_by_media_index) for i, m in enumerate(desc.media)
    )
    attributes = tuple(a for a in desc.attributes if a.name not in ICE_ATTRIBUTES)
    return replace(desc, connection=session, media=media, attributes=attributes)


def _anchor(old: Connection, ours: Connection) -> Connection:
    return old if old.address in HOLD_ADDRESSES else ours


def _rewrite_media(
    media: MediaDescription,
    index: int,
    ours: Connection,
    ports: Mapping[int, int | tuple[int, int]],
) -> MediaDescription:
    if media.port == 0:
        return media
    if index not in ports:
        raise ValueError(f"no anchored port for m-line {index}")
    pair = ports[index]
    rtp, rtcp = pair if isinstance(pair, tuple) else (pair, pair + 1)
    attributes = []
    for attr in media.attributes:
        if attr.name == "rtcp":
            old = RtcpAttribute.parse(attr.value or "")
            conn = old.connection and _anchor(old.connection, ours)
            attr = Attribute("rtcp", str(RtcpAttribute(rtcp, conn)))
        if attr.name not in ICE_ATTRIBUTES:
            attributes.append(attr)
    connections = tuple(_anchor(c, ours) for c in media.connections)
    return replace(
        media, port=rtp, connections=connections, attributes=tuple(attributes), port_count=None
    )


class SdpVersioner:
    """Keeps the ``o=`` line of the descriptions we send on one leg (RFC 3264 §8).

    The first description fixes username, session id and version (the given ``username``,
    ``session_id`` and ``address`` override the description's own). Later ones keep that
    origin; the version goes up by one exactly when the description changed, as §8 requires:
    "If the version in the origin line does not increment, the SDP MUST be identical".
    """

    def __init__(
        self, username: str | None = None, session_id: str | None = None, address: str | None = None
    ) -> None:
        self._overrides = (username, session_id, address)
        # what was last sent, as its origin and its bytes: a parsed description per leg
        # would cost ~2 kB for every call held (bench/hold)
        self._origin: Origin | None = None
        self._body = b""

    @property
    def origin(self) -> Origin | None:
        return self._origin

    def stamp(self, desc: SessionDescription) -> SessionDescription:
        """``desc`` with this leg's origin; the version goes up when the content changed."""
        return self._stamp(desc)[0]

    def stamp_bytes(self, desc: SessionDescription) -> bytes:
        """:meth:`stamp`, serialised (an unchanged description is serialised once)."""
        return self._stamp(desc)[1]

    def _stamp(self, desc: SessionDescription) -> tuple[SessionDescription, bytes]:
        if self._origin is None:
            stamped = replace(desc, origin=_override(desc.origin, *self._overrides))
            body = bytes(stamped)
        else:
            stamped = replace(desc, origin=self._origin)
            body = bytes(stamped)
            if body != self._body:
                origin = self._origin
                stamped = replace(
                    desc, origin=replace(origin, session_version=origin.session_version + 1)
                )
                body = bytes(stamped)
        self._origin, self._body = stamped.origin, body
        return stamped, body


def _override(origin: Origin, username: str | None, sid: str | None, addr: str | None) -> Origin:
    if addr is not None:
        conn = Connection.for_address(addr)
        origin = replace(origin, nettype=conn.nettype, addrtype=conn.addrtype, address=addr)
    return replace(
        origin, username=username or origin.username, session_id=sid or origin.session_id
    )


# --- offer/answer (RFC 3264 §6) -------------------------------------------------------------


def answer(
    offer: SessionDescription,
    supported_codecs: Sequence[Codec],
    prefer: Literal["offerer", "ours"] = "offerer",
    *,
    direction: Direction = Direction.SENDRECV,
    max_codecs: int | None = None,
    protos: Collection[str] = ("RTP/AVP",),
    origin: Origin | None = None,
    address: str | None = None,
    ports: Mapping[int, int | tuple[int, int]] | None = None,
) -> SessionDescription:
    """Answer ``offer`` with the codecs we support (RFC 3264 §6.1).

    Keeps the number and order of m-lines; an audio stream in one of ``protos`` with a common
    codec is accepted with the offerer's payload type numbers, in the offerer's order or in
    ``supported_codecs`` order (``prefer="ours"``), at most ``max_codecs`` of them; one
    telephone-event (RFC 4733 §7.1.1: the clock rate of the first chosen codec) is added
    when both sides have it. Any other stream is rejected with port 0 (§6). Directions follow
    :meth:`Direction.answer`; the offer's ptime is echoed. Given ``address`` and ``ports``,
    the answer is anchored with :func:`rewrite_connection`; otherwise c= and ports are the
    offer's, as placeholders. Stamp the ``o=`` line with an :class:`SdpVersioner`.
    """
    if prefer not in ("offerer", "ours"):
        raise ValueError(f"prefer must be 'offerer' or 'ours', not {prefer!r}")
    media = []
    for index, offered in enumerate(offer.media):
        codecs: list[Codec] = []
        if offered.port and offered.media == "audio" and offered.proto in protos:
            codecs = _choose(offered.codecs(), supported_codecs, prefer, max_codecs)
        if codecs:
            wanted = offer.media_direction(index).answer(direction)
            media.append(_accepted(offered, codecs, wanted))
        else:
            media.append(
                MediaDescription(
                    media=offered.media, port=0, proto=offered.proto, formats=offered.formats
                )
            )
    conn = offer.connection
    result = SessionDescription(
        origin=origin or Origin("-", "0", 0, address=(conn.address if conn else "0.0.0.0")),
        connection=conn,
        media=tuple(media),
    )
    if address is not None and ports is not None:
        result = rewrite_connection(result, address, ports)
    return result


def _choose(
    offered: Sequence[Codec], ours: Sequence[Codec], prefer: str, limit: int | None
) -> list[Codec]:
    pairs = []
    for codec in offered:
        mine = next((c for c in ours if c.matches(codec)), None)
        if mine is not None and not codec.is_telephone_event:
            fmtp = codec.fmtp if mine.fmtp is None else mine.fmtp
            pairs.append((ours.index(mine), replace(codec, fmtp=fmtp)))
    if prefer == "ours":
        pairs.sort(key=lambda pair: pair[0])
    chosen = [codec for _, codec in pairs][:limit]
    if not chosen:
        return []
    events = [c for c in offered if c.is_telephone_event and c.clock_rate == chosen[0].clock_rate]
    mine = next((c for c in ours if events and c.matches(events[0])), None)
    if mine is not None:
        chosen.append(replace(events[0], fmtp=events[0].fmtp if mine.fmtp is None else mine.fmtp))
    return chosen


def _accepted(
    offered: MediaDescription, codecs: list[Codec], wanted: Direction
) -> MediaDescription:
    attributes = [attr for codec in codecs for attr in codec.attributes()]
    if offered.ptime is not None:
        attributes.append(Attribute("ptime", str(offered.ptime)))
    attributes.append(Attribute(wanted.value))
    return MediaDescription(
        media=offered.media,
        port=offered.port,
        proto=offered.proto,
        formats=tuple(str(codec.payload_type) for codec in codecs),
        connections=offered.connections,
        attributes=tuple(attributes),
    )


# --- hold (RFC 3264 §8.4) -------------------------------------------------------------------


def media_hold_state(desc: SessionDescription, index: int) -> HoldState:
    """Hold state of one m-line: sendonly is held, inactive or c=0.0.0.0 is inactive."""
    connection = desc.media_connection(index)
    direction = desc.media_direction(index)
    if direction is Direction.INACTIVE or (connection and connection.address in HOLD_ADDRESSES):
        return HoldState.INACTIVE
    return HoldState.HELD if direction is Direction.SENDONLY else HoldState.ACTIVE


def hold_state(desc: SessionDescription) -> HoldState:
    """HELD or INACTIVE when every accepted stream is on hold; ACTIVE otherwise."""
    states = {media_hold_state(desc, i) for i, m in enumerate(desc.media) if m.port}
    if not states or HoldState.ACTIVE in states:
        return HoldState.ACTIVE
    return HoldState.HELD if states == {HoldState.HELD} else HoldState.INACTIVE
