"""Calls from a trunk, in process: an INVITE from the provider's address is not challenged,
its DID is looked up and the switch rings the DID's extension with the caller's number in
E.164; an unknown DID gets 404; a phone's INVITE is not taken by the trunk handler."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pbx.calls.trunkcalls import TrunkCalls
from pbx.store.trunks import Trunk
from tests.calls.rig import Rig

PROVIDER_HOST = "127.0.0.50"
DIDS = {"+4930123456710": "1002"}


class FakeTrunks:
    """The two questions TrunkCalls and Methods ask of pbx.trunks."""

    def trunk(self, name: str) -> Trunk | None:
        return (
            Trunk(name=name, preset="sipgate", domain="sipconnect.sipgate.de")
            if name == "carrier"
            else None
        )

    def trunk_for_source(self, host: str) -> str | None:
        return "carrier" if host == PROVIDER_HOST else None


def _rig() -> Rig:
    rig = Rig()
    trunks = FakeTrunks()
    calls = TrunkCalls(rig.switch, trunks, lambda number: defer.succeed(DIDS.get(number)))  # type: ignore[arg-type]
    rig.methods.trusted = lambda incoming: trunks.trunk_for_source(incoming.source.remote.host)
    rig.methods._routes["INVITE"].insert(0, calls.on_invite)  # first, as pbx.service adds it
    return rig


def test_a_did_from_the_provider_rings_its_extension_with_the_caller_in_e164() -> None:
    rig = _rig()
    provider = rig.phone("4915112345678", PROVIDER_HOST, register=False)
    bob = rig.phone("1002", "127.0.0.12")
    call = provider.dial("4930123456710")  # sipgate's form: E.164 without "+"
    rig.run(1.0)
    assert call.confirmed, call.statuses
    (incoming,) = bob.calls
    assert incoming.confirmed
    assert "+4915112345678" in (incoming.invite.headers.get("From") or "")
    provider.hang_up(call)
    rig.run(0.5)
    (record,) = rig.records
    assert (record.caller, record.callee, record.disposition) == (
        "+4915112345678",
        "1002",
        "answered",
    )
    assert (record.direction, record.caller_user, record.callee_user) == ("inbound", None, "1002")
    rig.check()


def test_an_unknown_did_gets_404_and_a_phone_s_call_is_not_a_trunk_s() -> None:
    rig = _rig()
    provider = rig.phone("4915112345678", PROVIDER_HOST, register=False)
    rig.phone("1002", "127.0.0.12")
    unknown = provider.dial("+4930123456799")
    alice = rig.phone("1001", "127.0.0.11")
    internal = alice.dial("1002")
    rig.run(1.0)
    assert unknown.statuses[-1] == 404
    assert internal.confirmed  # the trunk handler declined it; the switch routed it


def test_the_trunk_handler_declines_anything_but_a_trunk_caller() -> None:
    calls = TrunkCalls(None, FakeTrunks(), lambda n: defer.succeed(None))  # type: ignore[arg-type]
    incoming: Any = object()
    assert calls.on_invite(incoming, "1001") is False
