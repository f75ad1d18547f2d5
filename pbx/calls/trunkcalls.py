"""Calls from the public network: INVITEs a trunk's provider sends, routed by DID.

:class:`TrunkCalls` is the first INVITE handler of pbx.sip.methods. It takes only INVITEs that
Methods recognised as a trunk's (``TRUNK_CALLER`` + name: from the provider's address, not
challenged) and declines every other. The called number is read where the trunk's preset says
the provider puts it (Request-URI, To or P-Called-Party-ID), converted to E.164
(pbx.numbers.from_provider), and looked up in the DIDs; a known DID is routed by the switch to
its target as a call from the caller's number (P-Asserted-Identity when the provider sends one,
else the From user, also in E.164 when it is international); an unknown one gets 404.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from pbx import numbers, trunkpresets
from pbx.calls.model import Party
from pbx.calls.switch import Switch
from pbx.sip.headers import NameAddr
from pbx.sip.methods import TRUNK_CALLER
from pbx.sip.stack import IncomingRequest
from pbx.sip.uri import SipUri
from pbx.trunks.registrations import TrunkRegistrations

log = logging.getLogger(__name__)

DidLookup = Callable[[str], Any]  # E.164 number -> Deferred[target or None]


class TrunkCalls:
    def __init__(self, switch: Switch, trunks: TrunkRegistrations, lookup: DidLookup) -> None:
        self._switch = switch
        self._trunks = trunks
        self._lookup = lookup
        self._presets = trunkpresets.load_presets_or_none(log)

    def on_invite(self, incoming: IncomingRequest, username: str) -> bool | None:
        if not username.startswith(TRUNK_CALLER):
            return False  # a phone's call: the switch's
        name = username[len(TRUNK_CALLER) :]
        trunk = self._trunks.trunk(name)
        preset = self._presets.get(trunk.preset) if trunk is not None else None
        where = preset.called_number if preset is not None else "request-uri"
        request = incoming.request
        called_raw = _user(_called(request, where)) or _user(request.uri) or ""
        called = numbers.from_provider(called_raw)
        caller = _caller(request)
        log.info("[%s] call from trunk %s: %s -> %s", request.call_id, name, caller.number,
                 called or called_raw)  # fmt: skip
        if called is None:
            incoming.respond(404, "Not A Number Here")
            return True
        d = self._lookup(called)
        d.addCallback(self._route, incoming, caller, called)
        d.addErrback(self._failed, incoming)
        return True

    def _route(
        self, target: str | None, incoming: IncomingRequest, caller: Party, did: str
    ) -> None:
        if target is None:
            log.info("[%s] no DID %s", incoming.call_id, did)
            incoming.respond(404, "Unknown Number")
            return
        self._switch.start(incoming, caller, target, direction="inbound")

    def _failed(self, failure: Any, incoming: IncomingRequest) -> None:
        log.error("[%s] trunk call not routed: %s", incoming.call_id, failure.getTraceback())
        if not incoming.final_sent:
            incoming.respond(500)


def _called(request: Any, where: str) -> Any:
    if where == "to":
        return request.to.uri
    if where == "p-called-party-id":
        value = request.headers.get("P-Called-Party-ID")
        if value:
            try:
                return NameAddr.parse(value).uri
            except Exception:  # noqa: BLE001 - a bad header: fall back to the Request-URI
                return request.uri
    return request.uri


def _user(uri: Any) -> str | None:
    return uri.user if isinstance(uri, SipUri) and uri.user else None


def _caller(request: Any) -> Party:
    """The calling party: P-Asserted-Identity from the provider, else From."""
    identity = request.from_
    asserted = request.headers.get("P-Asserted-Identity")
    if asserted:
        try:
            identity = NameAddr.parse(asserted.split(",")[0])
        except Exception:  # noqa: BLE001 - unreadable: From it is
            identity = request.from_
    raw = _user(identity.uri) or "anonymous"
    return Party(numbers.from_provider(raw) or raw, identity.display_name or "")
