"""Media anchoring of SDP bodies: where a phone's media is, and pointing it at pbx instead.

:func:`remote` reads the connection address and the first audio stream's RTP port (and its
RFC 3605 ``a=rtcp`` port) from an offer or answer; :func:`rewrite` returns the same body with
the c= lines, the audio m= port and a=rtcp pointing at one of pbx's media legs, and the o=
version increased (RFC 3264 §8: a changed description gets a new version). Everything else
(codecs, telephone-event, direction, crypto) passes unchanged, so the two phones negotiate
codecs end to end and packets are relayed untouched. Streams other than the first audio stream
are refused (port 0): pbx relays one audio stream per call for now.
"""

from __future__ import annotations

import logging

from pbx.media.relay import MediaLeg

log = logging.getLogger(__name__)


def _lines(body: bytes) -> list[str]:
    return body.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")


def remote(body: bytes) -> tuple[str, int, int | None] | None:
    """(address, rtp port, rtcp port or None) of the first audio stream, None if there is none
    or it is on hold with the RFC 2543 address 0.0.0.0."""
    if not body:
        return None
    session_address = ""
    media_address = ""
    port: int | None = None
    rtcp: int | None = None
    in_audio = False
    for line in _lines(body):
        if line.startswith("m="):
            if port is not None:
                break
            parts = line[2:].split()
            in_audio = len(parts) >= 2 and parts[0] == "audio" and parts[1].isdigit()
            if in_audio:
                port = int(parts[1])
        elif line.startswith("c="):
            address = line[2:].split()[-1].split("/")[0] if len(line[2:].split()) >= 3 else ""
            if port is None:
                session_address = address
            elif in_audio:
                media_address = address
        elif in_audio and line.startswith("a=rtcp:"):
            value = line[7:].split()[0]
            rtcp = int(value) if value.isdigit() else None
    address = media_address or session_address
    if port is None or port == 0 or not address or address == "0.0.0.0":
        return None
    return address, port, rtcp


def codec(body: bytes) -> str:
    """The first codec of the first audio stream (the one an answer chose), e.g. 'PCMU'."""
    names: dict[str, str] = {"0": "PCMU", "8": "PCMA", "9": "G722", "18": "G729", "3": "GSM"}
    first: str | None = None
    for line in _lines(body):
        if line.startswith("m=audio") and first is None:
            parts = line.split()
            first = parts[3] if len(parts) > 3 else None
        elif line.startswith("a=rtpmap:") and first is not None:
            pt, _, rest = line[9:].partition(" ")
            names[pt] = rest.split("/")[0]
    return names.get(first or "", first or "")


def rewrite(body: bytes, address: str, media: MediaLeg | None) -> bytes:
    """``body`` with its audio pointed at ``media``'s RTP/RTCP ports on ``address``."""
    if not body or media is None:
        return body
    family = "IP6" if ":" in address else "IP4"
    out: list[str] = []
    audio_seen = False
    in_first_audio = False
    for line in _lines(body):
        if line.startswith("o="):
            parts = line[2:].split()
            if len(parts) >= 6 and parts[2].isdigit():
                parts[2] = str(int(parts[2]) + 1)
                parts[3:6] = ["IN", family, address]
                line = "o=" + " ".join(parts)
        elif line.startswith("c="):
            line = f"c=IN {family} {address}"
        elif line.startswith("m="):
            parts = line[2:].split()
            if parts and parts[0] == "audio" and not audio_seen:
                audio_seen = in_first_audio = True
                parts[1] = str(media.local_ports[0])
            else:
                in_first_audio = False
                if len(parts) > 1:
                    parts[1] = "0"  # one anchored audio stream per call (RFC 3264 §6)
            line = "m=" + " ".join(parts)
        elif line.startswith("a=rtcp:") and in_first_audio:
            line = f"a=rtcp:{media.local_ports[1]}"
        out.append(line)
    while out and out[-1] == "":
        out.pop()
    return ("\r\n".join(out) + "\r\n").encode()
