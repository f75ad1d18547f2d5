"""RFC 4475 torture messages (tests/data/sip-torture): every file gets the verdict of the
corpus README. The SHA256SUMS of the corpus are verified before any message is parsed.

Where the README allows several answers, the choice is noted next to the entry; the rule used is
"reject at the parser whenever the RFC allows it, because a guessed repair could be forwarded
or bound", except where rejecting would refuse a well-formed message (Date, RFC 2543 syntax).
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pbx.sip.errors import RemoteProtocolError, UnsupportedUriScheme, VersionNotSupported
from pbx.sip.headers import CSeq, NameAddr
from pbx.sip.message import Message, Request, Response, parse_message, serialize
from pbx.sip.uri import AbsoluteUri, SipUri

CORPUS = Path(__file__).resolve().parent.parent / "data" / "sip-torture"
SLOW_OK = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _checksum_failures() -> list[str]:
    failures = []
    for line in (CORPUS / "SHA256SUMS").read_text().splitlines():
        digest, _, name = line.partition("  ")
        path = CORPUS / name
        if not path.is_file():
            failures.append(f"{name}: missing")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            failures.append(f"{name}: checksum mismatch")
    return failures


@pytest.fixture(scope="module", autouse=True)
def verified_corpus() -> None:
    """Runs before every test of this module: the corpus must be byte-exact."""
    failures = _checksum_failures()
    if failures:
        pytest.fail("sip-torture corpus damaged: " + ", ".join(failures))


def _request(msg: Message) -> Request:
    assert isinstance(msg, Request)
    return msg


def _response(msg: Message) -> Response:
    assert isinstance(msg, Response)
    return msg


def _sip(uri: object) -> SipUri:
    assert isinstance(uri, SipUri)
    return uri


def _contacts(msg: Message) -> list[NameAddr]:
    contacts = msg.contacts
    assert contacts != "*"
    return contacts


# --- checks for the messages that must be accepted ----------------------------------------


def check_wsinv(msg: Message) -> None:
    req = _request(msg)
    assert req.method == "INVITE"
    assert _sip(req.uri).params == (("unknownparam", None),)
    assert str(req.to.uri) == "sip:vivekg@chair-dnrc.example.com"
    assert req.to.tag == "1918181833n"
    assert req.from_.display_name == 'J Rosenberg \\"'  # escaped quote and backslash
    assert req.from_.tag == "98asjd8"
    assert req.max_forwards == 68  # leading zeros
    assert req.cseq == CSeq(9, "INVITE")  # folded CSeq value
    assert req.call_id == "wsinv.ndaksdj@192.0.2.1"
    assert [(v.transport, v.host, v.branch) for v in req.vias] == [
        ("UDP", "192.0.2.2", "390skdjuw"),
        ("TCP", "spindle.example.com", "z9hG4bK9ikj8"),
        ("UDP", "192.168.255.111", "z9hG4bK30239"),
    ]
    assert req.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert req.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    assert req.headers.get("Subject") == ""
    [contact] = _contacts(req)
    assert contact.display_name == 'Quoted string ""'
    assert contact.params == (("newparam", "newvalue"), ("secondparam", None), ("q", "0.33"))
    assert _sip(req.routes[0].uri).params[-1] == ("unknown-no-value", None)
    assert req.content_type == "application/sdp"
    assert len(req.body) == 150 and req.body.startswith(b"v=0\r\n")


def check_intmeth(msg: Message) -> None:
    req = _request(msg)
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    assert req.method == method and req.cseq == CSeq(139122385, method)
    uri = _sip(req.uri)
    assert uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert req.top_via.branch == "z9hG4bK-.!%66*_+`'~"
    assert req.to.display_name == "BEL:\x07 NUL:\x00 DEL:\x7f"
    assert req.from_.display_name == "token1~` token2'+_ token3*%!.-"
    assert req.from_.param("fromparam''~+*_!.-%") == '"работающий"'
    assert req.from_.tag == "_token~1'+`*%!-."
    assert req.call_id == "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    assert req.headers.get("extensionHeader-!.%*+_`'~") == "\ufeff\u5927\u505c\u96fb"


def check_esc01(msg: Message) -> None:
    req = _request(msg)
    assert _sip(req.uri).user == "sips:user@example.com"
    assert _sip(req.to.uri).user == "user"
    assert _sip(req.from_.uri).user == "I have spaces"
    [contact] = _contacts(req)
    uri = _sip(contact.uri)
    assert uri.user == "caller"
    assert uri.params == (("lr", None), ("name", "value%41"))


def check_escnull(msg: Message) -> None:
    req = _request(msg)
    assert _sip(req.to.uri).user == "null-\x00-null"  # %00 does not truncate the AOR
    assert [_sip(c.uri).user for c in _contacts(req)] == ["\x00", "\x00\x00"]


def check_esc02(msg: Message) -> None:
    req = _request(msg)
    assert req.method == "RE%47IST%45R"  # not REGISTER
    assert [_sip(c.uri).host for c in _contacts(req)] == [
        "host1.example.com",
        "host3.example.com",
    ]
    assert req.headers.get("C%6Fntact") == "<sip:alias2@host2.example.com>"
    assert req.to.display_name == "%Z%45"


def check_lwsdisp(msg: Message) -> None:
    req = _request(msg)
    assert req.from_.display_name == "caller" and req.from_.tag == "323"


def check_longreq(msg: Message) -> None:
    req = _request(msg)
    assert len(req.vias) == 34
    assert req.call_id.startswith("longreq.onereally") and len(req.call_id) > 100
    assert req.to.display_name is not None and "extremeextreme" in req.to.display_name
    assert len(_contacts(req)) == 1
    assert _sip(req.to.uri).param("unknownparam1") == "very" + "long" * 20 + "value"
    assert req.from_.tag is not None and len(req.from_.tag) > 100
    assert len(req.body) == 150


def check_dblreq(msg: Message) -> None:
    req = _request(msg)
    assert req.method == "REGISTER" and req.body == b""  # trailing INVITE octets ignored
    assert req.call_id == "dblreq.0ha0isndaksdj99sdfafnl3lk233412"


def check_semiuri(msg: Message) -> None:
    uri = _sip(_request(msg).uri)
    assert uri.user == "user;par=u@example.net" and uri.params == ()
    assert msg.headers.get_all("Accept") == [
        "application/sdp",
        "application/pkcs7-mime",
        "multipart/mixed",
        "multipart/signed",
        "message/sip",
        "message/sipfrag",
    ]


def check_transports(msg: Message) -> None:
    assert [v.transport for v in msg.vias] == ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]


def check_mpart01(msg: Message) -> None:
    req = _request(msg)
    assert len(req.body) == 553 and b"\x00" in req.body
    assert req.content_type == "multipart/mixed;boundary=7a9cbec02ceef655"


def check_unreason(msg: Message) -> None:
    resp = _response(msg)
    assert resp.status == 200
    assert resp.reason.startswith("= 2**3 * 5**2 \u043d\u043e")
    assert len(resp.body) == 154


def check_noreason(msg: Message) -> None:
    resp = _response(msg)
    assert (resp.status, resp.reason) == (100, "")


def check_baddate(msg: Message) -> None:
    assert msg.headers.get("Date") == "Fri, 01 Jan 2010 16:00:00 EST"


def check_badbranch(msg: Message) -> None:
    assert msg.top_via.branch == "z9hG4bK"  # the transaction layer decides


def check_unksm2(msg: Message) -> None:
    assert msg.to.uri == AbsoluteUri("isbn", "2983792873")
    assert msg.from_.uri == AbsoluteUri("http", "//www.example.com")
    assert [c.uri for c in _contacts(msg)] == [AbsoluteUri("name", "John_Smith")]


def check_bext01(msg: Message) -> None:
    assert msg.headers.get_all("Require") == ["nothingSupportsThis", "nothingSupportsThisEither"]
    assert msg.headers.get_all("Proxy-Require") == [
        "noProxiesSupportThis",
        "norDoAnyProxiesSupportThis",
    ]


def check_invut(msg: Message) -> None:
    assert msg.content_type == "application/unknownformat" and len(msg.body) == 40


def check_regaut01(msg: Message) -> None:
    assert msg.headers.get("Authorization") == "NoOneKnowsThisScheme opaque-data=here"


def check_multi_via_response(msg: Message) -> None:
    assert [v.host for v in _response(msg).vias] == ["192.0.2.198", "255.255.255.255"]


def check_zeromf(msg: Message) -> None:
    assert msg.max_forwards == 0


def check_cparam01(msg: Message) -> None:
    [contact] = _contacts(msg)
    assert _sip(contact.uri).params == ()  # a contact-param, not a uri-parameter
    assert contact.has_param("unknownparam")


def check_cparam02(msg: Message) -> None:
    [contact] = _contacts(msg)
    assert _sip(contact.uri).params == (("unknownparam", None),)
    assert contact.params == ()


def check_regescrt(msg: Message) -> None:
    [contact] = _contacts(msg)
    assert _sip(contact.uri).headers == (("Route", "<sip:sip.example.com>"),)
    assert str(contact.uri) == "sip:user@example.com?Route=%3Csip:sip.example.com%3E"
    assert "Route" not in msg.headers


def check_sdp01(msg: Message) -> None:
    assert msg.headers.get_all("Accept") == ["text/nobodyKnowsThis"]


def check_inv2543(msg: Message) -> None:
    req = _request(msg)
    assert "Content-Length" not in req.headers and len(req.body) == 105  # to end of datagram
    assert req.top_via.branch is None and req.from_.tag is None
    assert req.max_forwards is None


# --- the verdict table --------------------------------------------------------------------


@dataclass(frozen=True)
class Accept:
    check: Callable[[Message], None]


@dataclass(frozen=True)
class Reject:
    error: type[RemoteProtocolError]
    status: int
    answerable: bool  # a partial request is available to build the error response


BAD = Reject(RemoteProtocolError, 400, True)
DROP = Reject(RemoteProtocolError, 400, False)  # responses: never answered, just dropped

VERDICTS: dict[str, Accept | Reject] = {
    "3.1.1.1-wsinv.dat": Accept(check_wsinv),
    "3.1.1.2-intmeth.dat": Accept(check_intmeth),
    "3.1.1.3-esc01.dat": Accept(check_esc01),
    "3.1.1.4-escnull.dat": Accept(check_escnull),
    "3.1.1.5-esc02.dat": Accept(check_esc02),
    "3.1.1.6-lwsdisp.dat": Accept(check_lwsdisp),
    "3.1.1.7-longreq.dat": Accept(check_longreq),
    "3.1.1.8-dblreq.dat": Accept(check_dblreq),
    "3.1.1.9-semiuri.dat": Accept(check_semiuri),
    "3.1.1.10-transports.dat": Accept(check_transports),
    "3.1.1.11-mpart01.dat": Accept(check_mpart01),
    "3.1.1.12-unreason.dat": Accept(check_unreason),
    "3.1.1.13-noreason.dat": Accept(check_noreason),
    "3.1.2.1-badinv01.dat": BAD,
    "3.1.2.2-clerr.dat": BAD,
    "3.1.2.3-ncl.dat": BAD,  # 400 chosen over a silent drop: the peer learns why
    "3.1.2.4-scalar02.dat": BAD,
    "3.1.2.5-scalarlg.dat": DROP,
    "3.1.2.6-quotbal.dat": BAD,  # no guessing of the closing quote
    "3.1.2.7-ltgtruri.dat": BAD,
    "3.1.2.8-lwsruri.dat": BAD,
    "3.1.2.9-lwsstart.dat": BAD,  # README allows liberal acceptance; strict is more robust
    "3.1.2.10-trws.dat": BAD,  # idem
    "3.1.2.11-escruri.dat": BAD,
    "3.1.2.12-baddate.dat": Accept(check_baddate),  # README prefers ignoring Date
    "3.1.2.13-regbadct.dat": BAD,
    "3.1.2.14-badaspec.dat": BAD,
    "3.1.2.15-baddn.dat": BAD,  # archive copy lacks the empty line: datagram end closes it
    "3.1.2.16-badvers.dat": Reject(VersionNotSupported, 505, True),
    "3.1.2.17-mismatch01.dat": BAD,
    "3.1.2.18-mismatch02.dat": BAD,  # 501 preferred, 400 allowed: the parser knows no methods
    "3.1.2.19-bigcode.dat": DROP,
    "3.2.1-badbranch.dat": Accept(check_badbranch),  # parsed; transaction layer answers 400
    "3.3.1-insuf.dat": BAD,
    "3.3.2-unkscm.dat": Reject(UnsupportedUriScheme, 416, True),
    "3.3.3-novelsc.dat": Reject(UnsupportedUriScheme, 416, True),
    "3.3.4-unksm2.dat": Accept(check_unksm2),  # well-formed; the registrar answers 400
    "3.3.5-bext01.dat": Accept(check_bext01),
    "3.3.6-invut.dat": Accept(check_invut),
    "3.3.7-regaut01.dat": Accept(check_regaut01),
    "3.3.8-multi01.dat": BAD,
    "3.3.9-mcl01.dat": BAD,
    "3.3.10-bcast.dat": Accept(check_multi_via_response),
    "3.3.11-zeromf.dat": Accept(check_zeromf),
    "3.3.12-cparam01.dat": Accept(check_cparam01),
    "3.3.13-cparam02.dat": Accept(check_cparam02),
    "3.3.14-regescrt.dat": Accept(check_regescrt),
    "3.3.15-sdp01.dat": Accept(check_sdp01),
    "3.4.1-inv2543.dat": Accept(check_inv2543),  # RFC 2543 syntax accepted over UDP
    "A.1-test.dat": BAD,  # no SIP-Version and a header line without colon
    "variants/3.1.2.15-baddn.terminated.dat": BAD,
}


def test_checksums_match() -> None:
    assert _checksum_failures() == []


def test_verdict_table_covers_the_manifest_and_every_file() -> None:
    with (CORPUS / "manifest.tsv").open(newline="") as f:
        manifest = {row["file"]: row["class"] for row in csv.DictReader(f, delimiter="\t")}
    files = {p.relative_to(CORPUS).as_posix() for p in CORPUS.rglob("*.dat")}
    assert set(VERDICTS) == files
    assert set(manifest) <= files
    for name, cls in manifest.items():
        if cls == "valid":
            assert isinstance(VERDICTS[name], Accept), name
        elif cls.startswith("invalid"):
            # 3.1.2.12 (Date) may be accepted per the README
            assert isinstance(VERDICTS[name], Reject) or name == "3.1.2.12-baddate.dat", name


@pytest.mark.parametrize("name", sorted(VERDICTS))
def test_torture_message_gets_the_readme_verdict(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    verdict = VERDICTS[name]
    if isinstance(verdict, Accept):
        verdict.check(parse_message(data))
        return
    with pytest.raises(verdict.error) as info:
        parse_message(data)
    assert info.value.status == verdict.status
    if verdict.answerable:
        partial = info.value.partial
        assert partial is not None
        assert len(partial.headers) > 0 and partial.method
    else:
        assert info.value.partial is None


ACCEPTED = sorted(name for name, verdict in VERDICTS.items() if isinstance(verdict, Accept))


def _as_serialised(msg: Message) -> list[tuple[str, str]]:
    """Header items after serialize(): Content-Length set in place, or appended."""
    length = ("Content-Length", str(len(msg.body)))
    items = [length if name == "Content-Length" else (name, v) for name, v in msg.headers.items()]
    return items if length in items else [*items, length]


@pytest.mark.parametrize("name", ACCEPTED)
def test_accepted_messages_survive_serialisation(name: str) -> None:
    msg = parse_message((CORPUS / name).read_bytes())
    again = parse_message(serialize(msg))
    assert again.headers.items() == _as_serialised(msg)
    assert again.body == msg.body
    assert serialize(again) == serialize(msg)
    verdict = VERDICTS[name]
    assert isinstance(verdict, Accept)
    if name != "3.4.1-inv2543.dat":  # its point is the missing Content-Length
        verdict.check(again)


@SLOW_OK
@given(
    st.sampled_from(sorted(VERDICTS)),
    st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), min_size=1, max_size=6),
)
def test_mutated_torture_messages_only_raise_remote_protocol_errors(
    name: str, flips: list[tuple[int, int]]
) -> None:
    data = bytearray((CORPUS / name).read_bytes())
    for offset, value in flips:
        data[offset % len(data)] = value
    try:
        msg = parse_message(bytes(data))
    except RemoteProtocolError as exc:
        if exc.partial is not None:
            serialize(exc.partial)  # an error response can be built from it
        return
    assert serialize(parse_message(serialize(msg))) == serialize(msg)
