"""Calls between two real baresip phones through pbx: audio, codecs, DTMF, CDR.

Both phones run in one private network namespace with the server (marker ``netns``; MD5-only
server because libre answers only MD5). Phone A (ext 3001) plays a 1 kHz sine, phone B
(ext 3002, ``answermode=auto``) a 440 Hz sine, each from a 30 s WAV through ``aufile`` (aufile
ends the call at end of file, and in baresip 1.0.0 it does not resample: the WAV has the codec's
audio rate, 16 kHz for G.722). Each phone records what it DECODED from the network with
baresip's ``sndfile`` module (``dump-*-dec.wav`` in ``snd_path``), and the test finds the
dominant frequency of that recording with Goertzel filters (pbx.media.dtmf.goertzel_power).
DTMF is also checked on the wire (tcpdump on pbx's media ports): the telephone-event packets
leave pbx byte for byte as they came in.

pbx anchors media (pbx/calls/switch.py, pbx/calls/mediapath.py): when the phones share a codec
(PCMU<->PCMU, G.722<->G.722) RTP is relayed untouched and RFC 4733 DTMF arrives byte for byte
as sent; an Opus-only caller and a PCMA-only callee have none in common, so pbx offers the
callee the codecs it can transcode, and the test proves by the tone frequencies that audio
crosses pbx's transcoding bridge both ways.
"""

from __future__ import annotations

import csv
import io
import math
import time
import wave
from array import array
from collections.abc import Callable
from pathlib import Path

import pytest

from pbx.media.dtmf import TelephoneEvent, event_to_digit, goertzel_power

from .harness.baresip import Baresip, BaresipAccount, Event
from .harness.linphone import Linphone
from .harness.pbx_server import PbxServer
from .harness.rtp_capture import UdpCapture, UdpPacket, capture_unavailable

CALLER, CALLEE = "3001", "3002"
PASSWORDS = {CALLER: "pw-3001-alice", CALLEE: "pw-3002-bob"}
CALLER_TONE, CALLEE_TONE = 1000.0, 440.0
TALK_SECONDS = 3.0
# baresip 1.0.0 reads a bare name in audio_codecs as NAME/8000/1; G.722 and opus are registered
# at their audio rates, and a name it cannot find is dropped -- the account then offers EVERY
# codec -- so the rate/channels must be given
G722, OPUS = "G722/16000/1", "opus/48000/2"
# aufile does not resample: its WAV must have the (first) codec's audio rate and channels
WAV_FORMAT = {"PCMU": (8000, 1), "PCMA": (8000, 1), G722: (16000, 1), OPUS: (48000, 2)}

BaresipFactory = Callable[..., Baresip]

pytestmark = pytest.mark.netns


# -- audio helpers -------------------------------------------------------------------------------


def write_sine_wav(
    path: Path, freq: float, rate: int = 8000, channels: int = 1, seconds: int = 30
) -> Path:
    """A 16-bit sine WAV, long enough that aufile never reaches its end during a test."""
    period = [int(8000 * math.sin(2 * math.pi * freq * i / rate)) for i in range(rate)]
    frames = array("h", [v for v in period for _ in range(channels)]).tobytes()
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(frames * seconds)  # freq is a whole number: 1 s loops seamlessly
    return path


