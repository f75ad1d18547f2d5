"""SRTP termination on one media leg (RFC 3711) with keys from SDES (pbx.media.sdes).

Owns: :class:`SrtpContext`, the two libsrtp sessions of one leg (through pylibsrtp, never our
own crypto): one receiving with the phone's key (the ``a=crypto`` line the phone sent) and one
sending with ours (the line pbx sent), for RTP and RTCP; and :func:`secure_leg`, which sets
them as the ``unwrap``/``wrap`` hooks of a :class:`pbx.media.relay.MediaLeg`'s sockets, so
the relay unprotects what the phone sends and protects what goes to it, while the other leg
may stay plain RTP. A packet that fails authentication or the replay check (RFC 3711 §3.3.2)
is dropped and counted in :attr:`SrtpContext.stats`; nothing raises into the reactor.

Must not import at run time: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import pylibsrtp

from pbx.media.sdes import CryptoAttribute, SdesError

if TYPE_CHECKING:  # for the signature only: the relay is Twisted, this module is not
    from pbx.media.relay import MediaLeg

log = logging.getLogger(__name__)

_PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}
_RTP_MIN = 12  # fixed RTP header (RFC 3550 §5.1)
_RTCP_MIN = 8  # RTCP header and sender SSRC (RFC 3550 §6.4)


@dataclass
class SrtpStats:
    """Packet counters of one leg's SRTP context (read by status pages and tests)."""

    unprotected: int = 0  # packets from the phone that passed authentication
    protected: int = 0  # packets protected for the phone
    auth_failed: int = 0  # dropped: authentication tag wrong (tampered, wrong key)
    replayed: int = 0  # dropped: replay check (RFC 3711 §3.3.2)
    malformed: int = 0  # dropped: not a whole RTP/RTCP packet or another libsrtp error
    unprotectable: int = 0  # plain packets that could not be protected (dropped)


def _session(attr: CryptoAttribute, ssrc_type: int) -> pylibsrtp.Session:
    profile = _PROFILES.get(attr.suite)
    reason = attr.unusable_reason()
    if profile is None or reason is not None:
        raise SdesError(f"cannot run SRTP with a=crypto:{attr.tag} {attr.suite}: {reason}")
    policy = pylibsrtp.Policy(key=attr.key, ssrc_type=ssrc_type, srtp_profile=profile)
    return pylibsrtp.Session(policy)


def _is_rtcp(packet: bytes) -> bool:
    """RTCP on the RTP port (rtcp-mux): payload type byte 192..223 (RFC 5761 §4)."""
    return len(packet) > 1 and 192 <= packet[1] <= 223


class SrtpContext:
    """SRTP for one leg: ``inbound`` is the phone's key, ``outbound`` is pbx's key.

    Each direction is one libsrtp session whose policy applies to any SSRC (RFC 3711 §3.2.3:
    the stream's rollover counter and replay list are kept per SSRC), so a phone may change its
    SSRC (a transfer, a re-INVITE) without new keys.
    """

    def __init__(self, inbound: CryptoAttribute, outbound: CryptoAttribute) -> None:
        self.inbound = inbound
        self.outbound = outbound
        self._rx = _session(inbound, pylibsrtp.Policy.SSRC_ANY_INBOUND)
        self._tx = _session(outbound, pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        self.stats = SrtpStats()

    @property
    def dropped(self) -> int:
        stats = self.stats
        return stats.auth_failed + stats.replayed + stats.malformed

    def unprotect_rtp(self, packet: bytes) -> bytes | None:
        """SRTP from the phone -> RTP, or None (counted) when it must be dropped."""
        if _is_rtcp(packet):
            return self.unprotect_rtcp(packet)
        if len(packet) < _RTP_MIN:
            self.stats.malformed += 1
            return None
        return self._unprotect(self._rx.unprotect, packet, "RTP")

    def unprotect_rtcp(self, packet: bytes) -> bytes | None:
        """SRTCP from the phone -> RTCP, or None (counted) when it must be dropped."""
        if len(packet) < _RTCP_MIN:
            self.stats.malformed += 1
            return None
        return self._unprotect(self._rx.unprotect_rtcp, packet, "RTCP")

    def protect_rtp(self, packet: bytes) -> bytes:
        """RTP for the phone -> SRTP; ``b""`` (counted) when libsrtp refuses the packet."""
        if _is_rtcp(packet):
            return self.protect_rtcp(packet)
        if len(packet) < _RTP_MIN:
            self.stats.unprotectable += 1
            return b""
        return self._protect(self._tx.protect, packet, "RTP")

    def protect_rtcp(self, packet: bytes) -> bytes:
        """RTCP for the phone -> SRTCP; ``b""`` (counted) when libsrtp refuses the packet."""
        if len(packet) < _RTCP_MIN:
            self.stats.unprotectable += 1
            return b""
        return self._protect(self._tx.protect_rtcp, packet, "RTCP")

    def _unprotect(self, unprotect: _Transform, packet: bytes, kind: str) -> bytes | None:
        try:
            plain = unprotect(packet)
        except pylibsrtp.Error as exc:
            reason = str(exc)
            if reason.startswith("authentication"):
                self.stats.auth_failed += 1
            elif reason.startswith("replay"):
                self.stats.replayed += 1
            else:
                self.stats.malformed += 1
            if self.dropped == 1:
                log.info(
                    "SRTP %s packet of %d bytes dropped: %s (more are only counted)",
                    kind,
                    len(packet),
                    reason,
                )
            return None
        except ValueError:  # longer than libsrtp's buffer
            self.stats.malformed += 1
            return None
        self.stats.unprotected += 1
        return plain

    def _protect(self, protect: _Transform, packet: bytes, kind: str) -> bytes:
        try:
            secured = protect(packet)
        except (pylibsrtp.Error, ValueError) as exc:
            self.stats.unprotectable += 1
            if self.stats.unprotectable == 1:
                log.info("%s packet not protected, dropped: %s", kind, exc)
            return b""
        self.stats.protected += 1
        return secured


class _Transform(Protocol):
    def __call__(self, packet: bytes, /) -> bytes: ...


def secure_leg(media_leg: MediaLeg, context: SrtpContext) -> None:
    """Terminate SRTP on ``media_leg`` (a :class:`pbx.media.relay.MediaLeg`): its sockets
    unprotect what the phone sends and protect what they send to it, RTP and RTCP."""
    media_leg.rtp.unwrap = context.unprotect_rtp
    media_leg.rtp.wrap = context.protect_rtp
    media_leg.rtcp.unwrap = context.unprotect_rtcp
    media_leg.rtcp.wrap = context.protect_rtcp


def unsecure_leg(media_leg: MediaLeg) -> None:
    """Back to plain RTP on ``media_leg`` (a re-INVITE that drops SRTP)."""
    for sock in (media_leg.rtp, media_leg.rtcp):
        sock.unwrap = None
        sock.wrap = None
