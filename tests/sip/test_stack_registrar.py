"""The SIP stack and registrar on a fake clock and a fake network (no sockets, no real time).

Drives pbx.sip.stack.Stack + Access + Registrar + Methods exactly as the service wires them,
with an in-memory credentials lookup and binding table, a ``task.Clock`` for timers and a fake
transport layer that records what would be sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.internet import defer, task

from pbx.sip.access import Access
from pbx.sip.auth import DigestAuthenticator, DigestConfig, compute_ha1, compute_response
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.headers import parse_auth_params
from pbx.sip.message import Response, parse_message
from pbx.sip.methods import Methods
from pbx.sip.registrar import Registrar, RegistrarPolicy
from pbx.sip.stack import ALLOWED_METHODS, Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address, Source
from pbx.store.credentials import Credentials
from pbx.store.registrations import Binding

REALM = "pbx"
PASSWORD = "s3cret-pass"
LOCAL = Address("UDP", "127.0.0.1", 5060)


@dataclass
class FakeNetwork:
    """Stands in for pbx.sip.transport.Transports: records every datagram sent."""

    sent: list[tuple[bytes, Address]] = field(default_factory=list)

    def send(self, data: bytes, target: Address, source: Source | None = None) -> bool:
        self.sent.append((data, target))
        return True

    def responses(self, start: int = 0) -> list[Response]:
        out = []
        for data, _ in self.sent[start:]:
            msg = parse_message(data)
            assert isinstance(msg, Response)
            out.append(msg)
        return out


class Harness:
    def __init__(self, users: tuple[str, ...] = ("1001", "1002")) -> None:
        self.clock = task.Clock()
        self.guard = Guard(GuardConfig(), self.clock.seconds)
        self.auth = DigestAuthenticator(
            b"k" * 32, self.clock.seconds, DigestConfig(realm=REALM, algorithms=("SHA-256", "MD5"))
        )
        self.creds = {
            u: Credentials(
                u,
                REALM,
                "x",
                compute_ha1(u, REALM, PASSWORD, "MD5"),
                compute_ha1(u, REALM, PASSWORD, "SHA-256"),
                0.0,
            )
            for u in users
        }
        self.bindings: dict[tuple[str, str], Binding] = {}
        self.bans: list[Any] = []
        self.stack = Stack(self.clock, self.guard, StackOptions(timers=TimerConfig()))
        self.net = FakeNetwork()
        self.stack.transports = self.net  # type: ignore[assignment]
        access = Access(self.auth, self.guard, self.lookup, self.bans.append)
        self.registrar = Registrar(
            access, self.commit, RegistrarPolicy(), self.clock.seconds, lambda: {"127.0.0.1"}
        )
        self.stack.sink = Methods(access, self.registrar.handle, ALLOWED_METHODS)

    def lookup(self, username: str) -> defer.Deferred[Credentials | None]:
        return defer.succeed(self.creds.get(username))

    def commit(
        self,
        extension: str,
        *,
        upserts: list[Binding],
        removes: list[str],
        remove_all: bool,
        now: float,
    ) -> defer.Deferred[list[Binding]]:
        for key in [k for k in self.bindings if k[0] == extension]:
            if remove_all or key[1] in removes:
                del self.bindings[key]
        for binding in upserts:
            self.bindings[(extension, binding.contact)] = binding
        return defer.succeed(
            [b for (e, _), b in self.bindings.items() if e == extension and b.expires_at > now]
        )

    def send(self, text: str, host: str = "127.0.0.9", port: int = 5070) -> list[Response]:
        before = len(self.net.sent)
        data = text.replace("\n", "\r\n").encode()
        self.stack.receive(data, Source(Address("UDP", host, port), LOCAL))
        return self.net.responses(before)


def register(
    user: str = "1001",
    *,
    branch: str = "z9hG4bKa1",
    cseq: int = 1,
    contact: str = "<sip:1001@127.0.0.9:5070>",
    expires: str | None = "3600",
    extra: str = "",
    call_id: str = "c1",
) -> str:
    lines = [
        "REGISTER sip:127.0.0.1 SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.9:5070;branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:{user}@127.0.0.1>;tag=f1",
        f"To: <sip:{user}@127.0.0.1>",
        f"Call-ID: {call_id}",
        f"CSeq: {cseq} REGISTER",
        f"Contact: {contact}",
    ]
    if expires is not None:
        lines.append(f"Expires: {expires}")
    if extra:
        lines.append(extra)
    lines += ["Content-Length: 0", "", ""]
    return "\n".join(lines)


def authorization(
    challenge: Response,
    user: str = "1001",
    password: str = PASSWORD,
    algorithm: str = "MD5",
    nc: str = "00000001",
    method: str = "REGISTER",
) -> str:
    values = challenge.headers.get_all("WWW-Authenticate") or challenge.headers.get_all(
        "Proxy-Authenticate"
    )
    params = next(
        parse_auth_params(v)[1]
        for v in values
        if parse_auth_params(v)[1].get("algorithm") == algorithm
    )
    ha1 = compute_ha1(user, REALM, password, algorithm)
    uri = "sip:127.0.0.1"
    response = compute_response(ha1, params["nonce"], method, uri, algorithm, "auth", nc, "abc")
    name = "Authorization" if method == "REGISTER" else "Proxy-Authorization"
    return (
        f'{name}: Digest username="{user}", realm="{REALM}", nonce="{params["nonce"]}", '
        f'uri="{uri}", response="{response}", algorithm={algorithm}, qop=auth, nc={nc}, '
        f'cnonce="abc", opaque="{params["opaque"]}"'
    )


def test_first_register_is_challenged_sha256_first_then_md5() -> None:
    h = Harness()
    [resp] = h.send(register())
    assert resp.status == 401
    algorithms = [
        parse_auth_params(v)[1]["algorithm"] for v in resp.headers.get_all("WWW-Authenticate")
    ]
    assert algorithms == ["SHA-256", "MD5"]
    assert h.bindings == {}


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_authenticated_register_binds_and_lists_contact(algorithm: str) -> None:
    h = Harness()
    [challenge] = h.send(register())
    [ok] = h.send(
        register(branch="z9hG4bKa2", cseq=2, extra=authorization(challenge, algorithm=algorithm))
    )
    assert ok.status == 200
    assert ok.headers.get_all("Contact") == ["<sip:1001@127.0.0.9:5070>;expires=3600"]
    assert ("1001", "sip:1001@127.0.0.9:5070") in h.bindings
    assert ok.top_via.received == "127.0.0.9" and ok.top_via.rport == "5070"


def test_unknown_user_and_wrong_password_get_identical_answers() -> None:
    h = Harness()
    [c1] = h.send(register("1001"))
    [wrong] = h.send(
        register("1001", branch="z9hG4bKb", extra=authorization(c1, password="nope-nope"))
    )
    [c2] = h.send(register("9999", branch="z9hG4bKc", call_id="c2"))
    [unknown] = h.send(
        register("9999", branch="z9hG4bKd", call_id="c2", extra=authorization(c2, user="9999"))
    )
    for a, b in ((wrong, unknown), (c1, c2)):
        assert (a.status, a.reason) == (b.status, b.reason) == (401, "Unauthorized")
        assert [n for n, _ in a.headers.items()] == [n for n, _ in b.headers.items()]


def test_interval_too_brief_gets_423_with_min_expires() -> None:
    h = Harness()
    [resp] = h.send(register(expires="10"))
    assert resp.status == 423
    assert resp.headers.get("Min-Expires") == "60"


def test_star_removes_all_bindings_and_needs_expires_zero() -> None:
    h = Harness()
    [c] = h.send(register())
    h.send(register(branch="z9hG4bK2", cseq=2, extra=authorization(c)))
    h.send(
        register(
            branch="z9hG4bK3",
            cseq=3,
            contact="<sip:1001@127.0.0.9:5071>",
            extra=authorization(c, nc="00000002"),
        )
    )
    assert len(h.bindings) == 2
    [bad] = h.send(register(branch="z9hG4bK4", cseq=4, contact="*", expires="60"))
    assert bad.status == 400
    [ok] = h.send(
        register(
            branch="z9hG4bK5",
            cseq=5,
            contact="*",
            expires="0",
            extra=authorization(c, nc="00000003"),
        )
    )
    assert ok.status == 200 and h.bindings == {}
    assert ok.headers.get_all("Contact") == []


def test_register_for_someone_else_is_forbidden() -> None:
    h = Harness()
    [c] = h.send(register("1002"))
    text = register("1002", branch="z9hG4bK9", extra=authorization(c, user="1001"))
    [resp] = h.send(text)
    assert resp.status == 403 and h.bindings == {}


def test_retransmitted_register_gets_the_same_answer_and_is_absorbed() -> None:
    h = Harness()
    [first] = h.send(register())
    [again] = h.send(register())
    assert again.to.tag == first.to.tag
    assert again.headers.get_all("WWW-Authenticate") == first.headers.get_all("WWW-Authenticate")
    assert h.stack.transaction_count == 1
    h.clock.advance(64 * 0.5 + 0.1)  # timer J
    assert h.stack.transaction_count == 0


def test_five_wrong_passwords_ban_the_address_silently() -> None:
    h = Harness()
    [c] = h.send(register(), host="127.0.0.3")
    for n in range(5):
        h.send(
            register(
                branch=f"z9hG4bKw{n}", call_id=f"w{n}", extra=authorization(c, password="bad-bad")
            ),
            host="127.0.0.3",
        )
    assert [b.address for b in h.bans] == ["127.0.0.3"]
    assert h.send(register(branch="z9hG4bKafter"), host="127.0.0.3") == []
    [other] = h.send(register(branch="z9hG4bKother"), host="127.0.0.4")
    assert other.status == 401


def test_invite_is_challenged_with_407_and_unknown_method_gets_501() -> None:
    h = Harness()
    invite = (
        register()
        .replace("REGISTER sip:127.0.0.1", "INVITE sip:1002@127.0.0.1")
        .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")
    )
    responses = h.send(invite)
    assert [r.status for r in responses] == [100, 407]
    assert responses[1].headers.get_all("Proxy-Authenticate")
    foo = register().replace("REGISTER sip:", "FOO sip:").replace("CSeq: 1 REGISTER", "CSeq: 1 FOO")
    [resp] = h.send(foo.replace("z9hG4bKa1", "z9hG4bKfoo"))
    assert resp.status == 501 and "REGISTER" in (resp.headers.get("Allow") or "")


def test_unanswered_invite_challenge_is_retransmitted_until_timer_h() -> None:
    h = Harness()
    invite = (
        register()
        .replace("REGISTER sip:127.0.0.1", "INVITE sip:1002@127.0.0.1")
        .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")
    )
    h.send(invite)
    sent_before = len(h.net.sent)
    h.clock.advance(0.5)  # timer G
    assert len(h.net.sent) == sent_before + 1
    h.clock.advance(1.0)
    assert len(h.net.sent) == sent_before + 2
    for _ in range(70):
        h.clock.advance(0.5)
    assert h.stack.transaction_count == 0


def test_options_is_answered_without_authentication() -> None:
    h = Harness()
    options = (
        register()
        .replace("REGISTER sip:", "OPTIONS sip:")
        .replace("CSeq: 1 REGISTER", "CSeq: 1 OPTIONS")
    )
    [resp] = h.send(options)
    assert resp.status == 200
    assert "Server" not in resp.headers and "User-Agent" not in resp.headers
    assert resp.headers.get("Supported")


def test_garbage_datagram_is_dropped_and_bad_request_answered_400() -> None:
    h = Harness()
    assert h.send("\x00\x01garbage") == []
    text = register().replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")  # method mismatch
    [resp] = h.send(text)
    assert resp.status == 400


def test_repeated_failure_on_one_call_id_gets_403_and_still_counts() -> None:
    h = Harness()
    [c] = h.send(register())
    statuses = []
    for n in range(4):
        extra = authorization(c, password="typo-typo", nc=f"{n + 1:08x}")
        [resp] = h.send(register(branch=f"z9hG4bKr{n}", cseq=n + 2, extra=extra))
        statuses.append(resp.status)
    assert statuses == [401, 403, 403, 403]
    assert h.bans == []
    extra = authorization(c, password="typo-typo", nc="00000005")
    h.send(register(branch="z9hG4bKr5", cseq=7, extra=extra))
    assert [b.address for b in h.bans] == ["127.0.0.9"]


class Answering:
    """A transaction user that answers every INVITE 200 at once and keeps its incoming."""

    allowed = ALLOWED_METHODS

    def __init__(self) -> None:
        self.incoming: list[Any] = []
        self.ok: list[Response] = []

    def handle_request(self, incoming: Any) -> None:
        self.incoming.append(incoming)
        response = incoming.response(200)
        response.headers.add("Contact", "<sip:pbx@127.0.0.1:5060>")
        self.ok.append(response)
        incoming.send(response)


def _holds(root: object, target: object, skip: tuple[object, ...] = ()) -> bool:
    """Whether ``target`` is reachable from ``root`` through object references (not through
    ``skip``, classes, modules or functions)."""
    import gc
    import types

    opaque = (type, types.ModuleType, types.FunctionType)
    seen, todo = {id(root), *map(id, skip)}, [root]
    while todo:
        for child in gc.get_referents(todo.pop()):
            if child is target:
                return True
            if id(child) not in seen and not isinstance(child, opaque):
                seen.add(id(child))
                todo.append(child)
    return False


def test_an_accepted_invite_transaction_keeps_neither_the_invite_nor_its_2xx() -> None:
    """RFC 6026 §8.7 Accepted, as the stack keeps it: INVITE retransmissions absorbed, the
    TU's 2xx retransmissions sent, a CANCEL answered 200 with the 2xx's To tag (no 487),
    timer L ends it; the transaction no longer holds the parsed INVITE or the response."""
    h = Harness()
    sink = Answering()
    h.stack.sink = sink
    invite = (
        register()
        .replace("REGISTER sip:127.0.0.1", "INVITE sip:1002@127.0.0.1")
        .replace("CSeq: 1 REGISTER", "CSeq: 1 INVITE")
    )
    assert [r.status for r in h.send(invite)] == [100, 200]
    (incoming,) = sink.incoming
    request, ok = incoming.request, sink.ok[0]
    tu = (sink, h.clock)  # what the TU and the clock hold does not count
    assert not _holds(h.stack, request, tu) and not _holds(h.stack, ok, tu)
    assert h.send(invite) == []  # a retransmission: absorbed
    incoming.retransmit(ok)
    cancel = invite.replace("INVITE sip:1002", "CANCEL sip:1002").replace("1 INVITE", "1 CANCEL")
    assert [r.status for r in h.net.responses(len(h.net.sent) - 1)] == [200]
    (cancelled,) = h.send(cancel)
    assert cancelled.status == 200 and cancelled.to.tag == ok.to.tag
    assert h.stack.transaction_count == 1
    h.clock.advance(32.1)  # timer L
    assert h.stack.transaction_count == 0
