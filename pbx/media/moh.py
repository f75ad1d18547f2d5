"""Music on hold: one shared stream per music class, fanned out to every held leg.

Owns :class:`HoldMusic` (one class's stream), :class:`HoldMusicListener` (one leg hearing
it), :class:`MusicLibrary` (the classes by name, loaded from WAV files in a thread) and
:class:`HoldMusicError`.

The fan-out is FreeSWITCH's ``local_stream`` idea (and Asterisk's MOH class streams): a
stream with listeners is one :class:`~pbx.media.transcode.Tickable` on the shared 20 ms
:class:`~pbx.media.transcode.PlayoutClock`. Each tick it takes the next 20 ms of its PCM
*once*, and encodes it *once per distinct format* (codec, payload type, ptime, fmtp): the
listeners of one format form a group with one encoder, which accumulates frames for ptimes
other than 20 ms (10 to 60 ms, a packet every ptime/20 ticks on average) and encodes each
packet once for all of them. Per listener and packet what is left is one ``struct.pack``
of its own RTP header (random SSRC, sequence number and timestamp, RFC 3550 §5.1; marker bit
on its first packet, RFC 3551 §4.1) and one :meth:`~pbx.media.relay.RelaySocket.send`, which
applies the leg's SRTP ``wrap`` (each leg has its own keys). The stateful encoders (G.722,
Opus) see one continuous stream, so every listener of a group gets the same payloads.

Like a radio, the position does not depend on who listens: while the stream has listeners
it advances one frame per tick; without any it leaves the clock, and when a listener joins
again the position is recomputed from the clock time (``reactor.seconds()``): the frames
elapsed since the stream was created, modulo its length. A listener joining mid-stream
hears the music where it is, not from the start.

A listener owns its leg's ``tap`` hooks (``leg.rtp.tap``, ``leg.rtcp.tap``) while it
listens: whatever the held phone sends is dropped and counted. ``stop()`` (idempotent) gives
them back (``None``; a hook someone else has set since is left alone). ``pause()`` stops
the packets but keeps the listener (an announcement to that leg instead of the music); on
``resume()`` the timestamp jumps by the paused time and the next packet has the marker bit.

Must not import: pbx.calls, pbx.store, pbx.service, web.
"""

from __future__ import annotations

import enum
import logging
import random
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet import defer, threads

from pbx.media.audiofile import AudioFileError, read_wav_pcm
from pbx.media.codecs import Encoder, get_encoder
from pbx.media.pcm import FRAME_BYTES, FRAME_MS, RATE, SAMPLE_WIDTH, check, pad
from pbx.media.relay import MediaLeg
from pbx.media.transcode import OPUS_PTIMES, Format, PlayoutClock

log = logging.getLogger(__name__)

_HEADER = struct.Struct("!BBHII")
_PCM_PER_MS = RATE * SAMPLE_WIDTH // 1000  # 16 bytes of PCM per ms


class HoldMusicError(Exception):
    """An operation the listener's state does not allow (resume while listening...)."""


class ListenerState(enum.Enum):
    LISTENING = "listening"
    PAUSED = "paused"
    STOPPED = "stopped"


class ListenerOp(enum.Enum):
    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"


L, LOp = ListenerState, ListenerOp
LISTENER_TRANSITIONS: dict[tuple[ListenerState, ListenerOp], ListenerState] = {
    (L.LISTENING, LOp.PAUSE): L.PAUSED,
    (L.LISTENING, LOp.STOP): L.STOPPED,
    (L.PAUSED, LOp.RESUME): L.LISTENING,
    (L.PAUSED, LOp.STOP): L.STOPPED,
    (L.STOPPED, LOp.STOP): L.STOPPED,  # stop is idempotent
}


def packet_ptime(fmt: Format) -> int:
    """The ptime pbx sends ``fmt`` with: its ptime in 10 ms steps between 10 and 60 ms
    (Opus: 10, 20, 40 or 60), else 20."""
    ptime = max(10, min(60, round(fmt.ptime / 10) * 10)) if fmt.ptime else FRAME_MS
    if fmt.codec.casefold() == "opus" and ptime not in OPUS_PTIMES:
        ptime = FRAME_MS
    return ptime


FormatKey = tuple[str, int, int, int, tuple[tuple[str, str], ...]]


def format_key(fmt: Format) -> FormatKey:
    """What decides the bytes of a packet's payload and header: listeners sharing it share
    one encoder and one payload per packet."""
    fmtp = tuple(sorted((str(k), str(v)) for k, v in fmt.fmtp.items()))
    return (fmt.codec.casefold(), fmt.payload_type, fmt.clock_rate, packet_ptime(fmt), fmtp)


