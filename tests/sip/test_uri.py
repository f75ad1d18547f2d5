"""URI parsing/serialisation (RFC 3261 §19.1, §25.1) with a case table and round-trip
properties."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.errors import RemoteProtocolError
from pbx.sip.uri import AbsoluteUri, SipUri, TelUri, parse_uri

CASES: list[tuple[str, object, str | None]] = [
    # (wire text, parsed object, canonical serialisation)
    ("sip:alice@example.com", SipUri(user="alice", host="example.com"), "sip:alice@example.com"),
    (
        "SIP:Alice@Example.COM:5070;Transport=TCP;lr",
        SipUri(
            user="Alice",
            host="example.com",
            port=5070,
            params=(("transport", "TCP"), ("lr", None)),
        ),
        "sip:Alice@example.com:5070;transport=TCP;lr",
    ),
    (
        "sips:bob:secret@[2001:DB8::1]:5061",
        SipUri(scheme="sips", user="bob", password="secret", host="[2001:db8::1]", port=5061),
        "sips:bob:secret@[2001:db8::1]:5061",
    ),
    ("sip:192.0.2.4", SipUri(host="192.0.2.4"), "sip:192.0.2.4"),
    (
        "sip:sips%3Auser%40example.com@example.net",
        SipUri(user="sips:user@example.com", host="example.net"),
        "sip:sips%3Auser%40example.com@example.net",
    ),
    (
        "sip:%75se%72@example.com",
        SipUri(user="user", host="example.com"),
        "sip:user@example.com",
    ),
    ("sip:null-%00-null@example.com", SipUri(user="null-\x00-null", host="example.com"), None),
    (
        "sip:user;par=u%40example.net@example.com",
        SipUri(user="user;par=u@example.net", host="example.com"),
        None,
    ),
    (
        "sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31",
        SipUri(
            user="caller", host="host5.example.net", params=(("lr", None), ("name", "value%41"))
        ),
        "sip:caller@host5.example.net;lr;name=value%2541",
    ),
    (
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E&Subject=hi",
        SipUri(
            user="user",
            host="example.com",
            headers=(("Route", "<sip:sip.example.com>"), ("Subject", "hi")),
        ),
        None,
    ),
    (
        "sip:+19725552222@gw1.example.net;user=phone",
        SipUri(user="+19725552222", host="gw1.example.net", params=(("user", "phone"),)),
        None,
    ),
    (
        "tel:+1-201-555-0123;phone-context=example.com",
        TelUri("+1-201-555-0123", (("phone-context", "example.com"),)),
        None,
    ),
    ("isbn:2983792873", AbsoluteUri("isbn", "2983792873"), None),
    ("soap.beep://192.0.2.103:3002", AbsoluteUri("soap.beep", "//192.0.2.103:3002"), None),
]


# Property tests run on a shared, loaded machine: no per-example deadline.
SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(("text", "expected", "canonical"), CASES)
def test_parse_uri_table(text: str, expected: object, canonical: str | None) -> None:
    uri = parse_uri(text)
    assert uri == expected
    assert str(uri) == (canonical or text)
    assert parse_uri(str(uri)) == uri


@pytest.mark.parametrize(
    "text",
    [
        "",
        "alice@example.com",
        "<sip:alice@example.com>",
        "sip:alice@example.com; lr",
        "sip:alice @example.com",
        "sip:",
        "sip:alice@",
        "sip:alice@example.com:99999",
        "sip:alice@[zz::1]",
        "sip:%ZZ@example.com",
        "sip:alice@exa_mple.com",
        "sip:a@b;=x",
        "tel:",
        "http:",
        "1sip:foo",
    ],
)
def test_parse_uri_rejects_garbage(text: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_uri(text)
    assert info.value.status == 400


def test_sip_uri_param_helpers_are_case_insensitive() -> None:
    uri = parse_uri("sip:a@b;Transport=TLS;LR")
    assert isinstance(uri, SipUri)
    assert uri.transport == "tls"
    assert uri.has_param("lr") and uri.param("lr") is None
    assert uri.param("maddr") is None and not uri.has_param("maddr")
    changed = uri.with_params(transport="udp", maddr="192.0.2.1")
    assert str(changed) == "sip:a@b;transport=udp;lr;maddr=192.0.2.1"
    assert str(changed.without_params("lr", "maddr")) == "sip:a@b;transport=udp"
    assert str(uri.with_param("ob", None)) == "sip:a@b;transport=TLS;lr;ob"


def test_escaping_on_output_uses_utf8_octets() -> None:
    uri = SipUri(user="jörg d", host="example.com", params=(("x", "a;b"),))
    assert str(uri) == "sip:j%C3%B6rg%20d@example.com;x=a%3Bb"
    assert parse_uri(str(uri)) == uri


# --- properties ---------------------------------------------------------------------------

_label = st.from_regex(r"[a-z]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_hostname = st.builds(
    lambda labels, top: ".".join([*labels, top]),
    st.lists(_label, max_size=3),
    st.from_regex(r"[a-z]([a-z0-9]{0,5})?", fullmatch=True),
)
_ipv4 = st.ip_addresses(v=4).map(str)
_ipv6 = st.ip_addresses(v=6).map(lambda a: f"[{a}]")
hosts = st.one_of(_hostname, _ipv4, _ipv6)
# any text without surrogates: everything must survive %HH escaping
_text = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
_pname = st.from_regex(r"[a-z][a-z0-9\-]{0,8}", fullmatch=True)
uri_params = st.lists(st.tuples(_pname, st.none() | _text), max_size=4, unique_by=lambda p: p[0])
sip_uris = st.builds(
    SipUri,
    scheme=st.sampled_from(["sip", "sips"]),
    user=st.none() | _text,
    password=st.none(),
    host=hosts,
    port=st.none() | st.integers(0, 65535),
    params=uri_params.map(tuple),
    headers=st.lists(st.tuples(_text, st.text(max_size=8)), max_size=2).map(tuple),
)
sip_uris_with_password = st.builds(
    lambda u, p: SipUri(u.scheme, u.user or "u", p, u.host, u.port, u.params, u.headers),
    sip_uris,
    _text,
)
tel_uris = st.builds(
    TelUri,
    st.from_regex(r"\+?[0-9][0-9\-.()]{0,14}", fullmatch=True),
    st.lists(st.tuples(_pname, st.none() | _text), max_size=3).map(tuple),
)


@SLOW_OK
@given(st.one_of(sip_uris, sip_uris_with_password, tel_uris))
def test_uri_round_trips_through_text(uri: SipUri | TelUri) -> None:
    assert parse_uri(str(uri)) == uri


@SLOW_OK
@given(st.text(max_size=40))
def test_parse_uri_never_raises_anything_but_remote_protocol_error(text: str) -> None:
    try:
        uri = parse_uri(text)
    except RemoteProtocolError:
        return
    assert parse_uri(str(uri)) == uri
