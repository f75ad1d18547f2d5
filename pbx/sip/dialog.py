"""SIP dialog state, sans-IO (RFC 3261 §12).

Owns the ``Dialog`` record (Call-ID, tags, URIs, CSeq numbers, remote target, route
set), its creation on either side (§12.1), building in-dialog requests with loose and
strict routing (§12.2.1.1) and checking incoming in-dialog requests (§12.2.2).

``create_request`` does not add a Via: the transport layer owns sent-by and the branch
and prepends the Via before the request is handed to a client transaction.

Must not import twisted, socket, sqlite3, pbx.store or anything else that does I/O.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeAlias

from pbx.sip.errors import LocalProtocolError, RemoteProtocolError
from pbx.sip.headers import NameAddr
from pbx.sip.message import Headers, Message, Request, Response
from pbx.sip.uri import SipUri, Uri

log = logging.getLogger(__name__)

DialogId: TypeAlias = tuple[str, str, str]  # (Call-ID, local tag, remote tag)

MAX_CSEQ = 2**31 - 1  # §8.1.1.5
# Requests whose Contact replaces the remote target: re-INVITE (§12.2), UPDATE (RFC 3311),
# SUBSCRIBE/NOTIFY (RFC 6665 §4.1.2.3/§4.2.1), REFER (RFC 3515 §2.4.2 via RFC 6665).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})
# Neither moves the remote CSeq: ACK reuses its INVITE's number (§13.2.2.4), CANCEL its
# request's (§9.1).
_UNSEQUENCED = frozenset({"ACK", "CANCEL"})


def dialog_id_of_request(request: Request) -> DialogId:
    """The id of the dialog an incoming request belongs to, seen from the UAS (§12)."""
    return (request.call_id, request.to.tag or "", request.from_.tag or "")


def dialog_id_of_response(response: Response) -> DialogId:
    """The id of the dialog a response belongs to, seen from the UAC (§12)."""
    return (response.call_id, response.from_.tag or "", response.to.tag or "")


def initial_cseq() -> int:
    """A random first local CSeq number, well below 2**31 (§8.1.1.5)."""
    return secrets.randbelow(2**16) + 1


def _contact_uri(message: Message) -> Uri | None:
    contacts = message.contacts
    if contacts == "*" or not contacts:
        return None
    return contacts[0].uri


def _is_secure(request: Request) -> bool:
    # §12.1.1/§12.1.2: TLS and a SIPS Request-URI; the scheme is what we can see here.
    return isinstance(request.uri, SipUri) and request.uri.scheme == "sips"


def _request_uri_form(uri: Uri) -> Uri:
    """Strip what a Request-URI may not carry (§19.1.1 table 1: method param, headers)."""
    if not isinstance(uri, SipUri):
        return uri
    params = tuple((name, value) for name, value in uri.params if name != "method")
    return dataclasses.replace(uri, params=params, headers=())


@dataclass(slots=True)
class Dialog:
    """Dialog state, RFC 3261 §12.1; ``local_seq``/``remote_seq`` None means "empty"."""

    call_id: str
    local_tag: str
    remote_tag: str  # "" for an RFC 2543 peer that sent no tag
    local_uri: Uri
    remote_uri: Uri
    local_seq: int | None
    remote_seq: int | None
    remote_target: Uri
    route_set: tuple[NameAddr, ...] = ()
    secure: bool = False
    is_uac: bool = True

    @property
    def dialog_id(self) -> DialogId:
        return (self.call_id, self.local_tag, self.remote_tag)

    # --- creation (§12.1) ------------------------------------------------------------

    @classmethod
    def from_uas(cls, request: Request, response: Response) -> Dialog:
        """Dialog of the UAS that answers ``request`` with ``response`` (§12.1.1)."""
        if not 101 <= response.status <= 299:
            raise LocalProtocolError(f"a {response.status} response does not create a dialog")
        local_tag = response.to.tag
        if not local_tag:
            raise LocalProtocolError("the UAS response must carry a To tag (§8.2.6.2)")
        target = _contact_uri(request)
        if target is None:
            raise RemoteProtocolError("dialog-creating request without a usable Contact")
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=request.to.uri,
            remote_uri=request.from_.uri,
            local_seq=None,
            remote_seq=request.cseq.seq,
            remote_target=target,
            route_set=tuple(request.record_routes),
            secure=_is_secure(request),
            is_uac=False,
        )

    @classmethod
    def from_uac(cls, request: Request, response: Response) -> Dialog:
        """Dialog of the UAC that sent ``request`` and got ``response`` (§12.1.2).

        The route set is the response's Record-Route in reverse order.  A 1xx without
        Contact gets the Request-URI as a provisional remote target (the 2xx replaces
        the dialog); a 2xx without Contact is a ``RemoteProtocolError``.
        """
        if not 101 <= response.status <= 299:
            raise LocalProtocolError(f"a {response.status} response does not create a dialog")
        local_tag = request.from_.tag
        if not local_tag:
            raise LocalProtocolError("the UAC request must carry a From tag (§8.1.1.3)")
        target = _contact_uri(response)
        if target is None:
            if response.status >= 200:
                raise RemoteProtocolError("2xx response without a usable Contact")
            log.debug("early dialog without Contact: using the Request-URI as target")
            target = request.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=response.to.tag or "",
            local_uri=request.from_.uri,
            remote_uri=request.to.uri,
            local_seq=request.cseq.seq,
            remote_seq=None,
            remote_target=target,
            route_set=tuple(reversed(response.record_routes)),
            secure=_is_secure(request),
            is_uac=True,
        )

    # --- UAC behaviour (§12.2.1) -------------------------------------------------------

    def create_request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra_headers: Iterable[tuple[str, str]] = (),
        *,
        cseq: int | None = None,
    ) -> Request:
        """An in-dialog request (§12.2.1.1), without Via (see the module docstring).

        ``cseq`` overrides the number for an ACK (the INVITE's, §13.2.2.4); by default an
        ACK reuses the current local CSeq and any other method increments it.
        """
        if method == "CANCEL":
            raise LocalProtocolError("CANCEL is built from the request it cancels (§9.1)")
        if body and content_type is None:
            raise LocalProtocolError("a body needs a Content-Type")
        seq = self._next_seq(method, cseq)
        request_uri, routes = self._routing()
        headers = Headers()
        for route in routes:
            headers.add("Route", str(route))
        headers.add("Max-Forwards", "70")
        headers.add("From", str(NameAddr(self.local_uri).with_param("tag", self.local_tag)))
        to = NameAddr(self.remote_uri)
        if self.remote_tag:
            to = to.with_param("tag", self.remote_tag)
        headers.add("To", str(to))
        headers.add("Call-ID", self.call_id)
        headers.add("CSeq", f"{seq} {method}")
        if content_type is not None:
            headers.add("Content-Type", content_type)
        for name, value in extra_headers:
            headers.add(name, value)
        return Request(method, request_uri, headers, body)

    def _next_seq(self, method: str, override: int | None) -> int:
        if method == "ACK":
            seq = override if override is not None else self.local_seq
            if seq is None:
                raise LocalProtocolError("ACK in a dialog that never sent an INVITE")
            return seq
        if override is not None:
            raise LocalProtocolError("only an ACK may choose its CSeq number")
        seq = initial_cseq() if self.local_seq is None else self.local_seq + 1
        if seq > MAX_CSEQ:
            raise LocalProtocolError("local CSeq exhausted (§8.1.1.5)")
        self.local_seq = seq
        return seq

    def _routing(self) -> tuple[Uri, list[NameAddr]]:
        """Request-URI and Route values, §12.2.1.1 (loose and strict routing)."""
        if not self.route_set:
            return self.remote_target, []
        first = self.route_set[0]
        if isinstance(first.uri, SipUri) and first.uri.has_param("lr"):
            return self.remote_target, list(self.route_set)
        # Strict router: it gets the Request-URI; the remote target goes last in Route.
        return _request_uri_form(first.uri), [*self.route_set[1:], NameAddr(self.remote_target)]

    def receive_response(self, response: Response) -> None:
        """A response to an in-dialog request we sent (§12.2.1.2): 2xx to a target
        refresh replaces the remote target with its Contact."""
        if 200 <= response.status <= 299 and response.cseq.method in TARGET_REFRESH_METHODS:
            self._refresh_target(response)

    # --- UAS behaviour (§12.2.2) -------------------------------------------------------

    def receive_request(self, request: Request) -> None:
        """Check and record an incoming in-dialog request (§12.2.2).

        Raises ``RemoteProtocolError`` (500) when its CSeq is lower than the remote CSeq;
        the caller answers with that status.  ACK and CANCEL are not ordered.
        """
        if dialog_id_of_request(request) != self.dialog_id:
            raise LocalProtocolError(
                f"request of dialog {dialog_id_of_request(request)} routed to {self.dialog_id}"
            )
        seq = request.cseq.seq
        if request.method in _UNSEQUENCED:
            return
        if self.remote_seq is not None and seq < self.remote_seq:
            raise RemoteProtocolError(
                f"CSeq {seq} below remote CSeq {self.remote_seq}",
                status=500,
                reason="Server Internal Error",
            )
        self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS:
            self._refresh_target(request)

    def _refresh_target(self, message: Message) -> None:
        target = _contact_uri(message)
        if target is not None and target != self.remote_target:
            log.debug("dialog %s: remote target -> %s", self.dialog_id, target)
            self.remote_target = target
