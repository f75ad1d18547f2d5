"""SRTP on one leg of the relay (RFC 3711 through libsrtp, keys from SDES): protect, unprotect,
tampered and replayed packets dropped and counted, RTCP both ways, real sockets."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap
from typing import Any

import pylibsrtp
import pytest

from pbx.media.relay import MediaLeg, bridge
from pbx.media.sdes import SUITES, CryptoAttribute, SdesError, make_offer_crypto
from pbx.media.srtp import SrtpContext, secure_leg, unsecure_leg

PROFILES = {
    "AES_CM_128_HMAC_SHA1_80": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
    "AES_CM_128_HMAC_SHA1_32": pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_32,
    "AEAD_AES_128_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_128_GCM,
    "AEAD_AES_256_GCM": pylibsrtp.Policy.SRTP_PROFILE_AEAD_AES_256_GCM,
}


def rtp(seq: int, ssrc: int = 0x11223344, payload: bytes = b"") -> bytes:
    body = payload or bytes([seq % 256]) * 160
    return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + body


def rtcp_rr(ssrc: int = 0x11223344) -> bytes:
    """An empty receiver report (RFC 3550 §6.4.2)."""
    return struct.pack("!BBHI", 0x80, 201, 1, ssrc)


class Phone:
    """An SRTP phone made from libsrtp directly: sends with its key, receives with pbx's."""

    def __init__(self, mine: CryptoAttribute, pbx: CryptoAttribute) -> None:
        profile = PROFILES[mine.suite]
        self.tx = pylibsrtp.Session(
            pylibsrtp.Policy(mine.key, pylibsrtp.Policy.SSRC_ANY_OUTBOUND, srtp_profile=profile)
        )
        self.rx = pylibsrtp.Session(
            pylibsrtp.Policy(pbx.key, pylibsrtp.Policy.SSRC_ANY_INBOUND, srtp_profile=profile)
        )


def pair(suite: str = "AES_CM_128_HMAC_SHA1_80") -> tuple[SrtpContext, Phone]:
    phone_key, pbx_key = make_offer_crypto([suite, suite])
    return SrtpContext(inbound=phone_key, outbound=pbx_key), Phone(phone_key, pbx_key)


@pytest.mark.parametrize("suite", sorted(SUITES))
def test_each_suite_unprotects_the_phones_packets_and_protects_ours(suite: str) -> None:
    context, phone = pair(suite)
    for seq in range(1, 4):
        assert context.unprotect_rtp(phone.tx.protect(rtp(seq))) == rtp(seq)
        secured = context.protect_rtp(rtp(seq, ssrc=7))
        assert secured != rtp(seq, ssrc=7) and phone.rx.unprotect(secured) == rtp(seq, ssrc=7)
    assert context.unprotect_rtcp(phone.tx.protect_rtcp(rtcp_rr())) == rtcp_rr()
    assert phone.rx.unprotect_rtcp(context.protect_rtcp(rtcp_rr(7))) == rtcp_rr(7)
    assert (context.stats.unprotected, context.stats.protected, context.dropped) == (4, 4, 0)


def test_tampered_replayed_and_foreign_key_packets_are_dropped_and_counted() -> None:
    context, phone = pair()
    first = phone.tx.protect(rtp(1))
    assert context.unprotect_rtp(first) == rtp(1)
    assert context.unprotect_rtp(first) is None  # replay
    second = bytearray(phone.tx.protect(rtp(2)))
    second[20] ^= 0x01  # one bit of the encrypted payload
    assert context.unprotect_rtp(bytes(second)) is None
    _, stranger = pair()
    assert context.unprotect_rtp(stranger.tx.protect(rtp(3))) is None  # wrong key
    rtcp = phone.tx.protect_rtcp(rtcp_rr())
    assert context.unprotect_rtcp(rtcp) == rtcp_rr()
    assert context.unprotect_rtcp(rtcp) is None
    assert context.unprotect_rtp(b"\x80\x00") is None  # too short for RTP
    stats = context.stats
    assert (stats.replayed, stats.auth_failed, stats.malformed) == (2, 2, 1)
    assert context.dropped == 5 and stats.unprotected == 2


