"""SIP messages as the peers saw them: one parser for requests and responses, and readers for
the traces the real peers write.

Owns: :class:`SipMessage` (start line, headers in wire order, body; compact names understood),
:func:`parse_message`, :func:`read_baresip_trace` (baresip ``-s`` prints every message it
sends or receives between ``ESC[36;1m#`` / ``UDP a -> b`` and ``ESC[;m``), and
:func:`read_linphone_log` (belle-sip logs every message it sends or receives as ``... channel
[..]: message sent to [UDP://ip:port], size: [n] bytes`` / ``received [n] new bytes from
[UDP://ip:port]:`` followed by the message). Tests use them to assert what a peer received
from pbx (a CANCEL at a phone that stopped ringing, the NOTIFYs of a transfer, the Replaces
of an attended transfer) without a packet capture.

Must not import anything from ``pbx``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

_COMPACT = {
    "v": "via",
    "f": "from",
    "t": "to",
    "i": "call-id",
    "m": "contact",
    "l": "content-length",
    "c": "content-type",
    "r": "refer-to",
    "b": "referred-by",
    "o": "event",
    "k": "supported",
}


def _canon(name: str) -> str:
    low = name.strip().lower()
    return _COMPACT.get(low, low)


@dataclass
class SipMessage:
    """A request (``method`` set) or a response (``status`` set)."""

    start: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    direction: str = ""  # "sent" / "received" when read from a trace
    src: str = ""  # "ip:port"
    dst: str = ""
    raw: bytes = b""
    index: int = field(default=0)  # position in its trace

    @property
    def is_request(self) -> bool:
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self) -> str:
        """The request method, or the CSeq method of a response."""
        if self.is_request:
            return self.start.split(" ", 1)[0]
        return self.cseq_method

    @property
    def status(self) -> int:
        return 0 if self.is_request else int(self.start.split(" ")[1])

    @property
    def reason(self) -> str:
        return "" if self.is_request else self.start.split(" ", 2)[-1]

    @property
    def uri(self) -> str:
        return self.start.split(" ")[1] if self.is_request else ""

    def get_all(self, name: str) -> list[str]:
        wanted = _canon(name)
        return [v for n, v in self.headers if _canon(n) == wanted]

    def get(self, name: str) -> str | None:
        values = self.get_all(name)
        return values[0] if values else None

    @property
    def call_id(self) -> str:
        return self.get("Call-ID") or ""

    @property
    def cseq(self) -> int:
        return int((self.get("CSeq") or "0 X").split()[0])

    @property
    def cseq_method(self) -> str:
        return (self.get("CSeq") or " ").split()[-1]

    @staticmethod
    def _tag(value: str | None) -> str | None:
        match = re.search(r";\s*tag=([^;>\s,]+)", value or "")
        return match.group(1) if match else None

    @property
    def from_tag(self) -> str | None:
        return self._tag(self.get("From"))

    @property
    def to_tag(self) -> str | None:
        return self._tag(self.get("To"))

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def sdp_direction(self) -> str | None:
        """a=sendrecv/sendonly/recvonly/inactive of an SDP body (sendrecv if none is given;
        None without SDP)."""
        if b"m=audio" not in self.body:
            return None
        for line in self.text.splitlines():
            if line.strip() in ("a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"):
                return line.strip()[2:]
        return "sendrecv"

    def __str__(self) -> str:
        return self.raw.decode("utf-8", "replace") if self.raw else self.start


def parse_message(data: bytes) -> SipMessage | None:
    """One complete message (headers + body as given); None for garbage or a keep-alive."""
    data = data.lstrip(b"\r\n")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").split("\r\n")
    start = lines[0]
    if not (
        re.fullmatch(r"SIP/2\.0 \d{3}.*", start) or re.fullmatch(r"[A-Z]+ \S+ SIP/2\.0", start)
    ):
        return None
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + " " + line.strip())
            continue
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip(), value.strip()))
    msg = SipMessage(start, headers, body, raw=data)
    length = msg.get("Content-Length")
    if length is not None and length.isdigit():
        msg.body = body[: int(length)]
    return msg


# -- baresip -s ------------------------------------------------------------------------------

_BARESIP_ENTRY = re.compile(rb"\x1b\[36;1m#\n(\w+) (\S+) -> (\S+)\n(.*?)\x1b\[;m", re.DOTALL)


def read_baresip_trace(log_path: Path, own: str) -> list[SipMessage]:
    """Messages of a baresip started with ``-s``; ``own`` is its SIP address "ip:port"
    (messages to it are "received", from it "sent")."""
    try:
        text = Path(log_path).read_bytes()
    except OSError:
        return []
    out: list[SipMessage] = []
    for match in _BARESIP_ENTRY.finditer(text):
        msg = parse_message(match.group(4))
        if msg is None:
            continue
        msg.src, msg.dst = match.group(2).decode(), match.group(3).decode()
        msg.direction = "received" if msg.dst == own else "sent"
        msg.index = len(out)
        out.append(msg)
    return out


# -- linphone (belle-sip) log -------------------------------------------------------------------

_LINPHONE_ENTRY = re.compile(
    rb"belle-sip-message-channel \[[^\]]*\]: (?:message sent to \[(\w+)://([^\]]+)\], size: "
    rb"\[\d+\] bytes|received \[\d+\] new bytes from \[(\w+)://([^\]]+)\]:)\n(.*?)"
    rb"(?=\n\d{4}-\d\d-\d\d \d\d:\d\d:\d\d:\d+ |\Z)",
    re.DOTALL,
)


def read_linphone_log(log_path: Path) -> list[SipMessage]:
    """Messages linphone-daemon sent and received, from its ``--log`` file."""
    try:
        text = Path(log_path).read_bytes()
    except OSError:
        return []
    out: list[SipMessage] = []
    for match in _LINPHONE_ENTRY.finditer(text):
        body = match.group(5).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        msg = parse_message(body)
        if msg is None:
            continue
        if match.group(1):
            msg.direction, msg.dst = "sent", match.group(2).decode()
        else:
            msg.direction, msg.src = "received", match.group(4).decode()
        msg.index = len(out)
        out.append(msg)
    return out


def select(
    messages: list[SipMessage],
    method: str | None = None,
    *,
    direction: str | None = None,
    status: int | None = None,
    call_id: str | None = None,
) -> list[SipMessage]:
    """Requests of ``method`` (or, with ``status``, responses to it) filtered by direction."""
    out = []
    for msg in messages:
        if direction is not None and msg.direction != direction:
            continue
        if call_id is not None and msg.call_id != call_id:
            continue
        if status is None:
            if not msg.is_request or (method is not None and msg.method != method):
                continue
        elif msg.is_request or msg.status != status:
            continue
        elif method is not None and msg.cseq_method != method:
            continue
        out.append(msg)
    return out
