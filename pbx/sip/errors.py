"""Exception hierarchy of the SIP stack.

Owns: every exception the sans-IO SIP layers raise, each carrying the SIP status code and
reason phrase to answer with (RFC 3261 §21).
Must not import: twisted, socket, sqlite3, flask, pbx.store (pure data, no I/O).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pbx.sip.message import Request

__all__ = [
    "LocalProtocolError",
    "MessageTooLarge",
    "RemoteProtocolError",
    "SipError",
    "UnsupportedUriScheme",
    "VersionNotSupported",
]


class SipError(Exception):
    """Base class: carries the SIP status (and reason phrase) to answer with."""

    status: int = 500
    reason: str = "Server Internal Error"

    def __init__(
        self, detail: str = "", *, status: int | None = None, reason: str | None = None
    ) -> None:
        super().__init__(detail or self.reason)
        self.detail = detail
        if status is not None:
            self.status = status
            if reason is None and status != type(self).status:
                reason = _standard_reason(status)
        if reason is not None:
            self.reason = reason

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status} {self.reason}: {self.detail!r})"


class RemoteProtocolError(SipError):
    """The peer sent something invalid; answer 400 Bad Request by default.

    ``partial`` is the request as far as it could be parsed (start line and header section,
    RFC 3261 §8.2.6 needs Via/From/To/Call-ID/CSeq to build a response), or None when not even
    the header section could be delimited (or the message was a response): then drop it.
    """

    status = 400
    reason = "Bad Request"

    def __init__(
        self,
        detail: str = "",
        *,
        status: int | None = None,
        reason: str | None = None,
        partial: Request | None = None,
    ) -> None:
        super().__init__(detail, status=status, reason=reason)
        self.partial: Request | None = partial


class MessageTooLarge(RemoteProtocolError):
    """RFC 3261 §21.5.14: 513 Message Too Large."""

    status = 513
    reason = "Message Too Large"


class UnsupportedUriScheme(RemoteProtocolError):
    """RFC 3261 §21.4.14 / §8.2.2.1: 416 Unsupported URI Scheme."""

    status = 416
    reason = "Unsupported URI Scheme"


class VersionNotSupported(RemoteProtocolError):
    """RFC 3261 §21.5.6: 505 Version Not Supported."""

    status = 505
    reason = "Version Not Supported"


class LocalProtocolError(SipError):
    """Our own misuse of the API (a bug in the caller); never answered on the wire."""

    status = 500
    reason = "Server Internal Error"


def _standard_reason(status: int) -> str:
    """The RFC 3261 §21 reason phrase for ``status`` (message.py owns the table)."""
    from pbx.sip.message import REASONS

    return REASONS.get(status, "Unknown")
