"""RTP test media: pcap files for SIPp's ``play_pcap_audio`` and UDP captures with tcpdump.

Owns: writing a pcap of numbered RTP packets (RFC 3550 5.1 header, payload type 0) that SIPp
replays from its media port, running ``tcpdump -i lo`` on a UDP port range (started and
stopped by its own pid; needs root / CAP_NET_RAW) and reading the capture back into
:class:`UdpPacket` records. The pcap format (libpcap 2.4, link type 1) is written and read with
``struct``; no codec is involved: the payload is an opaque numbered pattern so that a test can
follow each packet through the relay.

Must not import anything from ``pbx``. Loopback (127.0.0.0/8) only.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .procs import stop_process

log = logging.getLogger(__name__)

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_ETHERNET = 1  # Linux lo is captured with an Ethernet-like header
_ETH_HEADER = 14


@dataclass(frozen=True)
class UdpPacket:
    """One captured UDP datagram (IPv4)."""

    src: tuple[str, int]
    dst: tuple[str, int]
    payload: bytes


def rtp_payload(seq: int, size: int = 160) -> bytes:
    """The opaque payload of packet ``seq``: a fill byte and the number at the end."""
    return bytes([0x55]) * (size - 4) + struct.pack("!I", seq)


def write_rtp_pcap(
    path: Path,
    packets: int = 50,
    ssrc: int = 0x1234ABCD,
    payload: Callable[[int], bytes] = rtp_payload,
) -> Path:
    """A pcap of ``packets`` RTP packets 20 ms apart (PT 0, 160-byte payloads, marker bit on
    the first), UDP 127.0.0.1 -> 127.0.0.1; SIPp rewrites the addresses and ports.
    ``payload(n)`` gives packet n's payload (default: the numbered pattern; a PCMU tone:
    ``lambda n: tones.ulaw_encode(tones.sine_samples(freq, 160, n * 160))``)."""
    out = [struct.pack("<IHHiIII", PCAP_MAGIC, 2, 4, 0, 0, 65535, LINKTYPE_ETHERNET)]
    for n in range(packets):
        rtp = struct.pack("!BBHII", 0x80, 0x80 if n == 0 else 0, n, n * 160, ssrc)
        rtp += payload(n)
        udp = struct.pack("!HHHH", 40000, 40000, 8 + len(rtp), 0) + rtp
        loopback = bytes([127, 0, 0, 1])
        ip = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), n, 0, 64, 17, 0, loopback, loopback
        )
        frame = b"\0" * 12 + b"\x08\x00" + ip + udp
        usec = n * 20000
        out.append(struct.pack("<IIII", usec // 10**6, usec % 10**6, len(frame), len(frame)))
        out.append(frame)
    path.write_bytes(b"".join(out))
    return path


def read_udp_pcap(path: Path) -> list[UdpPacket]:
    """The IPv4 UDP datagrams of a link-type-1 pcap file (others are skipped)."""
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    endian = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"{path}: link type {linktype}, expected {LINKTYPE_ETHERNET}")
    packets: list[UdpPacket] = []
    offset = 24
    while offset + 16 <= len(data):
        caplen = struct.unpack(endian + "I", data[offset + 8 : offset + 12])[0]
        frame = data[offset + 16 : offset + 16 + caplen]
        offset += 16 + caplen
        packet = _udp_of(frame)
        if packet is not None:
            packets.append(packet)
    return packets


def _udp_of(frame: bytes) -> UdpPacket | None:
    if len(frame) < _ETH_HEADER + 28 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[_ETH_HEADER:]
    if ip[0] >> 4 != 4 or ip[9] != 17:
        return None
    ihl = (ip[0] & 0x0F) * 4
    src = ".".join(str(b) for b in ip[12:16])
    dst = ".".join(str(b) for b in ip[16:20])
    sport, dport, length = struct.unpack("!HHH", ip[ihl : ihl + 6])
    payload = ip[ihl + 8 : ihl + length]
    return UdpPacket((src, sport), (dst, dport), payload)


def capture_unavailable() -> str | None:
    """Why a tcpdump capture cannot run here, or None."""
    if shutil.which("tcpdump") is None:
        return "tcpdump not installed"
    if os.geteuid() != 0:
        return "capturing on lo needs root"
    return None


class UdpCapture:
    """``tcpdump -i lo`` writing UDP packets to/from a port range into a pcap; a context
    manager. Every packet is written as it arrives (-U), so stop() then packets() is exact."""

    def __init__(self, path: Path, low: int, high: int) -> None:
        self.path = Path(path)
        self.low = low
        self.high = high
        self.proc: subprocess.Popen[bytes] | None = None
        self._stderr = self.path.with_suffix(".log")

    def start(self, timeout: float = 5.0) -> UdpCapture:
        """Start tcpdump and wait until it says it is listening."""
        args = ["tcpdump", "-i", "lo", "-n", "-U", "-s", "2048", "-w", str(self.path)]
        args += ["udp", "and", "portrange", f"{self.low}-{self.high}"]
        with self._stderr.open("wb") as err:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"listening on" in self._stderr.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        text = self._stderr.read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"tcpdump did not start: {text}")

    def stop(self) -> None:
        """SIGTERM by pid (tcpdump flushes and exits)."""
        stop_process(self.proc, grace=3.0)

    def packets(self) -> list[UdpPacket]:
        return read_udp_pcap(self.path) if self.path.is_file() else []

    def __enter__(self) -> UdpCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
