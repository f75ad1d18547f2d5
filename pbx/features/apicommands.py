"""The call commands of the REST API (and the CTI socket later), on the call-control facade.

:class:`CallCommands` is what pbx.webhost.live.ServerLive calls on the reactor for
``POST /api/v1/calls/originate``, ``DELETE /api/v1/calls/active/ID`` and
``POST /api/v1/calls/active/ID/transfer``; permissions are checked on the web side before.
Errors are the call layer's CallError (``status``/``error_id``, mapped to HTTP by the web).
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pbx.calls.control import CallControl
from pbx.calls.model import NotFound, WrongState


class CallCommands:
    def __init__(self, control: CallControl) -> None:
        self.control = control

    def originate(self, from_extension: str, to: str) -> defer.Deferred[dict[str, str]]:
        """Click-to-call; fires with {"call": ID, "leg": ID}."""
        result: defer.Deferred[dict[str, str]] = self.control.originate(
            to, from_extension=from_extension
        )
        return result

    def hang_up_call(self, call_id: str) -> None:
        self.control.hang_up_call(call_id)

    def transfer_call(self, call_id: str, to: str, leg_id: str | None) -> dict[str, Any]:
        """Blind-transfer the party ``leg_id`` of the call (default: the called party)."""
        conversation = self.control.call(call_id)
        live = conversation.live_legs
        if leg_id is not None:
            leg = next((x for x in live if x.id == leg_id), None)
            if leg is None:
                raise NotFound(f"call {call_id} has no leg {leg_id}")
        else:
            leg = next((x for x in live if x.direction == "out" and x.up), None)
            if leg is None:
                raise WrongState(f"call {call_id} has no answered party to transfer")
        self.control.blind_transfer(leg.id, to)
        return {"call": call_id, "leg": leg.id, "to": to}


__all__ = ["CallCommands"]
