"""Call transfer through pbx (issue 9): blind (REFER), with Refer-Sub: false, attended
(REFER with Replaces), INVITE with Replaces, and transfer recall.

pbx terminates transfers itself (B2BUA): a REFER from A is answered 202 by pbx, which then
calls the target and reconnects A's partner to it; the partner never sees the REFER. The
NOTIFYs (Event: refer, message/sipfrag) report "SIP/2.0 100 Trying" then "SIP/2.0 200 OK"
(RFC 3515), none when the REFER said Refer-Sub: false (RFC 4488). Audio is checked by tone:
every phone plays its own frequency (callflows.TONES) and records what it decodes.

Peers: baresip for blind transfer (``transfer URI``) and recall; SIPp for the exact NOTIFY
sequence and Refer-Sub: false; linphone (``call-transfer ID ID``) and the raw phone (exact
RFC 3891 Refer-To) for attended transfer; the raw phone for an INVITE with Replaces (baresip
1.0 can do neither). Every peer verb is proven without pbx in test_transfer_peers.py.
Imports nothing from ``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .callflows import (
    HOST,
    PASSWORDS,
    TONES,
    A,
    B,
    C,
    D,
    assert_history_mentions,
    assert_phone_heard,
    assert_raw_heard,
    baresip_phone,
    cdr,
    closed,
    refer_answer,
    start_pbx,
    uri,
    wait_until,
)
from .harness.baresip import Baresip
from .harness.linphone import Linphone
from .harness.pbx_server import PbxServer
from .harness.raw_phone import RawPhone
from .harness.raw_sip import TracedMessage, read_sipp_trace
from .harness.rtp_capture import write_rtp_pcap
from .harness.sip_message import SipMessage, parse_message, select
from .harness.sipp import Sipp, write_users_csv
from .harness.tones import sine_samples, ulaw_encode

pytestmark = pytest.mark.netns

BaresipFactory = Callable[..., Baresip]
PbxFactory = Callable[..., PbxServer]
TALK = 2.0


@pytest.fixture
def pbx(pbx_factory: PbxFactory) -> PbxServer:
    return start_pbx(pbx_factory)


def phone(
    baresip_factory: BaresipFactory, tmp_path: Path, pbx: PbxServer, ext: str, **kw: str
) -> Baresip:
    return baresip_phone(baresip_factory, tmp_path, pbx, ext, **kw)


def sipfrags(notifies: list[SipMessage]) -> list[str]:
    """The status lines the NOTIFYs of a refer subscription carried."""
    return [n.text.strip().splitlines()[0] if n.text.strip() else "" for n in notifies]


def assert_refer_notifies(notifies: list[SipMessage], trying: bool = True) -> None:
    """RFC 3515 3.4 / 3.7: Event refer, message/sipfrag, first 100 Trying (a blind
    transfer: pbx still has to call the target; an attended one may report 200 at once),
    last 200 OK with the subscription terminated."""
    assert notifies, "no NOTIFY for the REFER"
    for n in notifies:
        assert (n.get("Event") or "").split(";")[0].strip() == "refer", n
        assert (n.get("Content-Type") or "").startswith("message/sipfrag"), n
    frags = sipfrags(notifies)
    assert not trying or frags[0].startswith("SIP/2.0 100"), frags
    assert frags[-1].startswith("SIP/2.0 200"), frags
    assert (notifies[-1].get("Subscription-State") or "").startswith("terminated"), notifies[-1]


# -- blind transfer ----------------------------------------------------------------------------


def test_blind_transfer_by_baresip_connects_b_to_c_and_ends_a(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """A calls B, A blind-transfers B to C: pbx answers the REFER 202, NOTIFYs 100 then 200,
    B hears C and C hears B, A's call is over; B never sees the REFER."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C)
    a.dial(uri(pbx, B))
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    a.transfer(uri(pbx, C))
    refer_answer(a)
    c.wait_event("CALL_ESTABLISHED", timeout=10)
    wait_until(lambda: closed(a), 10, "A's call ended")
    time.sleep(TALK)
    c.hangup()
    b.wait_event("CALL_CLOSED", timeout=5)

    assert_refer_notifies(a.received("NOTIFY"))
    assert b.received("REFER") == []
    assert_phone_heard(b, [A, C])  # ringback in between is not a test tone
    assert_phone_heard(c, [B])
    assert_phone_heard(a, [B])
    assert_history_mentions(cdr(pbx), A, B, C)


