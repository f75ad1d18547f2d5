"""Static contacts: extensions reached at a fixed SIP URI instead of (or besides) a REGISTER.

Analog gateways, door stations and load generators often never register. An extension with a
static contact is called there as if it had registered that URI: :func:`static_binding` turns
it into a :class:`pbx.store.registrations.Binding` the switch forks to. The host must be an IP
literal (pbx never resolves names); the transport is UDP unless the URI says
``transport=tcp``/``tls`` (those need a connection the phone opened, pbx does not dial out
over streams yet). :func:`parse_static_contact` checks a URI an admin typed.

Must not import twisted, pbx.service or pbx.commands.
"""

from __future__ import annotations

import ipaddress
import logging

from pbx.sip.errors import SipError
from pbx.sip.uri import SipUri, parse_uri
from pbx.store.registrations import Binding

log = logging.getLogger(__name__)

TRANSPORTS = {"udp": "UDP", "tcp": "TCP", "tls": "TLS"}
STATIC_EXPIRES = 365 * 24 * 3600.0  # a static binding never expires; this is just far away


def parse_static_contact(text: str) -> SipUri:
    """``text`` as a sip:/sips: URI with an IP literal host; ValueError says what is wrong."""
    try:
        uri = parse_uri(text.strip())
    except SipError as exc:
        raise ValueError(f"{text!r} is not a SIP URI ({exc})") from None
    if not isinstance(uri, SipUri):
        raise ValueError(f"{text!r} is not a sip: or sips: URI")
    try:
        ipaddress.ip_address(uri.host.strip("[]"))
    except ValueError:
        raise ValueError(f"{text!r}: the host must be an IP address (no DNS)") from None
    transport = uri.transport or ("tls" if uri.scheme == "sips" else "udp")
    if transport not in TRANSPORTS:
        raise ValueError(f"{text!r}: unknown transport {transport!r} (udp, tcp or tls)")
    return uri


def static_binding(extension: str, contact: str, now: float) -> Binding | None:
    """The binding pbx forks to for a static contact (None, logged, when it is not valid)."""
    try:
        uri = parse_static_contact(contact)
    except ValueError as exc:
        log.warning("extension %s: static contact ignored: %s", extension, exc)
        return None
    transport = TRANSPORTS[uri.transport or ("tls" if uri.scheme == "sips" else "udp")]
    default_port = 5061 if transport == "TLS" else 5060
    return Binding(
        extension=extension,
        contact=str(uri),
        expires_at=now + STATIC_EXPIRES,
        call_id="",
        cseq=0,
        transport=transport,
        source_host=uri.host.strip("[]"),
        source_port=uri.port or default_port,
        user_agent="static",
        instance_id=None,
        reg_id=None,
        path=(),
        q=None,
        updated_at=now,
    )
