"""The peers of the issue-9 tests proven WITHOUT pbx: every verb the transfer, hold, park and
pickup tests rely on, peer to peer in one private network namespace.

What each peer can do (checked here, used by test_transfer.py, test_hold_music.py and
test_park_pickup.py):

=====================================  =======================================================
flow                                   peer and how
=====================================  =======================================================
hold / resume                          baresip ``hold`` / ``resume`` (re-INVITE a=sendonly /
                                       a=sendrecv); linphone ``call-pause ID`` / ``call-resume
                                       ID``; raw phone ``hold(d, "sendonly"|"inactive")``;
                                       SIPp hold_uac_moh.xml
blind transfer (REFER)                 baresip ``transfer URI``; linphone ``call-transfer ID
                                       URI``; raw phone ``refer(d, "<uri>")``; SIPp
                                       refer_blind_uac.xml (follows the NOTIFYs)
REFER with Refer-Sub: false            raw phone ``refer(..., headers=[("Refer-Sub",
                                       "false")])``; SIPp refer_nosub_uac.xml (baresip and
                                       linphone cannot)
attended transfer (Refer-To Replaces)  linphone ``call-transfer ID OTHER_ID``; raw phone
                                       ``refer(d1, d2.refer_to_replacing(uri))``. baresip 1.0
                                       cannot (no Replaces at all); SIPp cannot hold two
                                       Call-IDs in one scenario
INVITE with Replaces                   raw phone ``call(..., headers=[("Replaces",
                                       d.replaces())])``; SIPp call_uac_replaces.xml
dialling                               baresip ``dial``, linphone ``call``, raw phone ``call``
second call while one is held          baresip ``accept`` (holds the current call first) and
                                       ``callfind ID`` + ``resume``; linphone ``answer ID``
                                       (pauses the running call); raw phone ``answer(d)``
=====================================  =======================================================

Imports nothing from ``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .callflows import HOST, LABELS, TONES
from .conftest import REGISTRAR_PASSWORD
from .harness.baresip import Baresip, BaresipAccount
from .harness.linphone import Linphone
from .harness.raw_phone import RawPhone
from .harness.raw_sip import read_sipp_trace
from .harness.rtp_capture import write_rtp_pcap
from .harness.sip_message import select
from .harness.sipp import Sipp, write_users_csv
from .harness.tones import assert_heard, heard, read_wav, sine_samples, ulaw_encode, write_sine_wav

pytestmark = pytest.mark.netns

BaresipFactory = Callable[..., Baresip]
A, B, C, D = "4001", "4002", "4003", "4004"


@pytest.fixture
def direct(baresip_factory: BaresipFactory, tmp_path: Path) -> Callable[..., Baresip]:
    """make(ext, answermode="auto") -> a started baresip that registers nowhere and is called
    at its own address (sip:EXT@ip:port), playing EXT's tone, recording what it decodes,
    SIP trace on."""

    def make(ext: str, answermode: str = "auto") -> Baresip:
        records = tmp_path / f"rec-{ext}"
        records.mkdir(exist_ok=True)
        account = BaresipAccount(
            ext, None, 0, regint=0, params={"audio_codecs": "PCMU", "answermode": answermode}
        )
        agent = baresip_factory(
            [account],
            name=f"direct-{ext}",
            audio_file=write_sine_wav(tmp_path / f"tone-{ext}.wav", TONES[ext], seconds=60),
            extra_modules=["sndfile.so"],
            extra_config={"snd_path": str(records)},
            sip_trace=True,
        )
        return agent

    return make


def at(agent: Baresip, ext: str) -> str:
    return f"sip:{ext}@{agent.sip_address}"


def last_recording(agent: Baresip) -> list[int]:
    samples, rate = read_wav(agent.recordings()[-1])
    assert rate == 8000
    return samples


# -- baresip -------------------------------------------------------------------------------


def test_baresip_holds_resumes_and_blind_transfers_peer_to_peer(
    direct: Callable[..., Baresip],
) -> None:
    a, b, c = direct(A), direct(B), direct(C)
    a.dial(at(b, B))
    call_id = str(a.wait_event("CALL_ESTABLISHED")["id"])
    b.wait_event("CALL_ESTABLISHED")
    time.sleep(1.0)
    a.hold()
    time.sleep(1.0)
    a.resume()
    time.sleep(1.0)
    a.transfer(at(c, C))
    c.wait_event("CALL_ESTABLISHED", timeout=10)
    closing = a.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(1.5)
    b.hangup()
    c.wait_event("CALL_CLOSED", timeout=5)

    # hold: re-INVITE a=sendonly answered a=recvonly; resume: a=sendrecv both ways
    reinvites = [m for m in b.received("INVITE") if m.to_tag]
    assert [m.sdp_direction() for m in reinvites] == ["sendonly", "sendrecv"]
    answers = [m for m in b.sip_messages() if m.direction == "sent" and m.status == 200]
    assert [m.sdp_direction() for m in answers if m.cseq_method == "INVITE"][1:] == [
        "recvonly",
        "sendrecv",
    ]
    # transfer: REFER with Refer-To, NOTIFY 100 then 200 (sipfrag), A ends the call itself
    (refer,) = b.received("REFER")
    assert refer.call_id == call_id and refer.get("Refer-To") == at(c, C)
    assert refer.get("Refer-Sub") is None
    frags = [m.text.strip() for m in a.received("NOTIFY")]
    assert frags[0].startswith("SIP/2.0 100") and frags[-1].startswith("SIP/2.0 200"), frags
    assert closing.get("param") == "Call transfered"
    assert [e.get("param") for e in b.events if e.get("type") == "TRANSFER"] == [at(c, C)]
    # audio: B heard A (before and after the hold) then C; C heard B
    assert heard(read_wav(b.recordings()[0])[0], LABELS) == [A]
    assert heard(last_recording(b), LABELS) == [C]
    assert heard(last_recording(c), LABELS) == [B]


def test_baresip_accept_holds_the_current_call_and_callfind_switches_between_calls(
    direct: Callable[..., Baresip],
) -> None:
    a, b, c = direct(A), direct(B, answermode="manual"), direct(C)
    a.dial(at(b, B))
    b.wait_event("CALL_INCOMING")
    b.accept()
    first = str(b.wait_event("CALL_ESTABLISHED")["id"])
    time.sleep(0.5)
    c.dial(at(b, B))
    b.wait_event("CALL_INCOMING")
    b.accept()  # holds A, answers C
    second = str(b.wait_event("CALL_ESTABLISHED")["id"])
    calls = {c_["peer"].split(";")[0]: c_ for c_ in b.calls()}
    assert calls[at(a, A)]["on_hold"] and not calls[at(c, C)]["on_hold"], calls
    b.hold(second)
    b.resume(first)
    calls = {c_["peer"].split(";")[0]: c_ for c_ in b.calls()}
    assert calls[at(c, C)]["on_hold"] and not calls[at(a, A)]["on_hold"], calls
    assert calls[at(a, A)]["current"]
    b.hangup(second)
    b.hangup(first)
    a.wait_event("CALL_CLOSED", timeout=5)
    c.wait_event("CALL_CLOSED", timeout=5)

    directions = [m.sdp_direction() for m in a.received("INVITE")]
    assert directions == ["sendonly", "sendrecv"]  # held by accept, resumed by resume
    assert [m.sdp_direction() for m in c.received("INVITE")] == ["sendonly"]


# -- linphone ------------------------------------------------------------------------------


def test_linphone_answer_pauses_the_running_call_and_attended_transfer_sends_replaces(
    direct: Callable[..., Baresip], linphone_factory: Callable[..., Linphone]
) -> None:
    a = linphone_factory()
    b, c = direct(B), direct(C)
    first = a.call(at(b, B))
    a.wait_event("LinphoneCallStreamsRunning", call_id=first)
    c.dial(f"sip:{A}@{HOST}:{a.sip_port}")
    second = a.wait_incoming()
    a.answer(second)
    a.wait_event("LinphoneCallStreamsRunning", call_id=second)
    assert a.call_state(first) == "LinphoneCallPaused"
    assert [m.sdp_direction() for m in b.received("INVITE")][-1] == "sendonly"
    a.transfer_attended(first, second)
    refer = b.wait_received("REFER")
    a.wait_received("NOTIFY")  # baresip B accepted the REFER (its own attempt then fails)

    # Refer-To names C (the remote address of call 2) with Replaces = dialog 2
    invite_from_c = c.sip_messages()[0]
    refer_to = refer.get("Refer-To") or ""
    assert refer_to.startswith(f"<sip:{C}@{HOST}") and "?Replaces=" in refer_to, refer_to
    replaces = refer_to.split("?Replaces=", 1)[1].rstrip(">").lower()
    assert replaces.startswith(invite_from_c.call_id.lower() + "%3b"), refer_to
    assert f"to-tag%3d{invite_from_c.from_tag}".lower() in replaces, refer_to
    assert "from-tag%3d" in replaces, refer_to
    assert refer.get("Referred-By")
    # blind transfer by URI on the other call
    a.transfer(second, at(b, B))
    transfer = c.wait_received("REFER")
    assert transfer.get("Refer-To") == at(b, B)


# -- the raw phone -------------------------------------------------------------------------


def test_raw_phone_calls_holds_refers_and_answers_baresip_with_audio_both_ways(
    direct: Callable[..., Baresip],
    raw_phone_factory: Callable[..., RawPhone],
) -> None:
    b, c = direct(B), direct(C)
    a = raw_phone_factory(b.sip_port, A, register=False, tone=TONES[A])
    t0 = time.monotonic()
    call = a.call(at(b, B))
    time.sleep(1.5)
    held = a.hold(call, "inactive")
    resumed = a.resume(call)
    refer = a.refer(call, f"<{at(c, C)}>", headers=[("Refer-Sub", "false")])
    c.wait_event("CALL_ESTABLISHED", timeout=10)
    call.wait_request("NOTIFY", match=lambda m: m.text.startswith("SIP/2.0 200"))
    a.bye(call)
    b.wait_event("CALL_CLOSED", timeout=5)
    # incoming: C calls the raw phone, which answers
    c.dial(f"sip:{A}@{HOST}:{a.port}")
    incoming = a.wait_incoming(5)
    a.answer(incoming)
    time.sleep(1.5)
    c.hangup()
    incoming.wait_terminated(5)

    assert (held.status, held.sdp_direction()) == (200, "inactive")
    assert (resumed.status, resumed.sdp_direction()) == (200, "sendrecv")
    assert refer.status == 202
    (sent_refer,) = b.received("REFER")
    assert sent_refer.get("Refer-Sub") == "false" and sent_refer.get("Referred-By")
    assert [m.text.strip()[:11] for m in call.notifies()][-1] == "SIP/2.0 200"
    assert incoming.ended_by == "remote BYE"
    assert_heard("raw A (call to B)", call.samples(t0), LABELS, [B])
    assert_heard("raw A (call from C)", incoming.samples(), LABELS, [C])
    assert heard(read_wav(b.recordings()[0])[0], LABELS) == [A]


def test_raw_phone_invite_with_replaces_takes_over_a_linphone_dialog(
    direct: Callable[..., Baresip],
    linphone_factory: Callable[..., Linphone],
    raw_phone_factory: Callable[..., RawPhone],
) -> None:
    """RFC 3891 as a real UA reads it: to-tag = the recipient's own tag, from-tag = the
    other end's. linphone accepts the replacing INVITE and hangs up the replaced call."""
    x = direct(B)
    lin = linphone_factory()
    lin_call = lin.call(at(x, B))
    lin.wait_event("LinphoneCallStreamsRunning", call_id=lin_call)
    invite = x.wait_received("INVITE")
    (answer,) = select(x.sip_messages(), "INVITE", direction="sent", status=200)
    replaces = f"{invite.call_id};to-tag={invite.from_tag};from-tag={answer.to_tag}"
    r = raw_phone_factory(lin.sip_port, D, register=False, tone=TONES[D])
    call = r.call(f"sip:{A}@{HOST}:{lin.sip_port}", headers=[("Replaces", replaces)])

    x.wait_received("BYE", timeout=5)
    assert call.state == "confirmed"
    assert x.wait_event("CALL_CLOSED", timeout=5)


