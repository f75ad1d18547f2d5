"""SDES key exchange for SRTP in SDP (RFC 4568): the ``a=crypto`` value and the offer/answer
steps pbx needs to terminate SRTP on one leg of an anchored call.

Owns: :class:`CryptoSuite` and :data:`SUITES` (the suites pbx can run through libsrtp:
RFC 4568 §6.2 AES-CM with HMAC-SHA1 and RFC 7714 §14.2 AES-GCM), :class:`CryptoAttribute`
(``parse``/``serialize`` of ``<tag> <suite> inline:<key||salt>[|<lifetime>][|<MKI>:<length>]
[<session-param>]*``, RFC 4568 §9.1) and helpers on :mod:`pbx.media.sdp` descriptions:
:func:`is_secure`, :func:`accept_offer` / :func:`secure_stream` (answering an SRTP offer with
our own key), :func:`make_offer_crypto` / :func:`accept_answer` (offering SRTP) and
:func:`strip_crypto` (the plain RTP/AVP offer for the other leg). Fresh keys come from
:mod:`secrets`; packet protection itself is :mod:`pbx.media.srtp` (libsrtp).

Sans-IO: must not import twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import binascii
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, replace

from pbx.media.sdp import Attribute, MediaDescription, SessionDescription

log = logging.getLogger(__name__)

SECURE_PROTOS = ("RTP/SAVP", "RTP/SAVPF")  # RFC 3711 §12, RFC 5124
PLAIN_PROTO = "RTP/AVP"
_PLAIN_PROTO = PLAIN_PROTO

_TAG = re.compile(r"[0-9]{1,9}")  # RFC 4568 §9.1: tag = 1*9DIGIT
_SUITE = re.compile(r"[A-Za-z0-9_]+")  # srtp-crypto-suite = 1*(ALPHA / DIGIT / "_")
_LIFETIME = re.compile(r"(2\^)?[0-9]+")  # lifetime = ["2^"] 1*(DIGIT)
_MKI = re.compile(r"([0-9]+):([0-9]{1,3})")  # mki-value ":" mki-length (1..128 bytes)
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# Session parameters pbx can honour (RFC 4568 §6.3): a window size hint needs nothing from us
# and a key derivation rate of 0 is libsrtp's only one. Any other one makes a line unusable.
_HARMLESS_PARAMS = re.compile(r"WSH=[0-9]+|KDR=0")


class SdesError(ValueError):
    """An SRTP offer or answer pbx cannot accept (the switch answers 488, RFC 4568 §7.1.2)."""


@dataclass(frozen=True, slots=True)
class CryptoSuite:
    """An SRTP crypto suite and its master key and salt lengths in bytes."""

    name: str
    key_length: int
    salt_length: int

    @property
    def key_salt_length(self) -> int:
        return self.key_length + self.salt_length


SUITES: dict[str, CryptoSuite] = {
    suite.name: suite
    for suite in (
        CryptoSuite("AES_CM_128_HMAC_SHA1_80", 16, 14),  # RFC 4568 §6.2.1
        CryptoSuite("AES_CM_128_HMAC_SHA1_32", 16, 14),  # RFC 4568 §6.2.2
        CryptoSuite("AEAD_AES_128_GCM", 16, 12),  # RFC 7714 §14.2
        CryptoSuite("AEAD_AES_256_GCM", 32, 12),  # RFC 7714 §14.2
    )
}
# What pbx offers to an SRTP phone, strongest first; the 80-bit tag is the one every phone has.
DEFAULT_OFFER_SUITES = ("AES_CM_128_HMAC_SHA1_80", "AES_CM_128_HMAC_SHA1_32")


@dataclass(frozen=True, slots=True)
class CryptoAttribute:
    """One ``a=crypto`` value (RFC 4568 §9.1) with an ``inline`` key.

    ``key`` is the decoded master key followed by the master salt. ``lifetime`` and ``mki``
    are kept as written (``"2^20"``, ``"1:4"``); ``other_keys`` holds further ``;``-separated
    key parameters (several master keys, §6.1) verbatim and ``session_params`` the session
    parameters (§6.3) verbatim, so :meth:`serialize` gives back what was parsed.
    """

    tag: int
    suite: str
    key: bytes
    lifetime: str | None = None
    mki: str | None = None
    session_params: tuple[str, ...] = ()
    other_keys: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> CryptoAttribute:
        """Parse the value after ``a=crypto:``; ``ValueError`` says what is wrong."""
        parts = text.strip().split()
        if len(parts) < 3:
            raise ValueError(f"crypto attribute needs tag, suite and key params: {text!r}")
        tag, suite, keys, *params = parts
        if not _TAG.fullmatch(tag):
            raise ValueError(f"crypto tag is not 1 to 9 digits: {tag!r}")
        if not _SUITE.fullmatch(suite):
            raise ValueError(f"crypto suite name is malformed: {suite!r}")
        first, *others = keys.split(";")
        key, lifetime, mki = _key_param(first, SUITES.get(suite))
        return cls(int(tag), suite, key, lifetime, mki, tuple(params), tuple(others))

    def serialize(self) -> str:
        """The ``a=crypto`` value: ``<tag> <suite> inline:<base64>[|lifetime][|mki] [params]``."""
        info = binascii.b2a_base64(self.key, newline=False).decode("ascii")
        info += "".join(f"|{field}" for field in (self.lifetime, self.mki) if field is not None)
        keys = ";".join((f"inline:{info}", *self.other_keys))
        return " ".join((str(self.tag), self.suite, keys, *self.session_params))

    def __str__(self) -> str:
        return self.serialize()

    @property
    def crypto_suite(self) -> CryptoSuite | None:
        return SUITES.get(self.suite)

    @property
    def master_key(self) -> bytes:
        suite = self.crypto_suite
        return self.key if suite is None else self.key[: suite.key_length]

    @property
    def master_salt(self) -> bytes:
        suite = self.crypto_suite
        return b"" if suite is None else self.key[suite.key_length :]

    @property
    def lifetime_packets(self) -> int | None:
        """The key lifetime in packets (``2^20`` is 1048576), None when not given (§6.1)."""
        if self.lifetime is None:
            return None
        if self.lifetime.startswith("2^"):
            return 1 << int(self.lifetime[2:])
        return int(self.lifetime)

    def unusable_reason(self) -> str | None:
        """Why pbx cannot run SRTP with this line, None when it can.

        libsrtp through pylibsrtp takes one master key without an MKI, and none of the
        session parameters that change the transforms (§6.3.1-6.3.6: unencrypted or
        unauthenticated SRTP/SRTCP, KDR other than 0, FEC).
        """
        if self.suite not in SUITES:
            return f"suite {self.suite} is not supported"
        if self.mki is not None or self.other_keys:
            return "MKI or several master keys are not supported"
        unknown = [p for p in self.session_params if not _HARMLESS_PARAMS.fullmatch(p)]
        if unknown:
            return f"session parameters {' '.join(unknown)} are not supported"
        return None

    @property
    def usable(self) -> bool:
        return self.unusable_reason() is None

    def fresh(self) -> CryptoAttribute:
        """Our answer to this line: same tag and suite, a new random key and salt (§6.1), no
        lifetime, MKI or session parameters."""
        suite = SUITES.get(self.suite)
        if suite is None:
            raise SdesError(f"crypto suite {self.suite} is not supported")
        return CryptoAttribute(self.tag, self.suite, secrets.token_bytes(suite.key_salt_length))


def _key_param(text: str, suite: CryptoSuite | None) -> tuple[bytes, str | None, str | None]:
    """``inline:<key||salt>[|lifetime][|MKI:length]`` (RFC 4568 §6.1, §9.1)."""
    method, sep, info = text.partition(":")
    if not sep or method != "inline":
        raise ValueError(f"crypto key method is not inline: {text!r}")
    encoded, *fields = info.split("|")
    if len(fields) > 2:
        raise ValueError(f"crypto key has too many |-fields: {info!r}")
    lifetime = mki = None
    for field in fields:
        if _MKI.fullmatch(field) and mki is None:
            length = int(field.partition(":")[2])
            if not 1 <= length <= 128:
                raise ValueError(f"crypto MKI length must be 1 to 128: {field!r}")
            mki = field
        elif _LIFETIME.fullmatch(field) and lifetime is None and mki is None:
            lifetime = field
        else:
            raise ValueError(f"crypto key field is neither lifetime nor MKI: {field!r}")
    if not _BASE64.fullmatch(encoded):
        raise ValueError(f"crypto key is not base64: {encoded!r}")
    try:  # padding is sometimes left out (RFC 4648 §3.2 allows specs to): put it back
        key = binascii.a2b_base64(encoded + "=" * (-len(encoded) % 4), strict_mode=True)
    except binascii.Error as exc:
        raise ValueError(f"crypto key is not base64 ({exc}): {encoded!r}") from None
    if suite is not None and len(key) != suite.key_salt_length:
        raise ValueError(
            f"{suite.name} needs {suite.key_salt_length} bytes of key and salt, got {len(key)}"
        )
    return key, lifetime, mki


# --- SDP offer/answer (RFC 4568 §7) ---------------------------------------------------------


def crypto_lines(desc: SessionDescription, index: int) -> list[CryptoAttribute]:
    """The ``a=crypto`` lines of m-line ``index`` that parse, in order (others are skipped:
    an offer may carry lines for suites or key methods we do not know)."""
    found = []
    for value in desc.media[index].attribute_values("crypto"):
        try:
            found.append(CryptoAttribute.parse(value))
        except ValueError as exc:
            log.debug("a=crypto skipped: %s", exc)
    return found


def is_secure(desc: SessionDescription, index: int) -> bool:
    """Whether m-line ``index`` is SRTP with SDES: an accepted RTP/SAVP or RTP/SAVPF stream
    with at least one ``a=crypto`` line pbx can use."""
    media = desc.media[index]
    return (
        media.port != 0
        and media.proto in SECURE_PROTOS
        and any(attr.usable for attr in crypto_lines(desc, index))
    )


def accept_offer(
    offer: SessionDescription, index: int, suites: Sequence[str] = tuple(SUITES)
) -> tuple[CryptoAttribute, CryptoAttribute]:
    """Choose the first offered ``a=crypto`` line pbx supports (RFC 4568 §7.1.2: the offerer's
    preference order) for m-line ``index``; returns (theirs, ours) where ours has the same tag
    and suite and a fresh key. Raises :class:`SdesError` when no line is usable."""
    offered = crypto_lines(offer, index)
    for attr in offered:
        reason = attr.unusable_reason()
        if reason is None and attr.suite in suites:
            return attr, attr.fresh()
        log.debug("a=crypto:%d not chosen: %s", attr.tag, reason or "suite not allowed")
    names = " ".join(a.suite for a in offered) or "none"
    raise SdesError(f"no usable a=crypto line in m-line {index} (offered: {names})")


def secure_stream(
    desc: SessionDescription,
    index: int,
    ours: CryptoAttribute | Sequence[CryptoAttribute],
    proto: str | None = None,
) -> SessionDescription:
    """``desc`` with m-line ``index`` made SRTP: its ``a=crypto`` lines replaced by ``ours``
    (one line in an answer, one or more in an offer) and its profile RTP/SAVP (RTP/SAVPF when it
    was a feedback profile), or ``proto`` when given: an answer must use the offer's (RFC 3264
    §6.1)."""
    lines = [ours] if isinstance(ours, CryptoAttribute) else list(ours)
    media = desc.media[index]
    if proto is None:
        proto = "RTP/SAVPF" if media.proto.endswith("PF") else "RTP/SAVP"
    attributes = tuple(a for a in media.attributes if a.name != "crypto")
    attributes += tuple(Attribute("crypto", attr.serialize()) for attr in lines)
    return _with_media(desc, index, replace(media, proto=proto, attributes=attributes))


def strip_crypto(desc: SessionDescription, index: int) -> SessionDescription:
    """``desc`` with m-line ``index`` as plain RTP/AVP without ``a=crypto`` lines: the offer
    pbx sends to a phone that does not do SRTP."""
    media = desc.media[index]
    attributes = tuple(a for a in media.attributes if a.name != "crypto")
    return _with_media(desc, index, replace(media, proto=_PLAIN_PROTO, attributes=attributes))


def make_offer_crypto(suites: Sequence[str] = DEFAULT_OFFER_SUITES) -> list[CryptoAttribute]:
    """Fresh ``a=crypto`` lines, tags 1..n in ``suites`` order, for offering SRTP (§7.1.1)."""
    unknown = [name for name in suites if name not in SUITES]
    if unknown or not suites:
        raise SdesError(f"cannot offer crypto suites {unknown or 'none'}")
    return [
        CryptoAttribute(tag, name, secrets.token_bytes(SUITES[name].key_salt_length))
        for tag, name in enumerate(suites, 1)
    ]


def accept_answer(
    offered: Sequence[CryptoAttribute], answer: SessionDescription, index: int
) -> tuple[CryptoAttribute, CryptoAttribute]:
    """Match the SRTP answer for m-line ``index`` to what we offered (RFC 4568 §7.1.3): exactly
    one ``a=crypto`` line whose tag is one of ours, with the same suite. Returns (ours, theirs);
    raises :class:`SdesError` when the answer cannot be used."""
    media = answer.media[index]
    if media.port == 0:
        raise SdesError(f"m-line {index} was rejected")
    if media.proto not in SECURE_PROTOS:
        raise SdesError(f"answer m-line {index} is {media.proto}, not SRTP")
    values = media.attribute_values("crypto")
    if len(values) != 1:
        raise SdesError(f"answer m-line {index} has {len(values)} a=crypto lines, not one")
    try:
        theirs = CryptoAttribute.parse(values[0])
    except ValueError as exc:
        raise SdesError(f"answer a=crypto: {exc}") from None
    ours = next((attr for attr in offered if attr.tag == theirs.tag), None)
    if ours is None or ours.suite != theirs.suite:
        raise SdesError(f"answer a=crypto:{theirs.tag} {theirs.suite} matches no offered line")
    reason = theirs.unusable_reason()
    if reason is not None:
        raise SdesError(f"answer a=crypto:{theirs.tag}: {reason}")
    return ours, theirs


def _with_media(
    desc: SessionDescription, index: int, media: MediaDescription
) -> SessionDescription:
    streams = list(desc.media)
    streams[index] = media
    return replace(desc, media=tuple(streams))
