"""RFC 3261 §12 dialogs: creation on both sides, in-dialog requests, CSeq ordering."""

from __future__ import annotations

import pytest

from pbx.sip.dialog import (
    MAX_CSEQ,
    Dialog,
    dialog_id_of_request,
    dialog_id_of_response,
)
from pbx.sip.errors import LocalProtocolError, RemoteProtocolError
from pbx.sip.headers import NameAddr
from pbx.sip.message import Request, Response, parse_message, serialize
from pbx.sip.uri import SipUri, parse_uri

RECORD_ROUTE = "Record-Route: <sip:127.0.0.3;lr>, <sip:127.0.0.2;lr>\r\n"


def invite(
    record_route: str = RECORD_ROUTE,
    contact: str = "<sip:alice@127.0.0.1:5070>",
    uri: str = "sip:bob@127.0.0.1",
) -> Request:
    raw = (
        f"INVITE {uri} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.3;branch=z9hG4bKp2\r\n"
        "Via: SIP/2.0/UDP 127.0.0.2;branch=z9hG4bKp1\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKuac\r\n"
        "Max-Forwards: 68\r\n"
        f"{record_route}"
        "To: Bob <sip:bob@127.0.0.1>\r\n"
        "From: Alice <sip:alice@127.0.0.1>;tag=alicetag\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        "CSeq: 10 INVITE\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Request)
    return msg


def answer(
    status: int = 200,
    record_route: str = RECORD_ROUTE,
    contact: str = "<sip:bob@127.0.0.5:5080;transport=tcp>",
    to_tag: str = ";tag=bobtag",
) -> Response:
    raw = (
        f"SIP/2.0 {status} Whatever\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKuac\r\n"
        f"{record_route}"
        f"To: Bob <sip:bob@127.0.0.1>{to_tag}\r\n"
        "From: Alice <sip:alice@127.0.0.1>;tag=alicetag\r\n"
        "Call-ID: call-1@127.0.0.1\r\n"
        "CSeq: 10 INVITE\r\n"
        + (f"Contact: {contact}\r\n" if contact else "")
        + "Content-Length: 0\r\n\r\n"
    ).encode()
    msg = parse_message(raw)
    assert isinstance(msg, Response)
    return msg


def in_dialog(dialog: Dialog, method: str, **kwargs: object) -> Request:
    """A request built by ``dialog``, given a Via and put through the wire format."""
    req = dialog.create_request(method, **kwargs)  # type: ignore[arg-type]
    req.headers.prepend("Via", "SIP/2.0/UDP 127.0.0.9;branch=z9hG4bKx")
    msg = parse_message(serialize(req))
    assert isinstance(msg, Request)
    return msg


def route_uris(req: Request) -> list[str]:
    return [str(r.uri) for r in req.routes]


# --- creation (§12.1) ----------------------------------------------------------------------


def test_uac_dialog_takes_reversed_record_route_and_contact_of_response() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    assert dialog.is_uac
    assert dialog.call_id == "call-1@127.0.0.1"
    assert (dialog.local_tag, dialog.remote_tag) == ("alicetag", "bobtag")
    assert str(dialog.local_uri) == "sip:alice@127.0.0.1"
    assert str(dialog.remote_uri) == "sip:bob@127.0.0.1"
    assert (dialog.local_seq, dialog.remote_seq) == (10, None)
    assert dialog.remote_target == parse_uri("sip:bob@127.0.0.5:5080;transport=tcp")
    assert [str(r.uri) for r in dialog.route_set] == ["sip:127.0.0.2;lr", "sip:127.0.0.3;lr"]
    assert not dialog.secure
    assert dialog.dialog_id == ("call-1@127.0.0.1", "alicetag", "bobtag")
    assert dialog_id_of_response(answer()) == dialog.dialog_id


def test_uas_dialog_keeps_record_route_order_and_remote_cseq() -> None:
    dialog = Dialog.from_uas(invite(), answer())
    assert not dialog.is_uac
    assert (dialog.local_tag, dialog.remote_tag) == ("bobtag", "alicetag")
    assert str(dialog.local_uri) == "sip:bob@127.0.0.1"
    assert str(dialog.remote_uri) == "sip:alice@127.0.0.1"
    assert (dialog.local_seq, dialog.remote_seq) == (None, 10)
    assert dialog.remote_target == parse_uri("sip:alice@127.0.0.1:5070")
    assert [str(r.uri) for r in dialog.route_set] == ["sip:127.0.0.3;lr", "sip:127.0.0.2;lr"]
    assert dialog.dialog_id == ("call-1@127.0.0.1", "bobtag", "alicetag")


