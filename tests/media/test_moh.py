"""HoldMusic fan-out (one read, one encode per format, per-listener RTP) and MusicLibrary."""

from __future__ import annotations

import logging
import threading
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet.task import Clock

from pbx.media import moh as moh_module
from pbx.media.audiofile import pcm_to_wav
from pbx.media.codecs import get_decoder, get_encoder
from pbx.media.dtmf import goertzel_power
from pbx.media.moh import (
    ClassState,
    HoldMusic,
    HoldMusicError,
    ListenerState,
    MusicLibrary,
    format_key,
)
from pbx.media.pcm import FRAME_BYTES
from pbx.media.transcode import PlayoutClock
from tests.media.source_helpers import (
    G722,
    OPUS,
    PCMA,
    PCMU,
    Fmt,
    ThreadedClock,
    header,
    leg,
    sine,
)

TICK = 0.02
MUSIC = sine(1000, 2000)  # 2 s of a 1 kHz "music"


class CountingBytes(bytes):
    """Music that counts how often a frame is read out of it."""

    reads = 0

    def __getitem__(self, item: Any) -> Any:
        CountingBytes.reads += 1
        return super().__getitem__(item)


def stream(pcm: bytes = MUSIC) -> tuple[HoldMusic, Clock, PlayoutClock]:
    reactor = Clock()
    clock = PlayoutClock(reactor)
    return HoldMusic("default", pcm, clock), reactor, clock


def ticks(reactor: Clock, count: int) -> None:
    for _ in range(count):
        reactor.advance(TICK)


def indexed_music(frames: int) -> bytes:
    """Music whose frame k is the constant sample 16*k (PCMU keeps it recognisable)."""
    return b"".join(array("h", [16 * k] * 160).tobytes() for k in range(frames))


def test_100_listeners_in_3_codecs_cost_one_read_and_3_encodes_per_tick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encodes: Counter[str] = Counter()

    def counting_encoder(name: str, fmtp: Any = None, *, sample_rate: int | None = None) -> Any:
        encoder = get_encoder(name, fmtp, sample_rate=sample_rate)

        class Spy:
            def encode(self, pcm: bytes) -> bytes:
                encodes[name] += 1
                return encoder.encode(pcm)

        return Spy()

    monkeypatch.setattr(moh_module, "get_encoder", counting_encoder)
    music, reactor, _ = stream(CountingBytes(MUSIC))
    formats = [PCMU, PCMA, G722]
    ports = []
    for i in range(100):
        media, port = leg(f"held/{i}")
        music.listen(media, formats[i % 3])
        ports.append(port)
    assert len(music) == 100 and music.formats == 3
    CountingBytes.reads = 0
    ticks(reactor, 50)
    assert CountingBytes.reads == 50 and music.frames_read == 50
    assert encodes == {"PCMU": 50, "PCMA": 50, "G722": 50}
    assert music.encodes == 150
    assert all(len(port.sent) == 50 for port in ports)


def test_each_listener_has_its_own_continuous_rtp_stream() -> None:
    music, reactor, _ = stream()
    legs = [leg(f"held/{i}") for i in range(6)]
    for i, (media, _) in enumerate(legs):
        music.listen(media, (PCMU, OPUS)[i % 2])
    ticks(reactor, 100)
    ssrcs = set()
    for i, (_, port) in enumerate(legs):
        headers = [header(p) for p in port.sent]
        assert len(headers) == 100
        markers = [h[0] for h in headers]
        assert markers == [True] + [False] * 99
        assert {h[1] for h in headers} == {(0, 111)[i % 2]}
        step = (160, 960)[i % 2]
        for (_, _, seq0, ts0, ssrc0), (_, _, seq1, ts1, ssrc1) in zip(
            headers, headers[1:], strict=False
        ):
            assert seq1 == (seq0 + 1) & 0xFFFF
            assert ts1 == (ts0 + step) & 0xFFFFFFFF
            assert ssrc1 == ssrc0
        ssrcs.add(headers[0][4])
    assert len(ssrcs) == 6


