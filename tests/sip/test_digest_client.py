"""The client side of digest: RFC example values, pbx's own server side accepting the answers,
realm and refusal rules, nonce-counts."""

from __future__ import annotations

import itertools

import pytest

from pbx.sip.auth import (
    AuthResult,
    DigestAuthenticator,
    DigestConfig,
    compute_ha1,
    compute_response,
    parse_authorization,
)
from pbx.sip.digest_client import (
    Challenge,
    Credentials,
    DigestClient,
    Unanswerable,
    choose,
    parse_challenge,
)
from pbx.sip.errors import RemoteProtocolError

# RFC 7616 §3.9.1 (errata 4495: "Circle of Life", lower-case "of")
RFC7616_NONCE = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
RFC7616_CNONCE = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
RFC7616_OPAQUE = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"


def _client(cnonce: str = RFC7616_CNONCE, **creds: str) -> DigestClient:
    credentials = Credentials(
        creds.pop("username", "Mufasa"), creds.pop("password", "Circle of Life"), **creds
    )
    return DigestClient(credentials, cnonce=lambda: cnonce)


def _params(value: str) -> dict[str, str]:
    resp = parse_authorization(value)
    return {
        "response": resp.response, "nc": resp.nc or "", "cnonce": resp.cnonce or "",
        "qop": resp.qop or "", "algorithm": resp.algorithm, "opaque": resp.opaque or "",
        "realm": resp.realm, "uri": resp.uri, "username": resp.username,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_the_rfc_7616_examples_give_the_rfc_responses(algorithm: str, expected: str) -> None:
    challenge = (
        f'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm={algorithm}, '
        f'nonce="{RFC7616_NONCE}", opaque="{RFC7616_OPAQUE}"'
    )
    header, value = _client().answer(401, [challenge], "GET", "/dir/index.html")
    assert header == "Authorization"
    got = _params(value)
    assert got["response"] == expected
    assert (got["qop"], got["nc"], got["cnonce"], got["opaque"]) == (
        "auth", "00000001", RFC7616_CNONCE, RFC7616_OPAQUE,
    )  # fmt: skip


def test_the_rfc_2617_example_gives_the_rfc_response() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    client = _client("0a4f113b", password="Circle Of Life")
    _, value = client.answer(401, [challenge], "GET", "/dir/index.html")
    assert _params(value)["response"] == "6629fae49393a05397450978507c4ef1"


def _server(*algorithms: str) -> DigestAuthenticator:
    config = DigestConfig(realm="sip.example.net", algorithms=algorithms or ("SHA-256", "MD5"))
    return DigestAuthenticator(b"s" * 32, clock=lambda: 1000.0, config=config)


@pytest.mark.parametrize("algorithms", [("SHA-256", "MD5"), ("MD5",), ("SHA-256",)])
def test_pbx_s_own_registrar_accepts_the_answer_to_its_challenge(
    algorithms: tuple[str, ...],
) -> None:
    server = _server(*algorithms)
    client = DigestClient(Credentials("trunk1", "s3cret pass", realm="sip.example.net"))
    uri = "sip:sip.example.net"
    header, value = client.answer(401, server.challenge_values(), "REGISTER", uri)
    resp = parse_authorization(value)
    assert header == "Authorization" and resp.algorithm == algorithms[0]  # the topmost one
    ha1 = compute_ha1("trunk1", "sip.example.net", "s3cret pass", resp.algorithm)
    assert server.verify(resp, "REGISTER", ha1) is AuthResult.OK
    # the next REGISTER reuses the nonce with the next count, and the server accepts it
    again = client.authorize("REGISTER", uri)
    assert again is not None
    second = parse_authorization(again[1])
    assert (second.nonce, second.nc) == (resp.nonce, "00000002")
    assert server.verify(second, "REGISTER", ha1) is AuthResult.OK
    # a wrong password is what the server refuses
    wrong = DigestClient(Credentials("trunk1", "not it"))
    _, bad = wrong.answer(401, server.challenge_values(), "REGISTER", uri)
    assert server.verify(parse_authorization(bad), "REGISTER", ha1) is AuthResult.FAILED


def test_a_407_is_answered_in_proxy_authorization_and_a_body_is_hashed_for_auth_int() -> None:
    client = _client()
    challenge = f'Digest realm="r", nonce="{RFC7616_NONCE}", qop="auth-int"'
    header, value = client.answer(407, [challenge], "INVITE", "sip:+4930123@r", body=b"v=0\r\n")
    assert header == "Proxy-Authorization"
    resp = parse_authorization(value)
    assert resp.qop == "auth-int"
    ha1 = compute_ha1("Mufasa", "r", "Circle of Life", "MD5")
    assert resp.response == compute_response(
        ha1, resp.nonce, "INVITE", "sip:+4930123@r", "MD5", "auth-int", resp.nc, resp.cnonce,
        b"v=0\r\n",
    )  # fmt: skip
    assert client.authorize("INVITE", "sip:x@r", proxy=False) is None  # no 401 answered yet
    assert client.authorize("INVITE", "sip:x@r", proxy=True) is not None


def test_a_challenge_without_qop_gets_the_rfc_2069_form() -> None:
    _, value = _client().answer(401, ['Digest realm="r", nonce="abc"'], "REGISTER", "sip:r")
    resp = parse_authorization(value)
    assert resp.qop is None and resp.cnonce is None and resp.nc is None
    ha1 = compute_ha1("Mufasa", "r", "Circle of Life", "MD5")
    assert resp.response == compute_response(ha1, "abc", "REGISTER", "sip:r")


def test_sess_algorithms_hash_the_nonce_and_cnonce_into_ha1() -> None:
    _, value = _client("c0ffee").answer(
        401, ['Digest realm="r", nonce="n1", qop=auth, algorithm=SHA-256-sess'], "REGISTER", "sip:r"
    )
    assert "algorithm=SHA-256-sess" in value
    ha1 = compute_ha1("Mufasa", "r", "Circle of Life", "SHA-256")
    session_ha1 = compute_ha1(ha1, "n1", "c0ffee", "SHA-256")
    expected = compute_response(
        session_ha1, "n1", "REGISTER", "sip:r", "SHA-256", "auth", "00000001", "c0ffee"
    )
    assert _params(value)["response"] == expected


def test_the_topmost_supported_challenge_is_chosen_and_others_are_skipped() -> None:
    values = [
        'Basic realm="r"',
        'Digest realm="r", nonce="n", algorithm=SHA-512-256, qop=auth',
        "Digest realm=",  # broken: skipped
        'Digest realm="r", nonce="n", algorithm=MD5, qop=auth',
        'Digest realm="r", nonce="n", algorithm=SHA-256, qop=auth',
    ]
    chosen = choose(values)
    assert chosen is not None and chosen.algorithm == "MD5"
    assert choose(['Digest realm="r", nonce="n", qop="auth-conf"']) is None
    with pytest.raises(Unanswerable, match="no supported"):
        _client().answer(401, values[:3], "REGISTER", "sip:r")


def test_another_realm_is_never_answered_with_a_trunk_s_credentials() -> None:
    client = _client(realm="sip.provider-a.example")
    with pytest.raises(Unanswerable, match="realm 'evil.example'"):
        client.answer(401, ['Digest realm="evil.example", nonce="n", qop=auth'], "INVITE", "sip:x")
    assert client.authorize("INVITE", "sip:x") is None  # nothing remembered from it


def test_refused_credentials_are_not_sent_again_unless_the_nonce_was_stale() -> None:
    client = _client()
    challenge = 'Digest realm="r", nonce="n2", qop=auth'
    with pytest.raises(Unanswerable, match="refused"):
        client.answer(401, [challenge], "REGISTER", "sip:r", carried_credentials=True)
    header, _ = client.answer(
        401, [challenge + ", stale=true"], "REGISTER", "sip:r", carried_credentials=True
    )
    assert header == "Authorization"
    with pytest.raises(Unanswerable, match="not a challenge"):
        client.answer(403, [challenge], "REGISTER", "sip:r")


def test_nonce_counts_rise_per_nonce_and_start_again_for_a_new_one() -> None:
    counter = itertools.count()
    client = DigestClient(Credentials("u", "p"), cnonce=lambda: f"c{next(counter)}")
    first = parse_challenge('Digest realm="r", nonce="A", qop=auth')
    second = parse_challenge('Digest realm="r", nonce="B", qop=auth')
    assert first is not None and second is not None
    counts = [
        parse_authorization(client.authorization(c, "REGISTER", "sip:r")).nc
        for c in (first, first, second, first)
    ]
    assert counts == ["00000001", "00000002", "00000001", "00000003"]


def test_challenge_parsing() -> None:
    parsed = parse_challenge(
        'Digest realm="a\\"b", nonce="n", opaque="o", algorithm=sha-256, qop="auth,auth-int", stale=TRUE',
        proxy=True,
    )
    assert parsed == Challenge(
        realm='a"b', nonce="n", algorithm="SHA-256", qop=("auth", "auth-int"),
        opaque="o", stale=True, proxy=True,
    )  # fmt: skip
    assert parse_challenge('Bearer realm="x"') is None
    with pytest.raises(RemoteProtocolError):
        parse_challenge('Digest realm="r"')  # no nonce


def test_the_password_stays_out_of_reprs_and_quoted_values_are_escaped() -> None:
    creds = Credentials('we"ird\\user', "hunter2-secret", realm="r")
    assert "hunter2" not in repr(creds) and "hunter2" not in repr(DigestClient(creds).credentials)
    _, value = DigestClient(creds).answer(401, ['Digest realm="r", nonce="n"'], "REGISTER", "sip:r")
    assert parse_authorization(value).username == 'we"ird\\user'
    assert "hunter2" not in value
