"""Scenarios for test_transcode.py: two fake phones on real UDP sockets (127.0.0.1) talk
through a TranscodingBridge on the asyncio reactor, in a subprocess (the reactor cannot be
restarted inside pytest). Run as ``python -m tests.media.transcode_scenarios NAME``; prints
one JSON object with what each phone received.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from itertools import pairwise
from typing import Any

ReactorT = Any
Scenario = Callable[[ReactorT], Coroutine[Any, Any, dict[str, Any]]]


def fmt(codec: str, pt: int, te: int | None = None, ptime: int = 20) -> Any:
    from pbx.calls.negotiate import StreamFormat
    from pbx.media.codecs import CODECS

    info = CODECS[codec]
    return StreamFormat(codec, pt, info.clock_rate, info.channels, {}, ptime, te, 8000)


class Phone:
    """A UDP socket standing in for a phone: sends a timeline, records what arrives."""

    def __init__(self, reactor: ReactorT) -> None:
        from twisted.internet import protocol

        phone = self

        class Proto(protocol.DatagramProtocol):
            def datagramReceived(self, data: bytes, addr: Any) -> None:  # noqa: N802
                phone.received.append(data)

        self.reactor = reactor
        self.received: list[bytes] = []
        self.proto = Proto()
        self.port = reactor.listenUDP(0, self.proto, interface="127.0.0.1").getHost().port

    async def play(self, to_port: int, timeline: list[tuple[float, bytes]]) -> None:
        """Send each packet at its offset (seconds) from now, on an absolute schedule."""
        from twisted.internet import task

        start = self.reactor.seconds()
        for offset, data in sorted(timeline, key=lambda item: item[0]):
            delay = start + offset - self.reactor.seconds()
            if delay > 0:
                await task.deferLater(self.reactor, delay, lambda: None)
            transport: Any = self.proto.transport
            transport.write(data, ("127.0.0.1", to_port))

    def packets(self) -> list[Any]:
        from pbx.media.rtp import RtpPacket

        return [RtpPacket.parse(d) for d in self.received]

    def audio(self, pt: int, codec: str) -> bytes:
        """Decoded 8 kHz PCM of the ``pt`` packets, in sequence order."""
        from pbx.media.codecs import get_decoder

        decoder = get_decoder(codec, sample_rate=8000)
        packets = sorted((p for p in self.packets() if p.payload_type == pt), key=seq_key)
        return b"".join(decoder.decode(p.payload) for p in packets)

    def events(self, pt: int) -> list[str]:
        from pbx.media.dtmf import EventReceiver, Phase

        ends = []
        receiver = EventReceiver()
        for p in self.packets():
            if p.payload_type == pt:
                ends += [
                    e.digit for e in receiver.feed(p.timestamp, p.payload) if e.phase is Phase.END
                ]
        return ends


def seq_key(packet: Any) -> int:
    return int(packet.sequence)


def inband_digits(pcm: bytes) -> str:
    from pbx.media.dtmf import DtmfDetector

    return "".join(DtmfDetector().feed(pcm))


class Call:
    """Two anchored legs, bridged for relay like the switch does, then transcoded."""

    def __init__(
        self, reactor: ReactorT, fa: Any, fb: Any, start: bool = True, **kwargs: Any
    ) -> None:
        from pbx.media.relay import MediaLeg, PortPool, bridge
        from pbx.media.transcode import TranscodingBridge

        self.pool = PortPool(reactor, 26000, 26400, "127.0.0.1")
        self.a, self.b = MediaLeg("t/A"), MediaLeg("t/B")
        self.pool.open(self.a)
        self.pool.open(self.b)
        self.pa, self.pb = Phone(reactor), Phone(reactor)
        self.a.set_remote("127.0.0.1", self.pa.port)
        self.b.set_remote("127.0.0.1", self.pb.port)
        bridge(self.a, self.b)
        self.bridge = TranscodingBridge(self.a, self.b, fa, fb, reactor=reactor, **kwargs)
        self.digits: list[list[str]] = []
        self.infos: list[list[Any]] = []
        self.bridge.on_digit = lambda side, digit: self.digits.append([side, digit])
        self.bridge.on_info = lambda side, digit, ms: self.infos.append([side, digit, ms])
        if start:
            self.bridge.start()

    async def finish(self, reactor: ReactorT, settle: float = 0.4) -> dict[str, Any]:
        from twisted.internet import task

        await task.deferLater(reactor, settle, lambda: None)
        self.bridge.stop()
        stats = {side: str(s) for side, s in self.bridge.stats.items()}
        concealed = {side: s.concealed for side, s in self.bridge.stats.items()}
        return {"digits": self.digits, "infos": self.infos, "stats": stats, "concealed": concealed}


def rtp(pt: int, seq: int, ts: int, payload: bytes, ssrc: int, marker: bool = False) -> bytes:
    from pbx.media.rtp import RtpPacket

    return RtpPacket(
        payload_type=pt,
        sequence=seq & 0xFFFF,
        timestamp=ts & 0xFFFFFFFF,
        ssrc=ssrc,
        marker=marker,
        payload=payload,
    ).serialize()


def audio_timeline(
    codec: str, pt: int, pcm_at: Callable[[int], bytes], frames: int, ssrc: int, rate: int
) -> list[tuple[float, bytes]]:
    """``frames`` 20 ms packets of ``pcm_at(rate)``-generated audio, encoded in ``codec``."""
    from pbx.media.codecs import CODECS, get_encoder

    encoder = get_encoder(codec, sample_rate=rate)
    pcm = pcm_at(rate)
    size = rate // 50 * 2
    ticks = CODECS[codec].clock_rate // 50
    return [
        (
            i * 0.02,
            rtp(
                pt, 1000 + i, 5000 + i * ticks, encoder.encode(pcm[i * size : (i + 1) * size]), ssrc
            ),
        )
        for i in range(frames)
    ]


def sine_at(freq: float, seconds: float) -> Callable[[int], bytes]:
    from tests.media.audio_helpers import sine

    return lambda rate: sine(freq, rate, int(rate * seconds))


def silence_at(seconds: float) -> Callable[[int], bytes]:
    return lambda rate: bytes(2 * int(rate * seconds))


def event_timeline(
    te: int, digits: str, first_at: float, spacing: float, ssrc: int, extra_ends: int = 2
) -> list[tuple[float, bytes]]:
    """RFC 4733 events for ``digits`` (100 ms each, end sent 3 times + ``extra_ends`` late
    retransmissions), timestamps on the 8 kHz audio timeline of audio_timeline."""
    from pbx.media.dtmf import EventSender

    out = []
    seq = 30000
    for n, digit in enumerate(digits):
        start = first_at + n * spacing
        ts = 5000 + int(start * 8000)
        packets = EventSender(8000, 50).packets(digit, 100, ts)
        packets += [packets[-1]] * extra_ends
        for k, p in enumerate(packets):
            at = (
                start
                + p.offset_ms / 1000
                + (0.15 + 0.01 * k if k >= len(packets) - extra_ends else 0)
            )
            out.append((at, rtp(te, seq, p.timestamp, p.payload, ssrc, p.marker)))
            seq += 1
    return out


# --- scenarios -------------------------------------------------------------------------------


def tone_scenario(codec_a: str, pt_a: int, codec_b: str, pt_b: int) -> Scenario:
    async def run(reactor: ReactorT) -> dict[str, Any]:
        from pbx.media.codecs import CODECS
        from tests.media.audio_helpers import dominant_frequency, tone_snr_db

        call = Call(reactor, fmt(codec_a, pt_a, 101), fmt(codec_b, pt_b, 101))
        rate_a, rate_b = CODECS[codec_a].sample_rate, CODECS[codec_b].sample_rate
        a_out = audio_timeline(codec_a, pt_a, sine_at(1000, 1.2), 50, 0xA, rate_a)
        b_out = audio_timeline(codec_b, pt_b, sine_at(1000, 1.2), 50, 0xB, rate_b)
        await _both(
            call.pa.play(call.a.local_rtp_port, a_out), call.pb.play(call.b.local_rtp_port, b_out)
        )
        result = await call.finish(reactor)
        for name, phone, pt, codec in (
            ("at_b", call.pb, pt_b, codec_b),
            ("at_a", call.pa, pt_a, codec_a),
        ):
            packets = phone.packets()
            pcm = phone.audio(pt, codec)
            skip = 8000 * 3 // 10 if len(pcm) > 8000 else 0
            result[name] = {
                "pts": sorted({p.payload_type for p in packets}),
                "count": len(packets),
                "ssrcs": len({p.ssrc for p in packets}),
                "first_marker": bool(packets) and packets[0].marker,
                "seq_steps": sorted(
                    {(q.sequence - p.sequence) & 0xFFFF for p, q in pairwise(packets)}
                ),
                "freq": dominant_frequency(pcm, 8000, skip=skip) if len(pcm) > 3200 else 0,
                "snr": round(tone_snr_db(pcm[2 * skip : 2 * skip + 3200], 8000, 1000), 1)
                if len(pcm) > 3200
                else 0,
            }
        return result

    return run


async def _both(*coros: Awaitable[None]) -> None:
    from twisted.internet import defer

    await defer.gatherResults([defer.ensureDeferred(c) for c in coros])  # type: ignore[arg-type]


async def loss(reactor: ReactorT) -> dict[str, Any]:
    from tests.media.audio_helpers import dominant_frequency

    call = Call(reactor, fmt("PCMU", 0, 101), fmt("PCMA", 8, 101))
    timeline = audio_timeline("PCMU", 0, sine_at(1000, 1.2), 50, 0xA, 8000)
    for i, j in ((10, 11), (20, 22)):  # reordered on the way
        (ti, pi), (tj, pj) = timeline[i], timeline[j]
        timeline[i], timeline[j] = (ti, pj), (tj, pi)
    for lost in (31, 30, 40):  # lost on the way
        del timeline[lost]
    await call.pa.play(call.a.local_rtp_port, timeline)
    result = await call.finish(reactor)
    packets = call.pb.packets()
    pcm = call.pb.audio(8, "PCMA")
    result["count"] = len(packets)
    result["seq_steps"] = sorted({(q.sequence - p.sequence) & 0xFFFF for p, q in pairwise(packets)})
    result["freq"] = dominant_frequency(pcm, 8000, skip=8000 * 6 // 10)
    return result


def dtmf_scenario(a_te: bool, b_te: bool, inband: bool, info: bool = False) -> Scenario:
    """Phone A sends "123#" (RFC 4733 if ``not inband``, else tones) over PCMU silence."""

    async def run(reactor: ReactorT) -> dict[str, Any]:
        from pbx.media.dtmf import dtmf_sequence

        call = Call(
            reactor, fmt("PCMU", 0, 101 if a_te else None), fmt("PCMA", 8, 96 if b_te else None)
        )
        if info:
            call.bridge.deliver_as_info("B")
        if inband:
            pcm = bytes(1600) + dtmf_sequence("123#", tone_ms=100, gap_ms=150) + bytes(8000)
            frames = len(pcm) // 320
            timeline = audio_timeline("PCMU", 0, lambda rate: pcm, frames, 0xA, 8000)
        else:
            timeline = audio_timeline("PCMU", 0, silence_at(2.0), 100, 0xA, 8000)
            timeline += event_timeline(101, "123#", 0.2, 0.4, 0xA)
        b_timeline = audio_timeline("PCMA", 8, silence_at(2.0), 100, 0xB, 8000)
        await _both(
            call.pa.play(call.a.local_rtp_port, timeline),
            call.pb.play(call.b.local_rtp_port, b_timeline),
        )
        result = await call.finish(reactor, settle=0.6)
        packets = call.pb.packets()
        result["pts_at_b"] = sorted({p.payload_type for p in packets})
        result["events_at_b"] = "".join(call.pb.events(96))
        result["inband_at_b"] = inband_digits(call.pb.audio(8, "PCMA"))
        return result

    return run


async def send_digit(reactor: ReactorT) -> dict[str, Any]:
    from twisted.internet import task

    call = Call(reactor, fmt("PCMU", 0, None), fmt("opus", 111, 96))
    a_line = audio_timeline("PCMU", 0, silence_at(1.6), 80, 0xA, 8000)
    b_line = audio_timeline("opus", 111, silence_at(1.6), 80, 0xB, 48000)
    reactor.callLater(0.3, call.bridge.send_digit, "B", "5")
    reactor.callLater(0.3, call.bridge.send_digit, "A", "7", 200)
    reactor.callLater(0.8, call.bridge.send_digit, "A", "*")
    await _both(
        call.pa.play(call.a.local_rtp_port, a_line), call.pb.play(call.b.local_rtp_port, b_line)
    )
    await task.deferLater(reactor, 0.1, lambda: None)
    result = await call.finish(reactor)
    result["events_at_b"] = "".join(call.pb.events(96))
    result["inband_at_a"] = inband_digits(call.pa.audio(0, "PCMU"))
    result["pts_at_a"] = sorted({p.payload_type for p in call.pa.packets()})
    return result


async def midcall(reactor: ReactorT) -> dict[str, Any]:
    """An untouched PCMU call switched to the bridge to play an INFO digit in-band, and back."""
    call = Call(reactor, fmt("PCMU", 0), fmt("PCMU", 0), start=False)
    reactor.callLater(0.5, call.bridge.start)
    reactor.callLater(0.55, call.bridge.send_digit, "B", "9")
    reactor.callLater(1.2, call.bridge.stop)
    a_line = audio_timeline("PCMU", 0, silence_at(1.8), 90, 0xA, 8000)
    await call.pa.play(call.a.local_rtp_port, a_line)
    result = await call.finish(reactor, settle=0.2)
    ssrcs = [p.ssrc for p in call.pb.packets()]
    result["first_ssrc"], result["last_ssrc"] = ssrcs[0], ssrcs[-1]
    result["ssrcs"] = sorted(set(ssrcs))
    result["relayed"] = call.a.rtp.forwarded
    pcm = b"".join(p.payload for p in call.pb.packets())  # PCMU both ways: decode all
    from pbx.media.codecs import get_decoder

    result["inband_at_b"] = inband_digits(get_decoder("PCMU").decode(pcm))
    return result


SCENARIOS: dict[str, Scenario] = {
    "midcall": midcall,
    "opus_pcma": tone_scenario("opus", 111, "PCMA", 8),
    "g722_pcmu": tone_scenario("G722", 9, "PCMU", 0),
    "loss": loss,
    "te_to_te": dtmf_scenario(a_te=True, b_te=True, inband=False),
    "te_to_inband": dtmf_scenario(a_te=True, b_te=False, inband=False),
    "inband_to_te": dtmf_scenario(a_te=False, b_te=True, inband=True),
    "te_to_info": dtmf_scenario(a_te=True, b_te=False, inband=False, info=True),
    "inband_to_info": dtmf_scenario(a_te=False, b_te=True, inband=True, info=True),
    "send_digit": send_digit,
}


def main(name: str) -> None:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    from twisted.internet import asyncioreactor

    asyncioreactor.install(loop)
    from twisted.internet import defer
    from twisted.internet import reactor as installed

    reactor: Any = installed
    out: dict[str, Any] = {}

    def start() -> None:
        d: Any = defer.ensureDeferred(SCENARIOS[name](reactor))
        d.addCallback(out.update)
        d.addErrback(lambda f: out.update(error=f.getTraceback()))
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(start)
    reactor.callLater(30, reactor.stop)
    reactor.run()
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
