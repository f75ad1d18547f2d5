"""The SIP stack on the reactor: parsing, policy, transaction matching and timers.

Bytes arrive from :mod:`pbx.sip.transport`; this module parses them (sans-IO
:mod:`pbx.sip.message`), applies the checks every request goes through (bans and scanner
user agents from :mod:`pbx.sip.guard`, RFC 3581 ``received``/``rport``, RFC 3261 §8.2 method,
URI-scheme and extension checks), matches them to server transactions
(:mod:`pbx.sip.transaction`, run here with reactor timers) and hands new requests to the
transaction user (:class:`RequestSink`) as :class:`IncomingRequest` objects. Errors from the
sans-IO layers (:class:`pbx.sip.errors.SipError`) are turned into responses here and nowhere
else; a message that cannot even be answered is logged and dropped.

The reactor is injected; nothing here blocks.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pbx.sip import transaction as tx
from pbx.sip.client import ClientTransactions
from pbx.sip.errors import RemoteProtocolError, SipError
from pbx.sip.guard import Guard
from pbx.sip.message import (
    Headers,
    Limits,
    Request,
    Response,
    make_response,
    new_tag,
    parse_message,
    serialize,
)
from pbx.sip.transport import Address, Source, Transports
from pbx.sip.uri import SipUri

log = logging.getLogger(__name__)

ALLOWED_METHODS = (
    "INVITE",
    "ACK",
    "CANCEL",
    "BYE",
    "OPTIONS",
    "REGISTER",
    "INFO",
    "UPDATE",
    "REFER",
    "NOTIFY",
)
SUPPORTED_EXTENSIONS = ("path", "outbound")
ACCEPTED_BODIES = ("application/sdp",)


@dataclass(frozen=True, slots=True)
class StackOptions:
    """Behaviour of the stack that comes from configuration."""

    timers: tx.TimerConfig = field(default_factory=tx.TimerConfig)
    limits: Limits = field(default_factory=Limits)
    server_header: str = ""
    allowed_methods: tuple[str, ...] = ALLOWED_METHODS


class IncomingRequest:
    """A new request and its server transaction, as the transaction user sees it."""

    __slots__ = ("request", "source", "_stack", "_txn", "to_tag", "final_sent", "on_cancel")

    def __init__(self, stack: Stack, request: Request, source: Source, txn: Any) -> None:
        self.request = request
        self.source = source
        self._stack = stack
        self._txn = txn
        self.to_tag = new_tag()
        self.final_sent = False
        # set by a TU that must clean up when the caller CANCELs (it then sends the 487 itself)
        self.on_cancel: Callable[[], None] | None = None

    def response(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> Response:
        """Build a response to this request (To tag added for status > 100)."""
        resp = make_response(
            self.request, status, reason, to_tag=self.to_tag if status > 100 else None
        )
        for name, value in headers:
            resp.headers.add(name, value)
        return resp

    def respond(
        self, status: int, reason: str | None = None, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        """Build and send a response."""
        self.send(self.response(status, reason, headers))

    def send(self, resp: Response) -> None:
        """Send a response through the server transaction (ignored after the final one)."""
        if self.final_sent:
            log.debug("late response %s dropped", resp.status)
            return
        if resp.status >= 200:
            self.final_sent = True
        self._stack.send_response(self._txn, resp)

    def retransmit(self, resp: Response) -> None:
        """Send a 2xx again (RFC 3261 §13.3.1.4: the TU retransmits it until the ACK)."""
        self._stack.send_response(self._txn, resp)

    @property
    def call_id(self) -> str:
        return self.request.call_id


class RequestSink(Protocol):
    """The transaction user: gets every new request (not ACKs to 2xx or retransmissions)."""

    def handle_request(self, incoming: IncomingRequest) -> None: ...


@dataclass(slots=True)
class _ServerEntry:
    machine: Any
    source: Source
    incoming: IncomingRequest | None = None
    timers: dict[str, Any] = field(default_factory=dict)
    to_tag: str | None = None  # the final response's, once the machine is compacted


@dataclass(frozen=True, slots=True)
class _SendWire:
    """Effect of a compacted transaction: send these bytes again."""

    data: bytes
    target: Address


class _CompletedNonInvite:
    """The Completed state of a non-INVITE server transaction over UDP, kept as bytes.

    RFC 3261 §17.2.2: in Completed the transaction only re-sends its final response to request
    retransmissions, discards further responses from the TU and ends at timer J (64*T1 = 32 s).
    Keeping the full machine (request and response objects, ~80 objects) for those 32 s made
    the garbage collector's full passes take hundreds of milliseconds at 1,000 REGISTER/s, so
    the stack swaps the machine for this record of the same transitions once it gets here.
    """

    __slots__ = ("_resend",)

    def __init__(self, data: bytes, target: Address) -> None:
        self._resend = [_SendWire(data, target)]

    def receive_request(self, request: Request) -> list[Any]:
        return self._resend

    def receive_ack(self, request: Request) -> list[Any]:
        return []

    def send_response(self, response: Response) -> list[Any]:
        return []

    def fire(self, name: str) -> list[Any]:
        return [tx.Terminated()] if name == "J" else []


class _AcceptedInvite:
    """The Accepted state of an INVITE server transaction (RFC 6026 §8.7), without the INVITE.

    In Accepted the transaction absorbs INVITE retransmissions, passes ACKs on, sends the 2xx
    responses its transaction user retransmits (§13.3.1.4) and ends at timer L (64*T1). None
    of that needs the request or the response: keeping the machine held a parsed INVITE and
    its 2xx for 32 s after every answered call (the largest part of a new call's memory).
    """

    __slots__ = ()

    def receive_request(self, request: Request) -> list[Any]:
        return []

    def receive_ack(self, request: Request) -> list[Any]:
        return [tx.Deliver(request)]

    def send_response(self, response: Response) -> list[Any]:
        if 200 <= response.status < 300:
            return [tx.Send(response)]
        log.warning("INVITE already accepted: %d from the TU discarded", response.status)
        return []

    def fire(self, name: str) -> list[Any]:
        return [tx.Terminated()] if name == "L" else []


_ACCEPTED_INVITE = _AcceptedInvite()


class Stack:
    """Runs server transactions over :class:`Transports`, dispatching to a :class:`RequestSink`."""

    def __init__(self, reactor: Any, guard: Guard, options: StackOptions) -> None:
        self._reactor = reactor
        self.guard = guard
        self.options = options
        self.transports: Transports | None = None
        self.sink: RequestSink | None = None
        self.on_ack: Callable[[Request, Source], None] | None = None
        self.client: ClientTransactions | None = None
        self._servers: dict[tuple[Any, ...], _ServerEntry] = {}
        self.stats = {"received": 0, "dropped": 0, "bad": 0}

    # -- inbound -------------------------------------------------------------------------------

    def receive(self, data: bytes, source: Source) -> None:
        """Entry point for every message from a transport."""
        self.stats["received"] += 1
        host = source.remote.host
        if self.guard.is_blocked(host):
            self.stats["dropped"] += 1
            return
        try:
            message = parse_message(data, self.options.limits)
        except RemoteProtocolError as exc:
            self.stats["bad"] += 1
            self._answer_unparsable(exc, source)
            return
        if isinstance(message, Response):
            self._receive_response(message, source)
            return
        self._receive_request(message, source)

    def _answer_unparsable(self, exc: RemoteProtocolError, source: Source) -> None:
        partial = exc.partial
        log.info("bad message from %s: %s %s", source.remote, exc.status, exc)
        if partial is None or not isinstance(partial, Request) or partial.method == "ACK":
            return
        try:
            self._fix_via(partial, source)
        except SipError:
            pass  # the top Via itself is broken: answer the source address instead (below)
        try:
            resp = make_response(partial, exc.status, exc.reason)
        except Exception:  # noqa: BLE001 - the partial message may be too broken to answer
            log.debug("cannot answer unparsable message from %s", source.remote)
            return
        self._send_stateless(resp, source, to_source=True)

    def _receive_request(self, request: Request, source: Source) -> None:
        headers = request.headers
        if self.guard.is_scanner(headers.get("User-Agent")):
            self.stats["dropped"] += 1
            return
        user = _from_user(request)
        if user and self.guard.is_blocked(source.remote.host, user):
            self.stats["dropped"] += 1
            return
        self._fix_via(request, source)
        try:
            key = tx.server_key(request)
        except SipError as exc:
            self._reject_stateless(request, source, exc)
            return
        entry = self._servers.get(key)
        if entry is not None:
            if request.method == "ACK":
                self._run(key, entry, entry.machine.receive_ack(request))
            else:
                self._run(key, entry, entry.machine.receive_request(request))
            return
        if request.method == "ACK":
            if self.on_ack is not None:
                self.on_ack(request, source)
            return
        if request.method == "CANCEL":
            self._receive_cancel(request, source)
            return
        self._new_server_transaction(key, request, source)

    def _new_server_transaction(
        self, key: tuple[Any, ...], request: Request, source: Source
    ) -> None:
        machine: Any
        if request.method == "INVITE":
            machine = tx.InviteServer(
                request,
                reliable=source.reliable,
                timers=self.options.timers,
                auto_trying_after=None,
            )
        else:
            machine = tx.NonInviteServer(
                request, reliable=source.reliable, timers=self.options.timers
            )
        entry = _ServerEntry(machine, source)
        self._servers[key] = entry
        incoming = IncomingRequest(self, request, source, key)
        entry.incoming = incoming
        self._run(key, entry, machine.receive_request(request))
        if request.method == "INVITE":
            incoming.send(incoming.response(100))
        problem = self._check_request(request)
        if problem is not None:
            status, extra = problem
            incoming.respond(status, headers=extra)
            return
        if self.sink is None:
            incoming.respond(503)
            return
        try:
            self.sink.handle_request(incoming)
        except SipError as exc:
            if not incoming.final_sent:
                incoming.respond(exc.status, exc.reason)
        except Exception:
            log.exception("[%s] error handling %s", request.call_id, request.method)
            if not incoming.final_sent:
                incoming.respond(500)

    @property
    def allowed_methods(self) -> tuple[str, ...]:
        """The methods answered here: the transaction user's (pbx.sip.methods) when it
        says, else the configured list."""
        allowed = getattr(self.sink, "allowed", None)
        return tuple(allowed) if allowed else self.options.allowed_methods

    def _check_request(self, request: Request) -> tuple[int, list[tuple[str, str]]] | None:
        """RFC 3261 §8.2.1-8.2.3: method, URI scheme, extensions; then body acceptability."""
        allowed = self.allowed_methods
        if request.method not in allowed:
            return 501, [("Allow", ", ".join(allowed))]
        if not isinstance(request.uri, SipUri) and request.method != "OPTIONS":
            return 416, []
        required = [tag for value in request.headers.get_all("Require") for tag in _tags(value)]
        unsupported = [tag for tag in required if tag.lower() not in SUPPORTED_EXTENSIONS]
        if unsupported and request.method not in ("CANCEL",):
            return 420, [("Unsupported", ", ".join(unsupported))]
        if request.method == "INVITE":
            content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if request.body and content_type not in ACCEPTED_BODIES:
                return 415, [("Accept", ", ".join(ACCEPTED_BODIES))]
            accept = request.headers.get_all("Accept")
            if accept and not any(_accepts_sdp(value) for value in accept):
                return 406, [("Warning", '399 pbx "only application/sdp bodies are supported"')]
        return None

    def _receive_cancel(self, request: Request, source: Source) -> None:
        """RFC 3261 §9.2: CANCEL gets its own 200; the INVITE gets 487 if still pending."""
        invite_key = tx.server_key(_as_invite(request))
        entry = self._servers.get(invite_key)
        pending = entry.incoming if entry is not None else None
        to_tag = pending.to_tag if pending is not None else entry.to_tag if entry else None
        resp = make_response(request, 481 if entry is None else 200, to_tag=to_tag)
        self._send_stateless(resp, source)
        if pending is not None and not pending.final_sent:
            if pending.on_cancel is not None:
                pending.on_cancel()
            if not pending.final_sent:
                pending.respond(487)

    def _receive_response(self, response: Response, source: Source) -> None:
        if self.client is not None and self.client.receive_response(response, source):
            return
        log.debug("stray response %s from %s dropped", response.status, source.remote)

    # -- outbound ------------------------------------------------------------------------------

    def send_response(self, key: tuple[Any, ...], resp: Response) -> None:
        entry = self._servers.get(key)
        if entry is None:
            return
        if self.options.server_header and "Server" not in resp.headers:
            resp.headers.add("Server", self.options.server_header)
        self._run(key, entry, entry.machine.send_response(resp))

    def _send_stateless(self, resp: Response, source: Source, to_source: bool = False) -> None:
        """Send outside any transaction; ``to_source`` answers the packet's source address when
        the top Via gives no usable destination (a broken Via on a request we reject)."""
        if self.options.server_header:
            resp.headers.add("Server", self.options.server_header)
        if to_source and self.transports is not None and response_target(resp, source) is None:
            self.transports.send(serialize(resp), source.remote, source)
            return
        self._transmit(resp, source)

    def _reject_stateless(self, request: Request, source: Source, exc: SipError) -> None:
        if request.method != "ACK":
            self._send_stateless(make_response(request, exc.status, exc.reason), source)

    def _transmit(
        self, message: Request | Response, source: Source
    ) -> tuple[bytes, Address] | None:
        if self.transports is None:
            return None
        target = (
            response_target(message, source) if isinstance(message, Response) else source.remote
        )
        if target is None:
            return None
        data = serialize(message)
        if not self.transports.send(data, target, source):
            log.info("no way back to %s", target)
        return data, target

    # -- transactions --------------------------------------------------------------------------

    def _run(self, key: tuple[Any, ...], entry: _ServerEntry, effects: Iterable[Any]) -> None:
        wire = None
        for effect in effects:
            if isinstance(effect, tx.Send):
                wire = self._transmit(effect.message, entry.source)
            elif isinstance(effect, _SendWire):
                if self.transports is not None:
                    self.transports.send(effect.data, effect.target, entry.source)
            elif isinstance(effect, tx.StartTimer):
                old = entry.timers.pop(effect.name, None)
                if old is not None and old.active():
                    old.cancel()
                entry.timers[effect.name] = self._reactor.callLater(
                    effect.delay, self._fire, key, effect.name
                )
            elif isinstance(effect, tx.CancelTimer):
                old = entry.timers.pop(effect.name, None)
                if old is not None and old.active():
                    old.cancel()
            elif isinstance(effect, tx.Terminated):
                self._forget(key, entry)
                return
            # Deliver / Timeout of server transactions need no action from the stack here
        machine = entry.machine
        if (
            wire is not None
            and isinstance(machine, tx.NonInviteServer)
            and machine.state is tx.State.COMPLETED
        ):
            entry.machine = _CompletedNonInvite(*wire)
            entry.incoming = None
        elif isinstance(machine, tx.InviteServer) and machine.state is tx.State.ACCEPTED:
            entry.machine = _ACCEPTED_INVITE
            if entry.incoming is not None:
                entry.to_tag = entry.incoming.to_tag
            entry.incoming = None

    def _fire(self, key: tuple[Any, ...], name: str) -> None:
        entry = self._servers.get(key)
        if entry is None:
            return
        entry.timers.pop(name, None)
        self._run(key, entry, entry.machine.fire(name))

    def _forget(self, key: tuple[Any, ...], entry: _ServerEntry) -> None:
        if self._servers.get(key) is entry:
            del self._servers[key]
        for call in entry.timers.values():
            if call.active():
                call.cancel()
        entry.timers.clear()

    @property
    def transaction_count(self) -> int:
        return len(self._servers)

    # -- helpers -------------------------------------------------------------------------------

    @staticmethod
    def _fix_via(request: Request, source: Source) -> None:
        """RFC 3261 §18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
        values = request.headers.get_all("Via")
        if not values:
            return
        top = request.top_via
        changed = top
        if top.host != source.remote.host:
            changed = changed.with_param("received", source.remote.host)
        if top.rport is not None:
            changed = changed.with_param("rport", str(source.remote.port))
            if top.host == source.remote.host:
                changed = changed.with_param("received", source.remote.host)
        if changed is not top:
            _replace_top_via(request.headers, str(changed))


def _replace_top_via(headers: Headers, new_top: str) -> None:
    values = headers.get_all("Via")
    headers.remove("Via")
    headers.add("Via", new_top)
    for value in values[1:]:
        headers.add("Via", value)


def response_target(resp: Response, source: Source) -> Address | None:
    """RFC 3261 §18.2.2 with RFC 3581: where a response goes (the flow is preferred by send).

    Never resolves a name: a Via whose host is not an IP literal and has no ``received`` gets
    no answer over UDP. Broadcast addresses never get anything.
    """
    if source.reliable:
        return source.remote
    try:
        via = resp.top_via
    except SipError:
        return None
    host = via.received or via.host
    port = int(via.rport) if via.rport else (via.port or 5060)
    address = _unicast_ip(host)
    if address is None:
        return None
    return Address("UDP", address, port)


@functools.lru_cache(maxsize=65536)
def _unicast_ip(host: str) -> str | None:
    """The canonical IP text of ``host``, or None for names, broadcast and multicast."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if address.is_multicast or address == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(address)


def _from_user(request: Request) -> str | None:
    try:
        uri = request.from_.uri
    except SipError:
        return None
    return uri.user if isinstance(uri, SipUri) else None


def _tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _accepts_sdp(value: str) -> bool:
    for item in value.split(","):
        media = item.split(";")[0].strip().lower()
        if media in ("application/sdp", "application/*", "*/*"):
            return True
    return False


def _as_invite(cancel: Request) -> Request:
    """A stand-in INVITE with the CANCEL's transaction identity (§9.2 matching)."""
    headers = cancel.headers.copy()
    cseq = cancel.cseq
    headers.set("CSeq", f"{cseq.seq} INVITE")
    return Request("INVITE", cancel.uri, headers)
