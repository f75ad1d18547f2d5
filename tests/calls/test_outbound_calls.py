"""Calls out through trunks, in process: a number that is no extension takes the matching
route, becomes E.164 from the caller's site, leaves in the trunk's format with the caller's DID
as identity, the provider's 407 is answered with the trunk's credentials, and a trunk that
fails (503) hands the call to the route's next trunk."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pbx.calls.outbound import OutboundRouter, choose_route
from pbx.sip.auth import (
    AuthResult,
    DigestAuthenticator,
    DigestConfig,
    compute_ha1,
    parse_authorization,
)
from pbx.sip.digest_client import Credentials, DigestClient
from pbx.sip.transport import Address
from pbx.store.routes import Route
from pbx.store.trunks import Trunk
from tests.calls.phones import PhoneCall
from tests.calls.rig import Rig

PROVIDER = "127.0.0.60"
BACKUP = "127.0.0.61"
REALM = "sipconnect.sipgate.de"


class FakeTrunks:
    def __init__(self) -> None:
        self.trunks = {
            "sipgate": Trunk(name="sipgate", preset="sipgate", domain=REALM, username="1234567t0"),
            "backup": Trunk(
                name="backup", preset="generic", domain="sip.backup.test", username="b"
            ),
        }
        self.hosts = {"sipgate": PROVIDER, "backup": BACKUP}
        self.digests = {
            "sipgate": DigestClient(Credentials("1234567t0", "trunk-pw")),
            "backup": DigestClient(Credentials("b", "backup-pw")),
        }

    def trunk(self, name: str) -> Trunk | None:
        return self.trunks.get(name)

    def addresses_for(self, name: str) -> Any:
        return defer.succeed([Address("UDP", self.hosts[name], 5060)])

    def digest_for(self, name: str) -> DigestClient | None:
        return self.digests.get(name)


def _challenging(rig: Rig, phone: Any, password: str, username: str) -> Any:
    auth = DigestAuthenticator(
        b"x" * 32, rig.reactor.seconds, DigestConfig(realm=REALM, algorithms=("MD5",))
    )

    def mode(call: PhoneCall) -> None:
        assert call.incoming is not None
        value = call.invite.headers.get("Proxy-Authorization") if call.invite else None
        if value is not None:
            resp = parse_authorization(value)
            ha1 = compute_ha1(username, REALM, password, "MD5")
            if auth.verify(resp, "INVITE", ha1) is AuthResult.OK:
                phone.ring(call)
                phone.answer(call)
                return
        call.incoming.respond(
            407, headers=[("Proxy-Authenticate", c) for c in auth.challenge_values()]
        )
        call.state = "ended"

    return mode


def _rig(routes: list[Route]) -> Rig:
    rig = Rig()
    rig.switch.outbound = OutboundRouter(
        rig.switch, FakeTrunks(), lambda: defer.succeed(routes),  # type: ignore[arg-type]
        lambda ext: defer.succeed(["+4930123456710"] if ext == "1001" else []),
    )  # fmt: skip
    return rig


NATIONAL = Route("national", "00Z.", ("sipgate", "backup"), 10, "0")  # exit 0, then 0...


def test_a_national_number_leaves_through_the_trunk_with_the_callers_did_after_its_407() -> None:
    rig = _rig([NATIONAL])
    alice = rig.phone("1001", "127.0.0.11")
    rig.extensions["1001"].country, rig.extensions["1001"].area_code = "49", "30"
    provider = rig.phone("provider", PROVIDER, register=False)
    provider.answer_mode = _challenging(rig, provider, "trunk-pw", "1234567t0")
    call = alice.dial("00211123456")  # exit digit 0, then the national 0211 123456
    rig.run(2.0)
    assert call.confirmed, call.statuses
    first, second = provider.calls[0].invite, provider.calls[-1].invite
    assert first is not None and second is not None
    assert str(second.uri) == f"sip:49211123456@{REALM}"  # sipgate: E.164 digits, no "+"
    assert second.headers.get("P-Preferred-Identity") == f"<sip:4930123456710@{REALM}>"
    assert "4930123456710@" + REALM in (second.headers.get("From") or "")
    assert second.call_id == first.call_id and second.cseq.seq == first.cseq.seq + 1
    alice.hang_up(call)
    rig.run(0.5)
    (record,) = rig.records
    assert (record.direction, record.callee, record.disposition) == (
        "outbound",
        "+49211123456",
        "answered",
    )


def test_a_failing_trunk_hands_the_call_to_the_next_one() -> None:
    rig = _rig([NATIONAL])
    alice = rig.phone("1001", "127.0.0.11")
    rig.extensions["1001"].country, rig.extensions["1001"].area_code = "49", "30"
    down = rig.phone("provider", PROVIDER, register=False, answer_mode="busy")
    down.answer_mode = lambda call: call.incoming.respond(503)  # type: ignore[union-attr]
    backup = rig.phone("backup", BACKUP, register=False)
    call = alice.dial("00301234567")
    rig.run(2.0)
    assert call.confirmed, call.statuses
    (invite,) = [c.invite for c in backup.calls]
    assert invite is not None and str(invite.uri) == "sip:+49301234567@sip.backup.test"


def test_no_route_is_404_no_site_codes_is_484_and_a_busy_answer_is_the_callers() -> None:
    rig = _rig([NATIONAL])
    alice = rig.phone("1001", "127.0.0.11")
    nowhere = alice.dial("12345")  # no route matches
    incomplete = alice.dial("00301234567")  # alice's site has no country code
    rig.run(1.0)
    assert nowhere.statuses[-1] == 404 and incomplete.statuses[-1] == 484
    rig.extensions["1001"].country, rig.extensions["1001"].area_code = "49", "30"
    rig.phone("provider", PROVIDER, register=False, answer_mode="busy")
    busy = alice.dial("00301234567")
    rig.run(1.0)
    assert busy.statuses[-1] == 486


def test_routes_are_chosen_by_priority_then_specificity() -> None:
    wide = Route("wide", "0.", ("a",), 100, "")
    narrow = Route("narrow", "0049.", ("b",), 100, "")
    urgent = Route("urgent", "11[02]", ("c",), 1, "")
    assert choose_route([wide, narrow, urgent], "004930123").name == "narrow"
    assert choose_route([wide, narrow], "030123").name == "wide"
    assert choose_route([wide, urgent], "112") is not None
    assert choose_route([narrow], "12345") is None
