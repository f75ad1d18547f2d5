"""Requests that pbx answers itself as a user agent server, routed by method.

REGISTER goes to the registrar; OPTIONS is answered with what pbx supports (RFC 3261 §11: a
capability query or keep-alive needs no authentication); every other new request is
authenticated (407) first (except an INVITE from a trunk's provider, recognised by its source
address through :attr:`Methods.trusted`: it goes to the handlers as ``TRUNK_CALLER + name``)
and then offered to the handlers registered for its method, in the
order they were added (:meth:`Methods.add`): a handler that returns False declines and the next
one is tried (e.g. an INVITE with Replaces is taken by the pickup feature before the switch
routes it as a new call). In-dialog requests (RFC 3261 §12.2.2: they carry a To tag) are not
challenged; they go to the in-dialog hooks (:meth:`Methods.add_in_dialog`) until one finds the
dialog, else 481.

:attr:`Methods.allowed` is exactly the set of methods something handles, and it is what the
Allow header of OPTIONS and of 501/405 answers lists (the stack asks it): nothing is advertised
that would only be answered 405 or 480.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from twisted.python.failure import Failure

from pbx.sip.access import Access
from pbx.sip.stack import ACCEPTED_BODIES, SUPPORTED_EXTENSIONS, IncomingRequest

log = logging.getLogger(__name__)

# handler(incoming, username) -> False to decline (anything else: handled)
Route = Callable[[IncomingRequest, str], bool | None]
# hook(incoming) -> True when it found the request's dialog and handled it
InDialog = Callable[[IncomingRequest], bool]

ALWAYS = ("REGISTER", "OPTIONS", "ACK", "CANCEL")  # the stack and the registrar do these
#: the "username" handlers get for an INVITE from a trunk's provider: TRUNK_CALLER + trunk name
TRUNK_CALLER = "trunk:"


class Methods:
    """The transaction user of the stack: one entry point, handlers per method."""

    def __init__(
        self,
        access: Access,
        register: Callable[[IncomingRequest], None],
        allowed: Iterable[str] = (),
    ) -> None:
        self._access = access
        self._register = register
        self._routes: dict[str, list[Route]] = {}
        self._in_dialog: list[tuple[InDialog, frozenset[str]]] = []
        self._extra = tuple(m for m in allowed if m not in ALWAYS)  # for tests of the stack
        self._allowed: tuple[str, ...] | None = None  # derived on first use after a change
        # incoming -> the trunk whose provider sent it (by source address), else None
        self.trusted: Callable[[IncomingRequest], str | None] | None = None

    # -- wiring ------------------------------------------------------------------------------

    def add(self, method: str, route: Route) -> None:
        """Offer authenticated new requests of ``method`` to ``route`` (after earlier ones)."""
        self._routes.setdefault(method.upper(), []).append(route)
        self._allowed = None

    def register(self, method: str, route: Callable[[IncomingRequest, str], None]) -> None:
        """``add`` for a handler that always takes the request."""
        self.add(method, route)

    def add_in_dialog(self, hook: InDialog, methods: Iterable[str]) -> None:
        """In-dialog requests go to ``hook``, which handles the ``methods`` it names."""
        self._in_dialog.append((hook, frozenset(m.upper() for m in methods)))
        self._allowed = None

    @property
    def allowed(self) -> tuple[str, ...]:
        """Every method pbx handles, in a stable order (the stack asks for it on every
        response that carries Allow, so it is derived once per change of the handlers)."""
        if self._allowed is not None:
            return self._allowed
        methods = list(ALWAYS)
        for name in [*self._routes, *(m for _, ms in self._in_dialog for m in sorted(ms))]:
            if name not in methods:
                methods.append(name)
        for name in self._extra:
            if name not in methods and not self._routes and not self._in_dialog:
                methods.append(name)
        self._allowed = tuple(methods)
        return self._allowed

    # -- requests ----------------------------------------------------------------------------

    def handle_request(self, incoming: IncomingRequest) -> None:
        method = incoming.request.method
        if incoming.request.to.tag and method not in ("REGISTER", "OPTIONS"):
            for hook, methods in self._in_dialog:
                if method in methods and hook(incoming):
                    return
            incoming.respond(481)
            return
        if method == "REGISTER":
            self._register(incoming)
        elif method == "OPTIONS":
            self._options(incoming)
        elif method == "INVITE" and (trunk := self._trunk_of(incoming)) is not None:
            self._authenticated_request(TRUNK_CALLER + trunk, incoming)  # no challenge
        else:
            d = self._access.authenticate(incoming)
            d.addCallback(self._authenticated_request, incoming)
            d.addErrback(self._failed, incoming)

    def _trunk_of(self, incoming: IncomingRequest) -> str | None:
        return None if self.trusted is None else self.trusted(incoming)

    def _options(self, incoming: IncomingRequest) -> None:
        incoming.respond(
            200,
            headers=[
                ("Allow", ", ".join(self.allowed)),
                ("Accept", ", ".join(ACCEPTED_BODIES)),
                ("Accept-Encoding", "identity"),
                ("Supported", ", ".join(SUPPORTED_EXTENSIONS)),
            ],
        )

    def _authenticated_request(self, username: str | None, incoming: IncomingRequest) -> None:
        if username is None:
            return
        for route in self._routes.get(incoming.request.method, []):
            if route(incoming, username) is not False:
                return
        if not incoming.final_sent:
            incoming.respond(405, headers=[("Allow", ", ".join(self.allowed))])

    def _failed(self, failure: Failure, incoming: IncomingRequest) -> None:
        log.error(
            "[%s] %s failed: %s", incoming.call_id, incoming.request.method, failure.getTraceback()
        )
        if not incoming.final_sent:
            incoming.respond(500)