@pytest.mark.parametrize("fmt", [PCMU, PCMA, G722, OPUS], ids=lambda f: f.codec)
def test_every_listener_hears_the_music(fmt: Fmt) -> None:
    music, reactor, _ = stream()
    media, port = leg()
    music.listen(media, fmt)
    ticks(reactor, 50)
    decoder = get_decoder(fmt.codec, fmt.fmtp, sample_rate=8000)
    pcm = array("h", b"".join(decoder.decode(p[12:]) for p in port.sent[5:]))
    assert len(pcm) == 45 * 160
    assert goertzel_power(pcm, 1000, 8000) > 1000 * goertzel_power(pcm, 1500, 8000)


@pytest.mark.parametrize(("ptime", "samples"), [
    (40, 320),
    (60, 480),
    (30, 240),  # 1.5 ticks a packet: none, one, one, none, ...
    (10, 80),  # two packets a tick
])  # fmt: skip
def test_other_ptimes_are_accumulated_and_encoded_once_per_packet(ptime: int, samples: int) -> None:
    music, reactor, _ = stream()
    legs = [leg(f"p{i}") for i in range(3)]
    for media, _ in legs:
        music.listen(media, Fmt("PCMU", 0, ptime=ptime))
    sent_after = []
    for _ in range(12):
        ticks(reactor, 1)
        sent_after.append(len(legs[0][1].sent))
    per_tick = [b - a for a, b in zip([0, *sent_after], sent_after, strict=False)]
    expected = {40: [0, 1] * 6, 60: [0, 0, 1] * 4, 30: [0, 1, 1] * 4, 10: [2] * 12}[ptime]
    assert per_tick == expected
    packets = legs[0][1].sent
    assert all(len(p) == 12 + samples for p in packets)
    stamps = [header(p)[3] for p in packets]
    assert all((b - a) & 0xFFFFFFFF == samples for a, b in zip(stamps, stamps[1:], strict=False))
    assert music.encodes == len(packets)  # once for all three listeners
    assert all(
        port.sent[i][12:] == packets[i][12:] for _, port in legs for i in range(len(packets))
    )


def test_a_listener_leaving_mid_tick_stops_cleanly() -> None:
    music, reactor, clock = stream()
    legs = [leg(f"held/{i}") for i in range(4)]
    listeners = [music.listen(media, PCMU) for media, _ in legs]
    victim = listeners[2]

    def wrap_and_hang_up(packet: bytes) -> bytes:  # leg 1's send ends leg 2's hold mid-tick
        if victim.active:
            victim.stop()
        return packet

    ticks(reactor, 3)
    legs[1][0].rtp.wrap = wrap_and_hang_up
    ticks(reactor, 1)
    assert victim.state is ListenerState.STOPPED and len(music) == 3
    assert len(legs[2][1].sent) == 3  # nothing in the tick it left in, nothing after
    ticks(reactor, 5)
    assert [len(port.sent) for _, port in legs] == [9, 9, 3, 9]
    assert legs[2][0].rtp.tap is None and legs[2][0].rtcp.tap is None
    victim.stop()  # idempotent
    for listener in listeners:
        listener.stop()
    assert len(music) == 0 and not music.running and len(clock) == 0


def test_a_send_that_raises_stops_only_that_listener(caplog: pytest.LogCaptureFixture) -> None:
    music, reactor, _ = stream()
    (good, good_port), (bad, _) = leg("good"), leg("bad")
    music.listen(good, PCMU)
    broken = music.listen(bad, PCMU)

    def explode(packet: bytes) -> bytes:
        raise RuntimeError("SRTP session gone")

    bad.rtp.wrap = explode
    with caplog.at_level(logging.ERROR):
        ticks(reactor, 3)
    assert broken.state is ListenerState.STOPPED and len(good_port.sent) == 3


