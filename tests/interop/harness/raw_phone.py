"""A scripted SIP phone on plain sockets: for the flows no installed peer can script.

Why it exists: baresip 1.0.0 cannot send a REFER with Replaces (attended transfer), cannot
send an INVITE with a ``Replaces`` header, and cannot add ``Refer-Sub: false`` to its REFER;
SIPp handles one Call-ID per scenario, so one SIPp cannot hold the two dialogs of an attended
transfer. linphone-daemon does attended transfer its own way (``call-transfer ID ID``) but its
headers are its own. This phone does exactly what a test says, on the wire, and records
everything it received.

What it does (UDP only, 127.0.0.0/8 only, every wait bounded):
- REGISTER with MD5 digest (RFC 3261 22.4 / RFC 7616 qop=auth, via ``raw_sip``), once;
- outgoing calls: INVITE (407 answered once with credentials, the 407 ACKed), 1xx/2xx,
  ACK; extra headers (``Replaces``) on request; ``wait=False`` returns at once
  (:meth:`Dialog.wait_answered`);
- incoming calls: 100 + 180, then :meth:`RawPhone.answer` (200 retransmitted until the ACK)
  or ``auto_answer``; CANCEL gives 200 + 487 and is recorded;
- in-dialog: re-INVITE or UPDATE (hold ``sendonly``/``inactive``, resume ``sendrecv``), REFER
  with any Refer-To and headers (``Refer-Sub: false``), BYE, any other request; incoming
  re-INVITE/UPDATE answered with the mirrored direction, BYE/NOTIFY/INFO/OPTIONS answered
  200; every request received is kept on its dialog (``dialog.received``) and on the phone
  (``phone.received``);
- media: one RTP socket per dialog, PCMU 20 ms frames of the phone's tone to the address of
  the remote SDP (not while our direction is recvonly/inactive), and every PCMU packet
  received kept with its arrival time (``dialog.media.samples(since=...)``).

Dialog identifiers (``call_id``, ``local_tag``, ``remote_tag``) are what a test puts into a
``Replaces`` (RFC 3891) or a Refer-To ``?Replaces=`` (RFC 3515 2.1): :meth:`Dialog.replaces`.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import itertools
import logging
import queue
import random
import re
import select
import socket
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from . import ports
from .raw_sip import digest_authorization, new_branch, new_tag, parse_challenge
from .sip_message import SipMessage, parse_message
from .tones import sine_samples, ulaw_decode, ulaw_encode

log = logging.getLogger(__name__)

T1 = 0.5
FRAME = 160  # 20 ms of PCMU
_seq = itertools.count(1)
_DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
_MIRROR = {"sendonly": "recvonly", "recvonly": "sendonly", "inactive": "inactive"}


class RawPhoneError(RuntimeError):
    """A request got no (or a wrong) answer in time, or a wait timed out."""


def _loopback(host: str) -> None:
    if not host.startswith("127."):
        raise ValueError("interop tests use 127.0.0.0/8 only")


def _uri_of(value: str) -> str:
    """The URI of a name-addr / addr-spec header value."""
    match = re.search(r"<([^>]*)>", value)
    return match.group(1) if match else value.split(";", 1)[0].strip()


def sdp_media(body: bytes) -> tuple[str, int, str] | None:
    """(c= address, m=audio port, direction) of an SDP body; None without audio."""
    address, port, direction = "", 0, "sendrecv"
    for line in body.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if line.startswith("c=IN IP4 "):
            address = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
        elif line[2:] in _DIRECTIONS and line.startswith("a="):
            direction = line[2:]
    return (address, port, direction) if port or address else None


# -- media -----------------------------------------------------------------------------------


class RtpStream:
    """One RTP socket: sends the tone as PCMU every 20 ms, keeps what arrives."""

    def __init__(self, ip: str, port: int, tone: float | None) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((ip, port))
        self.port = port
        self.tone = tone
        self.remote: tuple[str, int] | None = None
        self.sending = True
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._sample = 0
        self.received: list[tuple[float, int, bytes]] = []  # (arrival, payload type, payload)
        self.sources: set[tuple[str, int]] = set()
        self.sent = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rtp-{port}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_send = time.monotonic()
        while not self._stop.is_set():
            wait = max(0.0, next_send - time.monotonic())
            try:
                ready, _, _ = select.select([self.sock], [], [], wait)
            except (OSError, ValueError):
                return
            if ready:
                try:
                    data, src = self.sock.recvfrom(2048)
                except OSError:
                    return
                if len(data) >= 12 and data[0] >> 6 == 2:
                    header = 12 + 4 * (data[0] & 0x0F)
                    with self._lock:
                        self.received.append((time.monotonic(), data[1] & 0x7F, data[header:]))
                        self.sources.add(src)
            now = time.monotonic()
            if now >= next_send:
                self._send_frame()
                next_send += 0.02
                if now - next_send > 0.2:  # we fell behind (loaded machine): do not burst
                    next_send = now + 0.02

    def _send_frame(self) -> None:
        remote, tone = self.remote, self.tone
        if remote is None or tone is None or not self.sending or not remote[1]:
            return
        payload = ulaw_encode(sine_samples(tone, FRAME, self._sample))
        header = struct.pack("!BBHII", 0x80, 0, self._seq, self._ts, self.ssrc)
        try:
            self.sock.sendto(header + payload, remote)
        except OSError:
            return
        self._seq = (self._seq + 1) & 0xFFFF
        self._ts = (self._ts + FRAME) & 0xFFFFFFFF
        self._sample += FRAME
        self.sent += 1

    def samples(self, since: float = 0.0, until: float | None = None) -> list[int]:
        """Decoded PCMU (payload type 0) that arrived in [since, until), in arrival order."""
        with self._lock:
            packets = [
                p
                for t, pt, p in self.received
                if pt == 0 and t >= since and (until is None or t < until)
            ]
        return ulaw_decode(b"".join(packets))

    def packets(self, since: float = 0.0) -> int:
        with self._lock:
            return sum(1 for t, _, _ in self.received if t >= since)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


# -- dialogs ---------------------------------------------------------------------------------


@dataclass
class Dialog:
    """One call of the phone (early or confirmed dialog) and its media."""

    phone: RawPhone
    call_id: str
    local_tag: str
    local_uri: str
    remote_uri: str
    outgoing: bool
    remote_tag: str | None = None
    remote_target: str = ""
    local_cseq: int = 0
    state: str = "calling"  # calling / early / ringing / confirmed / terminated / failed
    invite: SipMessage | None = None  # the initial INVITE sent or received
    final: SipMessage | None = None  # final response to our initial INVITE
    direction: str = "sendrecv"  # our SDP direction
    sdp_version: int = 1
    media: RtpStream | None = None
    received: list[SipMessage] = field(default_factory=list)  # requests received in dialog
    responses: list[SipMessage] = field(default_factory=list)  # responses received in dialog
    ended_by: str = ""  # "local BYE", "remote BYE", "CANCEL", "error NNN"
    answered_at: float = 0.0
    peer_addr: tuple[str, int] | None = None  # where an incoming INVITE came from
    invite_key: str = ""  # server transaction of an incoming INVITE (branch:method)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    # -- identity ------------------------------------------------------------------------
    def replaces(self) -> str:
        """The ``Replaces`` header value naming this dialog at the other end (RFC 3891 3:
        to-tag is the tag of the UA that receives it, from-tag ours)."""
        return f"{self.call_id};to-tag={self.remote_tag};from-tag={self.local_tag}"

    def refer_to_replacing(self, target_uri: str) -> str:
        """A Refer-To value for an attended transfer of our peer to this dialog's peer:
        ``<target?Replaces=callid%3Bto-tag%3D..%3Bfrom-tag%3D..>`` (RFC 3515 2.1, 3891)."""
        escaped = urllib.parse.quote(self.replaces(), safe="")
        return f"<{target_uri}?Replaces={escaped}>"

    # -- waiting -------------------------------------------------------------------------
    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RawPhoneError(
                        f"{self.phone.user}: no {what} in {timeout:g}s on {self.call_id} "
                        f"(state {self.state}, got {[m.start for m in self.received]})"
                    )
                self._changed.wait(min(left, 0.2))

    def wait_answered(self, timeout: float = 10.0) -> Dialog:
        """Until the call is up (2xx); raise if it failed."""
        self.wait(lambda: self.state in ("confirmed", "failed", "terminated"), timeout, "answer")
        if self.state != "confirmed":
            final = self.final.start if self.final else "nothing"
            raise RawPhoneError(f"{self.phone.user}: call {self.call_id} {self.state}: {final}")
        return self

    def wait_terminated(self, timeout: float = 10.0) -> Dialog:
        self.wait(lambda: self.state in ("terminated", "failed"), timeout, "end of call")
        return self

    def wait_request(
        self,
        method: str,
        timeout: float = 10.0,
        match: Callable[[SipMessage], bool] | None = None,
        after: int = 0,
    ) -> SipMessage:
        """The first request ``method`` received in this dialog (from index ``after``)."""

        def found() -> SipMessage | None:
            for msg in self.received[after:]:
                if msg.method == method and (match is None or match(msg)):
                    return msg
            return None

        self.wait(lambda: found() is not None, timeout, method)
        msg = found()
        assert msg is not None
        return msg

    def notifies(self) -> list[SipMessage]:
        return [m for m in self.received if m.method == "NOTIFY"]

    def samples(self, since: float = 0.0, until: float | None = None) -> list[int]:
        return self.media.samples(since, until) if self.media else []


class RawPhone:
    """One SIP user agent on a UDP socket of its own, talking to ``server`` (pbx, or another
    phone directly for peer-to-peer checks)."""

    def __init__(
        self,
        server: tuple[str, int],
        user: str,
        password: str | None = None,
        *,
        local_ip: str = "127.0.0.1",
        tone: float | None = None,
        auto_answer: bool = False,
        domain: str | None = None,
        user_agent: str = "pbx-test-raw-phone",
    ) -> None:
        _loopback(server[0])
        _loopback(local_ip)
        self.server = server
        self.user = user
        self.password = password
        self.local_ip = local_ip
        self.tone = tone
        self.auto_answer = auto_answer
        self.domain = domain or f"{server[0]}:{server[1]}"
        self.user_agent = user_agent
        self._ports = ports.Reservation()
        self.port = self._ports.port()
        self._rtp_low, self._rtp_high = self._ports.block(20)
        self._rtp_next = self._rtp_low
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((local_ip, self.port))
        self.dialogs: list[Dialog] = []
        self.received: list[SipMessage] = []  # every request received
        self.incoming: queue.Queue[Dialog] = queue.Queue()
        self._transactions: dict[str, queue.Queue[SipMessage]] = {}
        self._server_tx: dict[str, bytes] = {}  # branch -> last response sent (retransmissions)
        self._lock = threading.RLock()
        self._closed = threading.Event()
        self._reg_call_id = f"reg-{new_tag()}@{local_ip}"
        self._reg_cseq = 0
        self._nc: dict[str, int] = {}
        self._thread = threading.Thread(target=self._loop, name=f"raw-{user}", daemon=True)
        self._thread.start()

    # -- plumbing ------------------------------------------------------------------------
    @property
    def contact(self) -> str:
        return f"sip:{self.user}@{self.local_ip}:{self.port}"

    @property
    def aor(self) -> str:
        return f"sip:{self.user}@{self.domain}"

    def uri(self, user: str) -> str:
        """A Request-URI for ``user`` at the server."""
        return f"sip:{user}@{self.server[0]}:{self.server[1]}"

    def _send(self, data: bytes, addr: tuple[str, int] | None = None) -> None:
        log.debug("%s -> %s\n%s", self.user, addr or self.server, data.decode(errors="replace"))
        self.sock.sendto(data, addr or self.server)

    def _loop(self) -> None:
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
                if not ready:
                    continue
                data, src = self.sock.recvfrom(65535)
            except (OSError, ValueError):
                return
            msg = parse_message(data)
            if msg is None:
                continue
            msg.direction, msg.src = "received", f"{src[0]}:{src[1]}"
            log.debug("%s <- %s\n%s", self.user, src, data.decode(errors="replace"))
            try:
                if msg.is_request:
                    self._on_request(msg, src)
                else:
                    self._on_response(msg)
            except Exception:  # noqa: BLE001 - a test peer must keep running; the test sees it
                log.exception("%s: handling %s failed", self.user, msg.start)

    def _branch_of(self, msg: SipMessage) -> str:
        match = re.search(r";\s*branch=([^;,\s]+)", msg.get("Via") or "")
        return match.group(1) if match else ""

    def _on_response(self, msg: SipMessage) -> None:
        key = f"{self._branch_of(msg)}:{msg.cseq_method}"
        with self._lock:
            waiter = self._transactions.get(key)
        if waiter is not None:
            waiter.put(msg)
        elif msg.cseq_method == "INVITE" and 200 <= msg.status < 300:
            dialog = self._find(msg.call_id, msg.from_tag)
            if dialog is not None:  # 2xx retransmitted: ACK again (RFC 3261 13.2.2.4)
                self._ack(dialog, msg.cseq)

    def _request(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        from_: str,
        to: str,
        cseq: int,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        branch: str | None = None,
        contact: bool = True,
    ) -> tuple[bytes, str]:
        branch = branch or new_branch()
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/UDP {self.local_ip}:{self.port};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {from_}",
            f"To: {to}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
        ]
        if contact:
            lines.append(f"Contact: <{self.contact}>")
        lines.append(f"User-Agent: {self.user_agent}")
        lines += [f"{name}: {value}" for name, value in headers]
        if body:
            lines.append(f"Content-Type: {content_type or 'application/sdp'}")
        lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body, branch

    def _transact(
        self, data: bytes, branch: str, method: str, timeout: float, *, provisional: bool = False
    ) -> SipMessage | None:
        """Send (retransmitting over UDP, RFC 3261 17.1) and return the final response, or
        the first response at all with ``provisional``."""
        key = f"{branch}:{method}"
        waiter: queue.Queue[SipMessage] = queue.Queue()
        with self._lock:
            self._transactions[key] = waiter
        try:
            self._send(data)
            deadline = time.monotonic() + timeout
            interval, got_provisional = T1, False
            next_retransmit = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                try:
                    resp = waiter.get(
                        timeout=min(left, max(0.01, next_retransmit - time.monotonic()))
                    )
                except queue.Empty:
                    if not got_provisional and time.monotonic() >= next_retransmit:
                        self._send(data)
                        interval = min(interval * 2, 4.0)
                        next_retransmit = time.monotonic() + interval
                    continue
                if resp.status < 200:
                    got_provisional = True
                    if provisional:
                        return resp
                    continue
                return resp
            return None
        finally:
            with self._lock:
                self._transactions.pop(key, None)

    def _credentials(self, resp: SipMessage, method: str, uri: str) -> tuple[str, str]:
        header = "Proxy-Authorization" if resp.status == 407 else "Authorization"
        raw = resp.get("Proxy-Authenticate") if resp.status == 407 else resp.get("WWW-Authenticate")
        challenges = [
            parse_challenge(v)
            for v in resp.get_all("Proxy-Authenticate") + resp.get_all("WWW-Authenticate")
        ]
        md5 = [c for c in challenges if c.get("algorithm", "MD5").upper() == "MD5"]
        if not md5 or self.password is None:
            raise RawPhoneError(f"{self.user}: cannot answer {raw!r}")
        challenge = md5[0]
        nonce = challenge["nonce"]
        self._nc[nonce] = self._nc.get(nonce, 0) + 1
        value = digest_authorization(
            challenge,
            username=self.user,
            password=self.password,
            method=method,
            uri=uri,
            nc=self._nc[nonce],
        )
        return header, value

    # -- registration ---------------------------------------------------------------------
    def register(self, expires: int = 300, timeout: float = 5.0) -> SipMessage:
        """REGISTER the phone's contact (answering one 401); returns the final response."""
        uri = f"sip:{self.server[0]}:{self.server[1]}"
        tag = new_tag()
        auth: list[tuple[str, str]] = []
        for _ in range(2):
            self._reg_cseq += 1
            data, branch = self._request(
                "REGISTER",
                uri,
                call_id=self._reg_call_id,
                from_=f"<{self.aor}>;tag={tag}",
                to=f"<{self.aor}>",
                cseq=self._reg_cseq,
                headers=[("Expires", str(expires)), *auth],
            )
            resp = self._transact(data, branch, "REGISTER", timeout)
            if resp is None:
                raise RawPhoneError(f"{self.user}: no answer to REGISTER")
            if resp.status not in (401, 407) or auth:
                break
            auth = [self._credentials(resp, "REGISTER", uri)]
        if resp.status != 200:
            raise RawPhoneError(f"{self.user}: REGISTER answered {resp.start}")
        return resp

    def unregister(self) -> None:
        try:
            self.register(expires=0, timeout=2)
        except RawPhoneError:
            log.warning("%s: unregister failed", self.user)

    # -- SDP and media -------------------------------------------------------------------
    def _new_media(self) -> RtpStream:
        with self._lock:
            port = self._rtp_next
            self._rtp_next += 2
            if self._rtp_next > self._rtp_high:
                self._rtp_next = self._rtp_low
        return RtpStream(self.local_ip, port, self.tone)

    def _sdp(self, dialog: Dialog) -> bytes:
        assert dialog.media is not None
        dialog.sdp_version += 1
        ip, port = self.local_ip, dialog.media.port
        lines = [
            "v=0",
            f"o=raw 1 {dialog.sdp_version} IN IP4 {ip}",
            "s=-",
            f"c=IN IP4 {ip}",
            "t=0 0",
            f"m=audio {port} RTP/AVP 0 101",
            "a=rtpmap:0 PCMU/8000",
            "a=rtpmap:101 telephone-event/8000",
            "a=fmtp:101 0-15",
            "a=ptime:20",
            f"a={dialog.direction}",
        ]
        return ("\r\n".join(lines) + "\r\n").encode()

    def _apply_remote_sdp(self, dialog: Dialog, body: bytes) -> None:
        media = sdp_media(body)
        if media is None or dialog.media is None:
            return
        address, port, remote_direction = media
        if address and address != "0.0.0.0":
            dialog.media.remote = (address, port)
        # we send unless we said recvonly/inactive or the other side will not receive
        dialog.media.sending = dialog.direction in ("sendrecv", "sendonly") and (
            remote_direction in ("sendrecv", "recvonly")
        )

    # -- dialogs -------------------------------------------------------------------------
    def _find(self, call_id: str, local_tag: str | None) -> Dialog | None:
        """The dialog of a message by Call-ID and our own tag."""
        with self._lock:
            for dialog in self.dialogs:
                if dialog.call_id == call_id and dialog.local_tag == local_tag:
                    return dialog
        return None

    def _in_dialog(
        self,
        dialog: Dialog,
        method: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
        timeout: float = 5.0,
    ) -> SipMessage:
        """A request inside ``dialog`` (answering one 401/407); returns its final response."""
        auth: list[tuple[str, str]] = []
        uri = dialog.remote_target or dialog.remote_uri
        for _ in range(2):
            dialog.local_cseq += 1
            tag = f";tag={dialog.remote_tag}" if dialog.remote_tag else ""
            data, branch = self._request(
                method,
                uri,
                call_id=dialog.call_id,
                from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
                to=f"<{dialog.remote_uri}>{tag}",
                cseq=dialog.local_cseq,
                headers=[*headers, *auth],
                body=body,
                content_type=content_type,
            )
            resp = self._transact(data, branch, method, timeout)
            if resp is None:
                raise RawPhoneError(f"{self.user}: no answer to {method} in {dialog.call_id}")
            dialog.responses.append(resp)
            if method == "INVITE" and resp.status >= 200:
                self._ack(dialog, dialog.local_cseq, resp if resp.status >= 300 else None, branch)
            if resp.status not in (401, 407) or auth:
                return resp
            auth = [self._credentials(resp, method, uri)]
        return resp

    def _ack(
        self,
        dialog: Dialog,
        cseq: int,
        failure: SipMessage | None = None,
        branch: str | None = None,
    ) -> None:
        """ACK a 2xx (new transaction, to the remote target) or a failure response (same
        branch and Request-URI as the INVITE, RFC 3261 17.1.1.3)."""
        if failure is not None:
            uri = dialog.remote_target or dialog.remote_uri
            to = failure.get("To") or f"<{dialog.remote_uri}>"
        else:
            uri = dialog.remote_target or dialog.remote_uri
            to = f"<{dialog.remote_uri}>;tag={dialog.remote_tag}"
            branch = None
        data, _ = self._request(
            "ACK",
            uri,
            call_id=dialog.call_id,
            from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
            to=to,
            cseq=cseq,
            branch=branch,
            contact=False,
        )
        self._send(data)

    # -- outgoing calls ------------------------------------------------------------------
    def call(
        self,
        target: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        direction: str = "sendrecv",
        wait: bool = True,
        timeout: float = 10.0,
    ) -> Dialog:
        """INVITE ``target`` (an extension at the server, or a full ``sip:`` URI). With
        ``wait`` it returns once answered (raising if not); otherwise at once."""
        uri = target if target.startswith("sip:") else self.uri(target)
        dialog = Dialog(
            self,
            call_id=f"{new_tag()}-{next(_seq)}@{self.local_ip}",
            local_tag=new_tag(),
            local_uri=self.aor,
            remote_uri=uri,
            outgoing=True,
            direction=direction,
        )
        dialog.media = self._new_media()
        with self._lock:
            self.dialogs.append(dialog)
        thread = threading.Thread(
            target=self._invite_flow, args=(dialog, uri, list(headers), timeout), daemon=True
        )
        thread.start()
        if wait:
            dialog.wait_answered(timeout + 1)
        return dialog

    def _invite_flow(
        self, dialog: Dialog, uri: str, headers: list[tuple[str, str]], timeout: float
    ) -> None:
        auth: list[tuple[str, str]] = []
        body = self._sdp(dialog)
        deadline = time.monotonic() + timeout
        try:
            for _ in range(2):
                dialog.local_cseq += 1
                data, branch = self._request(
                    "INVITE",
                    uri,
                    call_id=dialog.call_id,
                    from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
                    to=f"<{uri}>",
                    cseq=dialog.local_cseq,
                    headers=[*headers, *auth],
                    body=body,
                )
                dialog.invite = parse_message(data)
                resp = self._invite_transaction(dialog, data, branch, deadline)
                if resp is None:
                    dialog.state, dialog.ended_by = "failed", "timeout"
                    return
                if resp.status in (401, 407) and not auth:
                    self._ack(dialog, dialog.local_cseq, resp, branch)
                    auth = [self._credentials(resp, "INVITE", uri)]
                    continue
                break
            dialog.final = resp
            if 200 <= resp.status < 300:
                dialog.remote_tag = resp.to_tag
                contact = resp.get("Contact")
                dialog.remote_target = _uri_of(contact) if contact else uri
                self._apply_remote_sdp(dialog, resp.body)
                self._ack(dialog, dialog.local_cseq)
                dialog.answered_at = time.monotonic()
                dialog.state = "confirmed"
            else:
                self._ack(dialog, dialog.local_cseq, resp, branch)
                dialog.state, dialog.ended_by = "failed", f"error {resp.status}"
        finally:
            dialog._notify()

    def _invite_transaction(
        self, dialog: Dialog, data: bytes, branch: str, deadline: float
    ) -> SipMessage | None:
        key = f"{branch}:INVITE"
        waiter: queue.Queue[SipMessage] = queue.Queue()
        with self._lock:
            self._transactions[key] = waiter
        try:
            self._send(data)
            interval, provisional = T1, False
            next_retransmit = time.monotonic() + interval
            while (left := deadline - time.monotonic()) > 0:
                try:
                    resp = waiter.get(timeout=min(left, 0.1))
                except queue.Empty:
                    if not provisional and time.monotonic() >= next_retransmit:
                        self._send(data)
                        interval *= 2
                        next_retransmit = time.monotonic() + interval
                    continue
                dialog.responses.append(resp)
                if resp.status < 200:
                    provisional = True
                    if resp.status > 100 and resp.to_tag:
                        dialog.remote_tag = resp.to_tag
                        dialog.state = "early"
                        dialog._notify()
                    continue
                return resp
            return None
        finally:
            with self._lock:
                self._transactions.pop(key, None)

    def cancel(self, dialog: Dialog) -> None:
        """CANCEL an outgoing call that is not answered yet (RFC 3261 9.1)."""
        if dialog.invite is None:
            raise RawPhoneError("no INVITE to cancel")
        via = dialog.invite.get("Via") or ""
        branch = re.search(r"branch=([^;,\s]+)", via)
        data, _ = self._request(
            "CANCEL",
            dialog.invite.uri,
            call_id=dialog.call_id,
            from_=f"<{dialog.local_uri}>;tag={dialog.local_tag}",
            to=f"<{dialog.remote_uri}>",
            cseq=dialog.local_cseq,
            branch=branch.group(1) if branch else None,
            contact=False,
        )
        self._transact(data, branch.group(1) if branch else "", "CANCEL", 3.0)

    # -- incoming calls ------------------------------------------------------------------
    def _respond(
        self,
        request: SipMessage,
        status: int,
        reason: str,
        addr: tuple[str, int],
        *,
        to_tag: str | None = None,
        body: bytes = b"",
        headers: Sequence[tuple[str, str]] = (),
    ) -> bytes:
        to = request.get("To") or ""
        if to_tag and ";tag=" not in to:
            to += f";tag={to_tag}"
        lines = [f"SIP/2.0 {status} {reason}"]
        lines += [f"Via: {v}" for v in request.get_all("Via")]
        lines += [
            f"From: {request.get('From')}",
            f"To: {to}",
            f"Call-ID: {request.call_id}",
            f"CSeq: {request.get('CSeq')}",
        ]
        if request.method in ("INVITE", "UPDATE", "SUBSCRIBE", "REFER") and status < 300:
            lines.append(f"Contact: <{self.contact}>")
        lines += [f"{name}: {value}" for name, value in headers]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
        self._send(data, addr)
        return data

    def _on_request(self, msg: SipMessage, src: tuple[str, int]) -> None:
        branch = self._branch_of(msg)
        key = f"{branch}:{msg.method}"
        with self._lock:
            retransmitted = self._server_tx.get(key)
        if retransmitted is not None and msg.method != "ACK":
            self._send(retransmitted, src)
            return
        with self._lock:
            self.received.append(msg)
        method = msg.method
        dialog = self._find(msg.call_id, msg.to_tag) if msg.to_tag else None
        if method == "INVITE" and not msg.to_tag:
            self._new_incoming(msg, src, key)
            return
        if method == "CANCEL":
            self._on_cancel(msg, src)
            return
        if method == "ACK":
            if dialog is not None:
                dialog.received.append(msg)
                if msg.body and b"m=audio" in msg.body:
                    self._apply_remote_sdp(dialog, msg.body)
                if dialog.state == "answering":
                    dialog.state = "confirmed"
                dialog._notify()
            return
        if dialog is None:
            if method == "OPTIONS":
                self._remember(key, self._respond(msg, 200, "OK", src))
            else:
                self._remember(key, self._respond(msg, 481, "Call Does Not Exist", src))
            return
        dialog.received.append(msg)
        contact = msg.get("Contact")
        if contact and method in ("INVITE", "UPDATE"):
            dialog.remote_target = _uri_of(contact)
        if method in ("INVITE", "UPDATE"):
            body = b""
            if msg.body and b"m=audio" in msg.body:
                media = sdp_media(msg.body)
                offered = media[2] if media else "sendrecv"
                dialog.direction = _MIRROR.get(offered, "sendrecv")
                self._apply_remote_sdp(dialog, msg.body)
                body = self._sdp(dialog)
            elif method == "INVITE":  # offerless re-INVITE: offer in the 200, answer in ACK
                dialog.direction = "sendrecv"
                body = self._sdp(dialog)
            self._remember(key, self._respond(msg, 200, "OK", src, body=body))
        elif method == "BYE":
            self._remember(key, self._respond(msg, 200, "OK", src))
            self._end(dialog, "remote BYE")
        elif method in ("NOTIFY", "INFO", "OPTIONS", "MESSAGE"):
            self._remember(key, self._respond(msg, 200, "OK", src))
        else:
            self._remember(key, self._respond(msg, 501, "Not Implemented", src))
        dialog._notify()

    def _remember(self, key: str, response: bytes) -> None:
        with self._lock:
            self._server_tx[key] = response

    def _new_incoming(self, msg: SipMessage, src: tuple[str, int], key: str) -> None:
        contact = msg.get("Contact")
        dialog = Dialog(
            self,
            call_id=msg.call_id,
            local_tag=new_tag(),
            local_uri=_uri_of(msg.get("To") or ""),
            remote_uri=_uri_of(msg.get("From") or ""),
            outgoing=False,
            remote_tag=msg.from_tag,
            remote_target=_uri_of(contact) if contact else _uri_of(msg.get("From") or ""),
            local_cseq=random.randint(1, 1000),
            state="ringing",
            invite=msg,
        )
        dialog.received.append(msg)
        dialog.media = self._new_media()
        dialog.peer_addr, dialog.invite_key = src, key
        self._apply_remote_sdp(dialog, msg.body)
        with self._lock:
            self.dialogs.append(dialog)
        self._respond(msg, 100, "Trying", src)
        self._remember(key, self._respond(msg, 180, "Ringing", src, to_tag=dialog.local_tag))
        self.incoming.put(dialog)
        dialog._notify()
        if self.auto_answer:
            threading.Thread(target=self.answer, args=(dialog,), daemon=True).start()

    def _on_cancel(self, msg: SipMessage, src: tuple[str, int]) -> None:
        dialog = None
        with self._lock:
            for d in self.dialogs:
                if d.call_id == msg.call_id and not d.outgoing and d.remote_tag == msg.from_tag:
                    dialog = d
        self._respond(msg, 200, "OK", src, to_tag=dialog.local_tag if dialog else None)
        if dialog is None or dialog.invite is None:
            return
        dialog.received.append(msg)
        if dialog.state == "ringing":
            data = self._respond(
                dialog.invite, 487, "Request Terminated", src, to_tag=dialog.local_tag
            )
            self._remember(dialog.invite_key, data)
            self._end(dialog, "CANCEL")
        dialog._notify()

    def wait_incoming(self, timeout: float = 10.0) -> Dialog:
        """The next incoming call (ringing), in arrival order."""
        try:
            return self.incoming.get(timeout=timeout)
        except queue.Empty:
            raise RawPhoneError(f"{self.user}: no incoming call in {timeout:g}s") from None

    def answer(self, dialog: Dialog, timeout: float = 5.0) -> Dialog:
        """200 OK with our SDP, retransmitted until the ACK (RFC 3261 13.3.1.4)."""
        if dialog.invite is None or dialog.state != "ringing":
            raise RawPhoneError(f"{self.user}: call {dialog.call_id} is {dialog.state}")
        media = sdp_media(dialog.invite.body)
        dialog.direction = _MIRROR.get(media[2], "sendrecv") if media else "sendrecv"
        body = self._sdp(dialog)
        self._apply_remote_sdp(dialog, dialog.invite.body)
        dialog.state = "answering"
        addr = dialog.peer_addr or self.server
        data = self._respond(dialog.invite, 200, "OK", addr, to_tag=dialog.local_tag, body=body)
        self._remember(dialog.invite_key, data)
        deadline, interval = time.monotonic() + timeout, T1
        while dialog.state == "answering" and time.monotonic() < deadline:
            with dialog._changed:
                dialog._changed.wait(interval)
            if dialog.state == "answering":
                self._send(data, addr)
                interval = min(interval * 2, 4.0)
        if dialog.state != "confirmed":
            raise RawPhoneError(f"{self.user}: no ACK for the 200 of {dialog.call_id}")
        dialog.answered_at = time.monotonic()
        dialog._notify()
        return dialog

    def reject(self, dialog: Dialog, status: int = 486, reason: str = "Busy Here") -> None:
        assert dialog.invite is not None
        addr = dialog.peer_addr or self.server
        data = self._respond(dialog.invite, status, reason, addr, to_tag=dialog.local_tag)
        self._remember(dialog.invite_key, data)
        self._end(dialog, f"rejected {status}")

    # -- in-dialog actions ---------------------------------------------------------------
    def reinvite(
        self, dialog: Dialog, direction: str, timeout: float = 5.0, method: str = "INVITE"
    ) -> SipMessage:
        """A re-INVITE (or, ``method="UPDATE"``, an UPDATE, RFC 3311) offering ``direction``
        (sendonly/inactive: hold; sendrecv: resume); returns the final response."""
        if direction not in _DIRECTIONS:
            raise ValueError(direction)
        dialog.direction = direction
        resp = self._in_dialog(dialog, method, body=self._sdp(dialog), timeout=timeout)
        if 200 <= resp.status < 300:
            self._apply_remote_sdp(dialog, resp.body)
        return resp

    def hold(
        self, dialog: Dialog, direction: str = "sendonly", method: str = "INVITE"
    ) -> SipMessage:
        return self.reinvite(dialog, direction, method=method)

    def resume(self, dialog: Dialog, method: str = "INVITE") -> SipMessage:
        return self.reinvite(dialog, "sendrecv", method=method)

    def refer(
        self,
        dialog: Dialog,
        refer_to: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        referred_by: bool = True,
        timeout: float = 5.0,
    ) -> SipMessage:
        """REFER in ``dialog`` (RFC 3515); ``refer_to`` is the header value as sent."""
        extra = [("Refer-To", refer_to)]
        if referred_by:
            extra.append(("Referred-By", f"<{self.aor}>"))
        return self._in_dialog(dialog, "REFER", headers=[*extra, *headers], timeout=timeout)

    def bye(self, dialog: Dialog, timeout: float = 5.0) -> SipMessage | None:
        if dialog.state in ("terminated", "failed"):
            return None
        resp = self._in_dialog(dialog, "BYE", timeout=timeout)
        self._end(dialog, "local BYE")
        return resp

    def request(
        self,
        dialog: Dialog,
        method: str,
        *,
        headers: Sequence[tuple[str, str]] = (),
        body: bytes = b"",
        content_type: str | None = None,
    ) -> SipMessage:
        """Any other request in ``dialog``; returns its final response."""
        return self._in_dialog(
            dialog, method, headers=headers, body=body, content_type=content_type
        )

    def _end(self, dialog: Dialog, why: str) -> None:
        if dialog.state not in ("terminated", "failed"):
            dialog.state, dialog.ended_by = "terminated", why
        if dialog.media is not None:
            dialog.media.sending = False
        dialog._notify()

    # -- life cycle ----------------------------------------------------------------------
    def hangup_all(self) -> None:
        """BYE every confirmed dialog (best effort, for teardown)."""
        for dialog in list(self.dialogs):
            if dialog.state == "confirmed":
                try:
                    self.bye(dialog, timeout=2)
                except RawPhoneError:
                    pass

    def close(self) -> None:
        """Stop the phone: sockets closed, threads joined, ports given back; idempotent."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._thread.join(2)
        for dialog in self.dialogs:
            if dialog.media is not None:
                dialog.media.close()
        self.sock.close()
        self._ports.release()

    def __enter__(self) -> RawPhone:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
