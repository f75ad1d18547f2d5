"""Packet captures on the loopback interface and what they tell about calls through a server.

Owns running tcpdump (bounded: stopped by its pid), reading its pcap files (stdlib only: the
classic libpcap format, Ethernet or Linux-cooked link types, IPv4/UDP), and two analyses:
  - :func:`post_dial_delays`: per call, the time from the caller's INVITE reaching the server
    (the authenticated one when the server challenges) to the server's 180 to the caller, and
    the part of it the server spent itself (INVITE in -> INVITE out to the callee, plus the
    callee's 180 in -> 180 out);
  - :func:`relay_figures`: per relayed RTP packet, whether it came out of the relay and how
    long it spent inside, for both directions of every call.
Calls are followed across a B2BUA (which changes the Call-ID) by the SDP o= session id, which
the bench's caller sets to its call number. Time stamps are the kernel's at the sender's
transmit on lo. Stdlib only; must not import pbx, twisted or anything under ../shared.
"""

from __future__ import annotations

import logging
import re
import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .proc_stats import pinned, stop_process, wait_until

log = logging.getLogger(__name__)

_ORIGIN = re.compile(rb"^o=\S+ (\d+) ", re.MULTILINE)
_AUDIO = re.compile(rb"^m=audio (\d+) ", re.MULTILINE)


