"""Call transfer: blind (REFER, RFC 3515), attended (REFER with Replaces, RFC 3891), recall.

:class:`Transfers` is the ``transfer`` feature of the call control. It answers a phone's
REFER (the call control hands it over with a progress object that sends the NOTIFYs):

- **blind**: the transferor's partner (the transferee) leaves their bridge and hears ringback
  while the target rings (pbx.calls.dial, the transferee's identity shown, its codec offered
  first so the new pair is relayed untouched); when the target answers the two are bridged,
  the transferor gets ``NOTIFY 200`` and, if it does not hang up by itself, is hung up. If the
  target is busy, unknown, or does not answer within ``recall_after`` seconds (``[calls]
  transfer_recall``), the transferor is called back (**transfer recall**): still on the line,
  it gets its party back at once; gone, its phones ring and on answer it is connected again;
  if nobody answers that either, the transferee is hung up. A REFER to the park code parks the
  transferee (pbx.features.park).
- **attended**: the Refer-To carries a Replaces naming the transferor's second call; the two
  parties the transferor talks to are joined (the second call's party takes the transferor's
  place next to the first), the consulted party becomes part of the transferred call, and the
  transferor's two legs are hung up unless it does so itself.

The same operations back the facade's ``blind_transfer``/``attended_transfer`` (REST, CTI);
without a REFER there is no NOTIFY and the transferor is hung up at once.

Each blind transfer is a :class:`BlindTransfer` state machine with an explicit exit for every
(state, stimulus) pair (:data:`TABLE`), including "the transferee hung up meanwhile".
Uses the call-control API only (setup.cfg contract).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from typing import Any

from pbx.calls import events as ev
from pbx.calls.control import CallControl
from pbx.calls.dial import Dial, DialFailed
from pbx.calls.model import Gone, Leg, Party, Refused, WrongState
from pbx.calls.numberplan import Kind, NumberPlan

log = logging.getLogger(__name__)

HANG_UP_TRANSFEROR_AFTER = 4.0  # s after the final NOTIFY, if the phone does not BYE itself
RECALL_GRACE = 2.0  # s a transferor still on the line has to hang up after a failure NOTIFY


class State(enum.Enum):
    DIALING = "dialing"  # the target rings; the transferee hears ringback
    RECALLING = "recalling"  # the transferor's phones ring again
    CONNECTED = "connected"
    ENDED = "ended"


class Stimulus(enum.Enum):
    TARGET_ANSWERED = "target_answered"
    TARGET_FAILED = "target_failed"  # busy, unknown, not registered, no answer (recall time)
    RECALL_ANSWERED = "recall_answered"
    RECALL_FAILED = "recall_failed"
    TRANSFEREE_GONE = "transferee_gone"
    TRANSFEROR_GONE = "transferor_gone"


S, T = State, Stimulus
# (state, stimulus) -> (method, next state); every pair is listed
TABLE: dict[tuple[State, Stimulus], tuple[str, State]] = {
    (S.DIALING, T.TARGET_ANSWERED): ("_connect_target", S.CONNECTED),
    (S.DIALING, T.TARGET_FAILED): ("_recall", S.RECALLING),
    (S.DIALING, T.RECALL_ANSWERED): ("_ignore", S.DIALING),
    (S.DIALING, T.RECALL_FAILED): ("_ignore", S.DIALING),
    (S.DIALING, T.TRANSFEREE_GONE): ("_abandon", S.ENDED),
    (S.DIALING, T.TRANSFEROR_GONE): ("_ignore", S.DIALING),
    (S.RECALLING, T.TARGET_ANSWERED): ("_ignore", S.RECALLING),
    (S.RECALLING, T.TARGET_FAILED): ("_ignore", S.RECALLING),
    (S.RECALLING, T.RECALL_ANSWERED): ("_connect_recall", S.CONNECTED),
    (S.RECALLING, T.RECALL_FAILED): ("_give_up", S.ENDED),
    (S.RECALLING, T.TRANSFEREE_GONE): ("_abandon", S.ENDED),
    (S.RECALLING, T.TRANSFEROR_GONE): ("_ignore", S.RECALLING),
    **{(S.CONNECTED, t): ("_ignore", S.CONNECTED) for t in Stimulus},
    **{(S.ENDED, t): ("_ignore", S.ENDED) for t in Stimulus},
}


class BlindTransfer:
    """One blind transfer of ``transferee`` to ``target``, asked by ``transferor``."""

    def __init__(
        self,
        feature: Transfers,
        transferee: Leg,
        target: str,
        transferor: Leg | None,
        progress: Any = None,
    ) -> None:
        self.feature = feature
        self.control = feature.control
        self.transferee = transferee
        self.target = target
        self.transferor = transferor
        self.transferor_number = transferor.party.number if transferor else ""
        self.progress = progress
        self.state = State.DIALING
        self.dial: Dial | None = None
        self.ringback: Any = None
        self.transcript: list[tuple[State, Stimulus, State]] = []

    # -- the table ---------------------------------------------------------------------------

    def stimulate(self, stimulus: Stimulus, *args: Any) -> None:
        method, next_state = TABLE[(self.state, stimulus)]
        before, self.state = self.state, next_state
        self.transcript.append((before, stimulus, next_state))
        log.debug("transfer of %s: %s --%s--> %s", self.transferee.id, before, stimulus, next_state)
        getattr(self, method)(*args)
        if self.state in (State.CONNECTED, State.ENDED):
            self.feature.finished(self)

    def _ignore(self, *args: Any) -> None:
        pass

    # -- starting ---------------------------------------------------------------------------

    def start(self) -> None:
        control = self.control
        control.leave(self.transferee)
        self.ringback = control.tone(self.transferee, "ringback")
        self._ring(self.target, self.feature.recall_after, self._target_answered, self._target_failed)

    def _ring(
        self,
        number: str,
        timeout: float,
        answered: Callable[[Leg], None],
        failed: Callable[[int], None],
    ) -> None:
        control = self.control
        conversation = self.transferee.conversation
        assert conversation is not None

        def found(callee: Any) -> None:
            if self.transferee.ended or self.state in (State.CONNECTED, State.ENDED):
                return
            if not callee.exists or not callee.bindings:
                failed(404 if not callee.exists else 480)
                return
            self.dial = control.dial(
                conversation,
                callee.bindings,
                Party(number, callee.name),
                self.transferee.party,
                prefer=self.transferee.format,
                timeout=timeout,
                on_ringing=lambda dial, leg, early: self._report(180, "Ringing"),
            )
            self.dial.result.addCallbacks(answered, lambda f: failed(_status(f)))

        d = control.directory.callee(number)
        d.addCallbacks(found, lambda f: failed(500))

    def _report(self, status: int, reason: str) -> None:
        if self.progress is not None and self.state is State.DIALING:
            self.progress.report(status, reason)

    def _target_answered(self, leg: Leg) -> None:
        self.stimulate(Stimulus.TARGET_ANSWERED, leg)

    def _target_failed(self, status: int) -> None:
        self.stimulate(Stimulus.TARGET_FAILED, status)

    # -- actions -----------------------------------------------------------------------------

    def _stop_ringback(self) -> None:
        if self.ringback is not None:
            self.control.stop_source(self.transferee, self.ringback)
            self.ringback = None

    def _connect_target(self, target: Leg) -> None:
        control = self.control
        self._stop_ringback()
        control.connect(self.transferee, target)
        self._publish("connected", target.party.number)
        if self.progress is not None:
            self.progress.done(200, "OK")
        self.feature.let_go(self.transferor)

    def _recall(self, status: int) -> None:
        """The target did not take the call: NOTIFY the failure, call the transferor back."""
        log.info(
            "[%s] transfer of %s to %s failed (%d): recalling %s",
            self.transferee.call_id, self.transferee.id, self.target, status,
            self.transferor_number or "nobody",
        )
        if self.progress is not None:
            self.progress.done(status, _reason(status))
        self._publish("recalled", self.target)
        transferor = self.transferor
        if transferor is not None and not transferor.ended:
            # many phones hang up on any final NOTIFY: give it a moment before deciding
            # whether it takes its party back or must be rung
            self.control.reactor.callLater(RECALL_GRACE, self._recall_after_grace, status)
            return
        self._ring_transferor(status)

    def _recall_after_grace(self, status: int) -> None:
        if self.state is not State.RECALLING:
            return
        transferor = self.transferor
        if transferor is not None and not transferor.ended:
            self.stimulate(Stimulus.RECALL_ANSWERED, transferor)
            return
        self._ring_transferor(status)

    def _ring_transferor(self, status: int) -> None:
        if not self.transferor_number:
            self.stimulate(Stimulus.RECALL_FAILED, status)
            return
        self._ring(
            self.transferor_number,
            self.control.no_answer,
            lambda leg: self.stimulate(Stimulus.RECALL_ANSWERED, leg),
            lambda code: self.stimulate(Stimulus.RECALL_FAILED, code),
        )

    def _connect_recall(self, leg: Leg) -> None:
        self._stop_ringback()
        self.control.connect(self.transferee, leg)

    def _give_up(self, status: int) -> None:
        self._stop_ringback()
        log.info("[%s] transfer recall not answered: ending %s", self.transferee.call_id, self.transferee.id)
        if not self.transferee.ended:
            self.transferee.hang_up("transfer failed")

    def _abandon(self) -> None:
        """The transferee hung up while the target (or the recall) rang."""
        if self.dial is not None:
            self.dial.cancel("cancelled")
        if self.progress is not None:
            self.progress.done(487, "Request Terminated")

    def _publish(self, outcome: str, target: str) -> None:
        conversation = self.transferee.conversation
        self.control.feed.publish(
            ev.Transferred(
                call=conversation.id if conversation else "",
                leg=self.transferee.id,
                by=self.transferor.id if self.transferor else "",
                target=target,
                kind="blind",
                outcome=outcome,
            )
        )


class Transfers:
    """The transfer feature; see the module docstring."""

    def __init__(
        self,
        control: CallControl,
        plan: NumberPlan,
        *,
        recall_after: float = 30.0,
        park: Any = None,
    ) -> None:
        self.control = control
        self.plan = plan
        self.recall_after = recall_after
        self.park = park
        self.active: dict[str, BlindTransfer] = {}  # transferee leg id -> its transfer
        control.on_refer = self.refer
        control.features["transfer"] = self
        control.feed.subscribe(self._event)

    # -- entry points ------------------------------------------------------------------------

    def refer(self, leg: Leg, refer: Any, progress: Any) -> None:
        """A REFER from ``leg``'s phone (raises a CallError to refuse it)."""
        if refer.replaces is not None:
            other = self.control.find_dialog(refer.replaces.dialog_id)
            if other is None:
                raise Gone("the call to transfer to (Replaces) does not exist")
            self.attended(leg, other, progress)
            return
        partner = self._partner(leg)
        self.blind(partner, refer.number, by=leg, progress=progress)

    def blind(
        self, transferee: Leg, target: str, by: Leg | None = None, progress: Any = None
    ) -> BlindTransfer | None:
        """Hand ``transferee`` to ``target``; ``by`` is the transferor's leg (from a REFER);
        without one (REST, CTI) the other party of the transferee's bridge is hung up."""
        if transferee.ended:
            raise Gone(f"leg {transferee.id} has ended")
        if not transferee.up:
            raise WrongState(f"leg {transferee.id} is not answered")
        if transferee.id in self.active:
            raise WrongState(f"leg {transferee.id} is being transferred already")
        destination = self.plan.resolve(target)
        if destination.kind is Kind.PARK:
            if self.park is None:
                raise Refused("park is not available")
            self.park.park(transferee, by=by, progress=progress)
            return None
        if destination.kind is not Kind.EXTENSION:
            raise Refused(f"cannot transfer to {target}")
        transferor = by if by is not None else self._partner_or_none(transferee)
        transfer = BlindTransfer(self, transferee, target, transferor, progress)
        self.active[transferee.id] = transfer
        transfer.start()  # the transferee leaves the bridge first
        if by is None and transferor is not None:
            transferor.hang_up("transferred")  # a command: the other party is done now
        return transfer

    def attended(self, first: Leg, second: Leg, progress: Any = None) -> None:
        """Join the party of ``first`` with the party of ``second`` (both the transferor's
        legs; ``second`` may be the consulted call)."""
        transferee = self._partner(first)
        if not second.up:
            # the consulted party still rings: hand the transferee to that number instead
            number = second.conversation.dialled if second.conversation else ""
            second.hang_up("transferred")
            self.blind(transferee, number, by=first, progress=progress)
            return
        if second.bridge is None:
            raise WrongState(f"leg {second.id} is in no call to join")
        target = self._partner_or_none(second)  # None: a parking slot the transferor took
        conversation = transferee.conversation
        assert conversation is not None
        control = self.control
        with control.feed.batch():
            if target is not None:
                control.adopt(target, conversation)
            control.swap(transferee, second)
            control.feed.publish(
                ev.Transferred(
                    call=conversation.id,
                    leg=transferee.id,
                    by=first.id,
                    target=target.party.number if target else second.conversation.dialled
                    if second.conversation
                    else "",
                    kind="attended",
                    outcome="connected",
                )
            )
        if progress is not None:
            progress.done(200, "OK")
        self.let_go(first)
        self.let_go(second)

    # -- helpers -----------------------------------------------------------------------------

    def _partner(self, leg: Leg) -> Leg:
        partner = self._partner_or_none(leg)
        if partner is None:
            raise WrongState(f"leg {leg.id} has nobody to transfer")
        return partner

    @staticmethod
    def _partner_or_none(leg: Leg) -> Leg | None:
        bridge = leg.bridge
        if bridge is None:
            return None
        others = [other for other in bridge.legs if other is not leg and not other.ended]
        return others[0] if len(others) == 1 else None

    def let_go(self, leg: Leg | None) -> None:
        """The transferor's part is done: it hangs up itself (RFC 5589 §6.1) or pbx does."""
        if leg is None or leg.ended:
            return
        self.control.leave(leg)

        def hang_up() -> None:
            if not leg.ended:
                leg.hang_up("transferred")

        self.control.reactor.callLater(HANG_UP_TRANSFEROR_AFTER, hang_up)

    def finished(self, transfer: BlindTransfer) -> None:
        if self.active.get(transfer.transferee.id) is transfer:
            del self.active[transfer.transferee.id]

    def _event(self, event: ev.Event) -> None:
        if not isinstance(event, ev.LegEnded):
            return
        transfer = self.active.get(event.leg)
        if transfer is not None:
            transfer.stimulate(Stimulus.TRANSFEREE_GONE)
            return
        for transfer in list(self.active.values()):
            if transfer.transferor is not None and transfer.transferor.id == event.leg:
                transfer.stimulate(Stimulus.TRANSFEROR_GONE)


def _status(failure: Any) -> int:
    if failure.check(DialFailed):
        status: int = failure.value.status
        return status
    log.error("transfer dial failed: %s", failure.getTraceback())
    return 500


def _reason(status: int) -> str:
    return {
        404: "Not Found",
        480: "Temporarily Unavailable",
        486: "Busy Here",
        487: "Request Terminated",
    }.get(status, "Service Unavailable" if status >= 500 else "Failed")


__all__ = ["TABLE", "BlindTransfer", "State", "Stimulus", "Transfers"]
