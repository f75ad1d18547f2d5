"""The method router (pbx.sip.methods): several handlers per method, in-dialog hooks, and an
Allow list of exactly what is handled."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from pbx.sip.message import Request, parse_message
from pbx.sip.methods import Methods


class Incoming:
    def __init__(self, text: str) -> None:
        message = parse_message(text.replace("\n", "\r\n").encode())
        assert isinstance(message, Request)
        self.request = message
        self.call_id = message.call_id
        self.final_sent = False
        self.answers: list[tuple[int, dict[str, str]]] = []

    def respond(self, status: int, reason: str | None = None, headers: Any = ()) -> None:
        self.final_sent = status >= 200
        self.answers.append((status, dict(headers)))


class Trusting:
    def authenticate(self, incoming: Any) -> defer.Deferred[str | None]:
        return defer.succeed("1001")


def request(method: str, to_tag: str = "") -> Incoming:
    tag = f";tag={to_tag}" if to_tag else ""
    return Incoming(
        f"{method} sip:1002@127.0.0.1 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.9:5060;branch=z9hG4bK1\n"
        f"From: <sip:1001@127.0.0.1>;tag=a\nTo: <sip:1002@127.0.0.1>{tag}\nCall-ID: c\n"
        f"CSeq: 1 {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def test_handlers_are_tried_in_order_until_one_takes_the_request() -> None:
    methods = Methods(Trusting(), lambda incoming: None)  # type: ignore[arg-type]
    seen: list[str] = []
    methods.add("INVITE", lambda incoming, user: seen.append("first") or False)
    methods.add("INVITE", lambda incoming, user: seen.append("second"))
    methods.handle_request(request("INVITE"))  # type: ignore[arg-type]
    assert seen == ["first", "second"]


def test_a_method_every_handler_declines_gets_405_with_allow() -> None:
    methods = Methods(Trusting(), lambda incoming: None)  # type: ignore[arg-type]
    methods.add("INVITE", lambda incoming, user: False)
    incoming = request("INVITE")
    methods.handle_request(incoming)  # type: ignore[arg-type]
    assert incoming.answers[0][0] == 405 and "INVITE" in incoming.answers[0][1]["Allow"]


def test_allow_lists_exactly_what_is_handled_and_options_says_so() -> None:
    methods = Methods(Trusting(), lambda incoming: None)  # type: ignore[arg-type]
    methods.add("INVITE", lambda incoming, user: None)
    methods.add_in_dialog(lambda incoming: False, ["BYE", "REFER", "UPDATE"])
    assert methods.allowed == ("REGISTER", "OPTIONS", "ACK", "CANCEL", "INVITE", "BYE", "REFER", "UPDATE")
    incoming = request("OPTIONS")
    methods.handle_request(incoming)  # type: ignore[arg-type]
    allow = incoming.answers[0][1]["Allow"].split(", ")
    assert "SUBSCRIBE" not in allow and "MESSAGE" not in allow and "PRACK" not in allow
    assert set(allow) == set(methods.allowed)


def test_in_dialog_requests_go_to_the_hooks_for_their_method_else_481() -> None:
    methods = Methods(Trusting(), lambda incoming: None)  # type: ignore[arg-type]
    taken: list[str] = []
    methods.add_in_dialog(lambda incoming: taken.append("calls") or True, ["BYE"])
    methods.handle_request(request("BYE", to_tag="x"))  # type: ignore[arg-type]
    info = request("INFO", to_tag="x")
    methods.handle_request(info)  # type: ignore[arg-type]
    assert taken == ["calls"] and info.answers == [(481, {})]