def test_joining_mid_stream_starts_where_the_music_is() -> None:
    music, reactor, _ = stream(indexed_music(100))
    first, first_port = leg("first")
    music.listen(first, PCMU)
    ticks(reactor, 10)
    assert music.position == 10
    second, second_port = leg("second")
    music.listen(second, PCMU)
    ticks(reactor, 1)
    ulaw = get_encoder("PCMU")
    expected = ulaw.encode(array("h", [160] * 160).tobytes())  # frame 10
    assert second_port.sent[0][12:] == first_port.sent[10][12:] == expected


def test_without_listeners_the_position_runs_on_with_the_clock_like_a_radio() -> None:
    music, reactor, clock = stream(indexed_music(100))  # 2 s of music
    media, port = leg()
    listener = music.listen(media, PCMU)
    ticks(reactor, 5)
    listener.stop()
    assert not music.running and len(clock) == 0
    reactor.advance(3.0)  # off the clock for 3 s: 8.1 s since it began
    assert music.position == 155 % 100  # 155 frames since it was created
    again, again_port = leg("again")
    music.listen(again, PCMU)
    ticks(reactor, 1)
    ulaw = get_encoder("PCMU")
    assert again_port.sent[0][12:] == ulaw.encode(array("h", [16 * 55] * 160).tobytes())
    assert header(again_port.sent[0])[0]  # a new listener's first packet has the marker


def test_srtp_wrap_is_applied_per_listener_to_its_plain_packet() -> None:
    music, reactor, _ = stream()
    legs = [leg(f"srtp/{i}") for i in range(3)]
    plain: dict[int, list[bytes]] = {i: [] for i in range(3)}
    for i, (media, _) in enumerate(legs):

        def wrap(packet: bytes, i: int = i) -> bytes:
            plain[i].append(packet)
            return packet + bytes([0xA0 + i]) * 10  # a per-leg "auth tag"

        media.rtp.wrap = wrap
        music.listen(media, PCMA)
    ticks(reactor, 4)
    for i, (_, port) in enumerate(legs):
        assert [p[:-10] for p in port.sent] == plain[i]
        assert all(p.endswith(bytes([0xA0 + i]) * 10) for p in port.sent)
        assert all(len(p) == 12 + 160 for p in plain[i])


def test_what_the_held_phone_sends_is_dropped_and_counted() -> None:
    music, reactor, _ = stream()
    media, _ = leg()
    media.expect("127.0.0.1")
    peer, peer_port = leg("peer")
    media.rtp.peer = peer.rtp  # even while bridged, hold music owns the leg's hooks
    listener = music.listen(media, PCMU)
    for _ in range(3):
        media.rtp.datagramReceived(b"\x80\x00" + bytes(170), ("127.0.0.1", 40000))
    media.rtcp.datagramReceived(b"\x81\xc8" + bytes(26), ("127.0.0.1", 40001))
    assert (listener.rtp_dropped, listener.rtcp_dropped) == (3, 1)
    assert peer_port.sent == []
    other_tap = print  # someone else's hook set since: stop leaves it
    media.rtcp.tap = other_tap
    listener.stop()
    assert media.rtp.tap is None and media.rtcp.tap is other_tap


def test_pause_stops_packets_and_resume_jumps_the_timestamp() -> None:
    music, reactor, _ = stream()
    media, port = leg()
    listener = music.listen(media, PCMU)
    ticks(reactor, 5)
    listener.pause()
    assert not music.running and len(music) == 1
    ticks(reactor, 10)
    assert len(port.sent) == 5
    with pytest.raises(HoldMusicError):
        listener.pause()
    listener.resume()
    ticks(reactor, 2)
    before, after = header(port.sent[4]), header(port.sent[5])
    assert after[0] and after[2] == (before[2] + 1) & 0xFFFF
    assert (after[3] - before[3]) & 0xFFFFFFFF == 160 * 11  # 10 ticks paused + 1
    seen: list[str] = []
    listener.done.addCallback(seen.append)
    listener.stop()
    assert seen == ["stopped"]
    with pytest.raises(HoldMusicError):
        listener.resume()


