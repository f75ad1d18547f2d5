"""In-dialog features of the pbx B2BUA against SIPp: session timers, hold, glare, static
contacts and call waiting.

Covers: RFC 4028 session timers shortened through the site config (a callee that vanishes
after answering is cleared, whether it or pbx is the refresher: BYE to the caller, record
answered/'session timer'); hold and resume mirrored to the other phone (RFC 3264 8.4: the
holder's a=sendonly reaches the held phone, its a=recvonly answer comes back); re-INVITE glare
(RFC 3261 14.1/14.2: pbx retries a 491 after 2.1-4 s and answers 491 itself while an offer is
being mirrored); an extension reached at a static contact without any REGISTER; call waiting
off giving 486 while the extension has a call. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .harness.pbx_server import PbxServer
from .harness.raw_sip import TracedMessage
from .harness.sipp import Sipp
from .test_calls_sipp import (
    CALLEE,
    LOCAL,
    _answered_calls,
    _assert_row,
    _assert_unanswered,
    _callee,
    _caller,
    _received,
    _requests,
    _trace,
    _wait_cdr,
)
from .test_calls_sipp import make_pbx as make_pbx_fixture

SippFactory = Callable[..., Sipp]
make_pbx = make_pbx_fixture  # the same fixture: an MD5-only pbx with users 2001-2003
SHORT_TIMERS = "[calls]\nsession_expires = 4\nmin_se = 2\n"


def _header(message: TracedMessage, name: str) -> str | None:
    head = message.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return None


def _direction(data: bytes) -> str:
    body = data.split(b"\r\n\r\n", 1)[1].decode()
    found = [a for a in ("sendrecv", "sendonly", "recvonly", "inactive") if f"a={a}" in body]
    return found[0] if found else "sendrecv"


def _ok_for(trace: list[TracedMessage], direction: str, cseq: str) -> TracedMessage:
    (message,) = [
        m
        for m in trace
        if m.direction == direction
        and m.first_line.startswith("SIP/2.0 200")
        and _header(m, "CSeq") == cseq
    ]
    return message


# -- session timers --------------------------------------------------------------------------


def test_vanished_callee_that_should_refresh_is_cleared_by_the_session_timer(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(site_toml=SHORT_TIMERS)
    callee = _callee(pbx, sipp_factory, tmp_path, "dialog_uas_vanish")
    caller = _caller(pbx, sipp_factory, tmp_path, "dialog_uac_timer")
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    # pbx offers the callee a timer (RFC 4028 7.1) with the configured values
    (invite,) = _requests(_trace(callee), "received", "INVITE")
    assert "timer" in (_header(invite, "Supported") or "")
    assert (_header(invite, "Session-Expires"), _header(invite, "Min-SE")) == ("4", "2")
    # the caller asked for 60 s with Min-SE 60: pbx may not go below it and lets it refresh
    trace = _trace(caller)
    (ok,) = _received(trace, 200)
    assert ok.get("Session-Expires") == "60;refresher=uac"
    assert "timer" in (ok.get("Require") or "")
    # the callee never refreshes: cleared at 4 - min(32, 4/3) s (RFC 4028 10)
    (bye,) = _requests(trace, "received", "BYE")
    cleared = bye.at - ok.received_at
    assert 2.3 <= cleared <= 3.6, f"BYE {cleared:.2f} s after the 200"
    assert callee_result.count("BYE", "Recv") >= 1
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="pbx", hangup_cause="session timer")


def test_vanished_callee_that_pbx_refreshes_is_cleared_when_the_refresh_goes_unanswered(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx(site_toml=SHORT_TIMERS)
    callee = _callee(pbx, sipp_factory, tmp_path, "dialog_uas_vanish_refresh")
    caller = _caller(pbx, sipp_factory, tmp_path, "dialog_uac_timer")
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    callee_trace = _trace(callee)
    (answer,) = [m for m in callee_trace if m.first_line.startswith("SIP/2.0 200")]
    refresh = [
        m
        for m in callee_trace
        if m.direction == "received" and m.first_line.split(" ")[0] in ("INVITE", "UPDATE")
    ][1]
    assert 1.7 <= refresh.at - answer.at <= 2.6, "refresh not at half the interval"
    assert _header(refresh, "Session-Expires") == "4;refresher=uac"
    (bye,) = _requests(_trace(caller), "received", "BYE")
    assert 3.7 <= bye.at - answer.at <= 5.0, f"BYE {bye.at - answer.at:.2f} s after the answer"
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="pbx", hangup_cause="session timer")


# -- hold and glare --------------------------------------------------------------------------


def test_hold_and_resume_from_a_phone_are_answered_by_pbx_not_forwarded(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    """pbx anchors the media: a hold from one phone is answered by pbx itself (recvonly,
    RFC 3264 8.4) and the other phone gets no re-INVITE (it hears music on hold instead:
    tests/interop/test_hold_music.py)."""
    pbx = make_pbx()
    callee = _callee(pbx, sipp_factory, tmp_path, "uas_call")
    caller = _caller(pbx, sipp_factory, tmp_path, "dialog_uac_hold", pause_ms=300)
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    assert len(_requests(_trace(callee), "received", "INVITE")) == 1  # no re-INVITE
    trace = _trace(caller)
    answered = _ok_for(trace, "received", "2 INVITE")
    held, resumed = _ok_for(trace, "received", "3 INVITE"), _ok_for(trace, "received", "4 INVITE")
    assert (_direction(held.data), _direction(resumed.data)) == ("recvonly", "sendrecv")
    versions = [
        int(m.data.split(b"o=", 1)[1].split(b"\r\n")[0].split()[2])
        for m in (answered, held, resumed)
    ]
    assert versions[1] == versions[0] + 1 and versions[2] == versions[1] + 1  # RFC 3264 8
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="caller", hangup_cause="BYE")


def test_a_reinvite_refused_with_491_is_retried_after_the_random_delay(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    """pbx's own re-INVITE (a session refresh) meets glare: it is retried 2.1-4 s later
    (RFC 3261 14.1: pbx made that leg's Call-ID) and the call goes on. A 10 s session:
    refreshed at 5 s, retried before it would expire."""
    pbx = make_pbx(site_toml="[calls]\nsession_expires = 10\nmin_se = 2\n")
    callee = _callee(pbx, sipp_factory, tmp_path, "dialog_uas_glare_refresh", timeout_s=40)
    caller = _caller(
        pbx, sipp_factory, tmp_path, "dialog_uac_timer_bye", pause_ms=12000, timeout_s=30
    )
    result = caller.run()
    callee_result = callee.wait()

    assert result.ok, result.log_tail
    assert callee_result.ok, callee_result.log_tail
    callee_trace = _trace(callee)
    invites = _requests(callee_trace, "received", "INVITE")
    first_try, retry = invites[1], invites[2]
    gap = retry.at - first_try.at
    assert 2.1 <= gap <= 4.5, f"re-INVITE retried {gap:.2f} s after the 491 (RFC 3261 14.1)"
    assert int(_header(retry, "CSeq").split()[0]) > int(_header(first_try, "CSeq").split()[0])
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", callee=CALLEE, hangup_side="caller", hangup_cause="BYE")


# -- static contacts and call waiting ------------------------------------------------------


def test_extension_with_a_static_contact_is_called_there_without_registering(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    door = sipp_factory("uas_call", calls=1, timeout_s=20).start()
    added = pbx.cli("user", "add", "300", "--contact", f"sip:{LOCAL}:{door.local_port}")
    assert added.returncode == 0, added.stderr
    assert pbx.registrations("300") == []
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac", dialled="300", pause_ms=300).run()
    door_result = door.wait()

    assert result.ok, result.log_tail
    assert door_result.ok, door_result.log_tail
    (row,) = _wait_cdr(pbx, 1)
    _assert_row(row, "answered", dialled="300", callee="300", hangup_side="caller")


def test_a_call_to_an_unreachable_ipv6_contact_fails_cleanly_with_a_record(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    """pbx listens on 127.0.0.1 only: an IPv6 contact cannot be reached. The caller gets a
    final error, nothing stays in the call table, the media ports are given back and the call
    has its record."""
    pbx = make_pbx()

    def live() -> dict[str, Any]:  # DATA/run/status.json, rewritten every second
        data: dict[str, Any] = json.loads(pbx.status_path.read_text(encoding="utf-8"))
        return data

    free_before = live()["media_ports_free"]
    added = pbx.cli("user", "add", "301", "--contact", "sip:[::1]:5999")
    assert added.returncode == 0, added.stderr
    result = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected", dialled="301").run()

    assert result.ok, result.log_tail
    assert result.count("503", "Recv") == 1  # pbx cannot send there: a transport error
    (row,) = _wait_cdr(pbx, 1)
    _assert_unanswered(row, "failed", dialled="301", callee="301", hangup_cause="503")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        time.sleep(1.2)
        status = live()
        if status["calls"] == [] and status["media_ports_free"] == free_before:
            break
    assert status["calls"] == [] and status["media_ports_free"] == free_before, status


def test_call_waiting_off_gives_486_while_the_extension_has_a_call(
    make_pbx: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = make_pbx()
    changed = pbx.cli("user", "set", CALLEE, "--call-waiting", "off")
    assert changed.returncode == 0, changed.stderr
    callee = _callee(pbx, sipp_factory, tmp_path, "uas_call")
    first = _caller(pbx, sipp_factory, tmp_path, "call_uac", pause_ms=3000).start()
    deadline = time.monotonic() + 5
    while _answered_calls(pbx) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _answered_calls(pbx) == 1, first.result().log_tail
    second = _caller(pbx, sipp_factory, tmp_path, "call_uac_rejected").run()
    first_result = first.wait()
    callee_result = callee.wait()

    assert second.ok, second.log_tail
    assert second.count("486", "Recv") == 1
    assert first_result.ok, first_result.log_tail
    assert callee_result.ok and callee_result.count("INVITE", "Recv") == 1
    rows = _wait_cdr(pbx, 2)
    busy = [r for r in rows if r["disposition"] == "busy"]
    answered = [r for r in rows if r["disposition"] == "answered"]
    assert len(busy) == 1 and len(answered) == 1, rows
    _assert_unanswered(busy[0], "busy", callee=CALLEE, hangup_cause="486")
