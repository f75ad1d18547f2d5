"""Calls between extensions through the real pbx B2BUA, driven by SIPp on both sides.

The callee is SIPp: it first registers an extension with ``reg_auth`` from its own port (pbx
binds the REGISTER's source address), then a UAS scenario listens on that same port. The caller
is a SIPp UAC that authenticates its INVITE (407, MD5). After every scenario, ``pbx cdr --csv``
must show what happened: disposition, caller, dialled number, hang-up side.

Covers: an answered call with RTP relayed both ways through pbx's own port range (checked with
tcpdump on lo), the callee hanging up, CANCEL before answer (RFC 3261 9), busy (486), no
answer ([calls] no_answer_timeout), a missing ACK (13.3.1.4), a callee repeating its 200
(ACKed again, before and after Timer M), unknown number (404), extension
without registration (480), parallel forking to two contacts (first 2xx wins, the other fork
gets CANCEL), 1,000 calls in a row and a kill -9 with 50 calls up (records 'interrupted').
Imports nothing from ``pbx``.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness.pbx_server import PbxServer
from .harness.raw_sip import SipResponse, TracedMessage, read_sipp_trace
from .harness.rtp_capture import UdpCapture, capture_unavailable, write_rtp_pcap
from .harness.sipp import Sipp, write_users_csv

CALLER, CALLEE, IDLE = "2001", "2002", "2003"
PASSWORDS = {CALLER: "pw-2001-caller", CALLEE: "pw-2002-callee", IDLE: "pw-2003-idle"}
LOCAL = "127.0.0.1"

SippFactory = Callable[..., Sipp]


# -- helpers ---------------------------------------------------------------------------------


@pytest.fixture
def make_pbx(pbx_factory: Callable[..., PbxServer], tmp_path: Path) -> Callable[..., PbxServer]:
    """make(**PbxServer kwargs) -> a started MD5-only pbx with users 2001, 2002 and 2003."""

    def make(**kwargs: Any) -> PbxServer:
        pbx = pbx_factory(md5_only=True, **kwargs)
        path = tmp_path / "import.csv"
        path.write_text("".join(f"{e},{p}\n" for e, p in PASSWORDS.items()), encoding="utf-8")
        pbx.cli("user", "import", str(path), check=True)
        return pbx

    return make


def _users_csv(tmp_path: Path, ext: str) -> Path:
    return write_users_csv(tmp_path / f"users-{ext}.csv", [(ext, PASSWORDS[ext])])


def _register(pbx: PbxServer, sipp_factory: SippFactory, tmp_path: Path, ext: str) -> int:
    """REGISTER ext from a fresh SIPp port; returns that port (the binding's source)."""
    reg = sipp_factory(
        "reg_auth",
        remote=(LOCAL, pbx.sip_port),
        inf=[_users_csv(tmp_path, ext)],
        calls=1,
        timeout_s=10,
        trace_msg=False,
    )
    result = reg.run()
    assert result.ok, result.log_tail
    return reg.local_port


def _callee(
    pbx: PbxServer,
    sipp_factory: SippFactory,
    tmp_path: Path,
    scenario: str,
    calls: int = 1,
    **kwargs: Any,
) -> Sipp:
    """Register CALLEE from a new port, then start a UAS scenario listening on that port."""
    port = _register(pbx, sipp_factory, tmp_path, CALLEE)
    kwargs.setdefault("timeout_s", 30)
    return sipp_factory(scenario, local_port=port, calls=calls, **kwargs).start()


def _caller(
    pbx: PbxServer,
    sipp_factory: SippFactory,
    tmp_path: Path,
    scenario: str,
    dialled: str = CALLEE,
    pause_ms: int | None = None,
    **kwargs: Any,
) -> Sipp:
    """An unstarted SIPp UAC calling ``dialled`` as CALLER."""
    extra = list(kwargs.pop("extra_args", []))
    if pause_ms is not None:
        extra += ["-d", str(pause_ms)]
    kwargs.setdefault("calls", 1)
    kwargs.setdefault("timeout_s", 20)
    return sipp_factory(
        scenario,
        remote=(LOCAL, pbx.sip_port),
        inf=[_users_csv(tmp_path, CALLER)],
        service=dialled,
        extra_args=extra,
        **kwargs,
    )


def _cdr(pbx: PbxServer, limit: int = 50) -> list[dict[str, str]]:
    out = pbx.cli("cdr", "--csv", "--limit", str(limit), check=True).stdout
    return list(csv.DictReader(io.StringIO(out)))


def _wait_cdr(
    pbx: PbxServer, count: int, timeout: float = 5.0, limit: int = 50
) -> list[dict[str, str]]:
    """Poll until ``count`` rows exist and none is still 'open'."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _cdr(pbx, limit)
        done = len(rows) >= count and all(r["disposition"] != "open" for r in rows)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.3)


def _trace(run: Sipp) -> list[TracedMessage]:
    return read_sipp_trace(run.workdir / "messages.log")


def _received(trace: list[TracedMessage], status: int, method: str = "INVITE") -> list[SipResponse]:
    got = [m.response for m in trace if m.direction == "received"]
    return [r for r in got if r is not None and r.status == status and r.cseq_method == method]


def _requests(trace: list[TracedMessage], direction: str, method: str) -> list[TracedMessage]:
    return [m for m in trace if m.direction == direction and m.first_line.startswith(method + " ")]


def _sdp_audio(body: bytes) -> tuple[str, int]:
    """(c= address, m=audio port) of an SDP body."""
    address, port = "", 0
    for line in body.decode().splitlines():
        if line.startswith("c=IN IP4 "):
            address = line.split()[-1]
        elif line.startswith("m=audio "):
            port = int(line.split()[1])
    return address, port


def _assert_row(row: dict[str, str], disposition: str, **expected: str) -> None:
    assert row["disposition"] == disposition, row
    assert row["caller"] == CALLER and row["caller_user"] == CALLER, row
    assert row["dialled"] == expected.pop("dialled", CALLEE), row
    for key, value in expected.items():
        assert row[key] == value, (key, row)
    assert float(row["ended_at"]) >= float(row["started_at"]), row


def _assert_unanswered(row: dict[str, str], disposition: str, **expected: str) -> None:
    _assert_row(row, disposition, **expected)
    assert row["answered_at"] == "" and row["duration"] == "", row


# -- 1. answered calls ---------------------------------------------------------------------


@pytest.fixture
def capture_ok() -> Iterator[None]:
    reason = capture_unavailable()
    if reason is not None:
        pytest.skip(reason)
    yield


@pytest.mark.usefixtures("capture_ok")
def test_answered_call_relays_rtp_both_ways_through_pbx_ports_and_records_its_duration(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    assert pbx.rtp_ports is not None
    low, high = pbx.rtp_ports
    callee = _callee(pbx, sipp_factory, tmp_path, "uas_call", extra_args=["-rtp_echo"])
    caller = _caller(pbx, sipp_factory, tmp_path, "call_uac_rtp", pause_ms=2000)
    packets = 50
    write_rtp_pcap(caller.workdir / "rtp.pcap", packets)

    with UdpCapture(tmp_path / "media.pcap", low, high) as capture:
        result = caller.run()
        callee_result = callee.wait()
        time.sleep(0.2)
    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail

    # the caller's media goes to pbx (200 OK SDP), the callee's too (the INVITE pbx sent)
    (ok,) = _received(_trace(caller), 200)
    a_host, a_port = _sdp_audio(ok.body)
    (invite,) = _requests(_trace(callee), "received", "INVITE")
    b_host, b_port = _sdp_audio(invite.data.split(b"\r\n\r\n", 1)[1])
    assert (a_host, b_host) == (LOCAL, LOCAL)
    assert low <= a_port <= high and low <= b_port <= high and a_port != b_port
    assert a_port % 2 == 0 and b_port % 2 == 0  # RTP on even ports (RFC 3550 11)

    def flow(src: tuple[str, int], dst: tuple[str, int]) -> list[bytes]:
        return [p.payload for p in capture.packets() if p.src == src and p.dst == dst]

    uac_media, uas_media = (LOCAL, caller.media_port), (LOCAL, callee.media_port)
    sent = flow(uac_media, (LOCAL, a_port))
    assert len(sent) == packets
    assert flow((LOCAL, b_port), uas_media) == sent, "caller -> callee not relayed as sent"
    assert flow(uas_media, (LOCAL, b_port)) == sent, "callee's echo missing"
    assert flow((LOCAL, a_port), uac_media) == sent, "echo not relayed back to the caller"

    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="caller", hangup_cause="BYE")
    assert row["caller_codec"] == row["callee_codec"] == "PCMU"
    assert 1.9 <= float(row["duration"]) <= 3.0, row


def test_callee_hanging_up_ends_the_call_for_the_caller_and_is_recorded_as_callee_side(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    callee = _callee(pbx, sipp_factory, tmp_path, "call_uas_answer_bye", extra_args=["-d", "1000"])
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_callee_bye").run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    assert result.count("BYE", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="callee", hangup_cause="BYE")
    assert 0.9 <= float(row["duration"]) <= 2.0, row


# -- 2-4. calls that are not answered ------------------------------------------------------


def test_caller_cancel_while_ringing_gives_487_cancels_the_callee_and_records_cancelled(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    callee = _callee(pbx, sipp_factory, tmp_path, "call_uas_ring_cancel")
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_cancel", pause_ms=500).run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert (result.count("180", "Recv"), result.count("487", "Recv")) == (1, 1)
    assert callee_result.ok, callee_result.log_tail
    assert callee_result.count("CANCEL", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "cancelled", hangup_side="caller", hangup_cause="CANCEL")


def test_busy_callee_gives_486_to_the_caller_and_records_busy(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    callee = _callee(pbx, sipp_factory, tmp_path, "call_uas_busy")
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected").run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert result.count("486", "Recv") == 1
    assert callee_result.ok, callee_result.log_tail  # pbx ACKed the 486
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "busy", hangup_side="callee", hangup_cause="486")


def test_unanswered_call_gets_480_after_the_no_answer_timeout_and_the_callee_gets_cancel(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(site_toml="[calls]\nno_answer_timeout = 2\n")
    callee = _callee(pbx, sipp_factory, tmp_path, "call_uas_ring_cancel")
    caller = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected")
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert (result.count("180", "Recv"), result.count("480", "Recv")) == (1, 1)
    trace = _trace(caller)
    invite = [m for m in _requests(trace, "sent", "INVITE") if b"Authorization:" in m.data]
    (final,) = _received(trace, 480)
    waited = final.received_at - invite[0].at
    assert 1.9 <= waited <= 3.0, f"480 came {waited:.2f} s after the INVITE"
    assert callee_result.ok, callee_result.log_tail
    assert callee_result.count("CANCEL", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "no answer", hangup_cause="480")


# -- 5. missing ACK ------------------------------------------------------------------------

T1 = 0.05


def test_unacked_200_is_retransmitted_then_the_call_is_cleared_with_bye_on_both_sides(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(env={"PBX_SIP_T1": str(T1)})
    callee = _callee(pbx, sipp_factory, tmp_path, "uas_call")
    caller = _caller(pbx, sipp_factory, tmp_path, "call_uac_no_ack")
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    trace = _trace(caller)
    copies = [r.received_at for r in _received(trace, 200)]
    (bye,) = _requests(trace, "received", "BYE")
    # 200 OK at 0, T1, 3*T1, 7*T1, 15*T1, 31*T1 (RFC 3261 13.3.1.4 doubling, capped at T2)
    gaps = [b - a for a, b in zip(copies, copies[1:], strict=False)]
    assert len(copies) >= 6, copies
    for n, gap in enumerate(gaps):
        assert T1 * 2**n * 0.8 <= gap <= T1 * 2**n * 1.5 + 0.1, (n, gaps)
    cleared = bye.at - copies[0]
    assert 64 * T1 - 0.1 <= cleared <= 64 * T1 + 1.0, f"BYE {cleared:.2f} s after the 200"
    assert callee_result.ok, callee_result.log_tail
    assert callee_result.count("BYE", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="caller", hangup_cause="no ACK")
    assert 64 * T1 - 0.2 <= float(row["duration"]) <= 64 * T1 + 1.0, row


def test_a_retransmitted_200_from_the_callee_is_acked_again_before_and_after_timer_m(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    """The callee repeats its 200 as if pbx's ACK was lost: pbx ACKs each copy (RFC 3261
    13.2.2.4), while its INVITE transaction is in Accepted and after Timer M ended it (RFC 6026
    7.2: then the dialog answers the stray 2xx); the call stays up until the callee's BYE."""
    pbx = make_pbx(env={"PBX_SIP_T1": str(T1)})
    timer_m_ms = int(64 * T1 * 1000)
    callee = _callee(
        pbx,
        sipp_factory,
        tmp_path,
        "call_uas_ack_lost",
        extra_args=["-nr", "-d", str(timer_m_ms + 1500)],
    )
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_callee_bye").run()
    callee_result = callee.wait()

    assert callee_result.ok, callee_result.log_tail  # every 200 got its ACK
    assert result.ok, result.log_tail
    acks = _requests(_trace(callee), "received", "ACK")
    assert len(acks) == 3, acks
    # each for the INVITE (its CSeq number, RFC 3261 13.2.2.4) and inside the dialog (To tag)
    cseqs = {line for ack in acks for line in ack.data.split(b"\r\n") if line.startswith(b"CSeq")}
    assert len(cseqs) == 1 and cseqs.pop().endswith(b" ACK"), acks
    assert all(
        b";tag=" in line
        for ack in acks
        for line in ack.data.split(b"\r\n")
        if line.startswith(b"To:")
    )
    assert result.count("BYE", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="callee", hangup_cause="BYE")