def test_the_stream_is_on_the_clock_only_while_it_has_listeners() -> None:
    music, reactor, clock = stream()
    assert len(clock) == 0
    a, b = leg("a")[0], leg("b")[0]
    la, lb = music.listen(a, PCMU), music.listen(b, G722)
    assert len(clock) == 1 and music.running
    la.stop()
    assert len(clock) == 1 and music.formats == 1
    lb.stop()
    assert len(clock) == 0 and music.formats == 0
    music.listen(a, PCMU)
    music.stop()  # what the clock does when a tick failed
    assert len(music) == 0 and len(clock) == 0


def test_formats_are_grouped_by_codec_payload_type_ptime_and_fmtp() -> None:
    assert format_key(Fmt("PCMU", 0)) == format_key(Fmt("pcmu", 0))
    assert format_key(Fmt("PCMU", 0)) != format_key(Fmt("PCMU", 0, ptime=30))
    assert format_key(Fmt("opus", 111, 48000)) != format_key(Fmt("opus", 96, 48000))
    assert format_key(Fmt("opus", 111, 48000, {"useinbandfec": "1"})) != format_key(OPUS)
    assert format_key(Fmt("opus", 111, 48000, ptime=30)) == format_key(OPUS)  # not for Opus


def test_a_thousand_listeners_fit_in_a_tick_with_room_to_spare() -> None:
    music, _, _ = stream()
    for i in range(1000):
        media, _ = leg(f"held/{i}")
        music.listen(media, (PCMU, PCMA, G722)[i % 3])
    best = min(_timed(music.tick) for _ in range(5))
    assert best < 0.020, f"{best * 1000:.1f} ms for 1,000 listeners (fake sockets)"


def _timed(fn: Any) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def test_empty_music_is_refused() -> None:
    with pytest.raises(ValueError):
        stream(b"")


# -- MusicLibrary ------------------------------------------------------------------------------


@pytest.fixture
def reactor() -> Iterator[ThreadedClock]:
    clock = ThreadedClock()
    yield clock
    clock.close()


def write_wav(path: Path, pcm: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pcm_to_wav(pcm))


def frames_of(music: HoldMusic, count: int) -> bytes:
    return music._pcm[: count * FRAME_BYTES]


def library(reactor: ThreadedClock, tmp_path: Path, system: Path | None = None) -> MusicLibrary:
    system = system if system is not None else tmp_path / "usr-share-asterisk-moh"
    return MusicLibrary(reactor, PlayoutClock(reactor), [system], tmp_path / "data")