def test_dialog_creation_needs_tags_contact_and_a_dialog_creating_status() -> None:
    with pytest.raises(LocalProtocolError):
        Dialog.from_uac(invite(), answer(status=100))
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(invite(), answer(to_tag=""))
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uac(invite(), answer(contact=""))
    with pytest.raises(RemoteProtocolError):
        Dialog.from_uas(invite(contact=""), answer())


def test_early_dialog_without_contact_targets_the_request_uri() -> None:
    dialog = Dialog.from_uac(invite(), answer(status=180, contact=""))
    assert dialog.remote_target == parse_uri("sip:bob@127.0.0.1")


def test_rfc2543_peer_without_to_tag_gets_empty_remote_tag() -> None:
    dialog = Dialog.from_uac(invite(), answer(to_tag=""))
    assert dialog.remote_tag == ""
    req = in_dialog(dialog, "BYE")
    assert req.to.tag is None


def test_sips_request_uri_makes_a_secure_dialog() -> None:
    dialog = Dialog.from_uas(invite(uri="sips:bob@127.0.0.1"), answer())
    assert dialog.secure


# --- in-dialog requests (§12.2.1.1) --------------------------------------------------------


def test_loose_routing_request_targets_remote_target_with_route_set() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    bye = in_dialog(dialog, "BYE")
    assert bye.method == "BYE"
    assert bye.uri == dialog.remote_target
    assert route_uris(bye) == ["sip:127.0.0.2;lr", "sip:127.0.0.3;lr"]
    assert bye.from_.uri == dialog.local_uri and bye.from_.tag == "alicetag"
    assert bye.to.uri == dialog.remote_uri and bye.to.tag == "bobtag"
    assert bye.call_id == dialog.call_id
    assert (bye.cseq.seq, bye.cseq.method) == (11, "BYE")
    assert bye.max_forwards == 70
    assert dialog.local_seq == 11


def test_request_without_route_set_has_no_route_header() -> None:
    dialog = Dialog.from_uac(invite(record_route=""), answer(record_route=""))
    req = in_dialog(dialog, "INFO", body=b"Signal=1\r\n", content_type="application/dtmf-relay")
    assert "Route" not in req.headers
    assert req.uri == dialog.remote_target
    assert req.body == b"Signal=1\r\n"
    assert req.content_type == "application/dtmf-relay"


def test_strict_router_gets_the_request_uri_and_target_goes_last_in_route() -> None:
    strict = "Record-Route: <sip:127.0.0.3;lr>, <sip:127.0.0.2;method=INVITE;maddr=127.0.0.2>\r\n"
    dialog = Dialog.from_uac(invite(), answer(record_route=strict))
    req = in_dialog(dialog, "BYE")
    first = dialog.route_set[0].uri
    assert isinstance(first, SipUri) and not first.has_param("lr")
    assert isinstance(req.uri, SipUri)
    assert req.uri.host == "127.0.0.2"
    assert req.uri.param("maddr") == "127.0.0.2"
    assert not req.uri.has_param("method")  # not allowed in a Request-URI (§19.1.1)
    assert route_uris(req) == ["sip:127.0.0.3;lr", str(dialog.remote_target)]


def test_uas_first_request_picks_initial_cseq_then_increments() -> None:
    dialog = Dialog.from_uas(invite(), answer())
    first = in_dialog(dialog, "BYE")
    assert 0 < first.cseq.seq < 2**31
    second = in_dialog(dialog, "NOTIFY")
    assert second.cseq.seq == first.cseq.seq + 1
    assert first.to.tag == "alicetag" and first.from_.tag == "bobtag"
    assert first.uri == parse_uri("sip:alice@127.0.0.1:5070")
    assert route_uris(first) == ["sip:127.0.0.3;lr", "sip:127.0.0.2;lr"]