def _caller(
    pbx: PbxServer,
    sipp_factory: Callable[..., Sipp],
    tmp_path: Path,
    scenario: str,
    ext: str,
    dialled: str,
    **kwargs: object,
) -> Sipp:
    users = write_users_csv(tmp_path / f"users-{ext}.csv", [(ext, PASSWORDS[ext])])
    kwargs.setdefault("timeout_s", 30)
    return sipp_factory(
        scenario,
        remote=(HOST, pbx.sip_port),
        inf=[users],
        service=dialled,
        calls=1,
        **kwargs,
    )


def _sipp_callee(
    pbx: PbxServer,
    sipp_factory: Callable[..., Sipp],
    tmp_path: Path,
    ext: str,
    scenario: str,
    **kwargs: object,
) -> Sipp:
    """Register ``ext`` from a fresh SIPp port, then run a UAS scenario on that port."""
    users = write_users_csv(tmp_path / f"reg-{ext}.csv", [(ext, PASSWORDS[ext])])
    reg = sipp_factory("reg_auth", remote=(HOST, pbx.sip_port), inf=[users], calls=1, timeout_s=10)
    result = reg.run()
    assert result.ok, result.log_tail
    kwargs.setdefault("timeout_s", 30)
    return sipp_factory(scenario, local_port=reg.local_port, calls=1, **kwargs).start()


def _trace(run: Sipp) -> list[TracedMessage]:
    return read_sipp_trace(run.workdir / "messages.log")


def _messages(run: Sipp, direction: str) -> list[SipMessage]:
    out = []
    for traced in _trace(run):
        msg = parse_message(traced.data)
        if msg is not None and traced.direction == direction:
            out.append(msg)
    return out


