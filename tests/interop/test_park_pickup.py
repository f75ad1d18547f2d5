"""Call park and call pickup through pbx (issue 9).

Park: a blind transfer to 700 parks the call in the first free slot of 701-720 (the parked
phone hears music on hold, the parker hears the slot number: a spoken prompt, checked as
about a second of audio that is neither a test tone nor silence); dialling the slot from any phone retrieves it; after ``[calls]
park_timeout`` the parker's phone rings again. Pickup: ``pbx user set EXT --pickup-group
NAME``; ``*8`` picks up a call ringing at a member of the caller's group, ``**EXT`` the call
ringing at EXT; the phone that rang gets CANCEL.

Peers: baresip (``transfer sip:700@pbx``, ``dial``, ``accept``), raw phones for a second,
simultaneous park. Audio is checked by tone (callflows.TONES, music 700 Hz).
Imports nothing from ``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .callflows import (
    LABELS,
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
    recording,
    refer_answer,
    start_pbx,
    uri,
    wait_until,
)
from .harness.baresip import Baresip
from .harness.pbx_server import PbxServer
from .harness.raw_phone import RawPhone
from .harness.tones import labels

pytestmark = pytest.mark.netns

BaresipFactory = Callable[..., Baresip]
TALK = 2.0


@pytest.fixture
def pbx(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    return start_pbx(pbx_factory)


def phone(
    baresip_factory: BaresipFactory, tmp_path: Path, pbx: PbxServer, ext: str, **kw: str
) -> Baresip:
    return baresip_phone(baresip_factory, tmp_path, pbx, ext, **kw)


def park(a: Baresip, b: Baresip, pbx: PbxServer) -> float:
    """A calls B, they talk, A blind-transfers B to 700; returns when the REFER was
    accepted (time.monotonic()), once A's call is over."""
    a.dial(uri(pbx, B))
    b.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    a.transfer(uri(pbx, "700"))
    refer_answer(a)
    parked_at = time.monotonic()
    wait_until(lambda: closed(a), 15, "the parker's call ended")
    return parked_at


# -- park --------------------------------------------------------------------------------------