class _Group:
    """The listeners of one format: one encoder, one payload per packet for all of them."""

    def __init__(self, stream: HoldMusic, key: FormatKey, fmt: Format) -> None:
        self.stream = stream
        self.key = key
        self.payload_type = fmt.payload_type
        self.ptime = key[3]
        self.encoder: Encoder = get_encoder(fmt.codec, fmt.fmtp, sample_rate=RATE)
        self.step = fmt.clock_rate * self.ptime // 1000  # RTP timestamp per packet
        self.tick_ticks = fmt.clock_rate * FRAME_MS // 1000  # RTP timestamp per 20 ms
        self.chunk = self.ptime * _PCM_PER_MS  # PCM bytes per packet
        self.pending = bytearray()
        self.members: dict[int, HoldMusicListener] = {}
        self.snapshot: tuple[HoldMusicListener, ...] = ()

    def add(self, listener: HoldMusicListener) -> None:
        self.members[id(listener)] = listener
        self.snapshot = tuple(self.members.values())

    def remove(self, listener: HoldMusicListener) -> None:
        if self.members.pop(id(listener), None) is not None:
            self.snapshot = tuple(self.members.values())

    def push(self, frame: bytes) -> None:
        """This tick's frame: encode and send every packet it completes."""
        if self.chunk == FRAME_BYTES and not self.pending:
            self.emit(self.encode(frame))
            return
        pending = self.pending
        pending += frame
        while len(pending) >= self.chunk:
            payload = self.encode(bytes(pending[: self.chunk]))
            del pending[: self.chunk]
            self.emit(payload)

    def encode(self, pcm: bytes) -> bytes:
        self.stream.encodes += 1
        return self.encoder.encode(pcm)

    def emit(self, payload: bytes) -> None:
        """One packet of ``payload`` to every listener, each with its own header."""
        pack = _HEADER.pack
        step = self.step
        pt = self.payload_type
        for listener in self.snapshot:
            if listener._group is not self:  # stopped or paused earlier in this tick
                continue
            try:
                listener._send(
                    pack(0x80, listener._second, listener._seq, listener._ts, listener._ssrc)
                    + payload
                )
            except Exception:  # one broken leg must not silence every other held party
                log.exception("hold music %s: sending to %s failed", self.stream.name, listener)
                listener.stop()
                continue
            listener._second = pt
            listener._seq = (listener._seq + 1) & 0xFFFF
            listener._ts = (listener._ts + step) & 0xFFFFFFFF
            listener.packets_sent += 1