def test_a_class_loads_in_a_thread_and_is_none_until_then(
    reactor: ThreadedClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_wav(tmp_path / "data/moh/site-7/b.wav", b"\x02\x00" * 160)
    write_wav(tmp_path / "data/moh/site-7/a.wav", b"\x01\x00" * 160)
    write_wav(tmp_path / "data/moh/site-7/.c.wav", b"\x03\x00" * 160)  # an upload in progress
    (tmp_path / "data/moh/site-7/notes.txt").write_text("not music")
    readers: list[int] = []
    read = moh_module.read_music

    def spy(dirs: list[Path]) -> tuple[Path, bytes] | None:
        readers.append(threading.get_ident())
        return read(dirs)

    monkeypatch.setattr(moh_module, "read_music", spy)
    music = library(reactor, tmp_path)
    assert music.stream("site-7") is None  # not loaded: the load starts
    assert music.state("site-7") is ClassState.LOADING
    reactor.drain()
    assert readers and readers[0] != threading.get_ident()
    found = music.stream("site-7")
    assert found is not None and found.name == "site-7"
    assert frames_of(found, 2) == b"\x01\x00" * 160 + b"\x02\x00" * 160  # sorted, no dot-file
    assert found.length_frames == 2


def test_default_prefers_data_moh_default_then_the_system_music(
    reactor: ThreadedClock, tmp_path: Path
) -> None:
    write_wav(tmp_path / "usr-share-asterisk-moh/x.wav", b"\x05\x00" * 160)
    music = library(reactor, tmp_path)
    default = reactor.wait(music.load("default"))
    assert default is not None and frames_of(default, 1) == b"\x05\x00" * 160
    write_wav(tmp_path / "data/moh/default/own.wav", b"\x06\x00" * 160)
    reloaded = reactor.wait(music.reload("default"))
    assert reloaded is default and frames_of(default, 1) == b"\x06\x00" * 160


def test_a_site_without_music_falls_back_to_default(reactor: ThreadedClock, tmp_path: Path) -> None:
    write_wav(tmp_path / "usr-share-asterisk-moh/x.wav", b"\x05\x00" * 160)
    music = library(reactor, tmp_path)
    default = reactor.wait(music.load("default"))
    assert reactor.wait(music.load("site-9")) is default
    assert music.stream("site-9") is default
    assert music.state("site-9") is ClassState.EMPTY


def test_no_music_at_all_is_silence_and_one_warning(
    reactor: ThreadedClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    music = library(reactor, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pbx.media.moh"):
        assert reactor.wait(music.load("site-1")) is None
        assert music.stream("default") is None
        assert music.stream("site-1") is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "silence" in warnings[0].getMessage()


def test_reload_after_an_upload_plays_the_new_music_to_current_listeners(
    reactor: ThreadedClock, tmp_path: Path
) -> None:
    write_wav(tmp_path / "data/moh/site-3/old.wav", indexed_music(10))
    music = library(reactor, tmp_path)
    site: HoldMusic = reactor.wait(music.load("site-3"))
    assert isinstance(site, HoldMusic)
    media, port = leg()
    listener = site.listen(media, PCMU)
    write_wav(tmp_path / "data/moh/site-3/new.wav", sine(1000, 1000))
    (tmp_path / "data/moh/site-3/old.wav").unlink()
    assert reactor.wait(music.reload("site-3")) is site
    assert music.stream("site-3") is site and listener.active
    assert site.length_frames == 50
    ticks(reactor, 1)
    assert len(port.sent) == 1  # the listener plays on with the new music


def test_files_that_are_not_internal_format_are_skipped(
    reactor: ThreadedClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import io

    import numpy as np
    import soundfile

    out = io.BytesIO()
    soundfile.write(out, np.zeros(4410, dtype=np.float32), 44100, format="WAV")
    (tmp_path / "data/moh/site-2").mkdir(parents=True)
    (tmp_path / "data/moh/site-2/cd.wav").write_bytes(out.getvalue())
    write_wav(tmp_path / "data/moh/site-2/ok.wav", b"\x01\x00" * 320)
    music = library(reactor, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pbx.media.moh"):
        site = reactor.wait(music.load("site-2"))
    assert site is not None and site.length_frames == 2
    assert any("cd.wav" in r.getMessage() for r in caplog.records)


def test_class_names_cannot_leave_the_moh_directory(reactor: ThreadedClock, tmp_path: Path) -> None:
    music = library(reactor, tmp_path)
    for name in ("../etc", "site-", "site-1/../../x", "other", ".hidden"):
        with pytest.raises(ValueError):
            music.stream(name)
    assert music.directory("site-42") == tmp_path / "data/moh/site-42"


@pytest.mark.skipif(
    not Path("/usr/share/asterisk/moh").is_dir(),
    reason="Debian package asterisk-moh-opsound-wav not installed",
)
def test_the_debian_music_loads_as_the_default(reactor: ThreadedClock, tmp_path: Path) -> None:
    music = library(reactor, tmp_path, system=Path("/usr/share/asterisk/moh"))
    default = reactor.wait(music.load("default"))
    assert default is not None
    assert default.length_frames * 0.02 > 600  # five pieces, about 18 minutes


def test_the_library_tells_its_listeners_when_a_class_has_loaded(
    reactor: ThreadedClock, tmp_path: Path
) -> None:
    write_wav(tmp_path / "data/moh/site-3/a.wav", b"\x01\x00" * 160)
    music = library(reactor, tmp_path)
    loaded: list[tuple[str, bool]] = []
    music.on_loaded.append(lambda name: loaded.append((name, music.stream(name) is not None)))
    assert music.stream("site-3") is None
    reactor.drain()
    assert loaded == [("site-3", True)]  # told once the stream is there, not before
