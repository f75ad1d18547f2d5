"""Call pickup (group ``*8``, directed ``**EXT``) and INVITE with Replaces (RFC 3891).

:class:`Pickup` is the ``pickup`` feature. A phone that dials the group-pickup code takes the
oldest call ringing at a member of its own pickup group (``pbx user set EXT --pickup-group``);
``**EXT`` takes the call ringing at EXT. The ringing phones stop (CANCEL with ``Reason:
SIP;cause=200;text="Call completed elsewhere"``, so they do not list a missed call), the caller
and the picker are answered (the picker with the caller's codec when it has it, so the pair is
relayed untouched) and connected, and it is still one call: the picker's own call merges into
it, the record names the picker as the one who answered and notes the pickup.

An incoming INVITE with a Replaces header naming a dialog at pbx (:meth:`Pickup.replaces`,
reached from the switch before any number is looked at):

- a call still ringing at a phone (pbx's outgoing INVITE: pickup from a BLF key) is picked up;
- an answered call: the new phone takes the named leg's place in its bridge (answered with
  that bridge partner's codec) and the replaced leg is hung up (cause "replaced");
- unknown dialogs get 481, ``early-only`` for an answered one 486 (RFC 3891 §3).
Uses the call-control API only.
"""

from __future__ import annotations

import logging
from typing import Any

from pbx.calls import events as ev
from pbx.calls.control import CallControl
from pbx.calls.dial import Dial
from pbx.calls.model import Leg, LegState, NotFound, Party, Refused
from pbx.calls.negotiate import shared_codec
from pbx.calls.numberplan import Kind, Target
from pbx.calls.sipleg import InboundLeg, OutboundLeg

log = logging.getLogger(__name__)


