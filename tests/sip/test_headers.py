"""Header names, lists, Via, NameAddr, CSeq and auth-params (RFC 3261 §7.3, §20, §25.1)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.errors import LocalProtocolError, RemoteProtocolError
from pbx.sip.headers import (
    COMPACT_FORMS,
    CSeq,
    NameAddr,
    Via,
    canonical_name,
    format_auth_params,
    parse_auth_params,
    parse_contacts,
    split_list,
)
from pbx.sip.uri import AbsoluteUri, SipUri

from .test_uri import hosts, sip_uris

# Property tests run on a shared, loaded machine: no per-example deadline.
SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("call-id", "Call-ID"),
        ("i", "Call-ID"),
        ("CSEQ", "CSeq"),
        ("www-authenticate", "WWW-Authenticate"),
        ("v", "Via"),
        ("M", "Contact"),
        ("l", "Content-Length"),
        ("x-custom-thing", "X-Custom-Thing"),
        ("max-forwards", "Max-Forwards"),
    ],
)
def test_canonical_name(name: str, canonical: str) -> None:
    assert canonical_name(name) == canonical


def test_every_compact_form_expands_to_its_long_name() -> None:
    for short, long in COMPACT_FORMS.items():
        assert canonical_name(short) == long
        assert canonical_name(short.upper()) == long


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("INVITE, ACK,BYE", ["INVITE", "ACK", "BYE"]),
        ('"Doe, John" <sip:j@x>, <sip:k@y;a=1,2>', ['"Doe, John" <sip:j@x>', "<sip:k@y;a=1,2>"]),
        (r'"a \", b" <sip:a@b>;p="x,y", sip:c@d', [r'"a \", b" <sip:a@b>;p="x,y"', "sip:c@d"]),
        ("a,,b, ,", ["a", "b"]),
        ("", []),
    ],
)
def test_split_list_respects_quotes_and_brackets(value: str, items: list[str]) -> None:
    assert split_list(value) == items


@pytest.mark.parametrize("value", ['"unterminated, <sip:a@b>', "<sip:a@b, c"])
def test_split_list_rejects_unbalanced_values(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        split_list(value)


VIA_CASES: list[tuple[str, Via, str]] = [
    (
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport",
        Via("UDP", "192.0.2.1", 5060, (("branch", "z9hG4bK776"), ("rport", None))),
        "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776;rport",
    ),
    (
        "SIP  /   2.0 /udp    Host.Example.COM ; Branch = z9hG4bKx ; received=192.0.2.9;rport=5061",
        Via(
            "UDP",
            "host.example.com",
            None,
            (("branch", "z9hG4bKx"), ("received", "192.0.2.9"), ("rport", "5061")),
        ),
        "SIP/2.0/UDP host.example.com;branch=z9hG4bKx;received=192.0.2.9;rport=5061",
    ),
    (
        "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK1;received=2001:db8::2",
        Via("TLS", "[2001:db8::1]", 5061, (("branch", "z9hG4bK1"), ("received", "2001:db8::2"))),
        "SIP/2.0/TLS [2001:db8::1]:5061;branch=z9hG4bK1;received=2001:db8::2",
    ),
    (
        "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf",
        Via("WSS", "df7jal23ls0d.invalid", None, (("branch", "z9hG4bKasudf"),)),
        "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKasudf",
    ),
]


@pytest.mark.parametrize(("text", "via", "canonical"), VIA_CASES)
def test_via_table(text: str, via: Via, canonical: str) -> None:
    parsed = Via.parse(text)
    assert parsed == via
    assert str(parsed) == canonical


def test_via_accessors() -> None:
    via = Via.parse("SIP/2.0/UDP h;branch=z9hG4bKa;rport;received=192.0.2.1")
    assert via.branch == "z9hG4bKa"
    assert via.rport == ""
    assert via.received == "192.0.2.1"
    assert Via.parse("SIP/2.0/UDP h").rport is None
    updated = via.with_param("rport", "5070").with_param("received", "192.0.2.2")
    assert str(updated) == "SIP/2.0/UDP h;branch=z9hG4bKa;rport=5070;received=192.0.2.2"


@pytest.mark.parametrize(
    "text",
    [
        "SIP/2.0/UDP 192.0.2.15;;",
        "SIP/2.0/UDP",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP host:99999",
        "SIP/2.0/UDP host;branch=",
        "SIP/2.0/UDP ho st",
        "SIP/2.0/UDP [::zz]",
    ],
)
def test_via_rejects_malformed_values(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Via.parse(text)


NAME_ADDR_CASES: list[tuple[str, NameAddr, str]] = [
    (
        '"Alice" <sip:alice@example.com>;tag=1928301774',
        NameAddr(SipUri(user="alice", host="example.com"), "Alice", (("tag", "1928301774"),)),
        '"Alice" <sip:alice@example.com>;tag=1928301774',
    ),
    (
        "sip:bob@example.com ;  tag = 88",
        NameAddr(SipUri(user="bob", host="example.com"), None, (("tag", "88"),)),
        "<sip:bob@example.com>;tag=88",
    ),
    (
        "Bob Smith<sip:bob@example.com;transport=tcp>",
        NameAddr(
            SipUri(user="bob", host="example.com", params=(("transport", "tcp"),)), "Bob Smith"
        ),
        '"Bob Smith" <sip:bob@example.com;transport=tcp>',
    ),
    (
        r'"J Rosenberg \\\"" <sip:jdrosen@example.com>',
        NameAddr(SipUri(user="jdrosen", host="example.com"), 'J Rosenberg \\"'),
        r'"J Rosenberg \\\"" <sip:jdrosen@example.com>',
    ),
    (
        '<sip:a@192.0.2.1>;expires=60;+sip.instance="<urn:uuid:1-2>";reg-id=1',
        NameAddr(
            SipUri(user="a", host="192.0.2.1"),
            None,
            (("expires", "60"), ("+sip.instance", '"<urn:uuid:1-2>"'), ("reg-id", "1")),
        ),
        '<sip:a@192.0.2.1>;expires=60;+sip.instance="<urn:uuid:1-2>";reg-id=1',
    ),
    (
        "sip:+19725552222@gw1.example.net;unknownparam",
        NameAddr(
            SipUri(user="+19725552222", host="gw1.example.net"), None, (("unknownparam", None),)
        ),
        "<sip:+19725552222@gw1.example.net>;unknownparam",
    ),
    (
        "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
        NameAddr(
            SipUri(user="user", host="example.com", headers=(("Route", "<sip:sip.example.com>"),))
        ),
        "<sip:user@example.com?Route=%3Csip:sip.example.com%3E>",
    ),
    ("isbn:2983792873", NameAddr(AbsoluteUri("isbn", "2983792873")), "<isbn:2983792873>"),
    ('"" <sip:x@y>', NameAddr(SipUri(user="x", host="y"), ""), '"" <sip:x@y>'),
]


@pytest.mark.parametrize(("text", "value", "canonical"), NAME_ADDR_CASES)
def test_name_addr_table(text: str, value: NameAddr, canonical: str) -> None:
    parsed = NameAddr.parse(text)
    assert parsed == value
    assert str(parsed) == canonical
    assert NameAddr.parse(canonical) == value


@pytest.mark.parametrize(
    "text",
    [
        "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",  # RFC 4475 §3.1.2.15
        '"Mr. J. User <sip:j.user@example.com>',  # §3.1.2.6
        '"Watson, Thomas" < sip:t.watson@example.org >',  # §3.1.2.14
        "sip:user@example.com?Route=%3Csip:sip.example.com%3E",  # §3.1.2.13
        '"Joe" <sip:joe@example.org>;;;;',  # §3.1.2.1
        "<sip:a@b> junk",
        "<sip:a@b",
        "",
    ],
)
def test_name_addr_rejects_malformed_values(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        NameAddr.parse(text)


def test_name_addr_params_and_tag() -> None:
    value = NameAddr.parse("<sip:a@b>;TAG=xyz;Expires=30")
    assert value.tag == "xyz"
    assert value.param("expires") == "30"
    assert value.with_param("tag", "new").tag == "new"
    assert str(value.without_param("expires")) == "<sip:a@b>;tag=xyz"


def test_display_name_with_cr_lf_cannot_be_serialised() -> None:
    with pytest.raises(LocalProtocolError):
        str(NameAddr(SipUri(host="h"), "a\r\nVia: x"))


def test_parse_contacts_star_and_lists() -> None:
    assert parse_contacts(" * ") == "*"
    contacts = parse_contacts('<sip:a@b>;q=0.5, "X" <sip:c@d>;expires=0')
    assert contacts != "*"
    assert [str(c.uri) for c in contacts] == ["sip:a@b", "sip:c@d"]
    assert contacts[1].param("expires") == "0"


@pytest.mark.parametrize(
    ("text", "cseq"),
    [
        ("1 INVITE", CSeq(1, "INVITE")),
        ("0009\t  REGISTER ", CSeq(9, "REGISTER")),
        ("2147483647 BYE", CSeq(2**31 - 1, "BYE")),
    ],
)
def test_cseq_parse(text: str, cseq: CSeq) -> None:
    assert CSeq.parse(text) == cseq
    assert CSeq.parse(str(cseq)) == cseq


@pytest.mark.parametrize(
    "text",
    ["2147483648 INVITE", "36893488147419103232 REGISTER", "INVITE", "1", "-1 BYE", "1 INV ITE"],
)
def test_cseq_rejects_out_of_range_or_malformed(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        CSeq.parse(text)


def test_parse_auth_params_unquotes_and_lowercases_keys() -> None:
    scheme, params = parse_auth_params(
        'Digest username="bob", Realm="a\\"b" ,nc=00000001, qop=auth, uri="sip:x@y;a=b"'
    )
    assert scheme == "Digest"
    assert params == {
        "username": "bob",
        "realm": 'a"b',
        "nc": "00000001",
        "qop": "auth",
        "uri": "sip:x@y;a=b",
    }


@pytest.mark.parametrize("value", ['Digest realm="x" nonce="y"', "Digest realm", '"Digest" a=b'])
def test_parse_auth_params_rejects_malformed(value: str) -> None:
    with pytest.raises(RemoteProtocolError):
        parse_auth_params(value)


def test_format_auth_params_round_trips() -> None:
    text = format_auth_params(
        "Digest",
        [("realm", 'pbx "x"', True), ("algorithm", "SHA-256", False), ("qop", "auth", True)],
    )
    assert text == 'Digest realm="pbx \\"x\\"", algorithm=SHA-256, qop="auth"'
    assert parse_auth_params(text) == (
        "Digest",
        {"realm": 'pbx "x"', "algorithm": "SHA-256", "qop": "auth"},
    )


# --- properties ---------------------------------------------------------------------------

_token = st.from_regex(r"[A-Za-z0-9\-.!%*_+`'~]{1,10}", fullmatch=True)
_gen_value = st.one_of(
    _token,
    st.from_regex(r'"([^"\\\x00-\x1f\x7f]|\\[ -~]){0,10}"', fullmatch=True),
)
_params = st.lists(
    st.tuples(_token.map(str.lower), st.none() | _gen_value), max_size=4, unique_by=lambda p: p[0]
).map(tuple)
_display = st.none() | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=15)
name_addrs = st.builds(NameAddr, sip_uris, _display, _params)
vias = st.builds(
    Via,
    st.sampled_from(["UDP", "TCP", "TLS", "SCTP", "WS", "WSS"]),
    hosts,
    st.none() | st.integers(1, 65535),
    _params,
)


@SLOW_OK
@given(name_addrs)
def test_name_addr_round_trips(value: NameAddr) -> None:
    assert NameAddr.parse(str(value)) == value


@SLOW_OK
@given(vias)
def test_via_round_trips(value: Via) -> None:
    assert Via.parse(str(value)) == value


@SLOW_OK
@given(st.lists(name_addrs, min_size=1, max_size=3))
def test_contact_lists_round_trip(values: list[NameAddr]) -> None:
    assert parse_contacts(", ".join(map(str, values))) == values


@SLOW_OK
@given(st.text(max_size=60))
def test_header_parsers_only_raise_remote_protocol_error(text: str) -> None:
    for parse in (NameAddr.parse, Via.parse, CSeq.parse, parse_contacts, parse_auth_params):
        try:
            parse(text)
        except RemoteProtocolError:
            pass


@pytest.mark.parametrize(
    "value",
    [
        'sip:user@example.com?Route=%3Csip"sip.example.com%3E',  # found by fuzzing
        "a" * 5000 + '"',
        "<sip:a@b>, " + "x" * 5000 + '"' + "y" * 5000,
    ],
)
def test_unbalanced_values_fail_in_linear_time(value: str) -> None:
    # a backtracking regex took exponential time on the first value (ReDoS)
    with pytest.raises(RemoteProtocolError):
        split_list(value)
    with pytest.raises(RemoteProtocolError):
        parse_contacts(value)
