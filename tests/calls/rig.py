"""pbx's call core under test, wired as pbx.service wires it, on the memory network.

:class:`Rig` builds the SIP stack, the method router, the call control, the switch and the
features at 127.0.0.1:5060 on a :class:`tests.calls.sipnet.FakeReactor`, with an access check
that trusts the From user (digest authentication has its own tests), a directory filled by
:meth:`Rig.phone`, and call records kept in memory (``records``; ``record_delay`` /
``record_error`` simulate a slow or failing store). Media ports come from a small range so
exhaustion can be tested. Every event of the feed is kept in ``events`` and checked against
the call-control invariants by :class:`tests.calls.invariants.Invariants` (``rig.check()``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from twisted.internet import defer

from pbx.calls.control import IN_DIALOG_METHODS, CallControl
from pbx.calls.directory import Callee
from pbx.calls.events import Event
from pbx.calls.numberplan import Kind, NumberPlan
from pbx.calls.sipleg import SipSettings
from pbx.calls.switch import Switch
from pbx.features.echo import EchoTest
from pbx.features.originate import Originate
from pbx.features.park import ParkingLot
from pbx.features.pickup import Pickup
from pbx.features.transfer import Transfers
from pbx.media.relay import PortPool
from pbx.media.transcode import PlayoutClock
from pbx.sip.client import ClientTransactions
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.methods import Methods
from pbx.sip.stack import IncomingRequest, Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address
from pbx.sip.uri import SipUri
from pbx.store.cdr import CallRecord
from pbx.store.registrations import Binding
from tests.calls import invariants
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
    name: str = ""
    pickup_group: str | None = None
    site_id: int | None = None
    country: str = ""  # the site's calling code and area code (outbound numbers)
    area_code: str = ""


class MemoryDirectory:
    """pbx.calls.directory.Directory over a dict of extensions."""

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.error: Exception | None = None

    def callee(self, extension: str) -> defer.Deferred[Callee]:
        if self.error is not None:
            return defer.fail(self.error)
        entry = self.rig.extensions.get(extension)
        if entry is None or not entry.exists:
            return defer.succeed(Callee(False, []))
        return defer.succeed(
            Callee(
                True,
                list(entry.bindings),
                entry.call_waiting,
                entry.name,
                entry.site_id,
                entry.pickup_group,
                entry.country,
                entry.area_code,
            )
        )

    def group_members(self, group: str) -> defer.Deferred[list[str]]:
        return defer.succeed(
            sorted(e for e, x in self.rig.extensions.items() if x.pickup_group == group)
        )


class FakePrompts:
    """pbx.media.prompts.Prompts with a 0.2 s tone per digit (``said`` lists the numbers)."""

    def __init__(self) -> None:
        self.said: list[str] = []

    def load(self, reactor: Any = None) -> defer.Deferred[None]:
        return defer.succeed(None)

    def digits(self, number: str) -> bytes:
        from pbx.media.tones import TonePlan, ToneSource

        self.said.append(number)
        source = ToneSource(TonePlan((1000.0,), (600000, 1), -13.0))
        return b"".join(source.next_frame() for _ in range(10 * len(number)))


class Rig:
    """pbx at 127.0.0.1:5060 plus phones, all on one fake clock."""

    def __init__(
        self,
        rtp_ports: tuple[int, int] = (10000, 10100),
        latch_any_address: bool = False,
        *,
        no_answer: float = 30.0,
        max_duration: float = 4 * 3600.0,
        media_timeout: float = 3600.0,
        session_expires: int = 1800,
        min_se: int = 90,
        transfer_recall: float = 30.0,
        park_timeout: float = 120.0,
    ) -> None:
        self.reactor = FakeReactor()
        self.network = self.reactor.network
        self.extensions: dict[str, Extension] = {}
        self.records: list[CallRecord] = []
        self.histories: dict[int, list[dict[str, Any]]] = {}
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
        self.methods = Methods(TrustingAccess(), self._register)  # type: ignore[arg-type]
        self.stack.sink = self.methods
        self.ports = PortPool(self.reactor, *rtp_ports, latch_any=latch_any_address)
        self.clock = PlayoutClock(self.reactor)
        self.music: Any = None  # a HoldMusic stream for every leg, when a test sets one
        self.control = CallControl(
            self.reactor,
            self.client,
            self.ports,
            self._record,
            settings=SipSettings(session_expires=session_expires, min_se=min_se),
            no_answer=no_answer,
            max_duration=max_duration,
            media_timeout=media_timeout,
            music=lambda leg: self.music,
            clock=self.clock,
        )
        self.events: list[Event] = []
        self.control.feed.subscribe(self.events.append)
        self.directory = MemoryDirectory(self)
        self.plan = NumberPlan()
        self.switch = Switch(self.control, self.directory, self.plan)
        self.control.directory = self.directory
        self.prompts = FakePrompts()
        self.control.prompts = self.prompts
        self.parking = ParkingLot(self.control, self.plan, timeout=park_timeout)
        self.transfers = Transfers(
            self.control, self.plan, recall_after=transfer_recall, park=self.parking
        )
        self.pickup = Pickup(self.control)
        self.originate = Originate(self.control, self.plan)
        self.switch.features[Kind.ECHO_TEST] = EchoTest(self.control)
        self.switch.features[Kind.PARK] = self.parking.park_caller
        self.switch.features[Kind.PARK_SLOT] = self.parking.retrieve
        self.switch.features[Kind.GROUP_PICKUP] = self.pickup
        self.switch.features[Kind.DIRECTED_PICKUP] = self.pickup
        self.methods.add("INVITE", self.pickup.on_invite)
        self.methods.add("INVITE", self.switch.on_invite)
        self.methods.add_in_dialog(self.control.handle_in_dialog, IN_DIALOG_METHODS)
        self.stack.on_ack = self.control.on_ack
        self.control.start()

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

    def _record(self, kind: str, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        history = kwargs.pop("history", [])

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
                self.histories[record_id] = list(history)
                d.callback(None)
                return
            (record,) = args
            record = replace(record, id=len(self.records) + 1)
            if kind == "open":
                record = replace(record, disposition="open")
            self.records.append(record)
            if kind == "add":
                self.histories[record.id or 0] = list(history)
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
        return self.control.snapshot()

    def records_for(self, call_id: str) -> list[CallRecord]:
        return [r for r in self.records if r.call_id == call_id]

    def check(self, finished: bool = True) -> None:
        """Assert the call-control invariants over everything that happened so far."""
        invariants.check(self.events, self.records if finished else None, finished=finished)

    def names(self) -> list[str]:
        """The names of the events so far (for expected-sequence assertions)."""
        return [e.name for e in self.events]


def binding_for(extension: str, host: str, port: int = 5060, transport: str = "UDP") -> Binding:
    now = time.time()
    return Binding(
        extension=extension,
        contact=f"sip:{extension}@{host}:{port}",
        expires_at=now + 3600,
        call_id="reg-" + extension,
        cseq=1,
        transport=transport,
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
