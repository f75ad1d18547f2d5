"""Requests that pbx answers itself as a user agent server, routed by method.

REGISTER goes to the registrar; OPTIONS is answered with what pbx supports (RFC 3261 §11: a
capability query or keep-alive needs no authentication); every other method is authenticated
(407) first. Methods that later layers implement (calls, presence, messaging) are plugged in
with :meth:`Methods.register`; until then they get 480 after authentication.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from twisted.python.failure import Failure

from pbx.sip.access import Access
from pbx.sip.stack import ACCEPTED_BODIES, SUPPORTED_EXTENSIONS, IncomingRequest

log = logging.getLogger(__name__)

Route = Callable[[IncomingRequest, str], None]


class Methods:
    """The transaction user of the stack: one entry point per method."""

    def __init__(
        self, access: Access, register: Callable[[IncomingRequest], None], allowed: tuple[str, ...]
    ) -> None:
        self._access = access
        self._register = register
        self._allowed = allowed
        self._authenticated: dict[str, Route] = {}
        self.in_dialog: Callable[[IncomingRequest], bool] | None = None

    def register(self, method: str, route: Route) -> None:
        """Route authenticated requests of ``method`` to ``route(incoming, username)``."""
        self._authenticated[method] = route

    def handle_request(self, incoming: IncomingRequest) -> None:
        method = incoming.request.method
        if incoming.request.to.tag and method not in ("REGISTER", "OPTIONS"):
            # RFC 3261 §12.2.2: in-dialog requests are matched to their dialog, not challenged
            if self.in_dialog is None or not self.in_dialog(incoming):
                incoming.respond(481)
            return
        if method == "REGISTER":
            self._register(incoming)
        elif method == "OPTIONS":
            self._options(incoming)
        else:
            d = self._access.authenticate(incoming)
            d.addCallback(self._authenticated_request, incoming)
            d.addErrback(self._failed, incoming)

    def _options(self, incoming: IncomingRequest) -> None:
        incoming.respond(
            200,
            headers=[
                ("Allow", ", ".join(self._allowed)),
                ("Accept", ", ".join(ACCEPTED_BODIES)),
                ("Accept-Encoding", "identity"),
                ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
            ],
        )

    def _authenticated_request(self, username: str | None, incoming: IncomingRequest) -> None:
        if username is None:
            return
        route = self._authenticated.get(incoming.request.method)
        if route is None:
            incoming.respond(480, "Not Available Yet")
            return
        route(incoming, username)

    def _failed(self, failure: Failure, incoming: IncomingRequest) -> None:
        log.error(
            "[%s] %s failed: %s", incoming.call_id, incoming.request.method, failure.getTraceback()
        )
        if not incoming.final_sent:
            incoming.respond(500)
