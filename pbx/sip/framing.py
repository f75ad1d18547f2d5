"""Message framing for stream transports (TCP, TLS): RFC 3261 §18.3, RFC 5626 §3.5.1.

Owns: cutting a byte stream into raw SIP messages by the empty line and Content-Length, and
recognising CRLF keep-alives. Buffers are bounded by Limits; any framing error is final (the
connection must be closed, RFC 3261 §18.3 / RFC 4475 §3.1.2.3).
Must not import: twisted, socket, sqlite3, flask, pbx.store (sans-IO: bytes in, frames out).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from pbx.sip.errors import MessageTooLarge, RemoteProtocolError
from pbx.sip.message import DEFAULT_LIMITS, Limits

__all__ = ["KEEPALIVE", "KeepAlive", "StreamFramer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class KeepAlive:
    """A double-CRLF ping between messages (RFC 5626 §3.5.1): answer with one CRLF."""


KEEPALIVE = KeepAlive()

_CONTENT_LENGTH_RE = re.compile(rb"\r\n(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.I)
_FOLD_RE = re.compile(rb"\r\n[ \t]+")
_PING = b"\r\n\r\n"


def _content_length(head: bytes) -> int:
    """Content-Length of a header section (mandatory on streams, RFC 3261 §18.3/§20.14)."""
    if b"\r\n " in head or b"\r\n\t" in head:
        head = _FOLD_RE.sub(b" ", head)
    values = _CONTENT_LENGTH_RE.findall(head)
    if not values:
        raise RemoteProtocolError("Content-Length is required on stream transports")
    if len(values) > 1:
        raise RemoteProtocolError("several Content-Length values")  # RFC 4475 §3.3.9
    value = values[0].strip(b" \t")
    if not value.isdigit() or len(value) > 10:
        raise RemoteProtocolError(f"bad Content-Length {value[:20]!r}")  # RFC 4475 §3.1.2.3
    return int(value)


class StreamFramer:
    """Feed stream bytes, get complete raw messages (and KeepAlive markers) back.

    Holds at most ``max_message_size`` octets of an unfinished header section plus
    ``max_body`` octets of body; once an error was raised every later feed raises too."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self._limits = limits
        self._buf = bytearray()
        self._scan = 0  # where the search for the end of the header section resumes
        self._need: int | None = None  # frame length once the header section is known
        self._error: RemoteProtocolError | None = None

    @property
    def buffered(self) -> int:
        """Octets held for an incomplete message."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        if self._error is not None:
            raise RemoteProtocolError(f"stream already failed: {self._error.detail}")
        self._buf += data
        out: list[bytes | KeepAlive] = []
        try:
            pos = 0
            while True:
                step = self._next(pos, out)
                if step == pos:
                    break
                pos = step
            if pos:
                del self._buf[:pos]
                if self._need is not None:
                    self._need -= pos
                self._scan = max(0, self._scan - pos)
        except RemoteProtocolError as exc:
            self._error = exc
            self._buf.clear()
            raise
        return out

    def _next(self, pos: int, out: list[bytes | KeepAlive]) -> int:
        """Consume one item starting at ``pos``; return the new position (== pos: need more)."""
        buf = self._buf
        if self._need is None:
            if buf.startswith(b"\r", pos) or buf.startswith(b"\n", pos):
                return self._keepalive(pos, out)
            end = buf.find(b"\r\n\r\n", max(pos, self._scan))
            if end < 0:
                if len(buf) - pos > self._limits.max_message_size:
                    raise MessageTooLarge("header section too long")
                self._scan = max(pos, len(buf) - 3)
                return pos
            if end - pos > self._limits.max_message_size:
                raise MessageTooLarge("header section too long")
            length = _content_length(bytes(buf[pos:end]))
            if length > self._limits.max_body:
                raise MessageTooLarge(f"Content-Length {length}")
            self._need = end + 4 + length
            self._scan = 0
        if len(buf) < self._need:
            return pos
        out.append(bytes(buf[pos : self._need]))
        pos, self._need = self._need, None
        return pos

    def _keepalive(self, pos: int, out: list[bytes | KeepAlive]) -> int:
        head = bytes(self._buf[pos : pos + 4])
        if head == _PING:
            out.append(KEEPALIVE)
            return pos + 4
        if _PING.startswith(head):
            return pos  # "\r", "\r\n", "\r\n\r": wait to see whether a ping follows
        if head.startswith(b"\r\n"):
            return pos + 2  # a lone CRLF: the pong of RFC 5626 §3.5.1, ignored
        return pos + 1  # a stray CR or LF before a start line (RFC 3261 §7.5)
