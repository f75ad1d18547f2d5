"""The RTP stream SIPp's callers play in bench/media: one G.711 u-law call leg as a pcap file.

Owns writing a classic pcap of RTP packets as a 20 ms G.711 u-law phone sends them (PT 0,
160-byte payload, 172-byte RTP packets, 50 packets/s; RFC 3550 header, RFC 3551 PCMU), for
SIPp's play_pcap_audio, which keeps the RTP header and payload and only re-addresses the
packets. The payload is fixed noise-like bytes (a relay never looks at it). Addresses in the
file are 127.0.0.1. Stdlib only; must not import pbx or anything under ../shared.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

PTIME_S = 0.020
PAYLOAD_BYTES = 160  # 20 ms of 8 kHz samples, one byte each
SSRC = 0x1234ABCD


def _ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def write_g711_pcap(path: Path, seconds: float) -> Path:
    """Write ``seconds`` of the stream to ``path`` (Ethernet link type, microsecond stamps)."""
    payload = random.Random(711).randbytes(PAYLOAD_BYTES)
    loopback = bytes([127, 0, 0, 1])
    with path.open("wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i in range(int(seconds / PTIME_S)):
            marker = 0x80 if i == 0 else 0x00
            rtp = struct.pack("!BBHII", 0x80, marker, i & 0xFFFF, (i * 160) & 0xFFFFFFFF, SSRC)
            rtp += payload
            udp = struct.pack("!HHHH", 6000, 6002, 8 + len(rtp), 0) + rtp
            ip = struct.pack(
                "!BBHHHBBH4s4s", 0x45, 0xB8, 20 + len(udp), i & 0xFFFF, 0, 64, 17, 0,
                loopback, loopback,
            )  # fmt: skip
            ip = ip[:10] + struct.pack("!H", _ip_checksum(ip)) + ip[12:]
            frame = b"\x00" * 12 + b"\x08\x00" + ip + udp
            stamp = i * PTIME_S
            usec = round((stamp % 1) * 1e6)
            f.write(struct.pack("<IIII", int(stamp), usec, len(frame), len(frame)))
            f.write(frame)
    return path
