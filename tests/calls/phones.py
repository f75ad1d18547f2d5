"""Scripted SIP phones for in-process tests: pbx.sip's own stack on the memory network.

A :class:`Phone` is one SIP user agent at (host, 5060) with RTP ports of its own. It runs the
same transaction layer as pbx (pbx.sip.stack.Stack and pbx.sip.client.ClientTransactions) so
retransmissions, CANCEL and ACK behave as on the wire, and adds a small UA on top:

- outgoing calls: :meth:`Phone.dial` (INVITE with an SDP offer of ``codecs``), CANCEL, BYE,
  re-INVITE / UPDATE with a direction (hold, resume), REFER (optionally with Replaces), INFO;
- incoming calls follow :attr:`Phone.answer_mode`: ``"answer"`` after ``answer_after`` s
  (180 first), ``"early"`` (183 with SDP, then 200), ``"busy"`` (486), ``"ignore"`` (180 and
  nothing else), or a callable taking the :class:`PhoneCall`;
- in-dialog requests from pbx: BYE, re-INVITE / UPDATE (answered with the offer's mirror
  direction), NOTIFY and INFO (200, kept in ``PhoneCall.requests``);
- media: :meth:`Phone.send_rtp` sends numbered packets to the address pbx gave in SDP;
  received packets are kept per call in ``PhoneCall.rtp``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pbx.media.sdp import SessionDescription, parse_or_none
from pbx.sip.client import ClientTransactions, OutgoingRequest
from pbx.sip.dialog import Dialog, dialog_id_of_request
from pbx.sip.guard import Guard, GuardConfig
from pbx.sip.message import Headers, Request, Response, new_call_id, new_tag
from pbx.sip.stack import IncomingRequest, Stack, StackOptions
from pbx.sip.transaction import TimerConfig
from pbx.sip.transport import Address, Source
from pbx.sip.uri import parse_uri
from tests.calls.sipnet import FakeReactor, MemoryTransports

PBX = Address("UDP", "127.0.0.1", 5060)
CODECS = {"PCMU": (0, 8000), "PCMA": (8, 8000), "G722": (9, 8000), "opus": (111, 48000)}
_RTP = struct.Struct("!BBHII")


def sdp_body(
    host: str,
    port: int,
    codecs: tuple[str, ...] = ("PCMU",),
    direction: str = "sendrecv",
    version: int = 1,
    telephone_event: int | None = 101,
    crypto: str | None = None,
) -> bytes:
    """A phone's SDP: one audio stream with ``codecs`` (CODECS keys) and telephone-event."""
    pts = [CODECS[c][0] for c in codecs]
    if telephone_event is not None:
        pts.append(telephone_event)
    proto = "RTP/SAVP" if crypto else "RTP/AVP"
    lines = [
        "v=0",
        f"o=phone 1000 {version} IN IP4 {host}",
        "s=-",
        f"c=IN IP4 {host}",
        "t=0 0",
        f"m=audio {port} {proto} {' '.join(map(str, pts))}",
    ]
    for name in codecs:
        pt, rate = CODECS[name]
        lines.append(f"a=rtpmap:{pt} {name}/{rate}" + ("/2" if name == "opus" else ""))
    if telephone_event is not None:
        lines += [
            f"a=rtpmap:{telephone_event} telephone-event/8000",
            f"a=fmtp:{telephone_event} 0-16",
        ]
    if crypto:
        lines.append(f"a=crypto:{crypto}")
    lines.append(f"a={direction}")
    return ("\r\n".join(lines) + "\r\n").encode()


def direction_of(body: bytes) -> str | None:
    desc = parse_or_none(body)
    if desc is None:
        return None
    for index, media in enumerate(desc.media):
        if media.media == "audio":
            connection = desc.media_connection(index)
            if connection is not None and connection.address == "0.0.0.0":
                return "inactive"
            return desc.media_direction(index).value
    return None


def _mirror(direction: str | None) -> str:
    return {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}.get(
        direction or "sendrecv", "sendrecv"
    )


