"""OPTIONS pings in process: any answer is up, none from every located address is down."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pbx.sip.keepalive import OptionsPing, Reachability
from pbx.sip.transport import Address
from tests.sip.test_outbound_registration import PROVIDER, world

SILENT = Address("UDP", "127.0.0.9", 5060)


def test_a_silent_first_address_fails_over_and_all_silent_is_down() -> None:
    w = world()
    client = w.registration._client
    located: list[list[Address]] = [[SILENT, PROVIDER]]

    def locate() -> Any:
        return defer.succeed(located[0])

    changes: list[Any] = []
    ping = OptionsPing(w.reactor, client, "sip.provider.example", 60, locate=locate,
                       on_change=changes.append)  # fmt: skip
    ping.start()
    w.run(34)  # Timer F on the silent address, then the provider answers
    assert ping.status.state is Reachability.UP and ping.status.rtt_ms is not None
    located[0] = [SILENT]
    w.run(60 + 33)
    assert ping.status.state is Reachability.DOWN and ping.status.reason == "no answer"
    located[0] = []
    w.run(61)
    assert ping.status.reason == "sip.provider.example does not resolve (DNS)"
    ping.stop()
    sent = len(w.reactor.network.log)
    w.run(120)
    assert len(w.reactor.network.log) == sent  # stopped: no more pings