def test_ack_reuses_the_invite_cseq_and_cancel_is_refused() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    ack = in_dialog(dialog, "ACK")
    assert (ack.cseq.seq, ack.cseq.method) == (10, "ACK")
    assert dialog.local_seq == 10
    reinvite = in_dialog(dialog, "INVITE")
    assert reinvite.cseq.seq == 11
    assert in_dialog(dialog, "ACK", cseq=11).cseq.seq == 11
    with pytest.raises(LocalProtocolError):
        dialog.create_request("CANCEL")
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE", cseq=5)
    with pytest.raises(LocalProtocolError):
        Dialog.from_uas(invite(), answer()).create_request("ACK")


def test_local_cseq_cannot_pass_two_to_the_31() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    dialog.local_seq = MAX_CSEQ
    with pytest.raises(LocalProtocolError):
        dialog.create_request("BYE")


def test_extra_headers_are_appended() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    req = in_dialog(dialog, "REFER", extra_headers=[("Refer-To", "<sip:carol@127.0.0.1>")])
    assert req.headers.get("Refer-To") == "<sip:carol@127.0.0.1>"


# --- incoming in-dialog requests (§12.2.2) --------------------------------------------------


def test_requests_of_one_side_are_accepted_by_the_other() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uas = Dialog.from_uas(invite(), answer())
    bye = in_dialog(uac, "BYE")
    assert dialog_id_of_request(bye) == uas.dialog_id
    uas.receive_request(bye)
    assert uas.remote_seq == 11


def test_lower_cseq_is_rejected_with_500() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uas = Dialog.from_uas(invite(), answer())
    uas.receive_request(in_dialog(uac, "INFO"))
    uac.local_seq = 5
    with pytest.raises(RemoteProtocolError) as caught:
        uas.receive_request(in_dialog(uac, "BYE"))
    assert caught.value.status == 500
    assert uas.remote_seq == 11


def test_ack_is_not_ordered_against_later_requests() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uas = Dialog.from_uas(invite(), answer())
    ack = in_dialog(uac, "ACK")
    uas.receive_request(in_dialog(uac, "INFO"))
    uas.receive_request(ack)  # CSeq 10 < 11, still fine
    assert uas.remote_seq == 11


def test_first_request_from_uas_side_sets_remote_seq_of_uac_dialog() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uas = Dialog.from_uas(invite(), answer())
    notify = in_dialog(uas, "NOTIFY")
    uac.receive_request(notify)
    assert uac.remote_seq == notify.cseq.seq


def test_target_refresh_request_updates_remote_target_but_bye_does_not() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uas = Dialog.from_uas(invite(), answer())
    new_contact = "<sip:alice@127.0.0.7:5090>"
    reinvite = in_dialog(uac, "INVITE", extra_headers=[("Contact", new_contact)])
    uas.receive_request(reinvite)
    assert uas.remote_target == parse_uri("sip:alice@127.0.0.7:5090")
    bye = in_dialog(uac, "BYE", extra_headers=[("Contact", "<sip:alice@127.0.0.8>")])
    uas.receive_request(bye)
    assert uas.remote_target == parse_uri("sip:alice@127.0.0.7:5090")
    assert uas.route_set == Dialog.from_uas(invite(), answer()).route_set  # never changes


def test_2xx_to_reinvite_updates_remote_target_on_uac() -> None:
    uac = Dialog.from_uac(invite(), answer())
    uac.receive_response(answer(status=180, contact="<sip:bob@127.0.0.6>"))
    assert uac.remote_target == parse_uri("sip:bob@127.0.0.5:5080;transport=tcp")
    uac.receive_response(answer(contact="<sip:bob@127.0.0.6>"))
    assert uac.remote_target == parse_uri("sip:bob@127.0.0.6")


def test_request_of_another_dialog_is_a_local_error() -> None:
    uac = Dialog.from_uac(invite(), answer())
    other = Dialog.from_uac(invite(), answer(to_tag=";tag=someoneelse"))
    with pytest.raises(LocalProtocolError):
        uac.receive_request(in_dialog(other, "BYE"))


def test_route_set_entries_are_name_addrs() -> None:
    dialog = Dialog.from_uac(invite(), answer())
    assert all(isinstance(route, NameAddr) for route in dialog.route_set)