@dataclass(eq=False)
class PhoneCall:
    """One call of a phone (one INVITE dialog usage)."""

    phone: Phone
    direction: str  # "out" or "in"
    call_id: str
    rtp_port: int
    state: str = "new"  # calling, ringing, early, confirmed, ended
    statuses: list[int] = field(default_factory=list)  # responses to our INVITE
    dialog: Dialog | None = None
    invite: Request | None = None
    outgoing: OutgoingRequest | None = None
    incoming: IncomingRequest | None = None
    remote_sdp: bytes = b""
    local_sdp: bytes = b""
    local_direction: str = "sendrecv"
    sdp_version: int = 1
    requests: list[Request] = field(default_factory=list)  # in-dialog requests from pbx
    responses: list[Response] = field(default_factory=list)  # final answers to in-dialog requests
    rtp: list[tuple[float, bytes, tuple[str, int]]] = field(default_factory=list)
    ended_by: str = ""  # "local", "remote" or the final status of our INVITE
    _rtp_seq: int = 0
    _rtp_ts: int = 0

    @property
    def remote_media(self) -> tuple[str, int] | None:
        desc = parse_or_none(self.remote_sdp)
        if desc is None:
            return None
        for index, media in enumerate(desc.media):
            if media.media == "audio" and media.port:
                connection = desc.media_connection(index)
                if connection is not None:
                    return connection.address, media.port
        return None

    @property
    def remote_description(self) -> SessionDescription | None:
        return parse_or_none(self.remote_sdp)

    @property
    def remote_direction(self) -> str | None:
        return direction_of(self.remote_sdp)

    @property
    def confirmed(self) -> bool:
        return self.state == "confirmed"

    @property
    def ended(self) -> bool:
        return self.state == "ended"

    def rtp_payloads(self) -> list[bytes]:
        return [data[12:] for _, data, _ in self.rtp]

    def notify_bodies(self) -> list[bytes]:
        return [r.body for r in self.requests if r.method == "NOTIFY"]