def read_wav(path: Path, timeout: float = 3.0) -> tuple[list[int], int]:
    """(first-channel samples, sample rate) of a 16-bit WAV; waits while the phone is still
    finishing the file (libsndfile writes the chunk headers when it closes it)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with wave.open(str(path), "rb") as src:
                assert src.getsampwidth() == 2, f"{path}: {src.getsampwidth() * 8}-bit"
                channels, rate = src.getnchannels(), src.getframerate()
                samples = array("h", src.readframes(src.getnframes()))
            return list(samples[::channels]), rate
        except (wave.Error, EOFError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def rms(samples: list[int]) -> float:
    return math.sqrt(sum(s * s for s in samples) / max(1, len(samples)))


def spectrum(samples: list[int], rate: int, step: float = 20.0) -> dict[float, float]:
    """Goertzel power every ``step`` Hz from 100 Hz to 3.8 kHz (the telephone band)."""
    freqs = [100.0 + step * i for i in range(int((3800 - 100) / step) + 1)]
    return {f: goertzel_power(samples, f, rate) for f in freqs}


def loudest_window(samples: list[int], rate: int, seconds: float = 0.25) -> list[int]:
    """The ``seconds`` of the recording with the most energy (skips silence before media)."""
    size = int(rate * seconds)
    starts = range(0, max(1, len(samples) - size), size // 2)
    return max((samples[s : s + size] for s in starts), key=rms)


def recording(agent: Baresip, timeout: float = 5.0) -> Path:
    """The one dump-*-dec.wav (what the phone decoded) in the agent's snd_path."""
    folder = Path(agent.extra_config["snd_path"])
    deadline = time.monotonic() + timeout
    while True:
        found = sorted(folder.glob("dump-*-dec.wav"))
        if len(found) == 1 and found[0].stat().st_size > 44:
            return found[0]
        if time.monotonic() > deadline:
            names = sorted(p.name for p in folder.iterdir())
            raise AssertionError(f"{agent.name}: expected one dump-*-dec.wav, found {names}")
        time.sleep(0.1)


def assert_hears(agent: Baresip, freq: float, other: float, rate: int | None = None) -> None:
    """The phone's decoded audio is a clear ``freq`` tone: the loudest bin, far above ``other``
    (the phone's own tone: pbx must not reflect it back) and not silence. ``rate`` is the
    decoder's sample rate the recording must have (16000 proves G.722 was decoded)."""
    samples, got_rate = read_wav(recording(agent))
    assert rate is None or got_rate == rate, f"{agent.name} decoded at {got_rate} Hz, not {rate}"
    rate = got_rate
    assert len(samples) >= rate * (TALK_SECONDS - 1), f"{agent.name}: only {len(samples)} samples"
    window = loudest_window(samples, rate)
    assert rms(window) > 500, f"{agent.name}: recording is silent (rms {rms(window):.0f})"
    powers = spectrum(window, rate)
    peak = max(powers, key=lambda f: powers[f])
    assert abs(peak - freq) <= 20, f"{agent.name} hears {peak:g} Hz, expected {freq:g} Hz"
    assert powers[peak] > 100 * goertzel_power(window, other, rate), (
        f"{agent.name}: {other:g} Hz is within 20 dB of {freq:g} Hz"
    )


# -- set-up --------------------------------------------------------------------------------------


@pytest.fixture
def pbx(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    """A started MD5-only pbx with users 3001 and 3002."""
    server = pbx_factory(md5_only=True)
    for ext, password in PASSWORDS.items():
        server.add_user(ext, password)
    return server


def phone(
    baresip_factory: BaresipFactory,
    tmp_path: Path,
    pbx: PbxServer,
    ext: str,
    codecs: str,
    tone: float,
    **params: str,
) -> Baresip:
    """A registered baresip for ``ext`` offering only ``codecs``, playing ``tone`` and
    recording what it decodes into tmp_path/rec-EXT."""
    records = tmp_path / f"rec-{ext}"
    records.mkdir()
    rate, channels = WAV_FORMAT[codecs.split(",")[0]]
    wav = write_sine_wav(tmp_path / f"tone-{ext}.wav", tone, rate, channels)
    account = BaresipAccount(
        ext, PASSWORDS[ext], pbx.sip_port, params={"audio_codecs": codecs, **params}
    )
    agent = baresip_factory(
        [account],
        name=f"phone-{ext}",
        audio_file=wav,
        extra_modules=["g722.so", "opus.so", "sndfile.so"],
        extra_config={"snd_path": str(records)},
    )
    agent.wait_registered(account, timeout=10)
    return agent


def call(
    baresip_factory: BaresipFactory,
    tmp_path: Path,
    pbx: PbxServer,
    caller_codecs: str,
    callee_codecs: str,
) -> tuple[Baresip, Baresip]:
    """A calls B (B answers automatically); returns them once both report the call up."""
    a = phone(baresip_factory, tmp_path, pbx, CALLER, caller_codecs, CALLER_TONE)
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, callee_codecs, CALLEE_TONE, answermode="auto")
    a.dial(f"sip:{CALLEE}@127.0.0.1:{pbx.sip_port}")
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    return a, b


def hang_up(a: Baresip, b: Baresip) -> None:
    a.hangup()
    a.wait_event("CALL_CLOSED", timeout=5)
    b.wait_event("CALL_CLOSED", timeout=5)