class Capture:
    """tcpdump on lo writing ``path``, pinned to the generator core; stopped by its pid."""

    def __init__(self, path: Path, bpf: str, cpu: int, snaplen: int = 0, nice: int = 0) -> None:
        self.path, self.bpf, self.cpu, self.snaplen, self.nice = path, bpf, cpu, snaplen, nice
        self._proc: subprocess.Popen[bytes] | None = None
        self.kernel_drops: int | None = None

    def start(self) -> None:
        self.path.unlink(missing_ok=True)
        argv = ["tcpdump", "-i", "lo", "-n", "-B", "65536", "-s", str(self.snaplen)]
        argv += ["-w", str(self.path), self.bpf]
        self._proc = subprocess.Popen(
            pinned(self.cpu, argv, self.nice),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        proc = self._proc
        wait_until(lambda: proc.poll() is not None or self.path.exists(), 5)
        if proc.poll() is not None:
            raise RuntimeError(f"tcpdump did not start (exit {proc.returncode}); is it installed?")

    def stop(self) -> None:
        """Stop tcpdump (SIGTERM: it flushes the file) and read its kernel drop count."""
        proc = self._proc
        if proc is None:
            return
        stop_process(proc)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        match = re.search(r"(\d+) packets? dropped by kernel", err)
        self.kernel_drops = int(match.group(1)) if match else None
        self._proc = None


@dataclass(frozen=True, slots=True)
class Datagram:
    """One captured UDP datagram on 127.0.0.1."""

    time: float
    src_port: int
    dst_port: int
    payload: bytes


def read_pcap(path: Path) -> Iterator[Datagram]:
    """UDP/IPv4 datagrams of a classic pcap file (link types Ethernet 1 and Linux SLL 113)."""
    with path.open("rb") as f:
        head = f.read(24)
        if len(head) < 24:
            return
        magic = struct.unpack("<I", head[:4])[0]
        order, nano = {
            0xA1B2C3D4: ("<", False),
            0xA1B23C4D: ("<", True),
            0xD4C3B2A1: (">", False),
            0x4D3CB2A1: (">", True),
        }[magic]
        linktype = struct.unpack(order + "I", head[20:24])[0]
        offset = {1: 14, 113: 16}.get(linktype)
        if offset is None:
            raise ValueError(f"{path}: link type {linktype} not supported")
        scale = 1e-9 if nano else 1e-6
        record = struct.Struct(order + "IIII")
        while True:
            rec = f.read(16)
            if len(rec) < 16:
                return
            sec, frac, caplen, _ = record.unpack(rec)
            frame = f.read(caplen)
            ip = frame[offset:]
            if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
                continue
            ihl = (ip[0] & 0x0F) * 4
            src, dst = struct.unpack("!HH", ip[ihl : ihl + 4])
            yield Datagram(sec + frac * scale, src, dst, ip[ihl + 8 :])


@dataclass(frozen=True, slots=True)
class SipSeen:
    """The fields of a SIP message the analyses need."""

    time: float
    src_port: int
    dst_port: int
    method: str  # request method, or "" for a response
    status: int  # response status, or 0 for a request
    call_id: str
    cseq_method: str
    authorized: bool  # carries (Proxy-)Authorization
    session: int | None  # SDP o= session id
    media_port: int | None  # SDP m=audio port


def parse_sip(d: Datagram) -> SipSeen | None:
    """The SIP message in ``d``, or None if it is not one (e.g. a keep-alive)."""
    head, _, body = d.payload.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ")
    if len(first) < 2:
        return None
    method, status = "", 0
    if first[0] == b"SIP/2.0":
        if not first[1].isdigit():
            return None
        status = int(first[1])
    else:
        method = first[0].decode(errors="replace")
    call_id, cseq_method, authorized = "", "", False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        key = name.strip().lower()
        if key in (b"call-id", b"i"):
            call_id = value.strip().decode(errors="replace")
        elif key == b"cseq":
            cseq_method = value.split()[-1].decode(errors="replace") if value.split() else ""
        elif key in (b"authorization", b"proxy-authorization"):
            authorized = True
    origin, audio = _ORIGIN.search(body), _AUDIO.search(body)
    return SipSeen(
        d.time,
        d.src_port,
        d.dst_port,
        method,
        status,
        call_id,
        cseq_method,
        authorized,
        int(origin.group(1)) if origin else None,
        int(audio.group(1)) if audio else None,
    )


def sip_messages(path: Path) -> list[SipSeen]:
    return [m for m in map(parse_sip, read_pcap(path)) if m is not None]


@dataclass(slots=True)
class CallLegs:
    """What one call looked like on the wire, keyed by SDP session id."""

    invite_in: SipSeen | None = None  # caller -> server (the authorized one, if any)
    invite_out: SipSeen | None = None  # server -> callee
    ring_in: float | None = None  # callee's 180 -> server
    ring_out: float | None = None  # server's 180 -> caller
    answer_out: SipSeen | None = None  # server's 200 (with SDP) to the caller


def follow_calls(messages: list[SipSeen], server_port: int, callee_port: int) -> list[CallLegs]:
    """Link each caller-side INVITE to the INVITE the server sent the callee (same SDP session
    id), and the 180s and 200s of each side (by Call-ID and CSeq method INVITE)."""
    calls: dict[int, CallLegs] = {}
    by_a: dict[str, CallLegs] = {}
    by_b: dict[str, CallLegs] = {}
    for m in messages:
        if m.method == "INVITE" and m.session is not None:
            if m.dst_port == server_port and m.src_port != callee_port:
                call = calls.setdefault(m.session, CallLegs())
                first = call.invite_in
                if first is None or (m.authorized and not first.authorized):
                    call.invite_in = m
                    by_a[m.call_id] = call
            elif m.dst_port == callee_port and calls.get(m.session) is not None:
                call = calls[m.session]
                if call.invite_out is None:
                    call.invite_out = m
                    by_b[m.call_id] = call
        elif m.status and m.cseq_method == "INVITE":
            if m.src_port == callee_port and m.status == 180:
                call_b = by_b.get(m.call_id)
                if call_b is not None and call_b.ring_in is None:
                    call_b.ring_in = m.time
            elif m.src_port == server_port and m.dst_port != callee_port:
                call_a = by_a.get(m.call_id)
                if call_a is None:
                    continue
                if m.status == 180 and call_a.ring_out is None:
                    call_a.ring_out = m.time
                elif m.status == 200 and call_a.answer_out is None:
                    call_a.answer_out = m
    return list(calls.values())


@dataclass(frozen=True, slots=True)
class Delays:
    """Post-dial delays of the calls in a capture, ms."""

    calls: int  # calls with both the INVITE in and the 180 out captured
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    own_p50_ms: float | None  # the server's own share (callee's time excluded)
    own_p99_ms: float | None


def percentile(values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of ``values`` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-fraction * len(ordered) // 1)) - 1))
    return ordered[rank]


def post_dial_delays(path: Path, server_port: int, callee_port: int) -> Delays:
    """INVITE in -> 180 out of the server, per call, from the SIP capture ``path``."""
    total: list[float] = []
    own: list[float] = []
    for call in follow_calls(sip_messages(path), server_port, callee_port):
        if call.invite_in is None or call.ring_out is None:
            continue
        total.append(1000 * (call.ring_out - call.invite_in.time))
        if call.invite_out is not None and call.ring_in is not None:
            inside = (call.invite_out.time - call.invite_in.time) + (call.ring_out - call.ring_in)
            own.append(1000 * inside)

    def r(v: float | None) -> float | None:
        return None if v is None else round(v, 3)

    return Delays(
        len(total),
        r(percentile(total, 0.5)),
        r(percentile(total, 0.99)),
        r(max(total, default=None)),
        r(percentile(own, 0.5)),
        r(percentile(own, 0.99)),
    )


@dataclass(slots=True)
class RelayFigures:
    """Relayed RTP over a capture window, both directions of every call."""

    streams: int = 0
    packets_in: int = 0
    packets_out: int = 0  # of packets_in, those that came out of the relay
    loss_pct: float | None = None
    transit_p50_ms: float | None = None
    transit_p99_ms: float | None = None
    transit_max_ms: float | None = None
    jitter_p99_ms: float | None = None  # |D(i-1,i)| of RFC 3550 6.4.1, added by the relay
    unmapped_packets: int = 0  # RTP to or from ports no captured SDP announced
    notes: list[str] = field(default_factory=list)


def relay_pairs(
    messages: list[SipSeen], server_port: int, callee_port: int
) -> list[tuple[int, int]]:
    """(relay port packets go in, relay port they come out) for both directions of each call:
    caller side = the m= port of the server's 200 to the caller, callee side = the m= port of
    the server's INVITE to the callee."""
    pairs: list[tuple[int, int]] = []
    for call in follow_calls(messages, server_port, callee_port):
        if call.answer_out is None or call.invite_out is None:
            continue
        a, b = call.answer_out.media_port, call.invite_out.media_port
        if a and b:
            pairs += [(a, b), (b, a)]
    return pairs


def relay_figures(
    sip_pcap: Path, rtp_pcap: Path, server_port: int, callee_port: int, settle: float = 0.5
) -> RelayFigures:
    """Loss and relay transit of every RTP packet sent into the relay during the capture (but
    the last ``settle`` s, whose packets may still be inside), matched by RTP sequence number
    to the packet the relay sent out of the paired port."""
    pairs = relay_pairs(sip_messages(sip_pcap), server_port, callee_port)
    out_of = {a: b for a, b in pairs}
    ins: dict[int, dict[int, float]] = {port: {} for port in out_of}
    outs: dict[int, dict[int, float]] = {port: {} for port in out_of.values()}
    fig = RelayFigures(streams=len(pairs))
    last = 0.0
    for d in read_pcap(rtp_pcap):
        if len(d.payload) < 12 or d.payload[0] >> 6 != 2:
            continue
        seq = struct.unpack("!H", d.payload[2:4])[0]
        last = max(last, d.time)
        if d.dst_port in ins:
            ins[d.dst_port].setdefault(seq, d.time)
        elif d.src_port in outs:
            outs[d.src_port].setdefault(seq, d.time)
        else:
            fig.unmapped_packets += 1
    transits: list[float] = []
    jitters: list[float] = []
    for port_in, port_out in out_of.items():
        came_out = outs.get(port_out, {})
        previous: float | None = None
        for seq, t_in in sorted(ins[port_in].items()):
            if t_in > last - settle:
                continue
            fig.packets_in += 1
            t_out = came_out.get(seq)
            if t_out is None:
                previous = None
                continue
            fig.packets_out += 1
            transit = 1000 * (t_out - t_in)
            transits.append(transit)
            if previous is not None:
                jitters.append(abs(transit - previous))
            previous = transit
    if fig.packets_in:
        fig.loss_pct = round(100 * (fig.packets_in - fig.packets_out) / fig.packets_in, 3)
    for name, values, q in (
        ("transit_p50_ms", transits, 0.5),
        ("transit_p99_ms", transits, 0.99),
        ("jitter_p99_ms", jitters, 0.99),
    ):
        value = percentile(values, q)
        setattr(fig, name, None if value is None else round(value, 3))
    fig.transit_max_ms = round(max(transits), 3) if transits else None
    return fig