class Phone:
    """A SIP phone at (``host``, 5060) for extension ``extension``."""

    def __init__(
        self,
        reactor: FakeReactor,
        extension: str,
        host: str,
        *,
        codecs: tuple[str, ...] = ("PCMU",),
        display_name: str = "",
        answer_mode: str | Callable[[PhoneCall], None] = "answer",
        answer_after: float = 0.2,
    ) -> None:
        self.reactor = reactor
        self.network = reactor.network
        self.extension = extension
        self.host = host
        self.codecs = codecs
        self.display_name = display_name
        self.answer_mode = answer_mode
        self.answer_after = answer_after
        self.address = Address("UDP", host, 5060)
        self.transports = MemoryTransports(self.network, self.address)
        timers = TimerConfig()
        self.stack = Stack(reactor, Guard(GuardConfig(), reactor.seconds), StackOptions(timers))
        self.client = ClientTransactions(
            reactor, self.transports, timers, self.transports.local_address  # type: ignore[arg-type]
        )
        self.transports.sink = self.stack.receive
        self.stack.transports = self.transports  # type: ignore[assignment]
        self.stack.client = self.client
        self.stack.sink = self
        self.stack.on_ack = self._on_ack
        self.client.on_stray_2xx = self._stray_2xx
        self.calls: list[PhoneCall] = []
        self._next_rtp = 20000
        self._dialogs: dict[tuple[str, str, str], PhoneCall] = {}

    # -- helpers ---------------------------------------------------------------------------

    @property
    def contact(self) -> str:
        return f"<sip:{self.extension}@{self.host}:5060>"

    def _new_call(self, direction: str, call_id: str) -> PhoneCall:
        port = self._next_rtp
        self._next_rtp += 2
        call = PhoneCall(self, direction, call_id, port)
        self.network.bind((self.host, port), lambda data, src, c=call: self._rtp_in(c, data, src))
        self.network.bind((self.host, port + 1), lambda data, src: None)
        self.calls.append(call)
        return call

    def _rtp_in(self, call: PhoneCall, data: bytes, src: tuple[str, int]) -> None:
        call.rtp.append((self.reactor.seconds(), data, src))

    def sdp(self, call: PhoneCall, direction: str = "sendrecv", **kwargs: Any) -> bytes:
        call.local_direction = direction
        body = sdp_body(
            self.host,
            call.rtp_port,
            kwargs.pop("codecs", self.codecs),
            direction,
            call.sdp_version,
            **kwargs,
        )
        call.sdp_version += 1
        call.local_sdp = body
        return body

    @property
    def last(self) -> PhoneCall:
        return self.calls[-1]

    # -- outgoing calls ---------------------------------------------------------------------

    def dial(
        self,
        number: str,
        *,
        body: bytes | None = None,
        headers: tuple[tuple[str, str], ...] = (),
        call_id: str | None = None,
        cseq: int = 1,
        **sdp_options: Any,
    ) -> PhoneCall:
        call = self._new_call("out", call_id or new_call_id())
        offer = self.sdp(call, **sdp_options) if body is None else body
        h = Headers()
        h.add("Max-Forwards", "70")
        display = f'"{self.display_name}" ' if self.display_name else ""
        h.add("From", f"{display}<sip:{self.extension}@{PBX.host}>;tag={new_tag()}")
        h.add("To", f"<sip:{number}@{PBX.host}>")
        h.add("Call-ID", call.call_id)
        h.add("CSeq", f"{cseq} INVITE")
        h.add("Contact", self.contact)
        h.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER, NOTIFY")
        for name, value in headers:
            h.add(name, value)
        if offer:
            h.add("Content-Type", "application/sdp")
        request = Request("INVITE", parse_uri(f"sip:{number}@{PBX.host}"), h, offer)
        call.invite = request
        call.state = "calling"
        call.outgoing = self.client.send(request, PBX, lambda r: self._invite_response(call, r))
        return call

    def _invite_response(self, call: PhoneCall, response: Response) -> None:
        call.statuses.append(response.status)
        assert call.invite is not None
        if response.status < 200:
            if response.status > 100 and call.state in ("calling", "ringing", "early"):
                call.state = "early" if response.body else "ringing"
                if response.body:
                    call.remote_sdp = response.body
            return
        if response.status < 300:
            if call.state == "ended":  # a 2xx after we gave up: ACK and BYE it
                dialog = Dialog.from_uac(call.invite, response)
                self.client.send_ack(
                    dialog.create_request("ACK", cseq=call.invite.cseq.seq), PBX
                )
                self.client.send(dialog.create_request("BYE"), PBX, lambda r: None)
                return
            call.dialog = Dialog.from_uac(call.invite, response)
            self._dialogs[call.dialog.dialog_id] = call
            if response.body:
                call.remote_sdp = response.body
            call.state = "confirmed"
            self.client.send_ack(
                call.dialog.create_request("ACK", cseq=call.invite.cseq.seq), PBX
            )
            return
        call.state = "ended"
        call.ended_by = str(response.status)

    def _stray_2xx(self, response: Response, source: Source) -> None:
        call = next((c for c in self.calls if c.call_id == response.call_id), None)
        if call is not None and call.dialog is not None and call.invite is not None:
            self.client.send_ack(call.dialog.create_request("ACK", cseq=response.cseq.seq), PBX)

    def cancel(self, call: PhoneCall) -> None:
        assert call.outgoing is not None
        self.client.cancel(call.outgoing)

    # -- in-dialog requests we send -------------------------------------------------------

    def request(
        self,
        call: PhoneCall,
        method: str,
        body: bytes = b"",
        headers: tuple[tuple[str, str], ...] = (),
        content_type: str | None = None,
        on_response: Callable[[Response], None] | None = None,
    ) -> Request:
        assert call.dialog is not None, "no dialog yet"
        if body and content_type is None:
            content_type = "application/sdp"
        extra = [("Contact", self.contact), *headers] if method in ("INVITE", "UPDATE") else headers
        request = call.dialog.create_request(method, body, content_type, extra)

        def answered(response: Response) -> None:
            if response.status < 200:
                return
            call.responses.append(response)
            if method in ("INVITE", "UPDATE") and 200 <= response.status < 300:
                assert call.dialog is not None
                call.dialog.receive_response(response)
                if response.body:
                    call.remote_sdp = response.body
                if method == "INVITE":
                    self.client.send_ack(
                        call.dialog.create_request("ACK", cseq=request.cseq.seq), PBX
                    )
            if on_response is not None:
                on_response(response)

        self.client.send(request, PBX, answered)
        return request

    def hang_up(self, call: PhoneCall) -> None:
        if call.state in ("calling", "ringing", "early") and call.direction == "out":
            self.cancel(call)
            return
        if call.incoming is not None and not call.incoming.final_sent:
            call.incoming.respond(486 if call.state != "confirmed" else 200)
            call.state = "ended"
            call.ended_by = "local"
            return
        self.request(call, "BYE")
        call.state = "ended"
        call.ended_by = "local"

    def hold(self, call: PhoneCall, method: str = "INVITE", direction: str = "sendonly") -> None:
        self.request(call, method, self.sdp(call, direction))

    def resume(self, call: PhoneCall, method: str = "INVITE") -> None:
        self.request(call, method, self.sdp(call, "sendrecv"))

    def info(self, call: PhoneCall, digit: str, duration: int = 160) -> Request:
        body = f"Signal={digit}\r\nDuration={duration}\r\n".encode()
        return self.request(call, "INFO", body, content_type="application/dtmf-relay")

    def refer(
        self,
        call: PhoneCall,
        target: str,
        *,
        replaces: PhoneCall | None = None,
        refer_sub: bool | None = None,
    ) -> Request:
        """REFER ``call``'s far end to ``target`` (an extension or URI); with ``replaces``,
        the Refer-To names that call's dialog (attended transfer, RFC 3891)."""
        uri = target if target.startswith("sip:") else f"sip:{target}@{PBX.host}"
        if replaces is not None:
            assert replaces.dialog is not None
            d = replaces.dialog
            value = f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}"
            uri += "?Replaces=" + value.replace("@", "%40").replace(";", "%3B").replace(
                "=", "%3D"
            )
        headers: list[tuple[str, str]] = [
            ("Refer-To", f"<{uri}>"),
            ("Referred-By", f"<sip:{self.extension}@{PBX.host}>"),
        ]
        if refer_sub is not None:
            headers.append(("Refer-Sub", "true" if refer_sub else "false"))
        return self.request(call, "REFER", headers=tuple(headers))

    # -- media --------------------------------------------------------------------------

    def send_rtp(
        self, call: PhoneCall, payload: bytes = b"\xff" * 160, payload_type: int = 0,
        count: int = 1, to: tuple[str, int] | None = None, marker: bool = False,
    ) -> None:
        target = to or call.remote_media
        assert target is not None, "no media address from pbx yet"
        for _ in range(count):
            second = payload_type | (0x80 if marker else 0)
            header = _RTP.pack(0x80, second, call._rtp_seq, call._rtp_ts, 0x1000 + call.rtp_port)
            call._rtp_seq = (call._rtp_seq + 1) & 0xFFFF
            call._rtp_ts = (call._rtp_ts + 160) & 0xFFFFFFFF
            self.network.send(header + payload, (self.host, call.rtp_port), target)

    # -- requests from pbx (the stack's RequestSink) ---------------------------------------

    def handle_request(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        if request.to.tag:
            self._in_dialog(incoming)
            return
        if request.method == "INVITE":
            self._incoming_call(incoming)
        elif request.method == "OPTIONS":
            incoming.respond(200)
        else:
            incoming.respond(405)

    def _incoming_call(self, incoming: IncomingRequest) -> None:
        call = self._new_call("in", incoming.request.call_id)
        call.incoming = incoming
        call.invite = incoming.request
        call.remote_sdp = incoming.request.body
        call.state = "ringing"
        incoming.on_cancel = lambda: self._cancelled(call)
        mode = self.answer_mode
        if callable(mode):
            mode(call)
            return
        if mode == "busy":
            incoming.respond(486)
            call.state = "ended"
            call.ended_by = "486"
            return
        if mode == "early":
            self.ring(call, early=True)
        else:
            self.ring(call)
        if mode in ("answer", "early"):
            self.reactor.callLater(self.answer_after, self.answer, call)

    def ring(self, call: PhoneCall, early: bool = False) -> None:
        assert call.incoming is not None
        response = call.incoming.response(183 if early else 180)
        response.headers.add("Contact", self.contact)
        if early:
            response.headers.add("Content-Type", "application/sdp")
            response.body = self.sdp(call)
        call.incoming.send(response)

    def answer(self, call: PhoneCall, **sdp_options: Any) -> None:
        incoming = call.incoming
        if incoming is None or incoming.final_sent or call.state == "ended":
            return
        response = incoming.response(200)
        response.headers.add("Contact", self.contact)
        response.headers.add("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REFER")
        response.headers.add("Content-Type", "application/sdp")
        direction = _mirror(direction_of(call.remote_sdp)) if call.remote_sdp else "sendrecv"
        response.body = self.sdp(call, direction, **sdp_options)
        call.dialog = Dialog.from_uas(incoming.request, response)
        self._dialogs[call.dialog.dialog_id] = call
        incoming.send(response)
        call.state = "answered"

    def reject(self, call: PhoneCall, status: int = 486) -> None:
        if call.incoming is not None and not call.incoming.final_sent:
            call.incoming.respond(status)
            call.state = "ended"
            call.ended_by = str(status)

    def _cancelled(self, call: PhoneCall) -> None:
        call.state = "ended"
        call.ended_by = "cancel"

    def _on_ack(self, request: Request, source: Source) -> None:
        call = self._dialogs.get(dialog_id_of_request(request))
        if call is not None and call.state == "answered":
            call.state = "confirmed"

    def _in_dialog(self, incoming: IncomingRequest) -> None:
        request = incoming.request
        call = self._dialogs.get(dialog_id_of_request(request))
        if call is None or call.dialog is None:
            incoming.respond(481)
            return
        call.dialog.receive_request(request)
        call.requests.append(request)
        if request.method == "BYE":
            incoming.respond(200)
            call.state = "ended"
            call.ended_by = "remote"
            return
        if request.method in ("INVITE", "UPDATE"):
            response = incoming.response(200)
            response.headers.add("Contact", self.contact)
            if request.body:
                call.remote_sdp = request.body
                response.headers.add("Content-Type", "application/sdp")
                response.body = self.sdp(call, _mirror(direction_of(request.body)))
            elif request.method == "INVITE":
                response.headers.add("Content-Type", "application/sdp")
                response.body = self.sdp(call, call.local_direction)
            incoming.send(response)
            return
        incoming.respond(200)
