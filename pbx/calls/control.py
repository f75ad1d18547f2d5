"""CallControl: the one command facade of the call layer, and the owner of every leg.

Features (transfer, park, pickup; later queues, voicemail, IVR, conference), the REST API and
the CTI socket use only this class. It owns the registries (legs, bridges and calls by id;
SIP dialogs to their legs; dials in progress), the event feed (pbx.calls.events), the call
records built from it (pbx.calls.records) and the patchbay that wires media
(pbx.calls.patchbay). Legs report to it (it is their :class:`~pbx.calls.model.LegOwner`)
and it publishes what happened.

Operations (each validates first and raises a :class:`~pbx.calls.model.CallError` before
changing anything: ``NotFound``/``Gone`` for unknown or ended objects, ``WrongState`` for a
wrong state, ``Refused`` when pbx cannot):

- legs: :meth:`inbound_leg`, :meth:`outbound_leg`, :meth:`local_leg`, :meth:`dial`,
  :meth:`answer_locally`, :meth:`hang_up`, :meth:`hold`, :meth:`retrieve`,
  :meth:`send_digits`;
- bridges: :meth:`create_bridge`, :meth:`join` (moving from any bridge is one step, no SIP
  message), :meth:`leave`, :meth:`swap` (one leg takes another's place), :meth:`destroy`,
  :meth:`connect` (two legs into a new bridge);
- calls: :meth:`new_call`, :meth:`adopt` (a leg moves to another call, e.g. attended
  transfer), :meth:`snapshot` for the dashboard and the API;
- media sources: :meth:`play`, :meth:`record`, :meth:`stop_source`;
- features registered by the composition root (:attr:`features`): ``transfer`` (blind,
  attended, REFER), ``park``, ``pickup``, ``originate``; :meth:`blind_transfer`,
  :meth:`attended_transfer`, :meth:`park`, :meth:`pickup`, :meth:`originate` delegate to them.

Invariants (checked by the in-process tests on every scenario): a leg is in at most one
bridge; membership changes only here, in one reactor turn, published as BridgeLeft, then
BridgeJoined, then BridgeMediaChanged; every leg gets exactly one LegEnded, after its sources
stopped and it left its bridge; a call ends (CallEnded, its record) when its last leg ends.
When a member of a two-party bridge hangs up, the other is hung up too (the bridge's
``when_alone`` policy); a leg moved away by a feature never triggers that.
Must not import pbx.store (except the record dataclass via pbx.calls.records), pbx.service.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer

from pbx.calls import events as ev
from pbx.calls.bridge import Alone, Bridge, BridgeKind, BridgePolicy, Media, is_talker
from pbx.calls.dial import Dial
from pbx.calls.digits import DigitCollector
from pbx.calls.localleg import LocalLeg
from pbx.calls.model import (
    CallError,
    Conversation,
    Gone,
    Leg,
    NotFound,
    Party,
    Refused,
    WrongState,
    new_id,
)
from pbx.calls.negotiate import TRANSCODABLE
from pbx.calls.patchbay import Patchbay
from pbx.calls.records import CallRecords
from pbx.calls.sdpsession import SdpSession
from pbx.calls.sipleg import InboundLeg, OutboundLeg, SipLeg, SipSettings
from pbx.media import tones
from pbx.media.player import Playback
from pbx.media.relay import MediaLeg, NoPortsAvailable, PortPool, StreamWatch
from pbx.media.transcode import PlayoutClock, shared_clock
from pbx.sip.client import ClientTransactions
from pbx.sip.dialog import dialog_id_of_request, dialog_id_of_response
from pbx.sip.errors import RemoteProtocolError
from pbx.sip.headers import NameAddr
from pbx.sip.message import Headers, Request, Response, new_call_id, new_tag
from pbx.sip.refer import parse_replaces
from pbx.sip.stack import IncomingRequest
from pbx.sip.transport import Address, Source
from pbx.sip.uri import parse_uri
from pbx.store.registrations import Binding

log = logging.getLogger(__name__)

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY"
# what a leg answers inside its dialog (pbx.calls.indialog)
IN_DIALOG_METHODS = ("INVITE", "BYE", "INFO", "UPDATE", "REFER", "NOTIFY", "OPTIONS")


class CallControl:
    """See the module docstring. Runs on the reactor thread."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        ports: PortPool,
        write_record: Callable[..., defer.Deferred[Any]],
        *,
        settings: SipSettings | None = None,
        no_answer: float = 30.0,
        max_duration: float = 4 * 3600.0,
        media_timeout: float = 60.0,
        music: Callable[[Leg], Any] | None = None,
        clock: PlayoutClock | None = None,
    ) -> None:
        self.reactor = reactor
        self.client = client
        self.ports = ports
        self.settings = settings or SipSettings()
        self.no_answer = no_answer
        self.max_duration = max_duration
        self.codec_order: list[str] = list(TRANSCODABLE)
        self.feed = ev.EventFeed(reactor.seconds)
        self.records = CallRecords(write_record)
        self.feed.subscribe(self.records)
        self.patchbay = Patchbay(
            clock or shared_clock(reactor), music=music, on_digit=self._media_digit
        )
        self.patchbay.on_source_done = self._source_done
        self.legs: dict[str, Leg] = {}
        self.bridges: dict[str, Bridge] = {}
        self.calls: dict[str, Conversation] = {}
        self.dialogs: dict[tuple[str, str, str], SipLeg] = {}
        self.dials: dict[str, Dial] = {}
        self.features: dict[str, Any] = {}
        self._timers: dict[str, Any] = {}  # call id -> maximum-duration timer
        self._ending: dict[str, tuple[str, str, str]] = {}  # call id -> disposition, cause, side
        self._watch = StreamWatch(reactor, media_timeout, self._media_stopped)
        self.on_refer: Callable[..., None] | None = None  # set by the transfer feature
        self.directory: Any = None  # pbx.calls.directory.Directory, for features
        # called with a leg that ends, before it leaves its bridge and LegEnded is published
        # (features publish what its end means for them: a parked call unparked)
        self.before_end: list[Callable[[Leg], None]] = []
        self.prompts: Any = None  # pbx.media.prompts.Prompts (park slot numbers)
        self.country_for: Callable[[Leg], str] = _country_of
        client.on_stray_2xx = self._stray_2xx

    def start(self) -> None:
        self._watch.start()

    def stop(self) -> None:
        self._watch.stop()
        with self.feed.batch():
            for conversation in list(self.calls.values()):
                self.end_call(conversation, "interrupted", "server stopping")

    # -- calls -------------------------------------------------------------------------------

    def new_call(
        self,
        caller: Party,
        dialled: str,
        sip_call_id: str = "",
        site_id: int | None = None,
        call_id: str | None = None,
        direction: str = "internal",
    ) -> Conversation:
        conversation = Conversation(
            id=call_id or new_id("c"),
            sip_call_id=sip_call_id or new_call_id(),
            caller=caller,
            dialled=dialled,
            started_at=self.reactor.seconds(),
            site_id=site_id,
            direction=direction,
        )
        self.calls[conversation.id] = conversation
        self.feed.publish(
            ev.CallStarted(
                call=conversation.id,
                caller=caller.number,
                caller_name=caller.name,
                dialled=dialled,
                sip_call_id=conversation.sip_call_id,
                direction=direction,
            )
        )
        return conversation

    def call(self, call_id: str) -> Conversation:
        conversation = self.calls.get(call_id)
        if conversation is None:
            raise NotFound(f"no call {call_id}")
        return conversation

    def leg(self, leg_id: str) -> Leg:
        leg = self.legs.get(leg_id)
        if leg is None:
            raise NotFound(f"no leg {leg_id}")
        if leg.ended:
            raise Gone(f"leg {leg_id} has ended")
        return leg

    def adopt(self, leg: Leg, conversation: Conversation) -> None:
        """``leg`` belongs to ``conversation`` from now on (after an attended transfer the
        consulted party is part of the transferred call); its old call ends when it has no
        live legs left."""
        old = leg.conversation
        if old is conversation:
            return
        if old is not None:
            old.remove(leg)
        conversation.add(leg)
        self.feed.publish(
            ev.LegCreated(
                call=conversation.id,
                leg=leg.id,
                party=leg.party.number,
                party_name=leg.party.name,
                direction=leg.direction,
            )
        )
        if leg.up:
            self.feed.publish(ev.LegAnswered(call=conversation.id, leg=leg.id, codec=leg.codec))
        if old is not None and not old.live_legs:
            self._call_ended(old, ("answered", "transferred", "pbx"))

    def merge(self, conversation: Conversation, into: Conversation) -> None:
        """Every leg of ``conversation`` joins ``into``, and ``conversation`` ends without a
        record of its own (a pickup, a retrieved park: it is still the one call being taken;
        CallEnded says "merged")."""
        for leg in list(conversation.live_legs):
            conversation.remove(leg)
            into.add(leg)
            self.feed.publish(
                ev.LegCreated(
                    call=into.id,
                    leg=leg.id,
                    party=leg.party.number,
                    party_name=leg.party.name,
                    direction=leg.direction,
                )
            )
        self._call_ended(conversation, ("merged", into.id, "pbx"))

    # -- legs ------------------------------------------------------------------------------

    def _open_media(self, name: str, expect: str) -> MediaLeg:
        media = MediaLeg(name)
        try:
            self.ports.open(media)
        except NoPortsAvailable as exc:
            raise Refused(str(exc)) from None
        media.expect(expect)
        return media

    def _register(self, leg: Leg, conversation: Conversation) -> None:
        leg.owner = self
        leg.site_id = conversation.site_id
        self.legs[leg.id] = leg
        conversation.add(leg)
        self.feed.publish(
            ev.LegCreated(
                call=conversation.id,
                leg=leg.id,
                party=leg.party.number,
                party_name=leg.party.name,
                direction=leg.direction,
            )
        )

    def inbound_leg(
        self, incoming: IncomingRequest, party: Party, conversation: Conversation
    ) -> InboundLeg:
        """The leg of a phone's new INVITE; raises Refused when no media ports are free."""
        source = incoming.source.remote
        media = self._open_media(f"{conversation.id}/in", source.host)
        sdp = SdpSession(media, self._media_host(source), source.transport == "TLS")
        leg = InboundLeg(
            new_id("l"), party, incoming, self.client, sdp, self.reactor, self.settings
        )
        leg.on_dialog = self._dialog_made
        self._register(leg, conversation)
        return leg

    def outbound_leg(
        self,
        conversation: Conversation,
        contact: Binding,
        callee: Party,
        caller: Party,
        template: bytes,
        *,
        secure: bool,
        headers: tuple[tuple[str, str], ...] = (),
        authenticator: Any = None,
        domain: str | None = None,
    ) -> OutboundLeg:
        """A leg calling ``contact`` with pbx's ``template`` offer (not started yet).
        ``authenticator`` answers the callee's 401/407 (a trunk's digest client); ``domain``
        is the host of From and To (a trunk's provider domain; default: pbx's address)."""
        target = Address(contact.transport, contact.source_host, contact.source_port)
        host = self._media_host(target)
        media = self._open_media(f"{conversation.id}/out", contact.source_host)
        try:
            sdp = SdpSession(media, host, secure)
            offer = sdp.offer(template)
            shown = domain or host
            identity = NameAddr(parse_uri(f"sip:{caller.number}@{shown}"), caller.name or None)
            h = Headers()
            for path in contact.path:
                h.add("Route", path)
            h.add("Max-Forwards", "70")
            h.add("From", str(identity.with_param("tag", new_tag())))
            h.add("To", str(NameAddr(parse_uri(f"sip:{callee.number}@{shown}"))))
            h.add("Call-ID", new_call_id())
            h.add("CSeq", "1 INVITE")
            h.add("Contact", self.client.contact(target))
            h.add("P-Asserted-Identity", str(identity))
            h.add("Allow", ALLOW)
            h.add("Supported", "timer")
            h.add("Session-Expires", str(self.settings.session_expires))
            h.add("Min-SE", str(self.settings.min_se))
            for name, value in headers:
                h.add(name, value)
            if offer:
                h.add("Content-Type", "application/sdp")
            request = Request("INVITE", parse_uri(contact.contact), h, offer)
        except Exception:
            self.ports.close(media)
            raise
        leg = OutboundLeg(
            new_id("l"), callee, request, target, self.client, sdp, self.reactor, self.settings
        )
        leg.authenticator = authenticator
        leg.on_dialog = self._dialog_made
        self._register(leg, conversation)
        return leg

    def local_leg(self, conversation: Conversation, party: Party) -> LocalLeg:
        leg = LocalLeg(new_id("l"), party, self.reactor.seconds)
        self._register(leg, conversation)
        return leg

    def dial(
        self,
        conversation: Conversation,
        contacts: list[Binding],
        callee: Party,
        caller: Party,
        **options: Any,
    ) -> Dial:
        """Ring ``contacts`` in parallel (pbx.calls.dial); the Dial's ``result`` fires with the
        winner. ``options``: from_leg, prefer, timeout (default: the no-answer time),
        headers, on_ringing."""
        options.setdefault("timeout", self.no_answer)
        dial = Dial(self, conversation, contacts, callee, caller, **options)
        if dial.from_leg is not None:
            self.dials[dial.from_leg.id] = dial
        dial.start()
        return dial

    def answer_locally(
        self, leg: InboundLeg, prefer: str | None = None, by: Leg | None = None
    ) -> defer.Deferred[bool]:
        """pbx answers ``leg`` itself (a service, a retrieved park, a pickup), with the codec
        ``prefer`` when the phone offers it; ``by`` is the leg the call record names as the
        answering party (a local leg, a parked or picked-up call). Fires True once answered
        (the record is committed first), False when the leg ended meanwhile. Raises
        MediaRefused (488)."""
        body = leg.sdp.answer_locally(leg.offer, prefer)
        leg.format = leg.sdp.format
        conversation = leg.conversation
        assert conversation is not None
        committed = self.commit_answer(conversation, by or leg)

        def answer(going_on: bool) -> bool:
            if not going_on or leg.ended:
                return False
            leg.answer(body)
            return True

        def not_written(failure: Any) -> bool:
            self.set_outcome(conversation, "failed", "500", "pbx")
            for live in conversation.live_legs:
                live.hang_up("500")
            return False

        return committed.addCallbacks(answer, not_written)

    def commit_answer(self, conversation: Conversation, leg: Leg) -> defer.Deferred[bool]:
        """The call is answered by ``leg``: its record is committed before the caller hears
        the 200 OK. Starts the maximum-duration timer."""
        now = self.reactor.seconds()
        if conversation.answered_at is None:
            conversation.answered_at = now
            self._timers[conversation.id] = self.reactor.callLater(
                self.max_duration, self._too_long, conversation
            )
        origin = conversation.legs[0] if conversation.legs else leg
        return self.records.commit_answer(conversation.id, leg.id, now, (origin.codec, leg.codec))

    def hang_up(self, leg_id: str, cause: str = "normal") -> None:
        self.leg(leg_id).hang_up(cause)

    def hang_up_call(self, call_id: str, cause: str = "normal") -> None:
        """End every leg of a call (REST DELETE /calls/ID)."""
        conversation = self.call(call_id)
        self.end_call(conversation, "answered" if conversation.answered_at else "cancelled", cause)

    def end_call(
        self, conversation: Conversation, disposition: str, cause: str, side: str = "pbx"
    ) -> None:
        self._ending.setdefault(conversation.id, (disposition, cause, side))
        with self.feed.batch():
            for leg in list(conversation.live_legs):
                leg.hang_up(cause)

    def hold(self, leg_id: str) -> None:
        leg = self.leg(leg_id)
        if leg.held:
            raise WrongState(f"leg {leg_id} is on hold already")
        leg.hold()

    def retrieve(self, leg_id: str) -> None:
        leg = self.leg(leg_id)
        if not leg.held:
            raise WrongState(f"leg {leg_id} is not on hold")
        leg.retrieve()

    def send_digits(self, leg_id: str, digits: str, duration_ms: int = 160) -> None:
        leg = self.leg(leg_id)
        self.send_digits_to(leg, digits, duration_ms)

    def send_digits_to(self, leg: Leg, digits: str, duration_ms: int = 160) -> None:
        for digit in digits:
            if digit.upper() not in "0123456789*#ABCD":
                raise CallError(f"{digit!r} is not a DTMF digit")
        for digit in digits:
            if not self.patchbay.send_digit(leg, digit.upper(), duration_ms):
                raise WrongState(f"leg {leg.id} has no media to send digits on")

    # -- bridges ---------------------------------------------------------------------------

    def create_bridge(
        self,
        kind: BridgeKind = BridgeKind.MIX,
        policy: BridgePolicy | None = None,
        bridge_id: str | None = None,
    ) -> Bridge:
        if bridge_id is not None and bridge_id in self.bridges:
            raise WrongState(f"bridge {bridge_id} exists already")
        bridge = Bridge(bridge_id or new_id("b"), kind, policy)
        self.bridges[bridge.id] = bridge
        return bridge

    def join(self, leg: Leg, bridge: Bridge) -> None:
        """Put ``leg`` into ``bridge`` (moving it from its current bridge, if any)."""
        if leg.ended:
            raise Gone(f"leg {leg.id} has ended")
        if bridge.destroyed:
            raise Gone(f"bridge {bridge.id} is gone")
        if leg.bridge is bridge:
            return
        with self.feed.batch():
            old = leg.bridge
            if old is not None:
                self._unlink(leg, old)
            bridge.legs.append(leg)
            leg.bridge = bridge
            self._publish_leg(ev.BridgeJoined, leg, bridge)
            if old is not None:
                self._rewire(old)
                self._settle(old)
            self._rewire(bridge, [leg])

    def leave(self, leg: Leg) -> None:
        """Take ``leg`` out of its bridge (it hears silence or its own sources)."""
        bridge = leg.bridge
        if bridge is None:
            return
        with self.feed.batch():
            self._unlink(leg, bridge)
            self._rewire(bridge, [leg])
            self._settle(bridge)

    def swap(self, new: Leg, old: Leg) -> None:
        """``new`` takes ``old``'s place in ``old``'s bridge; ``old`` leaves it (attended
        transfer, INVITE with Replaces, pickup)."""
        bridge = old.bridge
        if bridge is None:
            raise WrongState(f"leg {old.id} is in no bridge")
        with self.feed.batch():
            self._unlink(old, bridge)
            previous = new.bridge
            if previous is not None:
                self._unlink(new, previous)
            bridge.legs.append(new)
            new.bridge = bridge
            self._publish_leg(ev.BridgeJoined, new, bridge)
            if previous is not None:
                self._rewire(previous)
                self._settle(previous)
            self._rewire(bridge, [old, new])

    def connect(self, a: Leg, b: Leg, policy: BridgePolicy | None = None) -> Bridge:
        """A new talking bridge with ``a`` and ``b``."""
        bridge = self.create_bridge(BridgeKind.MIX, policy)
        with self.feed.batch():
            self.join(a, bridge)
            self.join(b, bridge)
        return bridge

    def destroy(self, bridge: Bridge) -> None:
        """Dissolve ``bridge``: its legs leave (they are not hung up)."""
        with self.feed.batch():
            for leg in list(bridge.legs):
                self._unlink(leg, bridge)
                self._rewire(None, [leg])
            self._drop_bridge(bridge)

    def early_media(self, caller: InboundLeg, callee: OutboundLeg) -> None:
        """The dial's caller hears ``callee``'s early media: both in the call's bridge."""
        bridge = caller.bridge or self.create_bridge()
        if caller.bridge is None:
            self.join(caller, bridge)
        self.join(callee, bridge)

    def _unlink(self, leg: Leg, bridge: Bridge) -> None:
        if leg in bridge.legs:
            bridge.legs.remove(leg)
        leg.bridge = None
        self._publish_leg(ev.BridgeLeft, leg, bridge)

    def _publish_leg(self, kind: type, leg: Leg, bridge: Bridge) -> None:
        conversation = leg.conversation
        self.feed.publish(
            kind(
                call=conversation.id if conversation is not None else "",
                bridge=bridge.id,
                leg=leg.id,
                members=bridge.members,
                kind=bridge.kind.value,
            )
        )

    def music_changed(self) -> None:
        """Hold music became available (it loads after start-up, an upload replaced it):
        every live leg that should hear it and does not, does now."""
        with self.feed.batch():
            self.patchbay.update(None, [leg for leg in self.legs.values() if not leg.ended])

    def _rewire(self, bridge: Bridge | None, legs: list[Leg] | None = None) -> None:
        changed = self.patchbay.update(bridge, legs or [])
        if bridge is not None and changed:
            call = next((leg.conversation.id for leg in bridge.legs if leg.conversation), "")
            self.feed.publish(
                ev.BridgeMediaChanged(call=call, bridge=bridge.id, media=bridge.media.value)
            )

    def _settle(self, bridge: Bridge) -> None:
        """A bridge that lost a member: an empty one is dropped."""
        if not bridge.legs:
            self._drop_bridge(bridge)

    def _drop_bridge(self, bridge: Bridge) -> None:
        bridge.destroyed = True
        self.patchbay.forget(bridge)
        self.bridges.pop(bridge.id, None)

    def rewire(self, leg: Leg) -> None:
        """Re-derive the media of ``leg`` and its bridge (after a change of its sources)."""
        self._rewire(leg.bridge, [leg])

    # -- media sources ----------------------------------------------------------------------

    def play(self, target: Leg | Bridge, source: Any) -> Any:
        """Play ``source`` (a pbx.media.player.Playback or any frame source) to a leg or to
        everyone in a bridge; it is dropped when it finishes."""
        if isinstance(target, Leg) and target.ended:
            raise Gone(f"leg {target.id} has ended")
        target.sources.append(source)
        self._rewire_target(target)
        return source

    def record(self, target: Leg | Bridge, recorder: Any) -> Any:
        """Record a leg (what it says and hears) or a bridge (everyone) into ``recorder``."""
        return self.play(target, recorder)

    def stop_source(self, target: Leg | Bridge, source: Any) -> None:
        if source in target.sources:
            target.sources.remove(source)
            stop = getattr(source, "stop", None)
            if stop is not None and not getattr(source, "finished", False):
                stop()
            self._rewire_target(target)

    def collect_digits(
        self, leg: Leg, max_digits: int, timeout: float, terminators: str = "#"
    ) -> defer.Deferred[str]:
        """Digits ``leg`` presses from now on, until ``max_digits``, a terminator (not
        included) or ``timeout`` seconds without one (pbx.calls.digits)."""
        if leg.ended:
            raise Gone(f"leg {leg.id} has ended")
        collector = DigitCollector(leg, max_digits, timeout, terminators, self.reactor)
        self.play(leg, collector)

        def done(digits: str) -> str:
            self.stop_source(leg, collector)
            return digits

        return collector.result.addCallback(done)

    def tone(self, leg: Leg, kind: str = "ringback", max_ms: int | None = None) -> Any:
        """Play a call-progress tone (``ringback``, ``busy``, ``congestion``) of the leg's
        site country to ``leg``; returns the playback (stop it with :meth:`stop_source`)."""
        plan = tones.plan_for(self.country_for(leg), tones.Tone[kind.upper()])
        return self.play(leg, Playback.of_tone(tones.ToneSource(plan), max_ms=max_ms))

    def say_digits(self, leg: Leg, number: str) -> defer.Deferred[str]:
        """Read ``number`` to ``leg`` digit by digit (pbx.media.prompts); fires with
        "done" or "stopped" when it has been said (at once, with "skipped", when the
        prompts are not installed or the leg cannot hear)."""
        prompts = self.prompts
        if prompts is None or leg.ended or leg.holding:
            return defer.succeed("skipped")
        done: defer.Deferred[str] = defer.Deferred()

        def loaded(_: Any) -> None:
            if leg.ended:
                done.callback("skipped")
                return
            playback = Playback(prompts.digits(number))
            playback.done.chainDeferred(done)
            self.play(leg, playback)

        def missing(failure: Any) -> None:
            log.warning("[%s] cannot say %s: %s", leg.call_id, number, failure.getErrorMessage())
            done.callback("skipped")

        prompts.load(self.reactor).addCallbacks(loaded, missing)
        return done

    def _rewire_target(self, target: Leg | Bridge) -> None:
        if isinstance(target, Bridge):
            self._rewire(target)
        else:
            self._rewire(target.bridge, [target])

    def _source_done(self, source: Any) -> None:
        for leg in list(self.legs.values()):
            if source in leg.sources:
                leg.sources.remove(source)
                self.reactor.callLater(0, self._rewire, leg.bridge, [leg])
        for bridge in list(self.bridges.values()):
            if source in bridge.sources:
                bridge.sources.remove(source)
                self.reactor.callLater(0, self._rewire, bridge)

    # -- what legs report (LegOwner) -------------------------------------------------------

    def leg_ringing(self, leg: Leg, early_media: bool) -> None:
        conversation = leg.conversation
        with self.feed.batch():
            self.feed.publish(
                ev.LegRinging(
                    call=conversation.id if conversation else "",
                    leg=leg.id,
                    early_media=early_media,
                )
            )
            dial = self.dials.get(leg.id)
            if dial is not None and isinstance(leg, OutboundLeg):
                dial.ringing(leg, early_media)

    def leg_answered(self, leg: Leg) -> None:
        conversation = leg.conversation
        with self.feed.batch():
            self.feed.publish(
                ev.LegAnswered(
                    call=conversation.id if conversation else "", leg=leg.id, codec=leg.codec
                )
            )
            if isinstance(leg, SipLeg) and leg.media is not None:
                self._watch.add(leg.media)
            dial = self.dials.get(leg.id)
            if dial is not None and isinstance(leg, OutboundLeg):
                dial.answered(leg)
            elif leg.bridge is not None or leg.sources:
                self._rewire(leg.bridge, [leg])

    def leg_ended(self, leg: Leg, cause: str, by_peer: bool) -> None:
        """A leg is gone. In this order: the call's outcome (the first of its own legs to end
        says how it ended), its sources stop, it leaves its bridge, LegEnded; then whoever
        waited on it (a dial) and the bridge's policy react; the call ends with its last leg."""
        conversation = leg.conversation
        with self.feed.batch():
            if conversation is not None and (
                leg.answered_at is not None or conversation.legs[:1] == [leg]
            ):
                side = self._side(leg, conversation) if by_peer else "pbx"
                disposition = "answered" if conversation.answered_at else "cancelled"
                self._ending.setdefault(conversation.id, (disposition, cause, side))
            for hook in self.before_end:
                try:
                    hook(leg)
                except Exception:
                    log.exception("[%s] end hook failed for %s", leg.call_id, leg.id)
            for source in list(leg.sources):
                stop = getattr(source, "stop", None)
                if stop is not None and not getattr(source, "finished", False):
                    stop()
            leg.sources.clear()
            bridge = leg.bridge
            if bridge is not None:
                self._unlink(leg, bridge)
            self.patchbay.release(leg)
            self._forget_leg(leg)
            self.feed.publish(
                ev.LegEnded(
                    call=conversation.id if conversation else "",
                    leg=leg.id,
                    cause=cause,
                    answered=leg.answered_at is not None,
                )
            )
            dial = self.dials.pop(leg.id, None)
            if dial is not None:
                if isinstance(leg, OutboundLeg) and leg in dial.legs:
                    dial.ended(leg, cause)
                else:
                    dial.caller_ended()
            if bridge is not None:
                self._rewire(bridge)
                self._alone(bridge)
                self._settle(bridge)
            if conversation is not None and not conversation.live_legs:
                self._call_ended(conversation)

    def _alone(self, bridge: Bridge) -> None:
        """A member hung up: with ``when_alone`` HANG_UP, the last one is hung up too."""
        live = [leg for leg in bridge.legs if not leg.ended]
        if len(live) == 1 and bridge.policy.when_alone is Alone.HANG_UP:
            survivor = live[0]
            if not survivor.moving:
                survivor.hang_up("normal")

    def _side(self, leg: Leg, conversation: Conversation) -> str:
        first = conversation.legs[0] if conversation.legs else None
        return "caller" if leg is first else "callee"

    def _forget_leg(self, leg: Leg) -> None:
        self.legs.pop(leg.id, None)
        if isinstance(leg, SipLeg):
            if leg.dialog is not None:
                self.dialogs.pop(leg.dialog.dialog_id, None)
            if leg.media is not None:
                self._watch.discard(leg.media)
                self.ports.close(leg.media)

    def _call_ended(
        self, conversation: Conversation, reason: tuple[str, str, str] | None = None
    ) -> None:
        if self.calls.pop(conversation.id, None) is None:
            return
        conversation.ended_at = self.reactor.seconds()
        timer = self._timers.pop(conversation.id, None)
        if timer is not None and timer.active():
            timer.cancel()
        disposition, cause, side = reason or self._ending.get(
            conversation.id, ("failed", "normal", "pbx")
        )
        self._ending.pop(conversation.id, None)
        if conversation.answered_at is not None and disposition not in (
            "interrupted",
            "failed",
            "merged",
        ):
            disposition = "answered"  # however it ended, it was answered
        # after every subscriber has seen the end (the feed delivers when the outermost
        # operation returns): free the call's object graph at once
        self.reactor.callLater(0, conversation.release)
        self.feed.publish(
            ev.CallEnded(
                call=conversation.id,
                disposition=disposition,
                cause=cause,
                side=side,
                callee=conversation.callee,
            )
        )
        log.info(
            "[%s] %s -> %s ended: %s (%s)",
            conversation.sip_call_id,
            conversation.caller.number,
            conversation.dialled,
            disposition,
            cause,
        )

    def set_outcome(
        self, conversation: Conversation, disposition: str, cause: str, side: str
    ) -> None:
        """How the call ends when its last leg goes (set before ending it, first one wins)."""
        self._ending.setdefault(conversation.id, (disposition, cause, side))

    def leg_hold_changed(self, leg: Leg) -> None:
        conversation = leg.conversation
        with self.feed.batch():
            held = leg.holding or leg.held
            kind = ev.LegHeld if held else ev.LegRetrieved
            by = (
                "pbx"
                if leg.held or (not held and not leg.holding and leg.direction == "local")
                else "phone"
            )
            self.feed.publish(kind(call=conversation.id if conversation else "", leg=leg.id, by=by))
            self._rewire(leg.bridge, [leg])

    def leg_format_changed(self, leg: Leg) -> None:
        with self.feed.batch():
            self._rewire(leg.bridge, [leg])

    def leg_digit(self, leg: Leg, digit: str, duration_ms: int) -> None:
        """A digit from a phone outside its media (SIP INFO): reported, and played to the
        parties it talks to (RFC 4733 or in-band into their streams)."""
        self._digit(leg, digit)
        bridge = leg.bridge
        if bridge is None:
            return
        for other in bridge.legs:
            if other is not leg and is_talker(other):
                if isinstance(other, LocalLeg):
                    other.digit(digit)
                else:
                    self.patchbay.send_digit(other, digit, duration_ms)

    def _media_digit(self, leg: Leg, digit: str, duration_ms: int) -> None:
        """A digit pbx saw in a leg's media. Relays and transcoders carry it to the other
        party themselves; in a mixing bridge it reaches local legs (services)."""
        self._digit(leg, digit)
        bridge = leg.bridge
        if bridge is not None and bridge.media is Media.MIX:
            for other in bridge.legs:
                if other is not leg and isinstance(other, LocalLeg):
                    other.digit(digit)

    def _digit(self, leg: Leg, digit: str) -> None:
        for source in list(leg.sources):
            if isinstance(source, DigitCollector):
                source.add(digit)
        conversation = leg.conversation
        self.feed.publish(
            ev.DigitReceived(call=conversation.id if conversation else "", leg=leg.id, digit=digit)
        )

    def leg_refer(self, leg: SipLeg, refer: Any, progress: Any) -> None:
        """A phone asks to transfer its call (REFER): the transfer feature decides."""
        if self.on_refer is None:
            raise Refused("transfer is not available")
        self.on_refer(leg, refer, progress)

    # -- SIP glue ----------------------------------------------------------------------------

    def _dialog_made(self, leg: SipLeg) -> None:
        if leg.dialog is not None:
            self.dialogs[leg.dialog.dialog_id] = leg

    def handle_in_dialog(self, incoming: IncomingRequest) -> bool:
        """An in-dialog request (BYE, re-INVITE, INFO, REFER…): to its leg; False if no
        dialog matches (the stack then answers 481)."""
        leg = self.dialogs.get(dialog_id_of_request(incoming.request))
        if leg is None or leg.ended:
            return False
        with self.feed.batch():
            leg.receive(incoming)
        return True

    def on_ack(self, request: Request, source: Source) -> None:
        leg = self.dialogs.get(dialog_id_of_request(request))
        if leg is not None and not leg.ended:
            leg.acked(request)

    def _stray_2xx(self, response: Response, source: Source) -> None:
        """A 2xx retransmitted after its INVITE transaction ended: ACK it again."""
        leg = self.dialogs.get(dialog_id_of_response(response))
        if leg is not None:
            leg.stray_2xx(response)

    @staticmethod
    def parse_replaces(value: str) -> Any:
        """A Replaces header value (RFC 3891 §6.1); ValueError when it is not one."""
        try:
            return parse_replaces(value)
        except RemoteProtocolError as exc:
            raise ValueError(str(exc)) from None

    def find_dialog(self, dialog_id: tuple[str, str, str]) -> SipLeg | None:
        """The leg of a dialog pbx has, by (Call-ID, pbx's tag, the phone's tag); early
        outbound legs (no dialog yet) are found by their INVITE's Call-ID and From tag."""
        leg = self.dialogs.get(dialog_id)
        if leg is not None:
            return leg
        call_id, local_tag, _ = dialog_id
        for candidate in self.legs.values():
            if isinstance(candidate, OutboundLeg) and not candidate.up:
                request = candidate.request
                if (
                    request is not None
                    and request.call_id == call_id
                    and request.from_.tag == local_tag
                ):
                    return candidate
        return None

    def _media_host(self, target: Address) -> str:
        return self.client.local_address(target)[0]

    def _media_stopped(self, media: MediaLeg) -> None:
        for leg in list(self.legs.values()):
            if leg.media is media:
                if leg.silent or leg.bridge is None or not is_talker(leg):
                    self._watch.add(media)  # on hold or alone: no media is fine
                    return
                log.info("[%s] %s: no media: ending it", leg.call_id, leg.id)
                conversation = leg.conversation
                if conversation is not None:
                    self.set_outcome(conversation, "answered", "media timeout", "network")
                leg.hang_up("media timeout")
                return

    def _too_long(self, conversation: Conversation) -> None:
        self._timers.pop(conversation.id, None)
        if conversation.id in self.calls:
            self.end_call(conversation, "answered", "maximum call duration")

    # -- features (registered by the composition root) --------------------------------------

    def _feature(self, name: str) -> Any:
        feature = self.features.get(name)
        if feature is None:
            raise Refused(f"{name} is not available")
        return feature

    def blind_transfer(self, leg_id: str, target: str) -> Any:
        """Hand the party of ``leg_id`` to ``target`` (an extension)."""
        return self._feature("transfer").blind(self.leg(leg_id), target)

    def attended_transfer(self, leg_id: str, other_id: str) -> Any:
        """Join the parties the two legs talk to (the transferor's two calls)."""
        return self._feature("transfer").attended(self.leg(leg_id), self.leg(other_id))

    def park(self, leg_id: str) -> Any:
        return self._feature("park").park(self.leg(leg_id), by=None)

    def pickup(self, leg_id: str, extension: str | None = None) -> Any:
        return self._feature("pickup").pick(self.leg(leg_id), extension)

    def originate(self, target: str, **options: Any) -> Any:
        return self._feature("originate").originate(target, **options)

    # -- snapshots -------------------------------------------------------------------------

    def snapshot(self, durations: bool = True) -> list[dict[str, Any]]:
        """Active calls for ``pbx calls``, the dashboard and the API. ``since`` is when the
        call's state (ringing, answered) began, in reactor seconds; ``duration`` the seconds
        since then, left out with ``durations=False`` (for the status file, which rebuilds the
        list only when the event feed moved: its readers count from ``since``)."""
        now = self.reactor.seconds()
        out = []
        for conversation in self.calls.values():
            legs = conversation.live_legs
            since = conversation.answered_at or conversation.started_at
            out.append(
                {
                    "id": conversation.id,
                    "call_id": conversation.sip_call_id,
                    "caller": conversation.caller.number,
                    "dialled": conversation.dialled,
                    "state": "answered" if conversation.answered_at else "ringing",
                    "since": since,
                    "codecs": sorted({leg.codec for leg in legs if leg.codec}),
                    "legs": [
                        {
                            "id": leg.id,
                            "party": leg.party.number,
                            "name": leg.party.name,
                            "direction": leg.direction,
                            "state": leg.state.value,
                            "held": leg.held or leg.holding,
                            "bridge": leg.bridge.id if leg.bridge else None,
                            "codec": leg.codec,
                        }
                        for leg in legs
                    ],
                }
            )
            if durations:
                out[-1]["duration"] = round(now - since, 1)
        return out


def _country_of(leg: Leg) -> str:
    """The calling code of the leg's call's site ("" for the EU default tones)."""
    return leg.conversation.country if leg.conversation is not None else ""


__all__ = ["CallControl", "IN_DIALOG_METHODS"]
