"""Calls out through trunks: a dialled number that is no extension, matched to an outbound
route and sent to the public network.

:class:`OutboundRouter` is what the switch asks when a dialled number is not an extension:

1. the routes (pbx.store.routes) are tried by priority, then by how specific their pattern is
   (pbx.dialpatterns); none matches: 404;
2. the route's exit digit is removed and the rest made E.164 from the caller's site (its
   country and area code); when that cannot be done: 484 Address Incomplete;
3. the route's trunks are tried in order: the number goes out in the trunk's preset format
   (E.164, digits, 00 or national) to the trunk's proxy or domain (located through DNS when it
   is a name), From and To in the provider's domain, the caller shown by their own DID when
   they have one (else their extension), in the identity headers the preset names
   (P-Asserted-Identity always; P-Preferred-Identity when asked for); the provider's 401/407
   is answered with that trunk's credentials only;
4. no answer at all (408), or the trunk failing (5xx), moves on to the next trunk of the route;
   any other final answer (busy, rejected, unknown number) is the caller's.

The call's record says ``outbound`` and names the E.164 number as the callee.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.python.failure import Failure

from pbx import dialpatterns, numbers, trunkpresets
from pbx.calls.dial import DialFailed
from pbx.calls.model import Conversation, Party
from pbx.sip.stack import IncomingRequest
from pbx.store.registrations import Binding
from pbx.store.routes import Route
from pbx.trunks.registrations import TrunkRegistrations

log = logging.getLogger(__name__)

FAIL_OVER = frozenset({408, 500, 502, 503, 504})

RoutesLookup = Callable[[], Any]  # -> Deferred[list[Route]]
DidsOf = Callable[[str], Any]  # extension -> Deferred[list[str]] (its DIDs, E.164)


def choose_route(routes: list[Route], dialled: str) -> Route | None:
    """The route a dialled number takes: lowest priority value, then the most specific
    pattern, then the name; None when no pattern matches."""
    matching = []
    for route in routes:
        try:
            if dialpatterns.matches(route.pattern, dialled):
                matching.append(route)
        except ValueError:
            log.warning("route %s has a bad pattern %r: skipped", route.name, route.pattern)
    matching.sort(key=lambda r: (r.priority, -dialpatterns.specificity(r.pattern), r.name))
    return matching[0] if matching else None


class OutboundRouter:
    def __init__(
        self,
        switch: Any,  # pbx.calls.switch.Switch (it imports this module)
        trunks: TrunkRegistrations,
        routes: RoutesLookup,
        dids_of: DidsOf,
    ) -> None:
        self._switch = switch
        self._trunks = trunks
        self._routes = routes
        self._dids_of = dids_of
        self._presets = trunkpresets.load_presets_or_none(log)

    @defer.inlineCallbacks
    def route(self, conversation: Conversation, incoming: IncomingRequest, dialled: str) -> Any:
        switch = self._switch
        call_id = incoming.call_id
        route = choose_route((yield self._routes()), dialled)
        if route is None:
            switch.refuse(conversation, incoming, 404, "No Such Number")
            return
        number = dialled
        if route.exit_digit and number.startswith(route.exit_digit):
            number = number[len(route.exit_digit) :]
        me = yield switch.directory.callee(conversation.caller.number)
        e164 = dialpatterns.to_e164(number, me.country, me.area_code)
        if e164 is None:
            log.info("[%s] %s: no E.164 number from site codes %r/%r", call_id, dialled,
                     me.country, me.area_code)  # fmt: skip
            switch.refuse(conversation, incoming, 484, "Address Incomplete")
            return
        own = yield self._dids_of(conversation.caller.number)
        shown = own[0] if own else conversation.caller.number
        conversation.callee = e164
        self._switch.control.records.set_direction(conversation.id, "outbound")
        log.info("[%s] %s -> %s by route %s", call_id, dialled, e164, route.name)
        caller_leg = None
        last_status = 503
        for name in route.trunks:
            trunk = self._trunks.trunk(name)
            addresses = (yield self._trunks.addresses_for(name)) if trunk else []
            if trunk is None or not addresses:
                log.info("[%s] trunk %s not usable", call_id, name)
                continue
            if caller_leg is None:
                caller_leg = switch.caller_leg(conversation, incoming)
                if caller_leg is None:
                    return  # 503: no media ports
            preset = self._presets.get(trunk.preset)
            fmt = preset.number_format if preset is not None else "e164"
            wanted = preset.identity_headers if preset is not None else ()
            sent = dialpatterns.for_trunk(e164, fmt, me.country)
            identity = (
                dialpatterns.for_trunk(shown, fmt, me.country)
                if numbers.from_provider(shown) == shown
                else shown
            )
            caller = Party(identity, conversation.caller.name)
            headers: tuple[tuple[str, str], ...] = ()
            if "P-Preferred-Identity" in wanted:
                headers = (("P-Preferred-Identity", f"<sip:{identity}@{trunk.domain}>"),)
            address = addresses[0]
            contact = Binding(
                extension=sent, contact=f"sip:{sent}@{trunk.domain}", expires_at=0.0,
                call_id="", cseq=0, transport=address.transport, source_host=address.host,
                source_port=address.port, user_agent="", instance_id=None, reg_id=None,
                path=(), q=None, updated_at=0.0,
            )  # fmt: skip
            dial = switch.control.dial(
                conversation, [contact], Party(e164, ""), caller, from_leg=caller_leg,
                headers=headers, authenticator=self._trunks.digest_for(name),
                domain=trunk.domain,
            )  # fmt: skip
            try:
                winner = yield dial.result
            except DialFailed as failed:
                last_status = failed.status
                if caller_leg.ended or failed.status not in FAIL_OVER:
                    switch._not_answered(Failure(failed), caller_leg, conversation)
                    return
                log.info("[%s] trunk %s failed (%s): next trunk", call_id, name, failed.status)
                continue
            switch._answered(winner, caller_leg)
            return
        if caller_leg is None:
            switch.refuse(conversation, incoming, 503, "No Trunk Available")
            return
        switch._not_answered(
            Failure(DialFailed("failed", last_status, "no trunk answered")),
            caller_leg, conversation,
        )  # fmt: skip