class HoldMusicListener:
    """One leg hearing a :class:`HoldMusic` stream in its own format and RTP stream."""

    __slots__ = (
        "stream",
        "leg",
        "format",
        "state",
        "done",
        "packets_sent",
        "rtp_dropped",
        "rtcp_dropped",
        "_group",
        "_send",
        "_second",
        "_seq",
        "_ts",
        "_ssrc",
        "_rtp_tap",
        "_rtcp_tap",
        "_paused_at",
    )

    def __init__(self, stream: HoldMusic, leg: MediaLeg, fmt: Format) -> None:
        self.stream = stream
        self.leg = leg
        self.format = fmt
        self.state = ListenerState.LISTENING
        self.done: defer.Deferred[str] = defer.Deferred()  # fires "stopped" once
        self.packets_sent = 0
        self.rtp_dropped = 0  # RTP the held phone sent, dropped
        self.rtcp_dropped = 0
        self._group: _Group | None = None
        self._send: Callable[[bytes], None] = leg.rtp.send
        self._ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts = random.getrandbits(32)
        self._second = fmt.payload_type | 0x80  # marker on the first packet
        self._paused_at = 0.0
        self._rtp_tap: Callable[[bytes], None] = self._drop_rtp
        self._rtcp_tap: Callable[[bytes], None] = self._drop_rtcp

    def __repr__(self) -> str:
        return f"<HoldMusicListener {self.leg.name} {self.stream.name} {self.state.value}>"

    @property
    def ssrc(self) -> int:
        return self._ssrc

    @property
    def sequence(self) -> int:
        """Sequence number of the next packet."""
        return self._seq

    @property
    def timestamp(self) -> int:
        """RTP timestamp of the next packet."""
        return self._ts

    @property
    def active(self) -> bool:
        return self.state is not ListenerState.STOPPED

    def _apply(self, op: ListenerOp) -> ListenerState:
        new = LISTENER_TRANSITIONS.get((self.state, op))
        if new is None:
            raise HoldMusicError(
                f"hold music of {self.leg.name} is {self.state.value}: cannot {op.value}"
            )
        self.state = new
        return new

    def _drop_rtp(self, data: bytes) -> None:
        self.rtp_dropped += 1

    def _drop_rtcp(self, data: bytes) -> None:
        self.rtcp_dropped += 1

    def _take_taps(self) -> None:
        self.leg.rtp.tap = self._rtp_tap
        self.leg.rtcp.tap = self._rtcp_tap

    def _give_taps(self) -> None:
        if self.leg.rtp.tap is self._rtp_tap:
            self.leg.rtp.tap = None
        if self.leg.rtcp.tap is self._rtcp_tap:
            self.leg.rtcp.tap = None

    def pause(self) -> None:
        """No more packets until :meth:`resume` (the leg hears something else meanwhile)."""
        self._apply(ListenerOp.PAUSE)
        self._paused_at = self.stream.now()
        self.stream._leave_group(self)

    def resume(self) -> None:
        """Back to the music where it is now; the RTP timestamp accounts for the pause."""
        self._apply(ListenerOp.RESUME)
        group = self.stream._join_group(self)
        paused_ticks = round((self.stream.now() - self._paused_at) * 1000 / FRAME_MS)
        self._ts = (self._ts + paused_ticks * group.tick_ticks) & 0xFFFFFFFF
        self._second = self.format.payload_type | 0x80  # a new talkspurt

    def stop(self) -> None:
        """Stop listening (idempotent); the leg's tap hooks are given back."""
        was = self.state
        self._apply(ListenerOp.STOP)
        if was is ListenerState.STOPPED:
            return
        self.stream._remove(self)
        self._give_taps()
        log.debug(
            "hold music %s: %s stopped after %d packets (dropped %d RTP, %d RTCP)",
            self.stream.name,
            self.leg.name,
            self.packets_sent,
            self.rtp_dropped,
            self.rtcp_dropped,
        )
        self.done.callback(ListenerState.STOPPED.value)


def _clock_reactor(clock: PlayoutClock) -> Any:
    reactor = getattr(clock, "_reactor", None)
    if reactor is None:
        raise ValueError("HoldMusic needs a reactor: pass reactor=")
    return reactor