class Pickup:
    """The pickup feature; see the module docstring."""

    def __init__(self, control: CallControl) -> None:
        self.control = control
        control.features["pickup"] = self

    # -- feature codes ---------------------------------------------------------------------

    def __call__(self, picker: InboundLeg, target: Target) -> None:
        """The switch's entry for ``*8`` and ``**EXT``."""
        if target.kind is Kind.DIRECTED_PICKUP:
            self.pick(picker, target.argument)
            return
        d = self.control.directory.callee(picker.party.number)

        def found(callee: Any) -> Any:
            group = callee.pickup_group if callee.exists else None
            if not group:
                self._nothing(picker, "the caller is in no pickup group")
                return None
            return self.control.directory.group_members(group).addCallback(
                lambda members: self._pick_among(picker, set(members) - {picker.party.number})
            )

        d.addCallback(found)
        d.addErrback(lambda f: self._failed(picker, f))

    def pick(self, picker: Leg, extension: str | None) -> None:
        """Take the call ringing at ``extension`` (None: at any member of the group)."""
        if extension is None:
            raise Refused("give the extension whose call to pick up")
        self._pick_among(picker, {extension})

    def _pick_among(self, picker: Leg, extensions: set[str]) -> None:
        if picker.ended:
            return
        ringing = self._ringing(extensions)
        if ringing is None:
            self._nothing(picker, f"no call rings at {', '.join(sorted(extensions)) or 'nobody'}")
            return
        self.take(picker, ringing)

    def _ringing(self, extensions: set[str]) -> OutboundLeg | None:
        """The oldest leg ringing at one of ``extensions`` for a waiting caller."""
        candidates: list[tuple[float, OutboundLeg]] = []
        seen: set[int] = set()
        for dial in self.control.dials.values():
            if id(dial) in seen or dial.from_leg is None or dial.from_leg.ended:
                continue
            seen.add(id(dial))
            for leg in dial.legs:
                if (
                    isinstance(leg, OutboundLeg)
                    and leg.party.number in extensions
                    and leg.state in (LegState.CALLING, LegState.RINGING)
                ):
                    conversation = dial.conversation
                    candidates.append((conversation.started_at, leg))
        candidates.sort(key=lambda pair: pair[0])
        return candidates[0][1] if candidates else None

    def _nothing(self, picker: Leg, why: str) -> None:
        log.info("[%s] pickup by %s: %s", picker.call_id, picker.party.number, why)
        conversation = picker.conversation
        if conversation is not None:
            self.control.set_outcome(conversation, "failed", "480", "pbx")
        picker.hang_up("480")

    def _failed(self, picker: Leg, failure: Any) -> None:
        log.error("[%s] pickup failed: %s", picker.call_id, failure.getTraceback())
        if not picker.ended:
            picker.hang_up("500")

    # -- taking a ringing call ---------------------------------------------------------------

    def take(self, picker: Leg, ringing: OutboundLeg) -> None:
        """``picker`` (an unanswered inbound leg) takes the call ringing at ``ringing``."""
        control = self.control
        dial: Dial | None = control.dials.get(ringing.id)
        caller = dial.from_leg if dial is not None else None
        if dial is None or caller is None or caller.ended:
            raise NotFound("that call is not ringing any more")
        call = caller.conversation
        assert call is not None and isinstance(picker, InboundLeg)
        own = picker.conversation
        control.feed.publish(
            ev.PickedUp(call=call.id, leg=caller.id, by=picker.id, ringing=ringing.id)
        )
        dial.hand_over()
        if own is not None and own is not call:
            control.merge(own, call)
        prefer = shared_codec(caller.offer, picker.offer)
        log.info(
            "[%s] %s picks up the call from %s ringing at %s",
            caller.call_id, picker.party.number, caller.party.number, ringing.party.number,
        )
        first = control.answer_locally(caller, prefer, by=picker)

        def caller_answered(going_on: bool) -> Any:
            if not going_on or picker.ended:
                if not caller.ended:
                    caller.hang_up("cancelled")
                return None
            return control.answer_locally(picker, caller.codec or None).addCallback(connect)

        def connect(going_on: bool) -> None:
            if going_on and not caller.ended:
                control.connect(caller, picker)
            elif not caller.ended:
                caller.hang_up("cancelled")

        first.addCallback(caller_answered)
        first.addErrback(lambda f: self._failed(picker, f))

    # -- INVITE with Replaces ----------------------------------------------------------------

    def on_invite(self, incoming: Any, username: str) -> bool:
        """The INVITE handler registered before the switch's: takes an INVITE with a
        Replaces header (True), declines every other (False: the switch routes it)."""
        request = incoming.request
        value = request.headers.get("Replaces")
        if value is None or request.to.tag:
            return False
        try:
            named = self.control.parse_replaces(value)
        except ValueError as exc:
            incoming.respond(400, str(exc)[:60])
            return True
        return self.replaces(incoming, username, named)

    def replaces(self, incoming: Any, username: str, named: Any) -> bool:
        """An INVITE with Replaces naming ``named``: always answered here."""
        control = self.control
        replaced = control.find_dialog(named.dialog_id)
        request = incoming.request
        caller = Party(username, request.from_.display_name or "")
        if replaced is None or replaced.ended:
            incoming.respond(481, "Call Does Not Exist")  # RFC 3891 §3
            return True
        if isinstance(replaced, OutboundLeg) and not replaced.up:
            conversation = control.new_call(caller, replaced.party.number, request.call_id)
            try:
                picker = control.inbound_leg(incoming, caller, conversation)
                self.take(picker, replaced)
            except Refused:
                incoming.respond(503, "No Media Ports")
                control._call_ended(conversation, ("failed", "503", "pbx"))
            except NotFound:
                incoming.respond(481, "Call Does Not Exist")
                control._call_ended(conversation, ("failed", "481", "pbx"))
            return True
        if not replaced.up or isinstance(replaced, InboundLeg) and not replaced.dialog:
            incoming.respond(481, "Call Does Not Exist")
            return True
        if named.early_only:
            incoming.respond(486, "Busy Here")
            return True
        self._replace(incoming, caller, replaced)
        return True

    def _replace(self, incoming: Any, caller: Party, replaced: Leg) -> None:
        control = self.control
        call = replaced.conversation
        assert call is not None
        partner = next((x for x in (replaced.bridge.legs if replaced.bridge else []) if x is not replaced), None)
        try:
            newcomer = control.inbound_leg(incoming, caller, call)
        except Refused:
            incoming.respond(503, "No Media Ports")
            return
        prefer = partner.codec if partner is not None else replaced.codec
        try:
            answering = control.answer_locally(newcomer, prefer or None)
        except Exception:
            newcomer.hang_up("488")
            raise

        def answered(going_on: bool) -> None:
            if not going_on:
                return
            if replaced.ended or replaced.bridge is None:
                newcomer.hang_up("replaced call ended")
                return
            control.swap(newcomer, replaced)
            replaced.hang_up("replaced")
            log.info("[%s] %s replaced %s", newcomer.call_id, newcomer.party.number, replaced.id)

        answering.addCallback(answered)
        answering.addErrback(lambda f: self._failed(newcomer, f))


__all__ = ["Pickup"]