def test_blind_transfer_from_sipp_gets_202_then_notify_trying_and_ok_and_c_gets_the_call(
    pbx: PbxServer, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    b = _sipp_callee(pbx, sipp_factory, tmp_path, B, "uas_answer_tolerant")
    c = _sipp_callee(
        pbx, sipp_factory, tmp_path, C, "call_uas_answer_bye", extra_args=["-d", "1500"]
    )
    a = _caller(
        pbx,
        sipp_factory,
        tmp_path,
        "refer_blind_uac",
        A,
        B,
        variables={"target": C},
        extra_args=["-d", "1000"],
    )
    result = a.run()
    c_result, b_result = c.wait(), b.wait()

    assert result.ok, result.log_tail
    received = _messages(a, "received")
    (accepted,) = select(received, "REFER", status=202)
    assert accepted
    assert_refer_notifies(select(received, "NOTIFY"))
    assert c_result.ok, c_result.log_tail  # C was called by pbx, answered, hung up
    assert b_result.ok, b_result.log_tail  # and then pbx hung up B
    assert select(_messages(b, "received"), "REFER") == []
    assert len(select(_messages(c, "received"), "INVITE")) == 1
    assert_history_mentions(cdr(pbx), B, C)


def test_blind_transfer_with_refer_sub_false_is_accepted_without_any_notify(
    pbx: PbxServer, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    """RFC 4488: 202 with Refer-Sub: false and no NOTIFY (the scenario fails on one); the
    transfer still happens, and pbx hangs the transferor up once the target answered."""
    b = _sipp_callee(pbx, sipp_factory, tmp_path, B, "uas_answer_tolerant")
    c = _sipp_callee(
        pbx, sipp_factory, tmp_path, C, "call_uas_answer_bye", extra_args=["-d", "1500"]
    )
    a = _caller(
        pbx,
        sipp_factory,
        tmp_path,
        "refer_nosub_uac",
        A,
        B,
        variables={"target": C},
        extra_args=["-d", "1000"],
    )
    result = a.run()
    c_result, b_result = c.wait(), b.wait()

    assert result.ok, result.log_tail
    received = _messages(a, "received")
    (accepted,) = select(received, "REFER", status=202)
    assert (accepted.get("Refer-Sub") or "").lower() == "false", accepted
    assert select(received, "NOTIFY") == []
    assert len(select(received, "BYE")) == 1  # no NOTIFY to go by: pbx hung the transferor up
    assert c_result.ok, c_result.log_tail
    assert b_result.ok, b_result.log_tail


# -- attended transfer -------------------------------------------------------------------------


def test_attended_transfer_by_linphone_joins_b_and_c_and_ends_both_calls_of_a(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    linphone_factory: Callable[..., Linphone],
    tmp_path: Path,
) -> None:
    """linphone A: call B, pause it (B hears music), call C, ``call-transfer 1 2`` (REFER in
    call 1 with Refer-To <sip:C@...?Replaces=call 2>): B and C talk, A has no call left."""
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C)
    a = linphone_factory()
    a.wait_registered(a.register(A, PASSWORDS[A], pbx.sip_port), timeout=10)
    first = a.call(uri(pbx, B))
    a.wait_event("LinphoneCallStreamsRunning", call_id=first, timeout=10)
    time.sleep(TALK)
    a.pause(first)
    a.wait_event("LinphoneCallPaused", call_id=first, timeout=10)
    second = a.call(uri(pbx, C))
    a.wait_event("LinphoneCallStreamsRunning", call_id=second, timeout=10)
    time.sleep(TALK)
    a.transfer_attended(first, second)
    refer_answer(a)
    for call_id in (first, second):
        a.wait_event("LinphoneCallReleased", call_id=call_id, timeout=15)
    time.sleep(TALK)
    b.hangup()
    c.wait_event("CALL_CLOSED", timeout=5)

    (refer,) = select(a.sip_messages(), "REFER", direction="sent")
    assert "Replaces=" in (refer.get("Refer-To") or "")
    assert b.received("REFER") == [] and c.received("REFER") == []
    assert_phone_heard(b, ["moh", C], exact=False)  # linphone itself sends no tone
    assert_phone_heard(c, [B], exact=False)
    assert_history_mentions(cdr(pbx, count=2), B, C)


def test_attended_transfer_with_rfc3891_replaces_from_the_raw_phone_joins_b_and_c(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    raw_phone_factory: Callable[..., RawPhone],
    tmp_path: Path,
) -> None:
    """A (raw phone) calls B, holds B (a=sendonly: B hears music), calls C, then REFER in
    dialog 1 with Refer-To: <sip:C@pbx?Replaces=CALLID%3Bto-tag%3D..%3Bfrom-tag%3D..>
    naming dialog 2. pbx joins B and C and ends A's dialog 2 itself; A ends dialog 1 after
    the final NOTIFY as phones do."""
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C)
    a = raw_phone_factory(pbx.sip_port, A, PASSWORDS[A], tone=TONES[A])
    to_b = a.call(B)
    time.sleep(TALK)
    held = a.hold(to_b)
    time.sleep(TALK)
    to_c = a.call(C)
    time.sleep(TALK)
    refer = a.refer(to_b, to_c.refer_to_replacing(uri(pbx, C)))
    assert refer.status == 202, refer
    to_c.wait_terminated(10)
    try:
        to_b.wait_request("NOTIFY", 10, match=lambda m: m.text.startswith("SIP/2.0 2"))
    finally:
        a.bye(to_b)
    time.sleep(TALK)
    b.hangup()
    c.wait_event("CALL_CLOSED", timeout=5)

    assert (held.status, held.sdp_direction()) == (200, "recvonly")
    assert to_c.ended_by == "remote BYE"  # pbx ended the replaced dialog
    assert_refer_notifies(to_b.notifies(), trying=False)
    assert_raw_heard("A (dialog 1)", to_b.samples(), [B])
    assert_raw_heard("A (dialog 2)", to_c.samples(), [C])
    assert_phone_heard(b, [A, "moh", C])
    assert_phone_heard(c, [A, B])
    assert_history_mentions(cdr(pbx, count=2), A, B, C)


# -- INVITE with Replaces ----------------------------------------------------------------------


