"""Registrar semantics of the real pbx, checked message by message with a raw SIP client.

Covers: no user enumeration (unknown users and wrong passwords get the same answers as known
ones, RFC 3261 22.1 / 26.3.2.4 spirit), the registrar rules of RFC 3261 10.3 (423 with
Min-Expires, several contacts, per-contact expiry, ``Contact: *``, the 200 listing current
bindings, expiry), RFC 3327 Path and RFC 5626 outbound, commit-before-answer, digest nonce
staleness and nonce-count replay (RFC 7616 3.4.5, 3.5), REGISTER over TCP and RFC 3581
rport/received. Imports nothing from ``pbx``; reads DATA/pbx.sqlite directly where a check
needs to see what is committed.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from .harness.pbx_server import PbxServer
from .harness.raw_sip import (
    Registerer,
    SipClient,
    SipResponse,
    digest_authorization,
    pick_challenge,
)

MIN_EXPIRES = 2
SITE_TOML = f"[registrar]\nmin_expires = {MIN_EXPIRES}\n"
USERS = {str(ext): f"pw-{ext}-semantics" for ext in range(5001, 5021)}
UNKNOWN = "5999"


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PbxServer]:
    """One server (SHA-256 + MD5 challenges, min_expires 2) with users 5001-5020."""
    server = PbxServer(
        tmp_path_factory.mktemp("semantics") / "data", python=sys.executable, site_toml=SITE_TOML
    )
    try:
        server.start()
        csv = server.data_dir.parent / "users.csv"
        csv.write_text("".join(f"{e},{p}\n" for e, p in USERS.items()), encoding="utf-8")
        server.cli("user", "import", str(csv), check=True)
        yield server
    finally:
        server.close()


@pytest.fixture
def client_for(pbx: PbxServer) -> Iterator[Callable[..., SipClient]]:
    """make(local_ip="127.0.0.1", transport="udp") -> a SipClient to the module's server."""
    clients: list[SipClient] = []

    def make(local_ip: str = "127.0.0.1", transport: str = "udp") -> SipClient:
        client = SipClient(("127.0.0.1", pbx.sip_port), local_ip=local_ip, transport=transport)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def _user(client: SipClient, ext: str, **kwargs: str) -> Registerer:
    return Registerer(client, ext, USERS.get(ext, "any-password-123"), **kwargs)


def _expires_of(resp: SipResponse) -> dict[str, int]:
    """Contact URI -> expires param from a 200 to REGISTER."""
    got = {}
    for value in resp.contacts():
        match = re.fullmatch(r"<([^>]+)>.*;\s*expires=(\d+).*", value)
        assert match, f"contact without expires in 200: {value!r}"
        got[match.group(1)] = int(match.group(2))
    return got


def _committed(pbx: PbxServer, ext: str) -> set[str]:
    """Contacts of ext that are in the database right now (read by this process)."""
    path = pbx.data_dir / "pbx.sqlite"
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        rows = conn.execute(
            "SELECT contact FROM bindings WHERE extension = ? AND expires_at > ?",
            (ext, time.time()),
        ).fetchall()
    finally:
        conn.close()
    return {row[0] for row in rows}


def _status_contacts(pbx: PbxServer, ext: str) -> dict[str, dict[str, object]]:
    return {r["contact"]: r for r in pbx.registrations(ext)}


def _shape(resp: SipResponse) -> tuple[object, ...]:
    """What must not differ between a known and an unknown user: status, reason, header names
    in order, and each challenge's parameter names and values except the nonce."""
    challenges = [
        {k: v for k, v in c.items() if k != "nonce"} | {"nonce?": "nonce" in c}
        for c in resp.challenges()
    ]
    return resp.status, resp.reason, resp.names, challenges


# -- 2. no user enumeration -------------------------------------------------------------------


def test_first_register_of_known_and_unknown_user_gets_identical_401(
    client_for: Callable[..., SipClient],
) -> None:
    client = client_for("127.0.0.21")
    known, unknown = _user(client, "5001"), _user(client, UNKNOWN)
    a = known.send(known.build([f"<{known.contact()}>"], expires=60))
    b = unknown.send(unknown.build([f"<{unknown.contact()}>"], expires=60))
    assert a is not None and b is not None
    assert a.status == 401 and [c["algorithm"] for c in a.challenges()] == ["SHA-256", "MD5"]
    assert _shape(a) == _shape(b)
    assert a.challenges()[0]["nonce"] != b.challenges()[0]["nonce"]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_wrong_password_and_unknown_user_get_identical_fresh_challenges(
    client_for: Callable[..., SipClient], algorithm: str
) -> None:
    client = client_for("127.0.0.22" if algorithm == "MD5" else "127.0.0.23")
    answers = []
    for reg, password in (
        (_user(client, "5002"), "wrong-password-1"),
        (_user(client, UNKNOWN), None),
    ):
        reg.algorithm = algorithm
        first = reg.send(reg.build([f"<{reg.contact()}>"], expires=60))
        assert first is not None and first.status == 401
        used = pick_challenge(first, algorithm)["nonce"]
        auth = reg.authorization(pick_challenge(first, algorithm), password)
        resp = reg.send(reg.build([f"<{reg.contact()}>"], expires=60, authorization=auth))
        assert resp is not None
        assert all(c["nonce"] != used for c in resp.challenges()), "challenge is not fresh"
        answers.append(resp)
    wrong_password, unknown_user = answers
    assert wrong_password.status == 401
    assert _shape(wrong_password) == _shape(unknown_user)
    assert [c["algorithm"] for c in unknown_user.challenges()] == ["SHA-256", "MD5"]