def test_plain_packets_libsrtp_refuses_are_not_sent_in_clear() -> None:
    context, phone = pair()
    assert context.protect_rtp(b"\x80\x00\x00") == b""
    once = context.protect_rtp(rtp(9))
    assert context.protect_rtp(rtp(9)) == b""  # the same index twice: never reuse a keystream
    assert phone.rx.unprotect(once) == rtp(9)
    assert context.stats.unprotectable == 2


def test_rtcp_muxed_on_the_rtp_port_is_handled_as_srtcp() -> None:
    context, phone = pair()
    assert context.unprotect_rtp(phone.tx.protect_rtcp(rtcp_rr())) == rtcp_rr()
    assert phone.rx.unprotect_rtcp(context.protect_rtp(rtcp_rr(5))) == rtcp_rr(5)


def test_a_context_refuses_keys_it_cannot_run() -> None:
    with_mki = CryptoAttribute.parse(
        "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
    )
    with pytest.raises(SdesError, match="MKI"):
        SrtpContext(with_mki, make_offer_crypto()[0])


class FakeUdp:
    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, data: bytes, addr: tuple[str, int]) -> None:
        self.written.append((data, addr))


def test_secure_leg_sets_the_relay_hooks_and_unsecure_leg_removes_them() -> None:
    secure, plain = MediaLeg("a"), MediaLeg("b")
    for sock in (secure.rtp, secure.rtcp, plain.rtp, plain.rtcp):
        sock.transport = FakeUdp()
    secure.set_remote("127.0.0.10", 4000)
    plain.set_remote("127.0.0.20", 6000)
    bridge(secure, plain)
    context, phone = pair()
    secure_leg(secure, context)

    secure.rtp.datagramReceived(phone.tx.protect(rtp(1)), ("127.0.0.10", 4000))
    plain.rtp.datagramReceived(rtp(1, ssrc=9), ("127.0.0.20", 6000))
    assert plain.rtp.transport.written == [(rtp(1), ("127.0.0.20", 6000))]
    ((to_phone, addr),) = secure.rtp.transport.written
    assert addr == ("127.0.0.10", 4000) and phone.rx.unprotect(to_phone) == rtp(1, ssrc=9)
    assert (plain.rtp.unwrap, plain.rtp.wrap) == (None, None)  # the plain leg is untouched

    unsecure_leg(secure)
    assert (secure.rtp.unwrap, secure.rtp.wrap, secure.rtcp.unwrap, secure.rtcp.wrap) == (
        None,
        None,
        None,
        None,
    )


