"""The registrar and the server transactions of the real pbx, driven by SIPp.

Covers: 1,000 authenticated REGISTERs from 100 users imported with ``pbx user import`` and
what ``pbx status --json`` then shows; server transactions that see retransmitted requests
and lost responses (RFC 3261 17.2.1, 17.2.2): a retransmitted REGISTER gets the same
response, a 407 to an INVITE is retransmitted on timer G until the ACK and forgotten at timer H;
CANCEL matching (9.2). Timers are shortened with PBX_SIP_T1 in the server's environment.
Imports nothing from ``pbx``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from .harness.pbx_server import PbxServer
from .harness.raw_sip import SipClient, SipResponse, TracedMessage, new_tag, read_sipp_trace
from .harness.sipp import Sipp, SippResult, write_users_csv

T1 = 0.05  # PBX_SIP_T1 for the transaction tests
T2 = 4.0
TIMER_H = 64 * T1
FAST_TIMERS = {"PBX_SIP_T1": str(T1), "PBX_SIP_T4": "0.5"}


def _import_users(pbx: PbxServer, path: Path, users: list[tuple[str, str]]) -> None:
    path.write_text("".join(f"{ext},{pw}\n" for ext, pw in users), encoding="utf-8")
    done = pbx.cli("user", "import", str(path), check=True)
    assert f"added {len(users)} extension(s)" in done.stdout


def _trace(result: SippResult) -> list[TracedMessage]:
    assert result.workdir is not None
    return read_sipp_trace(result.workdir / "messages.log")


def _responses(trace: list[TracedMessage], status: int) -> list[SipResponse]:
    got = [m.response for m in trace if m.direction == "received"]
    return [r for r in got if r is not None and r.status == status]


def _sent(trace: list[TracedMessage], method: str) -> list[TracedMessage]:
    return [m for m in trace if m.direction == "sent" and m.first_line.startswith(method + " ")]


def _transactions(pbx: PbxServer) -> int:
    data = json.loads(pbx.status_path.read_text(encoding="utf-8"))
    return int(data["transactions"])


# -- 1. load: 1,000 REGISTERs from 100 users --------------------------------------------------


def test_thousand_authenticated_registers_from_100_users_all_succeed_and_show_in_status(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    pbx = pbx_factory(md5_only=True)
    users = [(str(3000 + i), f"pw-{3000 + i}-load") for i in range(100)]
    _import_users(pbx, tmp_path / "import.csv", users)
    inf = write_users_csv(tmp_path / "users.csv", users)

    sipp = sipp_factory(
        "reg_auth",
        remote=("127.0.0.1", pbx.sip_port),
        inf=[inf],
        calls=1000,
        rate=200,
        limit=40,
        timeout_s=50,
        trace_msg=False,
    )
    result = sipp.run()

    assert (result.returncode, result.successful, result.failed) == (0, 1000, 0), result.log_tail
    assert result.count("401", "Recv") == 1000 and result.count("200", "Recv") == 1000
    regs = pbx.status()["registrations"]
    assert sorted(r["extension"] for r in regs) == [ext for ext, _ in users]
    for reg in regs:
        ext = reg["extension"]
        assert reg["contact"] == f"sip:{ext}@127.0.0.1:{sipp.local_port};transport=UDP"
        assert reg["transport"] == "udp"
        assert reg["source"] == f"127.0.0.1:{sipp.local_port}"
        assert reg["user_agent"] == "sipp-reg_auth"
        assert 3500 <= reg["expires"] <= 3600


# -- 4a. a retransmitted REGISTER gets the same response, not a second processing -------------


def test_retransmitted_register_gets_the_same_401_and_the_same_200(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    pbx = pbx_factory(md5_only=True, env=FAST_TIMERS)
    pbx.add_user("4001", "pw-4001-retrans")
    inf = write_users_csv(tmp_path / "users.csv", [("4001", "pw-4001-retrans")])

    result = sipp_factory(
        "reg_retransmit",
        remote=("127.0.0.1", pbx.sip_port),
        inf=[inf],
        calls=1,
        timeout_s=10,
        extra_args=["-nr"],
    ).run()

    assert result.ok, result.log_tail
    trace = _trace(result)
    first, again = _responses(trace, 401)
    assert first.to_tag == again.to_tag
    assert [c["nonce"] for c in first.challenges()] == [c["nonce"] for c in again.challenges()]
    assert first.raw == again.raw  # the stored response is resent as it was (17.2.2)
    ok, ok_again = _responses(trace, 200)
    assert ok.to_tag == ok_again.to_tag and ok.raw == ok_again.raw
    regs = pbx.registrations("4001")
    assert len(regs) == 1 and regs[0]["user_agent"] == "sipp-reg_retransmit"


# -- 4b/4c. INVITE server transaction: timer G retransmissions, ACK, timer H -----------------


def _assert_timer_g_intervals(times: list[float]) -> None:
    """Gaps between 407 copies are T1, 2*T1, 4*T1 ... capped at T2 (RFC 3261 17.2.1)."""
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    for n, gap in enumerate(gaps):
        expected = min(T1 * 2**n, T2)
        assert expected * 0.8 <= gap <= expected * 1.5 + 0.1, (n, gaps)


def test_unacked_407_is_retransmitted_with_doubling_timer_g_until_the_ack_arrives(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp]
) -> None:
    pbx = pbx_factory(md5_only=True, env=FAST_TIMERS)
    result = sipp_factory(
        "invite_407_ack",
        remote=("127.0.0.1", pbx.sip_port),
        calls=1,
        service="4100",
        timeout_s=10,
    ).run()

    assert result.ok, result.log_tail
    trace = _trace(result)
    (ack,) = _sent(trace, "ACK")
    copies = [r.received_at for r in _responses(trace, 407)]
    before = [t for t in copies if t <= ack.at]
    # sent at 0, T1, 3*T1, 7*T1, 15*T1 (0.75 s) before the ACK went out at 1 s
    assert len(before) >= 5, copies
    _assert_timer_g_intervals(before)
    late = [round(t - ack.at, 3) for t in copies if t > ack.at + 0.05]
    assert late == [], f"407 retransmitted after the ACK (seconds after it): {late}"
    assert result.count("407", "Retrans") == len(copies) - 1
    deadline = time.monotonic() + 5
    while _transactions(pbx) and time.monotonic() < deadline:  # timer I (T4) then gone
        time.sleep(0.2)
    assert _transactions(pbx) == 0


def test_unacked_407_stops_at_timer_h_and_the_transaction_is_gone(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp]
) -> None:
    pbx = pbx_factory(md5_only=True, env=FAST_TIMERS)
    sipp = sipp_factory(
        "invite_407_no_ack",
        remote=("127.0.0.1", pbx.sip_port),
        calls=1,
        service="4101",
        timeout_s=10,
    ).start()
    seen_pending = False
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline and not seen_pending:
        seen_pending = _transactions(pbx) >= 1
        time.sleep(0.1)
    result = sipp.wait()

    assert result.ok, result.log_tail
    assert seen_pending, "status.json never showed the INVITE transaction"
    copies = [r.received_at for r in _responses(_trace(result), 407)]
    # G fires at 0.05, 0.15, 0.35, 0.75, 1.55 (3.15 races with H at 3.2 s)
    assert 6 <= len(copies) <= 7, copies
    _assert_timer_g_intervals(copies)
    assert copies[-1] - copies[0] <= TIMER_H + 0.2, "407 retransmitted after timer H"
    deadline = time.monotonic() + 3
    while _transactions(pbx) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _transactions(pbx) == 0


# -- 4d. CANCEL -----------------------------------------------------------------------------


def _invite(client: SipClient, call_id: str, tag: str, branch: str, method: str) -> bytes:
    return client.build(
        method,
        uri=f"sip:4200@127.0.0.1:{client.server[1]}",
        from_user="4299",
        to_user="4200",
        call_id=call_id,
        from_tag=tag,
        cseq=1,
        branch=branch,
    )


def test_cancel_without_a_matching_invite_gets_481(pbx_server: PbxServer) -> None:
    with SipClient(("127.0.0.1", pbx_server.sip_port)) as client:
        client.send(_invite(client, "no-such-call@test", new_tag(), "z9hG4bKnosuch1", "CANCEL"))
        resp = client.final()
    assert resp is not None and (resp.status, resp.cseq_method) == (481, "CANCEL"), resp


def _cancel_after_final(pbx: PbxServer) -> tuple[SipResponse, list[SipResponse]]:
    """INVITE (answered 407 at once), then CANCEL it: (the 407, what came within 0.5 s)."""
    with SipClient(("127.0.0.1", pbx.sip_port)) as client:
        call_id, tag, branch = f"{new_tag()}@test", new_tag(), "z9hG4bK" + new_tag()
        client.send(_invite(client, call_id, tag, branch, "INVITE"))
        first = client.final()
        assert first is not None and first.status == 407, first
        client.send(_invite(client, call_id, tag, branch, "CANCEL"))
        return first, client.collect(0.5)


def test_cancel_of_an_already_answered_invite_gets_200_and_no_487(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    """pbx answers every INVITE at once (407, or 480 after authentication: no calls yet), so
    an INVITE cannot be cancelled while pending; RFC 3261 9.2: a CANCEL matching a transaction
    that already sent its final response gets 200 and changes nothing."""
    _, later = _cancel_after_final(pbx_factory(env=FAST_TIMERS))
    cancel_answers = [r for r in later if r.cseq_method == "CANCEL"]
    invite_answers = [r for r in later if r.cseq_method == "INVITE"]
    assert [r.status for r in cancel_answers] == [200], later
    assert all(r.status == 407 for r in invite_answers), invite_answers  # only G copies


def test_200_to_cancel_has_the_to_tag_of_the_invite_response(pbx_server: PbxServer) -> None:
    """RFC 3261 9.2: the To tag of the response to the CANCEL and of the response to the
    original request SHOULD be the same."""
    invite_answer, later = _cancel_after_final(pbx_server)
    (ok,) = [r for r in later if r.cseq_method == "CANCEL"]
    assert ok.to_tag == invite_answer.to_tag, f"407 To tag {invite_answer.to_tag}:\n{ok}"
