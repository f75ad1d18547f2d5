"""The SIP registrar (RFC 3261 §10.3, RFC 3327 Path, RFC 5626 outbound).

Handles REGISTER: checks the address of record, authenticates through
:class:`pbx.sip.access.Access` (the authenticated user must own the AOR), computes the binding
changes (per-contact expiry, 423 Interval Too Brief, ``*`` to remove all, a cap on contacts),
commits them through ``commit`` and only then answers 200 OK with the current bindings, so an
answered registration survives a crash. Bindings are stored by :mod:`pbx.store.registrations`.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer

from pbx.sip.access import Access
from pbx.sip.errors import SipError
from pbx.sip.headers import NameAddr
from pbx.sip.stack import IncomingRequest
from pbx.sip.uri import SipUri
from pbx.store.registrations import Binding

log = logging.getLogger(__name__)

Commit = Callable[..., "defer.Deferred[list[Binding]]"]


@dataclass(frozen=True, slots=True)
class RegistrarPolicy:
    min_expires: int = 60
    max_expires: int = 7200
    default_expires: int = 3600
    max_contacts: int = 10
    domains: tuple[str, ...] = ()


class RegisterRefused(SipError):
    """A REGISTER that is answered with an error status (the status travels with it)."""


class Registrar:
    """REGISTER processing on the reactor thread."""

    def __init__(
        self,
        access: Access,
        commit: Commit,
        policy: RegistrarPolicy,
        clock: Callable[[], float],
        local_hosts: Callable[[], set[str]],
    ) -> None:
        self._access = access
        self._commit = commit
        self.policy = policy
        self._clock = clock
        self._local_hosts = local_hosts

    def handle(self, incoming: IncomingRequest) -> None:
        """Process one REGISTER (plain Deferred callbacks: this runs thousands of times/s)."""
        try:
            changes = self._prepare(incoming)
        except SipError as exc:
            self._refuse(incoming, exc)
            return
        d = self._access.authenticate(incoming)
        d.addCallback(self._authenticated, incoming, changes)
        d.addErrback(self._failed, incoming)

    def _prepare(self, incoming: IncomingRequest) -> list[tuple[NameAddr, int]] | None:
        """Checks that need no credentials; None means remove every binding (``*``)."""
        request = incoming.request
        self._address_of_record(request.to)
        contacts = request.contacts
        header_expires = request.expires
        if contacts == "*":
            if header_expires != 0 or len(request.headers.get_all("Contact")) != 1:
                raise RegisterRefused("'*' needs Expires: 0 and no other contact", status=400)
            return None
        return self._changes(contacts, header_expires)

    def _authenticated(
        self,
        username: str | None,
        incoming: IncomingRequest,
        changes: list[tuple[NameAddr, int]] | None,
    ) -> Any:
        if username is None:
            return None  # challenged (or refused) by Access
        aor = self._address_of_record(incoming.request.to)
        if username != aor:
            raise RegisterRefused(
                f"{username!r} may not register {aor!r}", status=403, reason="Forbidden"
            )
        now = self._clock()
        upserts: list[Binding] = []
        removes: list[str] = []
        if changes is not None:
            for contact, expires in changes:
                if expires == 0:
                    removes.append(str(contact.uri))
                else:
                    upserts.append(self._binding(incoming, aor, contact, expires, now))
        d = self._commit(aor, upserts=upserts, removes=removes, remove_all=changes is None, now=now)
        d.addCallback(self._committed, incoming, now)
        return d

    def _committed(self, bindings: list[Binding], incoming: IncomingRequest, now: float) -> None:
        log.debug(
            "[%s] %s has %d contact(s), from %s",
            incoming.call_id,
            bindings[0].extension if bindings else "-",
            len(bindings),
            incoming.source.remote,
        )
        incoming.send(self._ok(incoming, bindings, now))

    @staticmethod
    def _refuse(incoming: IncomingRequest, exc: SipError) -> None:
        headers = getattr(exc, "headers", ())
        incoming.respond(exc.status, exc.reason, headers=headers)

    def _failed(self, failure: Any, incoming: IncomingRequest) -> None:
        exc = failure.value
        if isinstance(exc, SipError):
            self._refuse(incoming, exc)
            return
        log.error("[%s] REGISTER failed: %s", incoming.call_id, failure.getTraceback())
        incoming.respond(500)

    def _address_of_record(self, to: NameAddr) -> str:
        uri = to.uri
        if not isinstance(uri, SipUri) or not uri.user:
            raise RegisterRefused(
                "the address of record must be a sip: or sips: URI with a user", status=400
            )
        domains = self.policy.domains
        if domains and uri.host not in domains and uri.host not in self._local_hosts():
            raise RegisterRefused(
                f"{uri.host} is not a domain of this system", status=403, reason="Forbidden"
            )
        return uri.user

    def _changes(
        self, contacts: list[NameAddr], header_expires: int | None
    ) -> list[tuple[NameAddr, int]]:
        """Per-contact expiry (contact param, then Expires header, then default); §10.3 step 6."""
        if len(contacts) > self.policy.max_contacts:
            raise RegisterRefused("too many contacts", status=403, reason="Too Many Contacts")
        result = []
        for contact in contacts:
            if not isinstance(contact.uri, SipUri):
                raise RegisterRefused("contacts must be sip: or sips: URIs", status=400)
            raw = contact.param("expires")
            if raw is not None:
                expires = _parse_delta(raw)
            elif header_expires is not None:
                expires = header_expires
            else:
                expires = self.policy.default_expires
            if 0 < expires < self.policy.min_expires:
                refused = RegisterRefused("interval too brief", status=423)
                refused.headers = [("Min-Expires", str(self.policy.min_expires))]  # type: ignore[attr-defined]
                raise refused
            result.append((contact, min(expires, self.policy.max_expires)))
        return result

    @staticmethod
    def _binding(
        incoming: IncomingRequest, aor: str, contact: NameAddr, expires: int, now: float
    ) -> Binding:
        request = incoming.request
        reg_id = contact.param("reg-id")
        q = contact.param("q")
        return Binding(
            extension=aor,
            contact=str(contact.uri),
            expires_at=now + expires,
            call_id=request.call_id,
            cseq=request.cseq.seq,
            transport=incoming.source.remote.transport,
            source_host=incoming.source.remote.host,
            source_port=incoming.source.remote.port,
            user_agent=request.headers.get("User-Agent") or "",
            instance_id=(contact.param("+sip.instance") or "").strip('"') or None,
            reg_id=int(reg_id) if reg_id and reg_id.isdigit() else None,
            path=tuple(request.headers.get_all("Path")),
            q=_parse_q(q),
            updated_at=now,
        )

    def _ok(self, incoming: IncomingRequest, bindings: list[Binding], now: float) -> Any:
        request = incoming.request
        resp = incoming.response(200)
        for binding in bindings:
            remaining = max(0, int(binding.expires_at - now + 0.5))
            resp.headers.add("Contact", f"<{binding.contact}>;expires={remaining}")
        resp.headers.add("Date", email.utils.formatdate(now, usegmt=True))
        supported = {
            tag.strip().lower()
            for v in request.headers.get_all("Supported")
            for tag in v.split(",")
        }
        paths = request.headers.get_all("Path")
        if paths and "path" in supported:
            for value in paths:
                resp.headers.add("Path", value)
        contacts = request.contacts
        if "outbound" in supported and contacts != "*" and any(c.param("reg-id") for c in contacts):
            resp.headers.add("Require", "outbound")
        return resp


def _parse_delta(raw: str) -> int:
    """delta-seconds (RFC 3261 §25.1); absurdly large values are capped, garbage is 400."""
    raw = raw.strip()
    if not raw.isdigit():
        raise RegisterRefused(f"bad expires value {raw!r}", status=400)
    return min(int(raw), 2**32 - 1)


def _parse_q(raw: str | None) -> float | None:
    if raw is None:
        return None
    try:
        q = float(raw)
    except ValueError:
        return None
    return q if 0.0 <= q <= 1.0 else None
