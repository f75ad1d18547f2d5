"""Tests for pbx.sip.auth: digest vectors, challenges, nonces, parsing and verification."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pbx.sip import auth as auth_mod
from pbx.sip.auth import (
    AuthResult,
    DigestAuthenticator,
    DigestConfig,
    DigestResponse,
    compute_ha1,
    compute_response,
    parse_authorization,
)
from pbx.sip.errors import RemoteProtocolError

SECRET = b"0123456789abcdef-test-secret"
URI = "sip:127.0.0.1"


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def h(algorithm: str, text: str) -> str:
    return hashlib.new(algorithm, text.encode()).hexdigest()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def authn(clock: FakeClock) -> DigestAuthenticator:
    return DigestAuthenticator(SECRET, clock, DigestConfig(realm="pbx"))


def challenge_nonce(authn: DigestAuthenticator) -> str:
    value = authn.challenge_values()[0]
    return value.split('nonce="', 1)[1].split('"', 1)[0]


def answer(
    nonce: str,
    *,
    username: str = "alice",
    password: str = "secret",
    realm: str = "pbx",
    algorithm: str = "MD5",
    method: str = "REGISTER",
    qop: str | None = "auth",
    nc: str = "00000001",
    cnonce: str = "0a4f113b",
    opaque: str | None = None,
) -> DigestResponse:
    """Build a response the way a UA would, from hashlib and the RFC 2617/7616 formulas."""
    hname = {"MD5": "md5", "SHA-256": "sha256"}[algorithm]
    ha1 = h(hname, f"{username}:{realm}:{password}")
    ha2 = h(hname, f"{method}:{URI}")
    if qop is None:
        response = h(hname, f"{ha1}:{nonce}:{ha2}")
        return DigestResponse(username, realm, nonce, URI, response, algorithm, opaque=opaque)
    response = h(hname, f"{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}")
    return DigestResponse(username, realm, nonce, URI, response, algorithm, qop, nc, cnonce, opaque)


def stored_ha1(algorithm: str, username: str = "alice", password: str = "secret") -> str:
    return compute_ha1(username, "pbx", password, algorithm)


# --- known-answer vectors ----------------------------------------------------------------------


def test_compute_ha1_matches_rfc2617_example() -> None:
    assert (
        compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
        == "939e7578ed9e3c518a452acee763bce9"
    )


def test_compute_ha1_sha256_is_hex_of_sha256() -> None:
    expected = hashlib.sha256(b"alice:pbx:secret").hexdigest()
    assert compute_ha1("alice", "pbx", "secret", "SHA-256") == expected


def test_compute_ha1_rejects_unknown_algorithm() -> None:
    with pytest.raises(ValueError):
        compute_ha1("a", "b", "c", "SHA-512-256")


def test_compute_response_matches_rfc2617_section_3_5_example() -> None:
    ha1 = compute_ha1("Mufasa", "testrealm@host.com", "Circle Of Life", "MD5")
    response = compute_response(
        ha1,
        "dcd98b7102dd2f0e8b11d0f600bfb0c093",
        "GET",
        "/dir/index.html",
        "MD5",
        "auth",
        "00000001",
        "0a4f113b",
    )
    assert response == "6629fae49393a05397450978507c4ef1"


@pytest.mark.parametrize(
    ("algorithm", "expected"),
    [
        ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
        ("SHA-256", "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"),
    ],
)
def test_compute_response_matches_rfc7616_section_3_9_1_example(
    algorithm: str, expected: str
) -> None:
    ha1 = compute_ha1("Mufasa", "http-auth@example.org", "Circle of Life", algorithm)
    response = compute_response(
        ha1,
        "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
        "GET",
        "/dir/index.html",
        algorithm,
        "auth",
        "00000001",
        "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
    )
    assert response == expected


def test_compute_response_auth_int_hashes_the_body() -> None:
    ha1 = h("md5", "alice:pbx:secret")
    ha2 = h("md5", f"INVITE:{URI}:{hashlib.md5(b'v=0').hexdigest()}")
    expected = h("md5", f"{ha1}:n:00000001:c:auth-int:{ha2}")
    got = compute_response(ha1, "n", "INVITE", URI, "MD5", "auth-int", "00000001", "c", b"v=0")
    assert got == expected


# --- challenges --------------------------------------------------------------------------------


def test_challenge_offers_sha256_first_then_md5_with_one_nonce(
    authn: DigestAuthenticator,
) -> None:
    values = authn.challenge_values()
    assert len(values) == 2
    first, second = (parse_challenge(v) for v in values)
    assert first["algorithm"] == "SHA-256" and second["algorithm"] == "MD5"
    for params in (first, second):
        assert params["realm"] == "pbx"
        assert params["qop"] == "auth"
        assert params["opaque"]
        assert "stale" not in params
    assert first["nonce"] == second["nonce"]


def test_stale_challenge_carries_stale_true(authn: DigestAuthenticator) -> None:
    for value in authn.challenge_values(stale=True):
        assert parse_challenge(value)["stale"] == "true"


def test_each_challenge_has_a_fresh_nonce(authn: DigestAuthenticator) -> None:
    assert challenge_nonce(authn) != challenge_nonce(authn)


def test_realm_with_quotes_is_escaped_in_challenge(clock: FakeClock) -> None:
    authn = DigestAuthenticator(SECRET, clock, DigestConfig(realm='a "b" \\c'))
    assert parse_challenge(authn.challenge_values()[0])["realm"] == 'a "b" \\c'


def test_short_secret_is_rejected(clock: FakeClock) -> None:
    with pytest.raises(ValueError):
        DigestAuthenticator(b"short", clock)


def parse_challenge(value: str) -> dict[str, str]:
    scheme, params = auth_mod.split_auth_value(value)
    assert scheme == "Digest"
    return params


# --- verification ------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_correct_password_with_qop_is_ok(authn: DigestAuthenticator, algorithm: str) -> None:
    resp = answer(challenge_nonce(authn), algorithm=algorithm)
    assert authn.verify(resp, "REGISTER", stored_ha1(algorithm)) is AuthResult.OK


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_correct_password_without_qop_is_ok_when_allowed(
    authn: DigestAuthenticator, algorithm: str
) -> None:
    resp = answer(challenge_nonce(authn), algorithm=algorithm, qop=None)
    assert authn.verify(resp, "REGISTER", stored_ha1(algorithm)) is AuthResult.OK


def test_no_qop_is_failed_when_not_allowed(clock: FakeClock) -> None:
    authn = DigestAuthenticator(SECRET, clock, DigestConfig(accept_no_qop=False))
    resp = answer(challenge_nonce(authn), qop=None)
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_parsed_authorization_header_verifies(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    ok = answer(nonce, algorithm="SHA-256", method="INVITE")
    header = (
        f'Digest username="alice", realm="pbx", nonce="{nonce}", uri="{URI}", '
        f'response="{ok.response}", algorithm=SHA-256, qop=auth, nc=00000001, '
        f'cnonce="0a4f113b"'
    )
    resp = parse_authorization(header)
    assert authn.verify(resp, "INVITE", stored_ha1("SHA-256")) is AuthResult.OK


def test_auth_int_response_verifies_against_body(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    ha1 = stored_ha1("MD5")
    digest = compute_response(ha1, nonce, "INVITE", URI, "MD5", "auth-int", "00000001", "c", b"x")
    resp = DigestResponse("alice", "pbx", nonce, URI, digest, "MD5", "auth-int", "00000001", "c")
    assert authn.verify(resp, "INVITE", ha1, b"x") is AuthResult.OK


def test_auth_int_with_tampered_body_fails(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    ha1 = stored_ha1("MD5")
    digest = compute_response(ha1, nonce, "INVITE", URI, "MD5", "auth-int", "00000001", "c", b"x")
    resp = DigestResponse("alice", "pbx", nonce, URI, digest, "MD5", "auth-int", "00000001", "c")
    assert authn.verify(resp, "INVITE", ha1, b"y") is AuthResult.FAILED


def test_wrong_password_fails(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn), password="guess")
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_wrong_method_fails(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn), method="INVITE")
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_ha1_of_other_algorithm_fails(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn), algorithm="SHA-256")
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_wrong_realm_fails_even_with_matching_hash(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn), realm="other")
    ha1 = compute_ha1("alice", "other", "secret", "MD5")
    assert authn.verify(resp, "REGISTER", ha1) is AuthResult.FAILED


def test_unknown_algorithm_fails(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn))
    resp = dataclasses.replace(resp, algorithm="MD5-SESS")
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_unknown_user_gives_same_result_as_wrong_password(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    unknown = authn.verify(answer(nonce, username="mallory"), "REGISTER", None)
    wrong = authn.verify(answer(nonce, password="guess"), "REGISTER", stored_ha1("MD5"))
    assert unknown is wrong is AuthResult.FAILED


def test_unknown_user_fails_even_if_response_matches_dummy(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    dummy_pw = authn._dummy_secret
    resp = answer(nonce, username="mallory", password=dummy_pw)
    assert authn.verify(resp, "REGISTER", None) is AuthResult.FAILED


def test_forged_nonce_fails(authn: DigestAuthenticator) -> None:
    resp = answer("dcd98b7102dd2f0e8b11d0f600bfb0c093")
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_nonce_from_other_secret_fails(authn: DigestAuthenticator, clock: FakeClock) -> None:
    other = DigestAuthenticator(b"another-secret-of-16+", clock)
    resp = answer(challenge_nonce(other))
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_tampered_nonce_timestamp_fails(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    tampered = ("B" if nonce[0] != "B" else "C") + nonce[1:]
    resp = answer(tampered)
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_wrong_opaque_fails_and_missing_opaque_is_tolerated(authn: DigestAuthenticator) -> None:
    values = authn.challenge_values()
    params = parse_challenge(values[1])
    nonce, opaque = params["nonce"], params["opaque"]
    assert authn.verify(answer(nonce, opaque=opaque), "REGISTER", stored_ha1("MD5")) is (
        AuthResult.OK
    )
    assert authn.verify(answer(nonce, nc="00000002"), "REGISTER", stored_ha1("MD5")) is (
        AuthResult.OK
    )
    bad = answer(nonce, nc="00000003", opaque="x" * 32)
    assert authn.verify(bad, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


@pytest.mark.parametrize("qop", ["auth", None])
def test_expired_nonce_with_correct_password_is_stale(
    authn: DigestAuthenticator, clock: FakeClock, qop: str | None
) -> None:
    resp = answer(challenge_nonce(authn), qop=qop)
    clock.now += 300.5
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.STALE


def test_nonce_still_valid_at_lifetime(authn: DigestAuthenticator, clock: FakeClock) -> None:
    resp = answer(challenge_nonce(authn))
    clock.now += 300.0
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.OK


def test_expired_nonce_with_wrong_password_is_failed(
    authn: DigestAuthenticator, clock: FakeClock
) -> None:
    resp = answer(challenge_nonce(authn), password="guess")
    clock.now += 1000
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED


def test_expired_nonce_for_unknown_user_is_failed(
    authn: DigestAuthenticator, clock: FakeClock
) -> None:
    resp = answer(challenge_nonce(authn), username="mallory")
    clock.now += 1000
    assert authn.verify(resp, "REGISTER", None) is AuthResult.FAILED


def test_replayed_nonce_count_is_replay(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    ha1 = stored_ha1("MD5")
    assert authn.verify(answer(nonce, nc="00000001"), "REGISTER", ha1) is AuthResult.OK
    assert authn.verify(answer(nonce, nc="00000001"), "REGISTER", ha1) is AuthResult.REPLAY


def test_increasing_nonce_count_is_accepted_and_lower_is_replay(
    authn: DigestAuthenticator,
) -> None:
    nonce = challenge_nonce(authn)
    ha1 = stored_ha1("SHA-256")
    for nc in ["00000001", "00000002", "0000000a"]:
        resp = answer(nonce, nc=nc, algorithm="SHA-256")
        assert authn.verify(resp, "REGISTER", ha1) is AuthResult.OK
    resp = answer(nonce, nc="00000009", algorithm="SHA-256")
    assert authn.verify(resp, "REGISTER", ha1) is AuthResult.REPLAY


def test_failed_attempt_does_not_consume_nonce_count(authn: DigestAuthenticator) -> None:
    nonce = challenge_nonce(authn)
    bad = answer(nonce, password="guess")
    assert authn.verify(bad, "REGISTER", stored_ha1("MD5")) is AuthResult.FAILED
    assert authn.verify(answer(nonce), "REGISTER", stored_ha1("MD5")) is AuthResult.OK


def test_no_qop_reuse_of_nonce_is_accepted(authn: DigestAuthenticator) -> None:
    resp = answer(challenge_nonce(authn), qop=None)
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.OK
    assert authn.verify(resp, "REGISTER", stored_ha1("MD5")) is AuthResult.OK


def test_nonce_count_table_evicts_expired_nonces(
    authn: DigestAuthenticator, clock: FakeClock
) -> None:
    ha1 = stored_ha1("MD5")
    for _ in range(3):
        assert authn.verify(answer(challenge_nonce(authn)), "REGISTER", ha1) is AuthResult.OK
    assert authn.tracked_nonces == 3
    clock.now += 301
    assert authn.verify(answer(challenge_nonce(authn)), "REGISTER", ha1) is AuthResult.OK
    assert authn.tracked_nonces == 1


def test_nonce_count_table_is_capped(
    authn: DigestAuthenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth_mod, "MAX_TRACKED_NONCES", 5)
    ha1 = stored_ha1("MD5")
    for _ in range(20):
        assert authn.verify(answer(challenge_nonce(authn)), "REGISTER", ha1) is AuthResult.OK
    assert authn.tracked_nonces == 5


# --- parsing -----------------------------------------------------------------------------------


def test_parse_authorization_reads_all_parameters() -> None:
    resp = parse_authorization(
        'Digest username="Mufasa", realm="testrealm@host.com", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth, '
        'nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1", '
        'opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert resp == DigestResponse(
        username="Mufasa",
        realm="testrealm@host.com",
        nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
        uri="/dir/index.html",
        response="6629fae49393a05397450978507c4ef1",
        algorithm="MD5",
        qop="auth",
        nc="00000001",
        cnonce="0a4f113b",
        opaque="5ccc069c403ebaf9f0171e9517f40e41",
    )


def test_parse_authorization_is_lenient_about_case_spacing_and_empty_elements() -> None:
    resp = parse_authorization(
        '  digest  USERNAME = "bob" ,, Realm="pbx",nonce="n" , uri="sip:x@y;transport=tcp",'
        'response="AB", Algorithm=sha-256, qop="auth", nc=1, cnonce="c", extra=token,'
    )
    assert resp.username == "bob" and resp.uri == "sip:x@y;transport=tcp"
    assert resp.algorithm == "SHA-256" and resp.qop == "auth" and resp.nc == "1"


def test_parse_authorization_unescapes_quoted_strings() -> None:
    resp = parse_authorization(
        r'Digest username="a\"b\\c", realm="pbx", nonce="n, still nonce", uri="u", response="r"'
    )
    assert resp.username == 'a"b\\c'
    assert resp.nonce == "n, still nonce"
    assert resp.qop is None and resp.nc is None and resp.cnonce is None


def test_parse_authorization_accepts_utf8_username() -> None:
    value = 'Digest username="jürgen", realm="pbx", nonce="n", uri="u", response="r"'
    assert parse_authorization(value).username == "jürgen"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "Digest",
        'Basic username="a"',
        'Digest realm="pbx", nonce="n", uri="u", response="r"',  # no username
        'Digest username="a", nonce="n", uri="u", response="r"',  # no realm
        'Digest username="a", realm="pbx", uri="u", response="r"',  # no nonce
        'Digest username="a", realm="pbx", nonce="n", response="r"',  # no uri
        'Digest username="a", realm="pbx", nonce="n", uri="u"',  # no response
        'Digest username="a", realm="pbx", nonce="n", uri="u", response="r", qop=auth',
        'Digest username="a", realm="pbx", nonce="n", uri="u", response="r", qop=auth, '
        'nc=zz, cnonce="c"',
        'Digest username="a", realm="pbx", nonce="n", uri="u", response="r", qop=auth, '
        'nc=123456789, cnonce="c"',
        'Digest username="a", username="b", realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username="a, realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username="a" realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username, realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username=, realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username="a\nb", realm="pbx", nonce="n", uri="u", response="r"',
        'Digest username="\udc80", realm="pbx", nonce="n", uri="u", response="r"',
        'Digest="a"',
        "Digest " + "x=y, " * 3000,
    ],
)
def test_parse_authorization_rejects_bad_values_with_400(value: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_authorization(value)
    assert info.value.status == 400


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_authorization_parses_or_raises_remote_protocol_error(value: str) -> None:
    try:
        parse_authorization(value)
    except RemoteProtocolError:
        pass


_PIECES = st.sampled_from(
    [
        "Digest ", "username=", "realm=", "nonce=", "uri=", "response=", "qop=", "nc=",
        "cnonce=", "algorithm=", '"', "\\", ",", " ", "\t", "\r\n ", "auth", "00000001", "=",
        "MD5", "SHA-256", "x", "é", "\x00",
    ]
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(_PIECES, max_size=40).map("".join))
def test_structured_random_authorization_parses_or_raises_and_verify_never_crashes(
    value: str,
) -> None:
    authn = DigestAuthenticator(SECRET, FakeClock())
    try:
        resp = parse_authorization(value)
    except RemoteProtocolError:
        return
    assert authn.verify(resp, "REGISTER", None) is AuthResult.FAILED


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True),
        st.tuples(
            st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126)), st.booleans()
        ),
        min_size=1,
        max_size=8,
    )
)
def test_fast_auth_param_path_agrees_with_the_careful_parser(
    params: dict[str, tuple[str, bool]],
) -> None:
    """Where the fast path accepts a value it yields exactly what the full grammar parser does."""
    parts = []
    for name, (text, quoted) in params.items():
        if quoted:
            parts.append(f'{name}="' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            bare = "".join(c for c in text if c not in ' \t,"\\') or "x"
            parts.append(f"{name}={bare}")
    value = ", ".join(parts)
    fast = auth_mod._parse_params_fast(value, 0)
    if fast is None:
        return
    assert fast == auth_mod._parse_params_careful(value, 0)