class HoldMusic:
    """One music class's stream: ``pcm`` (internal format) looped, shared by its listeners."""

    def __init__(self, name: str, pcm: bytes, clock: PlayoutClock, *, reactor: Any = None) -> None:
        self.name = name
        self.clock = clock
        self._reactor = reactor if reactor is not None else _clock_reactor(clock)
        self._epoch = self._reactor.seconds()
        self._pcm = b""
        self._length = 0
        self._set_music(pcm)
        self._pos = 0
        self.running = False  # registered on the clock
        self.frames_read = 0  # frames taken from the music (one per tick while running)
        self.encodes = 0  # payloads encoded (one per format and packet)
        self._listeners: dict[int, HoldMusicListener] = {}
        self._groups: dict[FormatKey, _Group] = {}

    def _set_music(self, pcm: bytes) -> None:
        check(pcm)
        if not pcm:
            raise ValueError(f"hold music {self.name}: no audio")
        self._pcm = pad(pcm)
        self._length = len(self._pcm) // FRAME_BYTES

    def __len__(self) -> int:
        return len(self._listeners)

    def __repr__(self) -> str:
        return f"<HoldMusic {self.name} {len(self)} listeners, {len(self._groups)} formats>"

    def now(self) -> float:
        seconds: float = self._reactor.seconds()
        return seconds

    @property
    def length_frames(self) -> int:
        return self._length

    @property
    def position(self) -> int:
        """Index of the frame the next tick plays."""
        return self._pos if self.running else self._radio_position()

    @property
    def formats(self) -> int:
        """Distinct formats listening now (= encodes per 20 ms packet)."""
        return len(self._groups)

    @property
    def listeners(self) -> list[HoldMusicListener]:
        return list(self._listeners.values())

    def _radio_position(self) -> int:
        elapsed = int((self.now() - self._epoch) * 1000 / FRAME_MS + 1e-6)  # float slack
        return elapsed % self._length

    def replace(self, pcm: bytes) -> None:
        """New music for this class (an admin uploaded some); listeners stay."""
        self._set_music(pcm)
        self._pos %= self._length
        log.info("hold music %s: new music, %d s", self.name, self._length * FRAME_MS // 1000)

    # -- listeners -------------------------------------------------------------------------

    def listen(self, leg: MediaLeg, fmt: Format) -> HoldMusicListener:
        """``leg`` (whose phone speaks ``fmt``) hears this stream from the next tick on."""
        listener = HoldMusicListener(self, leg, fmt)
        self._join_group(listener)
        self._listeners[id(listener)] = listener
        listener._take_taps()
        log.debug(
            "hold music %s: %s listens (%s/%d, %d ms)",
            self.name,
            leg.name,
            fmt.codec,
            fmt.payload_type,
            packet_ptime(fmt),
        )
        return listener

    def _join_group(self, listener: HoldMusicListener) -> _Group:
        key = format_key(listener.format)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(self, key, listener.format)
        group.add(listener)
        listener._group = group
        self._update_clock()
        return group

    def _leave_group(self, listener: HoldMusicListener) -> None:
        group = listener._group
        listener._group = None
        if group is not None:
            group.remove(listener)
            if not group.members:
                del self._groups[group.key]
        self._update_clock()

    def _remove(self, listener: HoldMusicListener) -> None:
        self._listeners.pop(id(listener), None)
        self._leave_group(listener)

    def _update_clock(self) -> None:
        """On the clock while some listener is not paused; the position is kept like a
        radio's when it leaves."""
        wanted = bool(self._groups)
        if wanted and not self.running:
            self._pos = self._radio_position()
            self.running = True
            self.clock.add(self)
        elif not wanted and self.running:
            self.running = False
            self.clock.discard(self)

    # -- the clock (Tickable) --------------------------------------------------------------

    def tick(self) -> None:
        """One 20 ms step: read one frame, encode once per format, send to every listener."""
        pos = self._pos
        start = pos * FRAME_BYTES
        frame = self._pcm[start : start + FRAME_BYTES]
        self._pos = pos + 1 if pos + 1 < self._length else 0
        self.frames_read += 1
        for group in list(self._groups.values()):
            group.push(frame)

    def stop(self) -> None:
        """Stop every listener (the clock calls this if a tick failed)."""
        for listener in list(self._listeners.values()):
            listener.stop()
        self._update_clock()


# -- the library of music classes ----------------------------------------------------------

CLASS_NAME = re.compile(r"^(default|site-[A-Za-z0-9_-]+)$")


class ClassState(enum.Enum):
    UNLOADED = "unloaded"
    LOADING = "loading"
    LOADED = "loaded"
    EMPTY = "empty"  # no music files (or none readable)


@dataclass
class _MusicClass:
    name: str
    state: ClassState = ClassState.UNLOADED
    stream: HoldMusic | None = None
    source: Path | None = None  # the directory the music came from
    waiters: list[defer.Deferred[HoldMusic | None]] = field(default_factory=list)


def wav_files(directory: Path) -> list[Path]:
    """The WAV files of a music directory, sorted by name; dot-files (uploads in progress,
    ``.name.part``) are ignored."""
    try:
        entries = list(directory.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(
        (
            p
            for p in entries
            if p.suffix.lower() == ".wav" and not p.name.startswith(".") and p.is_file()
        ),
        key=lambda p: p.name,
    )


def read_music(directories: list[Path]) -> tuple[Path, bytes] | None:
    """The concatenated PCM of the first directory that has readable internal-format WAV
    files, and that directory (blocking: run it in a thread)."""
    for directory in directories:
        parts = []
        for path in wav_files(directory):
            try:
                parts.append(read_wav_pcm(path))
            except (AudioFileError, OSError) as exc:
                log.warning("hold music: %s skipped: %s", path, exc)
        pcm = b"".join(parts)
        if pcm:
            return directory, pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH]
    return None


class MusicLibrary:
    """Music classes by name: ``default`` (the first of DATA/moh/default/ and
    ``default_dirs`` that holds WAV files, e.g. /usr/share/asterisk/moh from Debian's
    asterisk-moh-opsound-wav) and ``site-<id>`` (DATA/moh/site-<id>/, uploaded by admins;
    a site without music falls back to ``default``). WAV files must be 8 kHz mono 16-bit
    (uploads are converted by :func:`pbx.media.audiofile.convert_upload`); others are skipped
    with a warning. Files are read in a thread, never on the reactor thread."""

    def __init__(
        self, reactor: Any, clock: PlayoutClock, default_dirs: list[Path], data_dir: Path
    ) -> None:
        self.reactor = reactor
        self.clock = clock
        self.default_dirs = [Path(d) for d in default_dirs]
        self.data_dir = Path(data_dir)
        self._classes: dict[str, _MusicClass] = {}
        self._warned_silent = False
        # told the class's name whenever it finished (re)loading: legs held before their
        # music was there start hearing it (the call control re-plans them)
        self.on_loaded: list[Callable[[str], None]] = []

    @staticmethod
    def check_name(name: str) -> str:
        if not CLASS_NAME.match(name):
            raise ValueError(f"not a music class name: {name!r} (default or site-<id>)")
        return name

    def directory(self, name: str) -> Path:
        """Where ``name``'s own music lives (uploads go there): DATA/moh/<name>/."""
        return self.data_dir / "moh" / self.check_name(name)

    def _directories(self, name: str) -> list[Path]:
        dirs = [self.directory(name)]
        if name == "default":
            dirs += self.default_dirs
        return dirs

    def _class(self, name: str) -> _MusicClass:
        cls = self._classes.get(self.check_name(name))
        if cls is None:
            cls = self._classes[name] = _MusicClass(name)
        return cls

    def state(self, name: str) -> ClassState:
        return self._class(name).state

    def stream(self, name: str) -> HoldMusic | None:
        """``name``'s stream; ``default``'s when ``name`` has no music; None while it is not
        loaded yet (the load starts now) or when there is no music at all (silence)."""
        cls = self._class(name)
        if cls.state is ClassState.UNLOADED:
            self._load(cls)
        if cls.stream is not None and cls.state in (ClassState.LOADED, ClassState.LOADING):
            return cls.stream  # while reloading, the old music plays on
        if cls.state is ClassState.EMPTY:
            if name != "default":
                return self.stream("default")
            if not self._warned_silent:
                self._warned_silent = True
                log.warning(
                    "no hold music: no WAV files in %s; held parties hear silence",
                    ", ".join(str(d) for d in self._directories(name)),
                )
        return None

    def load(self, name: str) -> defer.Deferred[HoldMusic | None]:
        """Load ``name`` if it is not loaded; fires with what :meth:`stream` then returns."""
        cls = self._class(name)
        if cls.state is ClassState.UNLOADED:
            self._load(cls)
        return self._after_load(cls)

    def reload(self, name: str) -> defer.Deferred[HoldMusic | None]:
        """Read ``name``'s files again (after an upload or a delete); current listeners
        keep listening and hear the new music."""
        cls = self._class(name)
        if cls.state is not ClassState.LOADING:
            self._load(cls)
        return self._after_load(cls)

    def _after_load(self, cls: _MusicClass) -> defer.Deferred[HoldMusic | None]:
        """Fires with the class's stream once it is loaded (a site without music: once
        ``default``, its fallback, is loaded too)."""
        if cls.state is ClassState.LOADING:
            waiter: defer.Deferred[HoldMusic | None] = defer.Deferred()
            cls.waiters.append(waiter)
            return waiter
        if cls.state is ClassState.EMPTY and cls.name != "default":
            return self.load("default")
        return defer.succeed(self.stream(cls.name))

    def _load(self, cls: _MusicClass) -> None:
        cls.state = ClassState.LOADING
        dirs = self._directories(cls.name)
        log.debug("hold music %s: loading from %s", cls.name, ", ".join(map(str, dirs)))
        d = threads.deferToThreadPool(self.reactor, self.reactor.getThreadPool(), read_music, dirs)
        d.addCallbacks(lambda found: self._loaded(cls, found), lambda f: self._failed(cls, f))

    def _loaded(self, cls: _MusicClass, found: tuple[Path, bytes] | None) -> None:
        if found is None:
            cls.state = ClassState.EMPTY
            cls.source = None
            log.info("hold music %s: no music files", cls.name)
        else:
            directory, pcm = found
            if cls.stream is None:
                cls.stream = HoldMusic(cls.name, pcm, self.clock, reactor=self.reactor)
            else:
                cls.stream.replace(pcm)
            cls.state = ClassState.LOADED
            cls.source = directory
            if cls.name == "default":
                self._warned_silent = False
            log.info(
                "hold music %s: %d s from %s",
                cls.name,
                len(pcm) // (RATE * SAMPLE_WIDTH),
                directory,
            )
        self._wake(cls)

    def _failed(self, cls: _MusicClass, failure: Any) -> None:
        log.error("hold music %s: loading failed: %s", cls.name, failure.getErrorMessage())
        cls.state = ClassState.EMPTY
        self._wake(cls)

    def _wake(self, cls: _MusicClass) -> None:
        waiters, cls.waiters = cls.waiters, []
        for waiter in waiters:
            self._after_load(cls).chainDeferred(waiter)
        for callback in list(self.on_loaded):
            try:
                callback(cls.name)
            except Exception:
                log.exception("hold music %s: a listener of the load failed", cls.name)
