"""Is a provider there? OPTIONS pings to a trunk's server, with an up/down state.

:class:`OptionsPing` sends an out-of-dialog OPTIONS (RFC 3261 §11) every ``interval`` seconds
through :class:`pbx.sip.client.ClientTransactions`. Any response the server sends, whatever
its status (many providers answer OPTIONS with 403, 404 or 405), means it is reachable: *up*,
with the round-trip time. No answer (Timer F: the client reports 408) or a transport error
(503 from the client) from every address means *down*. The target is given or located
before each ping (RFC 3263, pbx.sip.dns), so a provider that moved is followed, and a ping
that gets no answer from one located address tries the next, as a request would. :attr:`status` and
``on_change`` report the state; it starts as *unknown*.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pbx.sip.client import ClientTransactions
from pbx.sip.message import Headers, Request, Response, new_call_id, new_tag
from pbx.sip.transport import Address
from pbx.sip.uri import parse_uri

log = logging.getLogger(__name__)


class Reachability(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    DOWN = "down"


@dataclass(frozen=True, slots=True)
class PingStatus:
    state: Reachability
    since: float
    rtt_ms: float | None = None  # of the last answered ping
    reason: str = ""  # why down


class OptionsPing:
    """Pings one server; see the module docstring."""

    def __init__(
        self,
        reactor: Any,
        client: ClientTransactions,
        domain: str,
        interval: float,
        target: Address | None = None,
        locate: Callable[[], Any] | None = None,
        on_change: Callable[[PingStatus], None] | None = None,
        user_agent: str = "pbx",
    ) -> None:
        if target is None and locate is None:
            raise ValueError("a ping needs a target or a locate function")
        self._reactor = reactor
        self._client = client
        self._domain = domain
        self._interval = interval
        self._target = target
        self._locate = locate
        self.on_change = on_change
        self._user_agent = user_agent
        self._call_id = new_call_id()
        self._tag = new_tag()
        self._cseq = 0
        self._timer: Any = None
        self._stopped = False
        self.status = PingStatus(Reachability.UNKNOWN, reactor.seconds())

    def start(self) -> None:
        self._stopped = False
        self._ping()

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    # -- one ping ----------------------------------------------------------------------------

    def _ping(self) -> None:
        self._timer = None
        if self._stopped:
            return
        if self._locate is None:
            assert self._target is not None
            self._send([self._target])
            return
        d = self._locate()
        d.addCallbacks(self._located, lambda f: self._set_down(f"DNS: {f.getErrorMessage()}"))

    def _located(self, targets: list[Address]) -> None:
        if self._stopped:
            return
        if not targets:
            self._set_down(f"{self._domain} does not resolve (DNS)")
            return
        self._send(list(targets))

    def _send(self, targets: list[Address]) -> None:
        target = targets[0]
        self._cseq += 1
        host, port = self._client.local_address(target)
        shown = f"[{host}]" if ":" in host else host
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:pbx@{shown}:{port}>;tag={self._tag}")
        headers.add("To", f"<sip:{self._domain}>")
        headers.add("Call-ID", self._call_id)
        headers.add("CSeq", f"{self._cseq} OPTIONS")
        headers.add("Accept", "application/sdp")
        headers.add("User-Agent", self._user_agent)
        sent = self._reactor.seconds()
        request = Request("OPTIONS", parse_uri(f"sip:{self._domain}"), headers)
        self._client.send(
            request, target, lambda response: self._answered(response, sent, targets)
        )

    def _answered(self, response: Response, sent: float, targets: list[Address]) -> None:
        if response.status < 200 or self._stopped:
            return
        if response.status in (408, 503) and _generated_here(response):
            if len(targets) > 1:
                self._send(targets[1:])
                return
            self._set_down("no answer" if response.status == 408 else "unreachable")
        else:
            rtt = round((self._reactor.seconds() - sent) * 1000, 1)
            self._set(PingStatus(Reachability.UP, self._since(Reachability.UP), rtt))
        self._schedule()

    def _set_down(self, reason: str) -> None:
        self._set(PingStatus(Reachability.DOWN, self._since(Reachability.DOWN), None, reason))
        self._schedule()

    def _schedule(self) -> None:
        if not self._stopped and self._timer is None:
            self._timer = self._reactor.callLater(self._interval, self._ping)

    def _since(self, state: Reachability) -> float:
        return self.status.since if self.status.state is state else self._reactor.seconds()

    def _set(self, status: PingStatus) -> None:
        changed = status.state is not self.status.state
        self.status = status
        if changed:
            log.log(
                logging.WARNING if status.state is Reachability.DOWN else logging.INFO,
                "%s is %s%s", self._domain, status.state.value,
                f" ({status.reason})" if status.reason else "",
            )  # fmt: skip
        if self.on_change is not None:
            self.on_change(status)


def _generated_here(response: Response) -> bool:
    """pbx's client reports a timeout as 408 and a transport error as 503 without a To tag
    from any server; a server's own 408/503 has one (RFC 3261 §8.2.6.2)."""
    return response.to.tag is None
