"""pbx's call core under test, wired as pbx.service wires it, on the memory network.

:class:`Rig` builds the SIP stack, the method router and the switch at 127.0.0.1:5060 on a
:class:`tests.calls.sipnet.FakeReactor`, with an access check that trusts the From user (digest
authentication has its own tests), a registration table filled by :meth:`Rig.phone`, and call
records kept in memory (``records``; ``record_delay``/``record_error`` simulate a slow or
failing store). Media ports come from a small range so exhaustion can be tested.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet import defer

from pbx.calls.switch import Callee, Switch
from pbx.media.relay import PortPool
from pbx.sip.client import ClientTransactions
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.methods import Methods
from pbx.sip.stack import ALLOWED_METHODS, IncomingRequest, Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address
from pbx.sip.uri import SipUri
from pbx.store.cdr import CallRecord
from pbx.store.registrations import Binding
from tests.calls.phones import PBX, Phone
from tests.calls.sipnet import FakeReactor, MemoryTransports


class TrustingAccess:
    """Authenticates every request as its From user (the digest layer is tested elsewhere)."""

    def authenticate(self, incoming: IncomingRequest) -> defer.Deferred[str | None]:
        uri = incoming.request.from_.uri
        return defer.succeed(uri.user if isinstance(uri, SipUri) else None)


@dataclass
class Extension:
    exists: bool = True
    call_waiting: bool = True
    bindings: list[Binding] = field(default_factory=list)


class Rig:
    """pbx at 127.0.0.1:5060 plus phones, all on one fake clock."""

    def __init__(
        self,
        rtp_ports: tuple[int, int] = (10000, 10100),
        latch_any_address: bool = False,
        **switch_options: Any,
    ) -> None:
        self.reactor = FakeReactor()
        self.network = self.reactor.network
        self.extensions: dict[str, Extension] = {}
        self.records: list[CallRecord] = []
        self.record_delay = 0.0
        self.record_error: Exception | None = None
        self.record_error_kinds = ("open", "close", "add")  # which writes record_error fails
        timers = TimerConfig()
        self.transports = MemoryTransports(self.network, PBX)
        self.stack = Stack(
            self.reactor, Guard(GuardConfig(), self.reactor.seconds), StackOptions(timers)
        )
        self.client = ClientTransactions(
            self.reactor, self.transports, timers, self.transports.local_address  # type: ignore[arg-type]
        )
        self.transports.sink = self.stack.receive
        self.stack.transports = self.transports  # type: ignore[assignment]
        self.stack.client = self.client
        self.methods = Methods(TrustingAccess(), self._register, ALLOWED_METHODS)  # type: ignore[arg-type]
        self.stack.sink = self.methods
        self.ports = PortPool(self.reactor, *rtp_ports, latch_any=latch_any_address)
        switch_options.setdefault("media_timeout", 3600.0)
        self.switch = Switch(
            self.reactor,
            self.client,
            self.ports,
            self._lookup,
            self._record,
            services={"*43": "echo"},
            **switch_options,
        )
        self.methods.register("INVITE", self.switch.on_invite)
        self.methods.in_dialog = self.switch.handle_in_dialog
        self.stack.on_ack = self.switch.on_ack
        self.switch.start()

    # -- set-up ------------------------------------------------------------------------------

    def phone(self, extension: str, host: str, register: bool = True, **options: Any) -> Phone:
        """A phone for ``extension`` (created if needed), registered unless ``register=False``."""
        phone = Phone(self.reactor, extension, host, **options)
        entry = self.extensions.setdefault(extension, Extension())
        if register:
            entry.bindings.append(binding_for(extension, host))
        return phone

    def _register(self, incoming: IncomingRequest) -> None:
        incoming.respond(200)

    def _lookup(self, extension: str) -> defer.Deferred[Callee]:
        entry = self.extensions.get(extension)
        if entry is None or not entry.exists:
            return defer.succeed(Callee(False, []))
        return defer.succeed(Callee(True, list(entry.bindings), entry.call_waiting))

    def _record(self, kind: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()

        def write() -> None:
            if self.record_error is not None and kind in self.record_error_kinds:
                d.errback(self.record_error)
                return
            if kind == "close":
                (record_id,) = args
                record = self.records[record_id - 1]
                assert record.disposition == "open", record
                ended = kwargs["ended_at"]
                duration = max(0.0, ended - (record.answered_at or ended))
                self.records[record_id - 1] = replace(record, duration=duration, **kwargs)
                d.callback(None)
                return
            (record,) = args
            record = replace(record, id=len(self.records) + 1)
            if kind == "open":
                record = replace(record, disposition="open")
            self.records.append(record)
            d.callback(record.id)

        if self.record_delay:
            self.reactor.callLater(self.record_delay, write)
        else:
            write()
        return d

    # -- running -----------------------------------------------------------------------------

    def run(self, seconds: float, step: float = 0.01) -> None:
        """Advance the clock by ``seconds`` in small steps (timers set meanwhile also run)."""
        steps = max(1, round(seconds / step))
        for _ in range(steps):
            self.reactor.advance(step)

    @property
    def active(self) -> list[dict[str, Any]]:
        return self.switch.active_calls()

    def records_for(self, call_id: str) -> list[CallRecord]:
        return [r for r in self.records if r.call_id == call_id]


def binding_for(extension: str, host: str, port: int = 5060) -> Binding:
    now = time.time()
    return Binding(
        extension=extension,
        contact=f"sip:{extension}@{host}:{port}",
        expires_at=now + 3600,
        call_id="reg-" + extension,
        cseq=1,
        transport="UDP",
        source_host=host,
        source_port=port,
        user_agent="test-phone",
        instance_id=None,
        reg_id=None,
        path=(),
        q=None,
        updated_at=now,
    )


def address(host: str) -> Address:
    return Address("UDP", host, 5060)
