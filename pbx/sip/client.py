"""Requests pbx sends: client transactions on the reactor (RFC 3261 §8.1, §9.1, §17.1).

:class:`ClientTransactions` adds the top Via (our sent-by, a fresh branch, ``rport``), runs
the sans-IO :class:`pbx.sip.transaction.InviteClient` / ``NonInviteClient`` machines with
reactor timers, and hands every response to the request's ``on_response`` callback. Failures
come back as responses too, as RFC 3261 §8.1.3.1 suggests: a timeout (timer B/F) as 408 and a
transport error as 503, so the transaction user has one code path. :meth:`cancel` sends a
CANCEL for a pending INVITE (§9.1). The stack passes responses it receives to
:meth:`receive_response`; a 2xx to an INVITE whose transaction has ended (a retransmitted 2xx,
§13.2.2.4) goes to ``on_stray_2xx`` for the dialog layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pbx.sip import transaction as tx
from pbx.sip.errors import SipError
from pbx.sip.message import Headers, Request, Response, make_response, new_branch, serialize
from pbx.sip.transport import Address, Source, Transports

log = logging.getLogger(__name__)

ResponseCallback = Callable[[Response], None]


@dataclass(slots=True)
class OutgoingRequest:
    """A request in flight and what to do with its responses. ``request`` is None once an
    INVITE was accepted (a 2xx): the transaction then only hands 2xx retransmissions on."""

    request: Request | None
    target: Address
    on_response: ResponseCallback
    machine: Any = None
    key: tuple[Any, ...] = ()
    timers: dict[str, Any] = field(default_factory=dict)
    provisional_seen: bool = False
    final_seen: bool = False
    cancel_pending: bool = False
    cancel_reason: str | None = None
    call_id: str = ""

    def __post_init__(self) -> None:
        if self.request is not None:
            self.call_id = self.request.call_id


class _AcceptedInviteClient:
    """The Accepted state of an INVITE client transaction (RFC 6026 §8.4), without the INVITE:
    2xx retransmissions go to the transaction user (which ACKs each), anything else is
    absorbed, timer M ends it. The machine kept the INVITE for those 32 s for nothing."""

    __slots__ = ()

    def receive_response(self, response: Response) -> list[Any]:
        return [tx.Deliver(response)] if 200 <= response.status < 300 else []

    def transport_failed(self) -> list[Any]:
        return []

    def fire(self, name: str) -> list[Any]:
        return [tx.Terminated()] if name == "M" else []


_ACCEPTED_INVITE_CLIENT = _AcceptedInviteClient()


class ClientTransactions:
    """All client transactions of the process."""

    def __init__(
        self,
        reactor: Any,
        transports: Transports,
        timers: tx.TimerConfig,
        local_address: Callable[[Address], tuple[str, int]],
    ) -> None:
        self._reactor = reactor
        self._transports = transports
        self._timers = timers
        self._local_address = local_address
        self._pending: dict[tuple[Any, ...], OutgoingRequest] = {}
        self.on_stray_2xx: Callable[[Response, Source], None] | None = None

    # -- sending -------------------------------------------------------------------------------

    def send(
        self, request: Request, target: Address, on_response: ResponseCallback
    ) -> OutgoingRequest:
        """Send ``request`` to ``target`` in a new client transaction (not for ACK)."""
        if request.method == "ACK":
            raise ValueError("ACK has no client transaction: use send_ack()")
        self._add_via(request, target)
        reliable = target.transport != "UDP"
        machine: Any
        if request.method == "INVITE":
            machine = tx.InviteClient(request, reliable=reliable, timers=self._timers)
        else:
            machine = tx.NonInviteClient(request, reliable=reliable, timers=self._timers)
        outgoing = OutgoingRequest(request, target, on_response, machine, tx.client_key(request))
        self._pending[outgoing.key] = outgoing
        self._run(outgoing, machine.start())
        return outgoing

    def send_ack(self, ack: Request, target: Address) -> None:
        """An ACK for a 2xx (its own transaction-less request, RFC 3261 §13.2.2.4)."""
        self._add_via(ack, target)
        self._transmit(serialize(ack), target)

    def cancel(
        self,
        outgoing: OutgoingRequest,
        on_response: ResponseCallback | None = None,
        reason: str | None = None,
    ) -> None:
        """CANCEL a pending INVITE (§9.1); deferred until a provisional response arrived.
        ``reason`` becomes an RFC 3326 Reason header (e.g. 'SIP;cause=200;text="Call
        completed elsewhere"', which phones show as answered elsewhere, not as missed)."""
        if outgoing.request is None or outgoing.request.method != "INVITE" or outgoing.final_seen:
            return
        if reason is not None:
            outgoing.cancel_reason = reason
        if not outgoing.provisional_seen:
            outgoing.cancel_pending = True  # §9.1: wait for a provisional response
            return
        outgoing.cancel_pending = False
        request = outgoing.request
        headers = Headers()
        headers.add("Via", request.headers.get_all("Via")[0])
        for name in ("Route",):
            for value in request.headers.get_all(name):
                headers.add(name, value)
        headers.add("Max-Forwards", "70")
        headers.add("From", request.headers.get("From") or "")
        headers.add("To", request.headers.get("To") or "")
        headers.add("Call-ID", request.call_id)
        headers.add("CSeq", f"{request.cseq.seq} CANCEL")
        if outgoing.cancel_reason:
            headers.add("Reason", outgoing.cancel_reason)
        cancel = Request("CANCEL", request.uri, headers)
        reliable = outgoing.target.transport != "UDP"
        machine = tx.NonInviteClient(cancel, reliable=reliable, timers=self._timers)
        cancel_outgoing = OutgoingRequest(
            cancel, outgoing.target, on_response or _ignore, machine, tx.client_key(cancel)
        )
        self._pending[cancel_outgoing.key] = cancel_outgoing
        self._run(cancel_outgoing, machine.start())

    def local_address(self, target: Address) -> tuple[str, int]:
        """Our address as ``target`` sees it (for Via and Contact)."""
        return self._local_address(target)

    def contact(self, target: Address) -> str:
        """Our Contact value for a dialog with ``target`` (transport parameter unless UDP)."""
        host, port = self._local_address(target)
        shown = f"[{host}]" if ":" in host else host
        suffix = "" if target.transport == "UDP" else f";transport={target.transport.lower()}"
        return f"<sip:pbx@{shown}:{port}{suffix}>"

    @property
    def count(self) -> int:
        return len(self._pending)

    # -- receiving -----------------------------------------------------------------------------

    def receive_response(self, response: Response, source: Source) -> bool:
        """Match a response to its transaction; False if none matched (and it was not a 2xx)."""
        try:
            key = tx.client_key(response)
        except SipError:
            return False
        outgoing = self._pending.get(key)
        if outgoing is None:
            if response.cseq.method == "INVITE" and 200 <= response.status < 300:
                if self.on_stray_2xx is not None:
                    self.on_stray_2xx(response, source)
                return True
            return False
        self._run(outgoing, outgoing.machine.receive_response(response))
        machine = outgoing.machine
        if isinstance(machine, tx.InviteClient) and machine.state is tx.State.ACCEPTED:
            outgoing.machine = _ACCEPTED_INVITE_CLIENT
            outgoing.request = None
        return True

    # -- machinery -----------------------------------------------------------------------------

    def _add_via(self, request: Request, target: Address) -> None:
        host, port = self._local_address(target)
        shown = f"[{host}]" if ":" in host else host
        request.headers.prepend(
            "Via", f"SIP/2.0/{target.transport} {shown}:{port};branch={new_branch()};rport"
        )

    def _transmit(self, data: bytes, target: Address) -> bool:
        return self._transports.send(data, target)

    def _run(self, outgoing: OutgoingRequest, effects: Iterable[Any]) -> None:
        for effect in effects:
            if isinstance(effect, tx.Send):
                if not self._transmit(serialize(effect.message), outgoing.target):
                    self._run(outgoing, outgoing.machine.transport_failed())
                    return
            elif isinstance(effect, tx.StartTimer):
                self._cancel_timer(outgoing, effect.name)
                outgoing.timers[effect.name] = self._reactor.callLater(
                    effect.delay, self._fire, outgoing, effect.name
                )
            elif isinstance(effect, tx.CancelTimer):
                self._cancel_timer(outgoing, effect.name)
            elif isinstance(effect, tx.Deliver):
                self._deliver(outgoing, effect.message)
            elif isinstance(effect, tx.Timeout) and outgoing.request is not None:
                self._deliver(outgoing, make_response(outgoing.request, 408, "Request Timeout"))
            elif isinstance(effect, tx.TransportError) and outgoing.request is not None:
                self._deliver(outgoing, make_response(outgoing.request, 503, "Transport Error"))
            elif isinstance(effect, tx.Terminated):
                self._forget(outgoing)

    def _deliver(self, outgoing: OutgoingRequest, message: Any) -> None:
        if not isinstance(message, Response):
            return
        if message.status < 200:
            outgoing.provisional_seen = True
        else:
            outgoing.final_seen = True
        try:
            outgoing.on_response(message)
        except Exception:
            log.exception("[%s] response handler failed", outgoing.call_id)
        if outgoing.cancel_pending and outgoing.provisional_seen and not outgoing.final_seen:
            self.cancel(outgoing)

    def _fire(self, outgoing: OutgoingRequest, name: str) -> None:
        outgoing.timers.pop(name, None)
        if self._pending.get(outgoing.key) is outgoing:
            self._run(outgoing, outgoing.machine.fire(name))

    def _cancel_timer(self, outgoing: OutgoingRequest, name: str) -> None:
        call = outgoing.timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _forget(self, outgoing: OutgoingRequest) -> None:
        if self._pending.get(outgoing.key) is outgoing:
            del self._pending[outgoing.key]
        for name in list(outgoing.timers):
            self._cancel_timer(outgoing, name)


def _ignore(response: Response) -> None:
    """Default handler for responses nobody waits for (e.g. the 200 to a CANCEL)."""