# -- real sockets on 127.0.0.1 through the asyncio reactor (like tests/media/test_relay.py) --

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket, struct
    loop = asyncio.new_event_loop(); asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor; asyncioreactor.install(loop)
    from twisted.internet import reactor
    import pylibsrtp
    from pbx.media.relay import MediaLeg, PortPool, bridge
    from pbx.media.sdes import accept_offer, make_offer_crypto, secure_stream
    from pbx.media.sdp import SessionDescription
    from pbx.media.srtp import SrtpContext, secure_leg

    OFFER = ("v=0\\r\\no=- 1 1 IN IP4 127.0.0.1\\r\\ns=-\\r\\nc=IN IP4 127.0.0.1\\r\\nt=0 0\\r\\n"
             "m=audio 4000 RTP/AVP 0\\r\\n")
    phone_keys = make_offer_crypto()  # what the SRTP phone offers
    offer = secure_stream(SessionDescription.parse(OFFER), 0, phone_keys)
    theirs, ours = accept_offer(offer, 0)
    P = pylibsrtp.Policy
    tx = pylibsrtp.Session(P(theirs.key, P.SSRC_ANY_OUTBOUND))
    rx = pylibsrtp.Session(P(ours.key, P.SSRC_ANY_INBOUND))

    pool = PortPool(reactor, 24400, 24500, "127.0.0.1")
    a, b = MediaLeg("a"), MediaLeg("b")
    pool.open(a); pool.open(b)
    def udp():
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0)); s.settimeout(0.3)
        return s
    a_rtp, a_rtcp, b_rtp, b_rtcp = udp(), udp(), udp(), udp()
    a.set_remote("127.0.0.1", a_rtp.getsockname()[1], a_rtcp.getsockname()[1])
    b.set_remote("127.0.0.1", b_rtp.getsockname()[1], b_rtcp.getsockname()[1])
    bridge(a, b)
    context = SrtpContext(theirs, ours)
    secure_leg(a, context)

    def rtp(seq, ssrc):
        return struct.pack("!BBHII", 0x80, 0, seq, seq * 160, ssrc) + bytes([seq]) * 160
    def rr(ssrc):
        return struct.pack("!BBHI", 0x80, 201, 1, ssrc)
    A_RTP = [rtp(i, 0xA) for i in range(1, 21)]
    B_RTP = [rtp(i, 0xB) for i in range(1, 21)]
    pbx_rtp = ("127.0.0.1", a.local_ports[0]), ("127.0.0.1", b.local_ports[0])
    pbx_rtcp = ("127.0.0.1", a.local_ports[1]), ("127.0.0.1", b.local_ports[1])

    def run():
        sent = [tx.protect(p) for p in A_RTP]
        for s, p in zip(sent, B_RTP):
            a_rtp.sendto(s, pbx_rtp[0]); b_rtp.sendto(p, pbx_rtp[1])
        tampered = bytearray(tx.protect(rtp(21, 0xA))); tampered[30] ^= 0x80
        a_rtp.sendto(bytes(tampered), pbx_rtp[0])
        a_rtp.sendto(sent[4], pbx_rtp[0])  # replayed
        a_rtcp.sendto(tx.protect_rtcp(rr(0xA)), pbx_rtcp[0])
        b_rtcp.sendto(rr(0xB), pbx_rtcp[1])
        reactor.callLater(0.4, finish)

    def drain(sock):
        got = []
        try:
            while True:
                got.append(sock.recvfrom(2000)[0])
        except socket.timeout:
            return got

    def finish():
        out = {
            "b_rtp": [d.hex() for d in drain(b_rtp)],
            "a_rtp_raw": [d.hex() for d in drain(a_rtp)],
            "b_rtcp": [d.hex() for d in drain(b_rtcp)],
            "a_rtcp_raw": [d.hex() for d in drain(a_rtcp)],
        }
        out["a_rtp"] = [rx.unprotect(bytes.fromhex(d)).hex() for d in out["a_rtp_raw"]]
        out["a_rtcp"] = [rx.unprotect_rtcp(bytes.fromhex(d)).hex() for d in out["a_rtcp_raw"]]
        out["want_a_rtp"] = [p.hex() for p in B_RTP]
        out["want_b_rtp"] = [p.hex() for p in A_RTP]
        out["want_rtcp"] = [rr(0xA).hex(), rr(0xB).hex()]
        out["stats"] = vars(context.stats)
        out["relay_dropped"] = a.rtp.dropped
        out["suite"] = ours.suite
        print(json.dumps(out))
        reactor.stop()

    reactor.callWhenRunning(run); reactor.run()
    """
)


@pytest.fixture(scope="module")
def over_sockets() -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_srtp_from_the_secure_phone_reaches_the_plain_phone_as_the_original_rtp(
    over_sockets: dict[str, Any],
) -> None:
    assert over_sockets["suite"] == "AES_CM_128_HMAC_SHA1_80"  # the first line offered
    assert over_sockets["b_rtp"] == over_sockets["want_b_rtp"]


def test_rtp_from_the_plain_phone_reaches_the_secure_phone_protected_with_pbx_key(
    over_sockets: dict[str, Any],
) -> None:
    raw, plain = over_sockets["a_rtp_raw"], over_sockets["a_rtp"]
    assert plain == over_sockets["want_a_rtp"]
    assert all(len(r) == len(p) + 20 for r, p in zip(raw, plain, strict=True))  # 80-bit tag
    assert not set(raw) & set(plain)


def test_tampered_and_replayed_packets_are_dropped_by_the_relay_and_counted(
    over_sockets: dict[str, Any],
) -> None:
    stats = over_sockets["stats"]
    assert (stats["auth_failed"], stats["replayed"], stats["malformed"]) == (1, 1, 0)
    assert over_sockets["relay_dropped"] == 2
    assert stats["unprotected"] == 21  # 20 RTP and 1 RTCP
    assert stats["protected"] == 21


def test_rtcp_is_unprotected_from_and_protected_to_the_secure_phone(
    over_sockets: dict[str, Any],
) -> None:
    from_a, from_b = over_sockets["want_rtcp"]
    assert over_sockets["b_rtcp"] == [from_a]
    assert over_sockets["a_rtcp"] == [from_b]
    assert over_sockets["a_rtcp_raw"] != [from_b]
