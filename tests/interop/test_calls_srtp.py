"""A TLS + SRTP baresip calls a plain UDP baresip through pbx: SRTP is terminated per leg.

Phone A (ext 3101) registers over TLS (pbx's self-signed certificate as its CA file), loads
baresip's ``srtp`` module and sets ``mediaenc=srtp-mand`` on its account: it offers
``RTP/SAVP`` with ``a=crypto`` lines (SDES, RFC 4568) and, being mandatory, talks only SRTP.
Phone B (ext 3102) is plain RTP over UDP without the srtp module: it refuses an ``RTP/SAVP``
offer. pbx must answer A with its own key (RFC 4568 §7.1.2), offer B plain ``RTP/AVP`` and
unprotect/protect per leg (pbx.media.sdes, pbx.media.srtp through libsrtp). Each phone plays
its own tone and records what it decoded (baresip ``sndfile``); hearing the other phone's tone
proves the media crossed pbx both ways: A's srtp module drops anything pbx did not protect
with the key it answered, and B decodes only what pbx unprotected.

Same set-up as test_calls_baresip.py (private netns, MD5-only server, aufile sources).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .harness.baresip import Baresip, BaresipAccount, Event
from .harness.pbx_server import PbxServer
from .test_calls_baresip import assert_hears, cdr, write_sine_wav

CALLER, CALLEE = "3101", "3102"
PASSWORDS = {CALLER: "pw-3101-srtp", CALLEE: "pw-3102-plain"}
CALLER_TONE, CALLEE_TONE = 1000.0, 440.0
TALK_SECONDS = 3.0

BaresipFactory = Callable[..., Baresip]

pytestmark = pytest.mark.netns


@pytest.fixture
def pbx(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    server = pbx_factory(md5_only=True)
    for ext, password in PASSWORDS.items():
        server.add_user(ext, password)
    return server


def phone(
    baresip_factory: BaresipFactory,
    tmp_path: Path,
    pbx: PbxServer,
    ext: str,
    tone: float,
    *,
    secure: bool,
    tls: bool | None = None,
    **params: str,
) -> Baresip:
    """A registered PCMU baresip for ``ext``: over TLS with mandatory SDES-SRTP when ``secure``,
    plain UDP otherwise (``tls=True`` without ``secure``: TLS signalling, no srtp module);
    plays ``tone`` and records what it decodes into tmp_path/rec-EXT."""
    tls = secure if tls is None else tls
    records = tmp_path / f"rec-{ext}"
    records.mkdir()
    wav = write_sine_wav(tmp_path / f"tone-{ext}.wav", tone)
    if secure:
        params = {"mediaenc": "srtp-mand", **params}
    account = BaresipAccount(
        ext,
        PASSWORDS[ext],
        pbx.tls_port if tls else pbx.sip_port,
        transport="tls" if tls else "udp",
        params={"audio_codecs": "PCMU", **params},
    )
    agent = baresip_factory(
        [account],
        name=f"phone-{ext}",
        audio_file=wav,
        cafile=pbx.cert_path if tls else None,
        extra_modules=["sndfile.so"] + (["srtp.so"] if secure else []),
        extra_config={"snd_path": str(records)},
    )
    agent.wait_registered(account, timeout=10)
    return agent


def _first_of(agent: Baresip, types: tuple[str, ...], timeout: float) -> Event | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in agent.events:
            if event.get("type") in types:
                return event
        time.sleep(0.1)
    return None


def test_tls_srtp_phone_and_plain_rtp_phone_hear_each_other_through_pbx(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a = phone(baresip_factory, tmp_path, pbx, CALLER, CALLER_TONE, secure=True)
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, CALLEE_TONE, secure=False, answermode="auto")
    a.dial(f"sip:{CALLEE}@127.0.0.1:{pbx.tls_port}")  # the account adds transport=tls

    first = _first_of(a, ("CALL_ESTABLISHED", "CALL_CLOSED"), timeout=10)
    assert first is not None and first.get("type") == "CALL_ESTABLISHED", (
        f"caller: {first}; callee events: {[e.get('type') for e in b.events]}"
    )
    b.wait_event("CALL_ESTABLISHED", timeout=5)
    # baresip's srtp module reports the suite it runs once pbx's answer gave it a key
    secure = a.wait_event("CALL_MENC", timeout=5)
    assert "AES_CM_128_HMAC_SHA1" in str(secure.get("param")), secure
    assert not [e for e in b.events if e.get("type") == "CALL_MENC"]
    time.sleep(TALK_SECONDS)
    a.hangup()
    a.wait_event("CALL_CLOSED", timeout=5)
    b.wait_event("CALL_CLOSED", timeout=5)

    assert_hears(b, CALLER_TONE, other=CALLEE_TONE, rate=8000)  # pbx unprotected A's SRTP
    assert_hears(a, CALLEE_TONE, other=CALLER_TONE, rate=8000)  # pbx protected B's RTP
    (row,) = cdr(pbx)
    assert row["disposition"] == "answered", row
    assert (row["caller"], row["callee"]) == (CALLER, CALLEE), row
    assert (row["caller_codec"], row["callee_codec"]) == ("PCMU", "PCMU"), row


def _call_and_hear(a: Baresip, b: Baresip, port: int) -> None:
    a.dial(f"sip:{CALLEE}@127.0.0.1:{port}")
    first = _first_of(a, ("CALL_ESTABLISHED", "CALL_CLOSED"), timeout=10)
    assert first is not None and first.get("type") == "CALL_ESTABLISHED", (
        f"caller: {first}; callee events: {[e.get('type') for e in b.events]}"
    )
    b.wait_event("CALL_ESTABLISHED", timeout=5)
    time.sleep(TALK_SECONDS)
    a.hangup()
    a.wait_event("CALL_CLOSED", timeout=5)
    b.wait_event("CALL_CLOSED", timeout=5)
    assert_hears(b, CALLER_TONE, other=CALLEE_TONE, rate=8000)
    assert_hears(a, CALLEE_TONE, other=CALLER_TONE, rate=8000)


def test_plain_phone_calls_a_tls_srtp_phone_which_gets_pbx_offering_srtp(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """A callee registered over TLS is offered RTP/SAVP with pbx's own key (SDES keys only
    travel over TLS); a mandatory-SRTP phone accepts it."""
    a = phone(baresip_factory, tmp_path, pbx, CALLER, CALLER_TONE, secure=False)
    b = phone(baresip_factory, tmp_path, pbx, CALLEE, CALLEE_TONE, secure=True, answermode="auto")
    _call_and_hear(a, b, pbx.sip_port)
    assert [e for e in b.events if e.get("type") == "CALL_MENC"]
    assert not [e for e in a.events if e.get("type") == "CALL_MENC"]


def test_tls_phone_without_srtp_refuses_the_srtp_offer_and_gets_plain_rtp_instead(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """Not every TLS phone does SRTP: its 488 to the RTP/SAVP offer makes pbx offer plain RTP
    once, and the call goes through."""
    a = phone(baresip_factory, tmp_path, pbx, CALLER, CALLER_TONE, secure=False)
    b = phone(
        baresip_factory,
        tmp_path,
        pbx,
        CALLEE,
        CALLEE_TONE,
        secure=False,
        tls=True,
        answermode="auto",
    )
    _call_and_hear(a, b, pbx.sip_port)
    (row,) = cdr(pbx)
    assert row["disposition"] == "answered", row