def test_raw_phone_registers_with_md5_digest(
    sipp_registrar: Sipp, raw_phone_factory: Callable[..., RawPhone]
) -> None:
    phone = raw_phone_factory(sipp_registrar.local_port, "1009", REGISTRAR_PASSWORD, register=False)
    resp = phone.register()
    assert resp.status == 200
    assert resp.get("Contact") and phone.contact in (resp.get("Contact") or "")


# -- SIPp ----------------------------------------------------------------------------------

# what each caller scenario sends, checked against selfcheck_uas_pbx.xml playing pbx
SIPP_CALLERS = {
    "refer_blind_uac": {"target": C},
    "refer_nosub_uac": {"target": C},
    "hold_uac_moh": {"hold": "inactive", "holdms": "1000"},
    "call_uac_replaces": {"replaces": "abc@127.0.0.1;to-tag=t1;from-tag=f1"},
}


@pytest.mark.parametrize("scenario", sorted(SIPP_CALLERS))
def test_sipp_issue9_callers_run_to_the_end_against_a_pbx_emulator(
    scenario: str, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    users = write_users_csv(tmp_path / "users.csv", [(A, "pw")])
    emulator = sipp_factory("selfcheck_uas_pbx", calls=1, timeout_s=20).start()
    caller = sipp_factory(
        scenario,
        remote=(HOST, emulator.local_port),
        inf=[users],
        service=B,
        calls=1,
        timeout_s=20,
        variables=SIPP_CALLERS[scenario],
        extra_args=["-d", "500"],
    )
    tone = [ulaw_encode(sine_samples(TONES[A], 160, n * 160)) for n in range(25)]
    write_rtp_pcap(caller.workdir / "rtp.pcap", 25, payload=lambda n: tone[n])
    result = caller.run()
    served = emulator.wait()

    assert result.ok, result.log_tail
    assert served.ok, served.log_tail
    sent = [m for m in read_sipp_trace(caller.workdir / "messages.log") if m.direction == "sent"]
    firsts = [m.first_line.split(" ")[0] for m in sent]
    if scenario.startswith("refer_"):
        (refer,) = [m for m in sent if m.first_line.startswith("REFER ")]
        assert f"Refer-To: <sip:{C}@{HOST}:{emulator.local_port}>".encode() in refer.data
        nosub = b"Refer-Sub: false" in refer.data
        assert nosub == (scenario == "refer_nosub_uac")
        assert firsts.count("SIP/2.0") == (0 if nosub else 2)  # the 200s to the NOTIFYs
    elif scenario == "hold_uac_moh":
        reinvites = [m for m in sent if m.first_line.startswith("INVITE ")][2:]
        assert [b"a=inactive" in m.data for m in reinvites] == [True, False]
        held_for = reinvites[1].at - reinvites[0].at
        assert 0.9 <= held_for <= 1.6, f"held for {held_for:.2f} s, not holdms=1000"
    else:
        invites = [m for m in sent if m.first_line.startswith("INVITE ")]
        assert all(b"Replaces: abc@127.0.0.1;to-tag=t1;from-tag=f1" in m.data for m in invites)


def test_sipp_tolerant_callee_answers_reinvites_until_bye(
    sipp_factory: Callable[..., Sipp], raw_phone_factory: Callable[..., RawPhone]
) -> None:
    callee = sipp_factory("uas_answer_tolerant", calls=1, timeout_s=20).start()
    phone = raw_phone_factory(callee.local_port, A, register=False)
    call = phone.call(f"sip:{B}@{HOST}:{callee.local_port}")
    assert phone.hold(call).status == 200
    assert phone.resume(call).status == 200
    phone.bye(call)
    result = callee.wait()

    assert result.ok, result.log_tail
    assert result.count("INVITE", "Recv") == 3


# -- tone labels ---------------------------------------------------------------------------


def test_tone_labels_give_the_order_of_the_tones_and_drop_short_runs() -> None:
    signal = (
        sine_samples(TONES[A], 8000)
        + [0] * 4000
        + sine_samples(700.0, 1000)  # 0.125 s: too short to count
        + sine_samples(TONES[C], 8000)
        + sine_samples(700.0, 8000)
    )
    assert heard(signal, LABELS) == [A, C, "moh"]
    assert heard(signal[:8000] + signal[:8000], LABELS) == [A]  # runs of one tone merge