def test_transfer_to_700_parks_the_call_in_701_with_music_and_dialling_701_retrieves_it(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    c = phone(baresip_factory, tmp_path, pbx, C)
    park(a, b, pbx)
    time.sleep(TALK)  # parked: B hears music
    c.dial(uri(pbx, "701"))
    c.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    c.hangup()
    b.wait_event("CALL_CLOSED", timeout=5)

    assert len(b.received("INVITE")) == 1  # parked and retrieved on its one call
    # the parker heard B, then the slot announced (a spoken prompt: no test tone, not silent)
    found = labels(recording(a), LABELS)
    after_b = found[len(found) - found[::-1].index(B) :] if B in found else []
    assert B in found and after_b.count("other") >= 5, f"A heard {found}"
    assert_phone_heard(b, [A, "moh", C])
    assert_phone_heard(c, [B])
    assert_history_mentions(cdr(pbx, count=2), B, "701")


def test_a_second_parked_call_takes_slot_702_and_each_slot_gives_back_its_own_call(
    pbx: PbxServer,
    baresip_factory: BaresipFactory,
    raw_phone_factory: Callable[..., RawPhone],
    tmp_path: Path,
) -> None:
    """A parks B (701), then C parks D (raw phones, REFER to 700 -> 702); A retrieves 702
    and hears D, C retrieves 701 and hears B."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B)
    park(a, b, pbx)
    c = raw_phone_factory(pbx.sip_port, C, PASSWORDS[C], tone=TONES[C])
    d = raw_phone_factory(pbx.sip_port, D, PASSWORDS[D], tone=TONES[D], auto_answer=True)
    c_to_d = c.call(D)
    time.sleep(1.0)
    assert c.refer(c_to_d, f"<{uri(pbx, '700')}>").status == 202
    c_to_d.wait_request("NOTIFY", 10, match=lambda m: m.text.startswith("SIP/2.0 2"))
    c.bye(c_to_d)
    time.sleep(1.0)
    a.dial(uri(pbx, "702"))
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    retrieve_701 = c.call("701")
    time.sleep(TALK)
    a.hangup()
    c.bye(retrieve_701)
    b.wait_event("CALL_CLOSED", timeout=5)

    assert_phone_heard(a, [D])  # the retrieval call
    assert_raw_heard("C (retrieving 701)", retrieve_701.samples(), [B])
    (d_call,) = d.dialogs
    assert_raw_heard("D", d_call.samples(), [C, "moh", A])


def test_a_call_parked_too_long_rings_the_parker_again(
    pbx_factory: Callable[..., PbxServer], baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    """[calls] park_timeout = 3: nobody retrieves 701; pbx rings A again and on answer A
    talks to B."""
    pbx = start_pbx(pbx_factory, "[calls]\npark_timeout = 3\n")
    a = phone(baresip_factory, tmp_path, pbx, A, answermode="manual")  # rings, no auto-answer
    b = phone(baresip_factory, tmp_path, pbx, B)
    parked_at = park(a, b, pbx)
    recall = a.wait_event("CALL_INCOMING", timeout=12)
    rang_after = float(recall["received_at"]) - parked_at
    time.sleep(1.2)  # the recall call's recording must not collide with the first one
    a.accept()
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    time.sleep(TALK)
    a.hangup()
    b.wait_event("CALL_CLOSED", timeout=5)

    assert 2.0 <= rang_after <= 9.0, f"parker rung {rang_after:.1f} s after parking"
    assert_phone_heard(a, [B])  # the recall call
    assert_phone_heard(b, [A, "moh", A])
    assert_history_mentions(cdr(pbx), A, B)


# -- pickup ------------------------------------------------------------------------------------


def set_group(pbx: PbxServer, ext: str, group: str) -> None:
    done = pbx.cli("user", "set", ext, "--pickup-group", group)
    assert done.returncode == 0, done.stderr


def ringing_b(
    baresip_factory: BaresipFactory, tmp_path: Path, pbx: PbxServer
) -> tuple[Baresip, Baresip]:
    """A calls B, which rings (manual answer) and never answers."""
    a = phone(baresip_factory, tmp_path, pbx, A)
    b = phone(baresip_factory, tmp_path, pbx, B, answermode="manual")
    a.dial(uri(pbx, B))
    b.wait_event("CALL_INCOMING", timeout=10)
    return a, b


def assert_picked_up(a: Baresip, b: Baresip, picker: Baresip, pbx: PbxServer) -> None:
    picker.wait_event("CALL_ESTABLISHED", timeout=10)
    a.wait_event("CALL_ESTABLISHED", timeout=10)
    b.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(TALK)
    picker.hangup()
    a.wait_event("CALL_CLOSED", timeout=5)

    assert b.received("CANCEL"), "the phone that rang got no CANCEL"
    assert_phone_heard(a, [picker.accounts[0].user])
    assert_phone_heard(picker, [A])
    assert_history_mentions(cdr(pbx), A, picker.accounts[0].user)


def test_star8_picks_up_a_call_ringing_in_the_callers_pickup_group(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    set_group(pbx, B, "sales")
    set_group(pbx, D, "sales")
    a, b = ringing_b(baresip_factory, tmp_path, pbx)
    d = phone(baresip_factory, tmp_path, pbx, D)
    d.dial(uri(pbx, "*8"))
    assert_picked_up(a, b, d, pbx)


def test_star_star_ext_picks_up_the_call_ringing_at_that_extension(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    a, b = ringing_b(baresip_factory, tmp_path, pbx)
    c = phone(baresip_factory, tmp_path, pbx, C)
    c.dial(uri(pbx, f"**{B}"))
    assert_picked_up(a, b, c, pbx)


def test_star8_from_outside_the_group_does_not_take_the_call(
    pbx: PbxServer, baresip_factory: BaresipFactory, tmp_path: Path
) -> None:
    set_group(pbx, B, "sales")
    set_group(pbx, C, "support")
    a, b = ringing_b(baresip_factory, tmp_path, pbx)
    c = phone(baresip_factory, tmp_path, pbx, C)
    c.dial(uri(pbx, "*8"))
    c.wait_event("CALL_CLOSED", timeout=10)
    time.sleep(0.5)

    assert not any(e.get("type") == "CALL_ESTABLISHED" for e in c.events)
    assert not closed(b) and b.received("CANCEL") == [], "B stopped ringing"
    b.accept()
    b.wait_event("CALL_ESTABLISHED", timeout=5)
    a.wait_event("CALL_ESTABLISHED", timeout=5)