# -- 6. routing: unknown number, unregistered extension, forking ---------------------------


def test_unknown_number_gets_404_and_a_failed_call_record(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected", dialled="2999").run()

    assert result.ok, result.log_tail
    assert result.count("404", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "failed", dialled="2999", callee="", hangup_cause="404")


def test_extension_without_registration_gets_480_and_a_failed_call_record(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected", dialled=IDLE).run()

    assert result.ok, result.log_tail
    assert result.count("480", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "failed", dialled=IDLE, callee=IDLE, hangup_cause="480")


def test_call_forks_to_both_contacts_first_answer_wins_and_the_other_gets_cancel(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    answering = _callee(
        pbx, sipp_factory, tmp_path, "call_uas_ring_answer", variables={"ring": "1000"}
    )
    ringing = _callee(pbx, sipp_factory, tmp_path, "call_uas_ring_cancel")
    sources = sorted(r["source"] for r in pbx.registrations(CALLEE))
    assert sources == sorted(f"{LOCAL}:{s.local_port}" for s in (answering, ringing))

    result = _caller(pbx, sipp_factory, tmp_path, "call_uac", pause_ms=500).run()
    answered, cancelled = answering.wait(), ringing.wait()

    assert result.ok, result.log_tail
    assert result.count("180", "Recv") == 1  # both forks ring: the caller hears one 180
    assert answered.ok, answered.log_tail
    assert answered.count("BYE", "Recv") == 1
    assert cancelled.ok, cancelled.log_tail
    assert cancelled.count("CANCEL", "Recv") == 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="caller", hangup_cause="BYE")


# -- 7-8. many calls; a crash with calls up ------------------------------------------------


def test_thousand_calls_at_50_per_second_all_succeed_and_each_has_an_answered_record(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(rtp_block=240)
    callee = _callee(
        pbx, sipp_factory, tmp_path, "uas_call", calls=1000, timeout_s=55, trace_msg=False
    )
    caller = _caller(
        pbx,
        sipp_factory,
        tmp_path,
        "call_uac",
        pause_ms=200,
        calls=1000,
        rate=50,
        limit=100,
        timeout_s=50,
        trace_msg=False,
    )
    result = caller.run()
    callee_result = callee.wait()

    assert (result.returncode, result.successful, result.failed) == (0, 1000, 0), result.log_tail
    assert callee_result.successful == 1000, callee_result.log_tail
    rows = _wait_cdr(pbx, 1000, timeout=10, limit=2000)
    assert len(rows) == 1000
    assert {r["disposition"] for r in rows} == {"answered"}
    assert {(r["caller"], r["dialled"], r["hangup_side"]) for r in rows} == {
        (CALLER, CALLEE, "caller")
    }
    assert len({r["call_id"] for r in rows}) == 1000


def _answered_calls(pbx: PbxServer) -> int:
    try:
        data = json.loads(pbx.status_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return 0
    return sum(1 for call in data.get("calls", []) if call.get("state") == "answered")


def test_kill_9_with_50_calls_up_records_them_as_interrupted_after_restart(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(rtp_block=240)
    callee = _callee(pbx, sipp_factory, tmp_path, "uas_call", calls=50, trace_msg=False)
    caller = _caller(
        pbx,
        sipp_factory,
        tmp_path,
        "call_uac",
        pause_ms=60000,
        calls=50,
        rate=25,
        limit=50,
        timeout_s=40,
        trace_msg=False,
    ).start()
    deadline = time.monotonic() + 15
    while _answered_calls(pbx) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _answered_calls(pbx) == 50, caller.result().log_tail
    opened = _cdr(pbx, limit=100)
    assert [r["disposition"] for r in opened] == ["open"] * 50

    assert pbx.kill9() == -9
    caller.stop()
    callee.stop()
    pbx.start()

    rows = _cdr(pbx, limit=100)
    assert len(rows) == 50
    assert {(r["disposition"], r["hangup_cause"]) for r in rows} == {
        ("interrupted", "server restart")
    }
    assert {(r["caller"], r["dialled"], r["callee"]) for r in rows} == {(CALLER, CALLEE, CALLEE)}
    assert all(r["answered_at"] and r["ended_at"] and r["duration"] for r in rows)
    with sqlite3.connect(pbx.data_dir / "pbx.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
