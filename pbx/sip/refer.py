"""REFER and Replaces: the SIP parts of call transfer (RFC 3515, RFC 3891, RFC 4488, RFC 3420).

Owns: :func:`parse_refer` (a REFER's Refer-To target, the Replaces it may embed for an
attended transfer, Referred-By and the RFC 4488 ``Refer-Sub`` choice), :func:`parse_replaces`
(a ``Replaces`` header value, RFC 3891 §6.1), :class:`Replaces` with the dialog id it names as
seen from the receiving side, and :func:`sipfrag` (the ``message/sipfrag`` status line a NOTIFY
reports transfer progress with, RFC 3515 §2.4.5 / RFC 3420).

Sans-IO: strings in, dataclasses out; wire errors raise :class:`RemoteProtocolError` (400).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pbx.sip.errors import RemoteProtocolError
from pbx.sip.headers import NameAddr
from pbx.sip.message import Request
from pbx.sip.uri import SipUri

SIPFRAG = "message/sipfrag;version=2.0"


@dataclass(frozen=True, slots=True)
class Replaces:
    """The dialog a Replaces value names (RFC 3891 §3). ``to_tag`` is the tag of the UA that
    receives the request (its local tag), ``from_tag`` the remote one."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False

    @property
    def dialog_id(self) -> tuple[str, str, str]:
        """(Call-ID, local tag, remote tag) of the dialog at the receiving UA."""
        return (self.call_id, self.to_tag, self.from_tag)


@dataclass(frozen=True, slots=True)
class Refer:
    """What a REFER asks (RFC 3515 §2.4.1): ``target`` is the Refer-To URI without its
    headers; ``number`` its user part; ``replaces`` set for an attended transfer."""

    target: SipUri
    number: str
    replaces: Replaces | None
    referred_by: str | None
    subscribe: bool  # False: Refer-Sub: false (RFC 4488), no NOTIFYs wanted


def parse_replaces(value: str) -> Replaces:
    """``callid;to-tag=x;from-tag=y[;early-only]`` (RFC 3891 §6.1)."""
    parts = [part.strip() for part in value.split(";")]
    call_id = parts[0]
    if not call_id:
        raise RemoteProtocolError("Replaces without a Call-ID")
    params: dict[str, str | None] = {}
    for part in parts[1:]:
        name, sep, arg = part.partition("=")
        params[name.strip().lower()] = arg.strip() if sep else None
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not to_tag or not from_tag:
        raise RemoteProtocolError("Replaces needs to-tag and from-tag")
    return Replaces(call_id, to_tag, from_tag, "early-only" in params)


def parse_refer(request: Request) -> Refer:
    """The transfer a REFER asks for; RemoteProtocolError (400) for a missing or bad
    Refer-To (RFC 3515 §2.4.1: exactly one)."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise RemoteProtocolError("a REFER needs exactly one Refer-To")
    target = NameAddr.parse(values[0]).uri
    if not isinstance(target, SipUri):
        raise RemoteProtocolError("Refer-To must be a sip: or sips: URI")
    replaces = None
    for name, value in target.headers:  # stored unescaped by pbx.sip.uri
        if name.lower() == "replaces":
            replaces = parse_replaces(value)
    plain = replace(target, headers=(), password=None)
    refer_sub = (request.headers.get("Refer-Sub") or "true").strip().lower()
    return Refer(
        target=plain,
        number=target.user or "",
        replaces=replaces,
        referred_by=request.headers.get("Referred-By"),
        subscribe=refer_sub != "false",
    )


def sipfrag(status: int, reason: str) -> bytes:
    """The body of a transfer-progress NOTIFY: the status line of the referred request."""
    return f"SIP/2.0 {status} {reason}\r\n".encode()


__all__ = ["SIPFRAG", "Refer", "Replaces", "parse_refer", "parse_replaces", "sipfrag"]
