"""Codec registry: which audio codecs pbx can transcode, keyed by SDP encoding name.

Owns: :data:`CODECS` (facts an SDP offer/answer needs: clock rate, channels, static payload
type, PCM rates each codec can produce) and the factories :func:`get_encoder` /
:func:`get_decoder`. Encoding names are case-insensitive (RFC 4855 §3), so lookups fold case;
:data:`CODECS` keys are the canonical spellings. telephone-event is not an audio codec and
lives in :mod:`pbx.media.dtmf`.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .base import Decoder, Encoder
from .g711 import G711Decoder, G711Encoder
from .g722 import G722Decoder, G722Encoder
from .opus import OpusDecoder, OpusEncoder

log = logging.getLogger(__name__)

__all__ = [
    "CODECS",
    "CodecInfo",
    "Decoder",
    "Encoder",
    "UnsupportedCodec",
    "get_decoder",
    "get_encoder",
    "parse_fmtp",
]


class UnsupportedCodec(LookupError):
    """No codec of that encoding name is registered."""


@dataclass(frozen=True, slots=True)
class CodecInfo:
    """What SDP needs to know about one codec (RFC 3551 table 4, RFC 7587 §7)."""

    name: str
    clock_rate: int
    channels: int
    payload_type: int | None  # static payload type, None for dynamic ones
    sample_rates: tuple[int, ...]  # PCM rates the library codes at; the first is native

    @property
    def sample_rate(self) -> int:
        return self.sample_rates[0]


CODECS: Mapping[str, CodecInfo] = MappingProxyType(
    {
        "PCMU": CodecInfo("PCMU", 8000, 1, 0, (8000,)),
        "PCMA": CodecInfo("PCMA", 8000, 1, 8, (8000,)),
        "G722": CodecInfo("G722", 8000, 1, 9, (16000, 8000)),
        "opus": CodecInfo("opus", 48000, 2, None, (48000, 24000, 16000, 12000, 8000)),
    }
)

_EncoderFactory = Callable[[int, Mapping[str, str]], Encoder]
_DecoderFactory = Callable[[int, Mapping[str, str]], Decoder]

_ENCODERS: dict[str, _EncoderFactory] = {
    "PCMU": lambda rate, fmtp: G711Encoder("PCMU"),
    "PCMA": lambda rate, fmtp: G711Encoder("PCMA"),
    "G722": lambda rate, fmtp: G722Encoder(rate),
    "opus": lambda rate, fmtp: OpusEncoder(rate, fmtp),
}
_DECODERS: dict[str, _DecoderFactory] = {
    "PCMU": lambda rate, fmtp: G711Decoder("PCMU"),
    "PCMA": lambda rate, fmtp: G711Decoder("PCMA"),
    "G722": lambda rate, fmtp: G722Decoder(rate),
    "opus": lambda rate, fmtp: OpusDecoder(rate),
}
_BY_FOLDED = {name.casefold(): name for name in CODECS}


def _resolve(name: str, sample_rate: int | None) -> tuple[str, int]:
    canonical = _BY_FOLDED.get(name.casefold())
    if canonical is None:
        raise UnsupportedCodec(f"unsupported codec {name!r}")
    info = CODECS[canonical]
    rate = info.sample_rate if sample_rate is None else sample_rate
    if rate not in info.sample_rates:
        raise ValueError(f"{canonical} cannot code PCM at {rate} Hz ({info.sample_rates})")
    return canonical, rate


def get_encoder(
    name: str, fmtp: Mapping[str, str] | None = None, *, sample_rate: int | None = None
) -> Encoder:
    """An encoder for SDP encoding ``name``, taking PCM at ``sample_rate`` (default: native).

    ``fmtp`` are the *remote* party's format parameters (what it is able to receive).
    """
    canonical, rate = _resolve(name, sample_rate)
    return _ENCODERS[canonical](rate, fmtp or {})


def get_decoder(
    name: str, fmtp: Mapping[str, str] | None = None, *, sample_rate: int | None = None
) -> Decoder:
    """A decoder for SDP encoding ``name``, producing PCM at ``sample_rate`` (default: native)."""
    canonical, rate = _resolve(name, sample_rate)
    return _DECODERS[canonical](rate, fmtp or {})


def parse_fmtp(text: str) -> dict[str, str]:
    """``"maxaveragebitrate=20000; useinbandfec=1"`` -> dict (RFC 4566 §6 a=fmtp value).

    Keys are lower-cased; a parameter without ``=`` maps to ``""``.
    """
    params: dict[str, str] = {}
    for item in text.split(";"):
        key, _, value = item.strip().partition("=")
        if key:
            params[key.strip().lower()] = value.strip()
    return params
