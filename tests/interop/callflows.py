"""Shared set-up of the issue-9 interop tests (transfer, hold with music, park, pickup).

Not a test module: test_transfer.py, test_hold_music.py, test_park_pickup.py and
test_transfer_peers.py import it. Everything runs in one private network namespace (baresip
needs it, see harness.netns) with an MD5-only pbx (baresip 1.0 and SIPp answer only MD5).

Conventions
- Extensions 4001-4004 ("A"-"D" in the tests) each play their own sine, and pbx's music on
  hold is a 700 Hz sine written to DATA/moh/default/tone.wav before pbx starts. So a
  recording labelled window by window (harness.tones) says whose audio a phone heard and in
  which order: ``heard(b) == ["4001", "moh", "4003"]`` = B heard A, then music, then C. The
  tones avoid 350-480 Hz (ringback, busy and dial tones come out as "other" and are dropped).
- baresip phones record what they decode (sndfile.so, one dump-*-dec.wav per call) and run
  with ``-s`` so that the test can read the SIP messages they got (harness.sip_message).
- The raw phone (harness.raw_phone, fixture ``raw_phone_factory`` in conftest.py) does what
  baresip cannot: REFER with Replaces, INVITE with Replaces, exact headers.

Imports nothing from ``pbx``.
"""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

from .harness.baresip import Baresip, BaresipAccount
from .harness.linphone import Linphone
from .harness.pbx_server import PbxServer
from .harness.sip_message import SipMessage
from .harness.tones import assert_heard, heard, read_wav, write_sine_wav

A, B, C, D = "4001", "4002", "4003", "4004"
PASSWORDS = {A: "pw-4001-anna", B: "pw-4002-bert", C: "pw-4003-cleo", D: "pw-4004-dora"}
TONES = {A: 1000.0, B: 1400.0, C: 1800.0, D: 2200.0}
MOH_HZ = 700.0
LABELS = {**TONES, "moh": MOH_HZ}  # what a recording is labelled with
HOST = "127.0.0.1"

BaresipFactory = Callable[..., Baresip]


def uri(pbx: PbxServer, ext: str) -> str:
    return f"sip:{ext}@{HOST}:{pbx.sip_port}"


def write_moh(data_dir: Path, freq: float = MOH_HZ, seconds: int = 30) -> Path:
    """The known music on hold: DATA/moh/default/tone.wav, 8 kHz mono 16-bit."""
    return write_sine_wav(data_dir / "moh" / "default" / "tone.wav", freq, seconds)


def start_pbx(
    pbx_factory: Callable[..., PbxServer],
    site_toml: str = "",
    users: dict[str, str] | None = None,
) -> PbxServer:
    """An MD5-only pbx with the known music on hold and users 4001-4004."""
    server = pbx_factory(md5_only=True, start=False, site_toml=site_toml)
    write_moh(server.data_dir)
    server.start()
    for ext, password in (users or PASSWORDS).items():
        server.add_user(ext, password)
    return server


def baresip_phone(
    baresip_factory: BaresipFactory,
    tmp_path: Path,
    pbx: PbxServer,
    ext: str,
    answermode: str = "auto",
) -> Baresip:
    """A registered baresip for ``ext`` playing its tone, recording what it decodes into
    tmp_path/rec-EXT, with its SIP trace on."""
    records = tmp_path / f"rec-{ext}"
    records.mkdir(exist_ok=True)
    wav = write_sine_wav(tmp_path / f"tone-{ext}.wav", TONES[ext], seconds=60)
    account = BaresipAccount(
        ext,
        PASSWORDS[ext],
        pbx.sip_port,
        params={"audio_codecs": "PCMU", "answermode": answermode},
    )
    agent = baresip_factory(
        [account],
        name=f"phone-{ext}",
        audio_file=wav,
        extra_modules=["sndfile.so"],
        extra_config={"snd_path": str(records)},
        sip_trace=True,
    )
    agent.wait_registered(account, timeout=10)
    return agent


# -- what the phones heard -------------------------------------------------------------------


def recording(agent: Baresip, index: int = -1, timeout: float = 5.0) -> list[int]:
    """Samples of one of the phone's recordings (default: its latest call). The phone must
    have hung up that call: libsndfile writes the WAV header when the file is closed."""
    deadline = time.monotonic() + timeout
    while True:
        found = agent.recordings()
        if found:
            try:
                samples, rate = read_wav(
                    found[index], timeout=max(0.1, deadline - time.monotonic())
                )
            except Exception:  # noqa: BLE001 - still being written; retried until the deadline
                samples, rate = [], 0
            if rate:
                assert rate == 8000, f"{agent.name}: recording at {rate} Hz"
                return samples
        if time.monotonic() > deadline:
            raise AssertionError(f"{agent.name}: no finished recording in {agent.recordings()}")
        time.sleep(0.1)


def heard_by(agent: Baresip, index: int = -1) -> list[str]:
    """The order of tones (extensions, "moh") in one recording of the phone."""
    return heard(recording(agent, index), LABELS)


def assert_phone_heard(
    agent: Baresip, expected: list[str], index: int = -1, exact: bool = True
) -> None:
    assert_heard(agent.name, recording(agent, index), LABELS, expected, exact=exact)


def assert_raw_heard(who: str, samples: list[int], expected: list[str], exact: bool = True) -> None:
    assert_heard(who, samples, LABELS, expected, exact=exact)


# -- call records ----------------------------------------------------------------------------


def cdr(pbx: PbxServer, timeout: float = 8.0, count: int = 1) -> list[dict[str, str]]:
    """``pbx cdr --csv`` once at least ``count`` rows exist and none is 'open'."""
    deadline = time.monotonic() + timeout
    while True:
        out = pbx.cli("cdr", "--csv", check=True).stdout
        rows = list(csv.DictReader(io.StringIO(out)))
        done = len(rows) >= count and all(r.get("disposition") != "open" for r in rows)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def assert_history_mentions(rows: list[dict[str, str]], *words: str) -> None:
    """Some record's ``history`` column names every one of ``words`` (its format is not
    fixed yet: extensions, slot numbers, "transfer"/"park"/"pickup" are looked for)."""
    assert rows and "history" in rows[0], f"no history column in {list(rows[0]) if rows else rows}"
    histories = [r["history"] for r in rows]
    assert any(all(w.lower() in h.lower() for w in words) for h in histories), (
        f"no history mentions {words}: {histories}"
    )


def wait_until(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {timeout:g}s")
        time.sleep(0.1)


def closed(agent: Baresip, call_id: str | None = None) -> bool:
    """baresip reported CALL_CLOSED (for that call)."""
    return any(
        e.get("type") == "CALL_CLOSED" and (call_id is None or e.get("id") == call_id)
        for e in agent.events
    )


def refer_answer(agent: Baresip | Linphone, timeout: float = 5.0) -> SipMessage:
    """The final response the phone got to its REFER (from its trace or log); fails at once
    with pbx's answer when it is not 202 (instead of waiting for a transfer that never
    comes)."""
    deadline = time.monotonic() + timeout
    while True:
        answers = [
            m
            for m in agent.sip_messages()
            if m.direction == "received" and m.cseq_method == "REFER" and m.status >= 200
        ]
        if answers:
            assert answers[-1].status == 202, f"pbx answered the REFER {answers[-1].start!r}"
            return answers[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"{agent.name}: no final answer to its REFER in {timeout:g}s")
        time.sleep(0.1)