def _leg_of(agent: Baresip) -> str:
    """Replaces value naming pbx's dialog with ``agent`` as pbx holds it (RFC 3891 3: to-tag
    = pbx's tag, from-tag = the phone's)."""
    invite = agent.wait_received("INVITE")
    answers = [
        m
        for m in agent.sip_messages()
        if m.direction == "sent"
        and m.cseq_method == "INVITE"
        and m.call_id == invite.call_id
        and 180 <= m.status < 300
        and m.to_tag
    ]
    assert answers, f"{agent.name} sent no 180/200 with a tag"
    ok = answers[0]
    return f"{invite.call_id};to-tag={invite.from_tag};from-tag={ok.to_tag}"


def test_invite_with_replaces_takes_over_an_answered_call(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    raw_phone_factory: Callable[..., RawPhone],
    tmp_path: Path,
) -> None:
    """A talks to B; D sends INVITE with Replaces naming pbx's dialog with B: B gets BYE, A
    now talks to D."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    a.dial(uri(pbx, B))
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    d = raw_phone_factory(pbx.sip_port, D, PASSWORDS[D], tone=TONES[D])
    took = d.call(B, headers=[("Replaces", _leg_of(b)), ("Supported", "replaces")])
    b.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(TALK)
    a.hangup()
    took.wait_terminated(5)

    assert b.received("BYE"), "B was not hung up"
    assert_raw_heard("D", took.samples(), [A])
    assert_phone_heard(a, [B, D])
    assert_history_mentions(cdr(pbx, count=2), A, D)


def test_invite_with_replaces_of_a_ringing_call_picks_it_up_and_cancels_the_phone(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    sipp_factory: Callable[..., Sipp],
    tmp_path: Path,
) -> None:
    """A calls B, B rings; D (SIPp, a BLF key) sends INVITE with Replaces naming B's early
    dialog: B gets CANCEL, A is connected to D."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B, answermode="manual")
    a.dial(uri(pbx, B))
    b.wait_event("CALL_INCOMING", timeout=10)
    d = _caller(
        pbx,
        sipp_factory,
        tmp_path,
        "call_uac_replaces",
        D,
        B,
        variables={"replaces": _leg_of(b)},
        extra_args=["-d", "2000"],
        timeout_s=15,
    )
    tone = [ulaw_encode(sine_samples(TONES[D], 160, n * 160)) for n in range(100)]
    write_rtp_pcap(d.workdir / "rtp.pcap", 100, payload=lambda n: tone[n])
    result = d.run()
    a.wait_event("CALL_CLOSED", timeout=5)

    assert result.ok, result.log_tail
    assert b.received("CANCEL"), "B still rings"
    assert a.wait_event("CALL_ESTABLISHED", timeout=1)
    assert_phone_heard(a, [D])
    assert_history_mentions(cdr(pbx), A, D)


# -- transfer recall ---------------------------------------------------------------------------


def test_transfer_recall_rings_a_again_when_c_does_not_answer_and_reconnects_a_and_b(
    pbx_factory: PbxFactory, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """[calls] transfer_recall = 3: C rings and never answers; after 3 s pbx cancels C and
    rings A again; A answers and talks to B again."""
    pbx = start_pbx(pbx_factory, "[calls]\ntransfer_recall = 3\n")
    a = phone(baresip_factory, tmp_path, pbx, A, answermode="manual")  # rings, no auto-answer
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C, answermode="manual")
    a.dial(uri(pbx, B))
    first = str(a.wait_event("CALL_ESTABLISHED", timeout=10)["id"])
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    a.transfer(uri(pbx, C))
    refer_answer(a)
    started = float(c.wait_event("CALL_INCOMING", timeout=10)["received_at"])
    recall = a.wait_event("CALL_INCOMING", timeout=12)
    rang_after = float(recall["received_at"]) - started
    a.accept()
    a.wait_event("CALL_ESTABLISHED", timeout=10, match=lambda e: e.get("id") == recall.get("id"))
    time.sleep(TALK)
    a.hangup(str(recall["id"]))
    b.wait_event("CALL_CLOSED", timeout=5)

    assert recall.get("id") != first
    assert 2.0 <= rang_after <= 8.0, f"recall {rang_after:.1f} s after C started ringing"
    assert c.received("CANCEL"), "C was not cancelled"
    assert closed(c)
    assert_phone_heard(a, [B])  # the recall call
    assert_phone_heard(b, [A], exact=False)
    assert_history_mentions(cdr(pbx), A, B, C)