def cdr(pbx: PbxServer, timeout: float = 5.0) -> list[dict[str, str]]:
    """``pbx cdr --csv`` once no record is 'open' any more."""
    deadline = time.monotonic() + timeout
    while True:
        out = pbx.cli("cdr", "--csv", check=True).stdout
        rows = list(csv.DictReader(io.StringIO(out)))
        if (rows and all(r["disposition"] != "open" for r in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def assert_answered_record(pbx: PbxServer, codec: str) -> None:
    (row,) = cdr(pbx)
    assert row["disposition"] == "answered", row
    assert (row["caller"], row["dialled"], row["callee"]) == (CALLER, CALLEE, CALLEE), row
    assert (row["caller_codec"], row["callee_codec"]) == (codec, codec), row
    assert row["hangup_side"] == "caller" and row["hangup_cause"] == "BYE", row
    assert TALK_SECONDS - 0.5 <= float(row["duration"]) <= TALK_SECONDS + 3, row


# -- tests ---------------------------------------------------------------------------------------


def test_pcmu_call_carries_each_phones_tone_to_the_other_and_records_pcmu_both_sides(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a, b = call(baresip_factory, tmp_path, pbx, "PCMU", "PCMU")
    time.sleep(TALK_SECONDS)
    hang_up(a, b)

    assert_hears(b, CALLER_TONE, other=CALLEE_TONE, rate=8000)
    assert_hears(a, CALLEE_TONE, other=CALLER_TONE, rate=8000)
    assert_answered_record(pbx, "PCMU")


def test_g722_call_carries_each_phones_tone_to_the_other_and_records_g722_both_sides(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a, b = call(baresip_factory, tmp_path, pbx, G722, G722)
    time.sleep(TALK_SECONDS)
    hang_up(a, b)

    assert_hears(b, CALLER_TONE, other=CALLEE_TONE, rate=16000)
    assert_hears(a, CALLEE_TONE, other=CALLER_TONE, rate=16000)
    assert_answered_record(pbx, "G722")


def _telephone_events(
    packets: list[UdpPacket], pbx_ports: tuple[int, int], inbound: bool
) -> list[bytes]:
    """Whole RTP datagrams with payload type 101 (telephone-event, as both phones offer it)
    going into pbx's media ports (inbound) or out of them."""
    low, high = pbx_ports
    port_of = (lambda p: p.dst[1]) if inbound else (lambda p: p.src[1])
    return [
        p.payload
        for p in packets
        if low <= port_of(p) <= high and len(p.payload) >= 16 and p.payload[1] & 0x7F == 101
    ]


def test_rfc4733_digits_from_the_caller_reach_the_callee_once_each_and_in_order(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    reason = capture_unavailable()
    if reason is not None:
        pytest.skip(reason)
    assert pbx.rtp_ports is not None
    digits = ["1", "2", "3", "#"]
    with UdpCapture(tmp_path / "media.pcap", *pbx.rtp_ports) as capture:
        a, b = call(baresip_factory, tmp_path, pbx, "PCMU", "PCMU")
        for digit in digits:
            a.command("sndcode", digit)
            time.sleep(0.4)
        time.sleep(1.0)  # the last digit's end packets
        hang_up(a, b)
        time.sleep(0.2)

    got = [str(e.get("param")) for e in b.events if e.get("type") == "CALL_DTMF_START"]
    assert got == digits
    # on the wire: pbx relays the telephone-event packets untouched (RFC 4733 end to end)
    sent = _telephone_events(capture.packets(), pbx.rtp_ports, inbound=True)
    relayed = _telephone_events(capture.packets(), pbx.rtp_ports, inbound=False)
    assert sent and relayed == sent
    ends = [TelephoneEvent.parse(d[12 + 4 * (d[0] & 0x0F) :]) for d in relayed]  # after CSRCs
    ended = [event_to_digit(e.event) for e in ends if e.end]
    assert [d for i, d in enumerate(ended) if i == 0 or d != ended[i - 1]] == digits


def _first_of(agent: Baresip, types: tuple[str, ...], timeout: float) -> Event | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in agent.events:
            if event.get("type") in types:
                return event
        time.sleep(0.1)
    return None


def test_opus_caller_is_heard_by_a_pcma_only_callee_through_transcoding(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a = phone(baresip_factory, tmp_path, pbx, CALLER, OPUS, CALLER_TONE)
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, "PCMA", CALLEE_TONE, answermode="auto")
    a.dial(f"sip:{CALLEE}@127.0.0.1:{pbx.sip_port}")
    first = _first_of(a, ("CALL_ESTABLISHED", "CALL_CLOSED"), timeout=10)
    assert first is not None and first.get("type") == "CALL_ESTABLISHED", first
    time.sleep(TALK_SECONDS)
    hang_up(a, b)

    assert_hears(b, CALLER_TONE, other=CALLEE_TONE, rate=8000)
    assert_hears(a, CALLEE_TONE, other=CALLER_TONE)
    (row,) = cdr(pbx)
    assert (row["caller_codec"], row["callee_codec"]) == ("opus", "PCMA"), row


def test_rfc4733_digits_cross_the_transcoding_bridge_once_each_and_in_order(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """Opus caller, PCMA callee: the bridge re-sends each digit as pbx's own RFC 4733 event."""
    a = phone(baresip_factory, tmp_path, pbx, CALLER, OPUS, CALLER_TONE)
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, "PCMA", CALLEE_TONE, answermode="auto")
    a.dial(f"sip:{CALLEE}@127.0.0.1:{pbx.sip_port}")
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    digits = ["1", "2", "3", "#"]
    for digit in digits:
        a.command("sndcode", digit)
        time.sleep(0.4)
    time.sleep(1.0)
    hang_up(a, b)

    got = [str(e.get("param")) for e in b.events if e.get("type") == "CALL_DTMF_START"]
    assert got == digits


def test_sip_info_digits_from_linphone_reach_a_baresip_callee_as_rfc4733_once_each_in_order(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    linphone_factory: Callable[..., Linphone],
    tmp_path: Path,
) -> None:
    """linphone-daemon with ``use_info=1`` sends each digit as a SIP INFO
    (application/dtmf-relay); pbx answers 200 and plays it to B as RFC 4733 events."""
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, "PCMU", CALLEE_TONE, answermode="auto")
    caller = linphone_factory(sip_options={"use_info": "1", "use_rfc2833": "0"})
    reg_id = caller.register(CALLER, PASSWORDS[CALLER], pbx.sip_port)
    caller.wait_registered(reg_id, timeout=10)
    caller.call(f"sip:{CALLEE}@127.0.0.1:{pbx.sip_port}")
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    caller.wait_event("LinphoneCallStreamsRunning", timeout=10)
    digits = ["1", "2", "3", "#"]
    for digit in digits:
        assert caller.command(f"dtmf {digit}").ok
        time.sleep(0.4)
    time.sleep(1.0)
    caller.terminate()
    b.wait_event("CALL_CLOSED", timeout=5)

    got = [str(e.get("param")) for e in b.events if e.get("type") == "CALL_DTMF_START"]
    assert got == digits
    log = (pbx.data_dir / "pbx.log").read_text(encoding="utf-8", errors="replace")
    infos = [
        line.rsplit("INFO digit ", 1)[1][0] for line in log.splitlines() if "INFO digit" in line
    ]
    assert infos == digits  # each digit came as an INFO, not as RFC 4733 from linphone


def test_echo_test_number_sends_the_callers_tone_back_and_hash_ends_the_call(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """*43 is answered by pbx itself (a media endpoint on the caller's leg): A hears its own
    1 kHz tone; '#' (RFC 4733) makes pbx hang up; the record says so."""
    a = phone(baresip_factory, tmp_path, pbx, CALLER, "PCMA", CALLER_TONE)
    a.dial(f"sip:*43@127.0.0.1:{pbx.sip_port}")
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK_SECONDS)
    a.command("sndcode", "#")
    a.wait_event("CALL_CLOSED", timeout=5)

    assert_hears(a, CALLER_TONE, other=CALLEE_TONE, rate=8000)
    (row,) = cdr(pbx)
    assert (row["disposition"], row["dialled"], row["caller_codec"]) == ("answered", "*43", "PCMA")
    assert (row["hangup_side"], row["hangup_cause"]) == ("pbx", "echo test ended"), row