# -- 3. registrar rules -----------------------------------------------------------------------


def test_expires_below_min_expires_gets_423_with_min_expires(
    client_for: Callable[..., SipClient],
) -> None:
    reg = _user(client_for(), "5003")
    by_header = reg.register([f"<{reg.contact()}>"], expires=MIN_EXPIRES - 1)
    by_param = reg.register([f"<{reg.contact()}>;expires={MIN_EXPIRES - 1}"])
    for resp in (by_header, by_param):
        assert resp is not None
        assert (resp.status, resp.reason) == (423, "Interval Too Brief"), resp
        assert resp.get("Min-Expires") == str(MIN_EXPIRES)


def test_several_contacts_per_extension_are_listed_with_their_expires(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5004")
    a, b, c = reg.contact("a"), reg.contact("b"), reg.contact("c")
    first = reg.register([f"<{a}>;expires=300", f"<{b}>"], expires=600)
    assert first is not None and first.status == 200, first
    assert _approx(_expires_of(first), {a: 300, b: 600})
    second = reg.register([f"<{c}>"], expires=900)
    assert second is not None and second.status == 200, second
    assert _approx(_expires_of(second), {a: 300, b: 600, c: 900})
    shown = _status_contacts(pbx, "5004")
    assert set(shown) == {a, b, c}
    assert all(
        r["transport"] == "udp" and r["user_agent"] == reg.user_agent for r in shown.values()
    )


def _approx(got: dict[str, int], want: dict[str, int]) -> bool:
    return got.keys() == want.keys() and all(want[k] - 2 <= got[k] <= want[k] for k in want)


def test_expires_zero_removes_one_contact_and_star_removes_all(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5005")
    a, b, c = reg.contact("a"), reg.contact("b"), reg.contact("c")
    assert (resp := reg.register([f"<{x}>" for x in (a, b, c)], expires=600)) is not None
    assert resp.status == 200 and set(_expires_of(resp)) == {a, b, c}

    removed_one = reg.register([f"<{b}>;expires=0"])
    assert removed_one is not None and removed_one.status == 200
    assert set(_expires_of(removed_one)) == {a, c}
    assert set(_status_contacts(pbx, "5005")) == {a, c}

    removed_all = reg.register("*", expires=0)
    assert removed_all is not None and removed_all.status == 200, removed_all
    assert removed_all.contacts() == []
    assert pbx.registrations("5005") == []


@pytest.mark.parametrize(
    "ext, contacts, expires",
    [
        ("5006", ["*"], None),
        ("5013", ["*"], 60),
        ("5014", ["*", "<sip:5014-x@127.0.0.1:5999>"], 0),
    ],
    ids=["no-expires", "expires-60", "star-and-contact"],
)
def test_star_contact_without_expires_zero_alone_gets_400(
    pbx: PbxServer,
    client_for: Callable[..., SipClient],
    ext: str,
    contacts: list[str],
    expires: int | None,
) -> None:
    reg = _user(client_for(), ext)
    kept = reg.register([f"<{reg.contact()}>"], expires=600)
    assert kept is not None and kept.status == 200
    resp = reg.register(contacts, expires=expires)
    assert resp is not None and (resp.status, resp.reason) == (400, "Bad Request"), resp
    assert set(_status_contacts(pbx, ext)) == {reg.contact()}  # nothing removed


def test_path_and_outbound_reg_id_are_accepted_and_200_requires_outbound(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5007")
    instance = '"<urn:uuid:00000000-0000-4000-8000-000000005007>"'
    path = "<sip:127.0.0.9:5070;lr;ob>"
    resp = reg.register(
        [f"<{reg.contact()}>;reg-id=1;+sip.instance={instance}"],
        expires=600,
        headers=[("Supported", "path, outbound"), ("Path", path)],
    )
    assert resp is not None and resp.status == 200, resp
    assert [v.lower() for v in resp.get_all("Require")] == ["outbound"]
    assert resp.get_all("Path") == [path]  # RFC 3327 5.3: the registrar echoes the Path
    assert set(_status_contacts(pbx, "5007")) == {reg.contact()}


def test_binding_disappears_from_status_when_its_expiry_passes(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5008")
    short, long_ = reg.contact("short"), reg.contact("long")
    resp = reg.register([f"<{short}>;expires={MIN_EXPIRES}", f"<{long_}>;expires=600"])
    assert resp is not None and resp.status == 200, resp
    time.sleep(MIN_EXPIRES + 1)
    assert set(_status_contacts(pbx, "5008")) == {long_}
    refreshed = reg.register([f"<{long_}>"], expires=600)
    assert refreshed is not None and set(_expires_of(refreshed)) == {long_}


def test_200_is_sent_only_after_the_binding_is_committed(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5009")
    expected: set[str] = set()
    for n in range(5):
        contact = reg.contact(str(n))
        resp = reg.register([f"<{contact}>"], expires=600)
        seen = _committed(pbx, "5009")  # within a millisecond or so of the 200
        assert resp is not None and resp.status == 200, resp
        expected.add(contact)
        assert seen == expected
    gone = reg.contact("0")
    resp = reg.register([f"<{gone}>"], expires=0)
    seen = _committed(pbx, "5009")
    assert resp is not None and resp.status == 200
    assert seen == expected - {gone}
    assert set(_status_contacts(pbx, "5009")) == expected - {gone}  # another process agrees


def test_nonce_count_replay_is_refused_and_a_higher_count_accepted(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    reg = _user(client_for(), "5010")
    contact = [f"<{reg.contact()}>"]
    first = reg.send(reg.build(contact, expires=600))
    assert first is not None and first.status == 401
    challenge = pick_challenge(first, "MD5")

    def auth(nc: int) -> str:
        return digest_authorization(
            challenge,
            username="5010",
            password=USERS["5010"],
            method="REGISTER",
            uri=reg.uri,
            nc=nc,
            cnonce="fixedcnonce",
        )

    ok = reg.send(reg.build(contact, expires=600, authorization=auth(1)))
    assert ok is not None and ok.status == 200, ok
    replay = reg.send(reg.build(contact, expires=600, authorization=auth(1)))
    assert replay is not None and replay.status == 401, replay
    assert all(c["nonce"] != challenge["nonce"] for c in replay.challenges())
    nxt = reg.send(reg.build(contact, expires=600, authorization=auth(2)))
    assert nxt is not None and nxt.status == 200, nxt


def test_register_over_tcp_is_answered_on_the_same_connection(
    pbx: PbxServer, client_for: Callable[..., SipClient]
) -> None:
    client = client_for(transport="tcp")
    reg = _user(client, "5011")
    contact = f"sip:5011@127.0.0.1:{client.local_port};transport=tcp"
    resp = reg.register([f"<{contact}>"], expires=600)  # both answers read from this socket
    assert resp is not None and resp.status == 200, resp
    assert set(_expires_of(resp)) == {contact}
    (shown,) = pbx.registrations("5011")
    assert shown["transport"] == "tcp"
    assert shown["source"] == f"127.0.0.1:{client.local_port}"


def test_rport_and_received_are_filled_in_and_the_answer_goes_to_the_source(
    client_for: Callable[..., SipClient],
) -> None:
    client = client_for()
    reg = _user(client, "5012")
    # a sent-by that is not where the request comes from (as behind a NAT)
    data = reg.build([f"<{reg.contact()}>"], expires=600, via="SIP/2.0/UDP 127.0.0.99:5999;rport")
    resp = reg.send(data)  # arrives on our socket: RFC 3581 4 sends to source ip:port
    assert resp is not None and resp.status == 401
    via = resp.get("Via") or ""
    assert f"rport={client.local_port}" in via.split(";"), via
    assert "received=127.0.0.1" in via.split(";"), via


# -- stale nonces (own server: nonce_lifetime = 1) ---------------------------------------------


def test_stale_nonce_gets_401_stale_true_and_does_not_count_as_a_failure(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    server = pbx_factory(site_toml="[auth]\nnonce_lifetime = 1\n")
    server.add_user("5101", "pw-5101-stale")
    with SipClient(("127.0.0.1", server.sip_port), local_ip="127.0.0.31") as client:
        reg = Registerer(client, "5101", "pw-5101-stale")
        contact = [f"<{reg.contact()}>"]
        resp = reg.send(reg.build(contact, expires=600))
        for _ in range(7):  # more than the 5 failures that would ban the address
            assert resp is not None and resp.status == 401, resp
            challenge = pick_challenge(resp, "MD5")
            time.sleep(1.3)
            resp = reg.send(
                reg.build(contact, expires=600, authorization=reg.authorization(challenge))
            )
            assert resp is not None and resp.status == 401, resp
            assert [c.get("stale", "").lower() for c in resp.challenges()] == ["true", "true"]
            assert all(c["nonce"] != challenge["nonce"] for c in resp.challenges())
        assert resp is not None
        auth = reg.authorization(pick_challenge(resp, "MD5"))  # answered at once: fresh
        done = reg.send(reg.build(contact, expires=600, authorization=auth))
    assert done is not None and done.status == 200, done
    assert "no active bans" in server.cli("ban", "list", check=True).stdout
