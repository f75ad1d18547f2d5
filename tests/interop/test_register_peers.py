"""Real phones register with the real pbx server (RFC 3261 §10, digest per §22 / RFC 8760).

Owns the registration interop matrix: baresip over UDP, TCP and TLS (MD5-only server, inside a
private netns), linphone-daemon and pyVoIP against the shipped SHA-256 + MD5 challenge pair,
wrong passwords refused by each peer, two peers on two extensions at once, and what baresip
1.0.0 does when MD5 is offered before SHA-256. Every check goes through ``pbx status --json``
(the binding, its transport, contact, source and User-Agent) and, for the digest algorithm
used, through the server's DEBUG log line "authenticated <user> with <algorithm>".

Imports nothing from ``pbx``: the server is a black box (tests/interop/harness).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from .harness.baresip import Baresip, BaresipAccount
from .harness.linphone import Linphone, LinphoneError
from .harness.pbx_server import PbxServer

pytestmark = pytest.mark.interop

PASSWORD = "correct-horse-42"
WRONG = "not-the-password"
DEBUG_TOML = '[log]\nlevel = "DEBUG"\n'
ALLOW_LOOPBACK_TOML = '[guard]\nallowlist = ["127.0.0.0/8"]\n'
_AUTH_LINE = re.compile(r"DEBUG pbx\.sip\.access: authenticated (\S+) with (\S+)")
_FAILED_LINE = re.compile(r"authentication failed for '(\S+)'")


# -- helpers -------------------------------------------------------------------------------------
def _wait_unregistered(server: PbxServer, extension: str, timeout: float = 10.0) -> None:
    """Poll ``pbx status --json`` until ``extension`` has no binding left."""
    deadline = time.monotonic() + timeout
    regs = server.registrations(extension)
    while regs:
        if time.monotonic() > deadline:
            raise AssertionError(f"{extension} still registered after {timeout:g}s: {regs}")
        time.sleep(0.2)
        regs = server.registrations(extension)


def _log_text(server: PbxServer) -> str:
    return server.log_path.read_text(encoding="utf-8", errors="replace")


def _algorithms_used(server: PbxServer, user: str) -> list[str]:
    """The digest algorithms the server accepted for ``user`` (needs [log] level DEBUG)."""
    return [alg for who, alg in _AUTH_LINE.findall(_log_text(server)) if who == user]


def _failed_users(server: PbxServer) -> list[str]:
    """Usernames whose credentials the server verified and rejected (INFO log line)."""
    return _FAILED_LINE.findall(_log_text(server))


def _ban_lines(server: PbxServer) -> list[str]:
    """``pbx ban list``, one line per active ban (empty when none)."""
    out = server.cli("ban", "list", check=True).stdout
    return [line for line in out.splitlines() if line.strip() and line != "no active bans"]


def _wait_baresip_failed(agent: Baresip, account: BaresipAccount, timeout: float = 10.0) -> str:
    """Until baresip reports the account's registration failed: its REGISTER_FAIL event's
    param, or "ERR" from ``reginfo`` (an event sent before ctrl_tcp was connected is lost)."""
    aor = account.aor()
    deadline = time.monotonic() + timeout
    while True:
        for event in agent.events:
            if event.get("type") == "REGISTER_FAIL" and event.get("accountaor") == aor:
                return str(event.get("param"))
        if agent.reginfo().get(aor) == "ERR":
            return "ERR"
        if time.monotonic() > deadline:
            raise AssertionError(f"baresip {aor}: no registration failure in {timeout:g}s")
        time.sleep(0.2)


def _source_host_port(reg: dict[str, Any]) -> tuple[str, int]:
    host, _, port = str(reg["source"]).rpartition(":")
    return host, int(port)


# -- baresip (MD5 only, private netns) ---------------------------------------------------------
@pytest.mark.netns
@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_baresip_registers_with_digest_and_quit_removes_the_binding(
    transport: str,
    pbx_factory: Callable[..., PbxServer],
    baresip_factory: Callable[..., Baresip],
) -> None:
    server = pbx_factory(md5_only=True, site_toml=DEBUG_TOML)
    server.add_user("1001", PASSWORD)
    port = server.tls_port if transport == "tls" else server.sip_port
    account = BaresipAccount("1001", PASSWORD, port, transport=transport)
    cafile = server.cert_path if transport == "tls" else None
    agent = baresip_factory([account], cafile=cafile)

    agent.wait_registered(account, timeout=10)
    reg = server.wait_registered("1001", timeout=5)

    assert reg["transport"] == transport
    # libre's Contact: <sip:USER-0xPTR@LADDR[;transport=..]>, TLS listening on sip_port + 1
    listen_port = agent.sip_port + 1 if transport == "tls" else agent.sip_port
    suffix = "" if transport == "udp" else f";transport={transport}"
    assert re.fullmatch(rf"sip:1001-\w+@127\.0\.0\.1:{listen_port}{suffix}", reg["contact"])
    host, source_port = _source_host_port(reg)
    assert host == "127.0.0.1" and source_port > 0
    if transport == "udp":
        assert source_port == agent.sip_port  # sent from its listening socket
    assert reg["user_agent"].startswith("baresip v1.0.0")
    assert 0 < int(reg["expires"]) <= 60  # regint=60 (>= the default min_expires 60)
    assert _algorithms_used(server, "1001") == ["MD5"]

    assert agent.quit(timeout=5) == 0
    _wait_unregistered(server, "1001")


@pytest.mark.netns
def test_baresip_uadel_unregisters_one_account_and_keeps_the_other(
    pbx_factory: Callable[..., PbxServer], baresip_factory: Callable[..., Baresip]
) -> None:
    server = pbx_factory(md5_only=True)
    server.add_user("1001", PASSWORD)
    server.add_user("1002", PASSWORD)
    first = BaresipAccount("1001", PASSWORD, server.sip_port)
    second = BaresipAccount("1002", PASSWORD, server.sip_port, transport="tcp")
    agent = baresip_factory([first, second])
    agent.wait_registered(first, timeout=10)
    agent.wait_registered(second, timeout=10)
    server.wait_registered("1001", timeout=5)
    server.wait_registered("1002", timeout=5)

    agent.unregister(first)

    _wait_unregistered(server, "1001")
    [kept] = server.registrations("1002")
    assert kept["transport"] == "tcp"


@pytest.mark.netns
def test_baresip_with_wrong_password_reports_failure_and_gets_no_binding(
    pbx_factory: Callable[..., PbxServer], baresip_factory: Callable[..., Baresip]
) -> None:
    # libre answers every fresh 401 with another attempt (about 15 in 50 ms) before it gives
    # up; the allowlist keeps the guard from banning 127.0.0.1 mid-burst (tested below).
    server = pbx_factory(md5_only=True, site_toml=ALLOW_LOOPBACK_TOML)
    server.add_user("1001", PASSWORD)
    account = BaresipAccount("1001", WRONG, server.sip_port)
    agent = baresip_factory([account])

    failure = _wait_baresip_failed(agent, account)

    assert "401" in failure or failure == "ERR"
    assert server.registrations() == []
    assert "1001" in _failed_users(server)
    assert _ban_lines(server) == []


@pytest.mark.netns
def test_baresip_wrong_password_stops_at_403_without_a_ban_or_binding(
    pbx_factory: Callable[..., PbxServer], baresip_factory: Callable[..., Baresip]
) -> None:
    """libre answers every fresh 401 at once; the server's 403 on the second failure of the
    same Call-ID ends that loop, so one mistyped password does not ban the whole address."""
    server = pbx_factory(md5_only=True)
    server.add_user("1001", PASSWORD)
    account = BaresipAccount("1001", WRONG, server.sip_port)
    agent = baresip_factory([account])

    deadline = time.monotonic() + 10
    while _failed_users(server).count("1001") < 2:
        assert time.monotonic() < deadline, "baresip never sent wrong credentials twice"
        time.sleep(0.2)
    time.sleep(1.5)  # a phone still looping would pile up failures (and a ban) meanwhile

    assert _failed_users(server).count("1001") == 2
    assert _ban_lines(server) == []
    assert server.registrations() == []
    agent.stop()


# -- linphone-daemon (shipped default: SHA-256 then MD5) ---------------------------------------
def test_linphone_registers_with_default_challenges_using_sha256_and_unregisters(
    pbx_factory: Callable[..., PbxServer], linphone_factory: Callable[..., Linphone]
) -> None:
    server = pbx_factory(site_toml=DEBUG_TOML)
    server.add_user("1002", PASSWORD)
    phone = linphone_factory()

    reg_id = phone.register("1002", PASSWORD, server.sip_port)
    phone.wait_registered(reg_id, timeout=10)
    reg = server.wait_registered("1002", timeout=5)

    assert reg["transport"] == "udp"
    assert reg["contact"].startswith("sip:1002@127.0.0.1:")
    assert f"127.0.0.1:{phone.sip_port}" in reg["contact"]
    assert _source_host_port(reg) == ("127.0.0.1", phone.sip_port)
    assert reg["user_agent"] == "Unknown"  # linphone-daemon sets none; belle-sip's default
    # linphone 5.1 answers the first (strongest) challenge it supports: SHA-256 (RFC 8760 §2.4)
    assert set(_algorithms_used(server, "1002")) == {"SHA-256"}
    sent = phone.log_path.read_text(encoding="utf-8", errors="replace")
    assert re.search(r"Authorization: +Digest [^\n]*algorithm=SHA-256", sent)

    phone.unregister(reg_id)
    _wait_unregistered(server, "1002")


def test_linphone_with_wrong_password_reports_failure_and_gets_no_binding(
    pbx_factory: Callable[..., PbxServer], linphone_factory: Callable[..., Linphone]
) -> None:
    server = pbx_factory()
    server.add_user("1002", PASSWORD)
    phone = linphone_factory()

    reg_id = phone.register("1002", WRONG, server.sip_port)
    with pytest.raises(LinphoneError, match="failed"):
        phone.wait_registered(reg_id, timeout=10)
    assert phone.register_status(reg_id)[reg_id] == "LinphoneRegistrationFailed"
    assert server.registrations() == []
    assert "1002" in _failed_users(server)


# -- pyVoIP 1.6.8 (UDP, MD5 only) ---------------------------------------------------------------
def test_pyvoip_registers_with_md5_under_default_challenges_and_stop_unregisters(
    pbx_factory: Callable[..., PbxServer], pyvoip_factory: Callable[..., Any]
) -> None:
    server = pbx_factory(site_toml=DEBUG_TOML)
    server.add_user("1003", PASSWORD)
    phone = pyvoip_factory(server.sip_port, "1003", PASSWORD)

    reg = server.wait_registered("1003", timeout=5)
    assert reg["transport"] == "udp"
    assert reg["contact"].startswith("sip:1003@127.0.0.1:")
    assert _source_host_port(reg) == ("127.0.0.1", phone.sip_port)
    assert reg["user_agent"].startswith("pyVoIP")
    assert set(_algorithms_used(server, "1003")) == {"MD5"}

    phone.stop()
    _wait_unregistered(server, "1003")


def test_pyvoip_with_wrong_password_fails_and_gets_no_binding(
    pbx_factory: Callable[..., PbxServer], pyvoip_factory: Callable[..., Any]
) -> None:
    from .harness.pyvoip_phone import PhoneStatus, PyVoipError

    server = pbx_factory()
    server.add_user("1003", PASSWORD)
    phone = pyvoip_factory(server.sip_port, "1003", WRONG, start=False)

    with pytest.raises(PyVoipError, match="registration failed"):
        phone.start(timeout=15)
    # FAILED, or INACTIVE once the harness's clean-up stop() has run after pyVoIP's fatal()
    assert phone.status() in (PhoneStatus.FAILED, PhoneStatus.INACTIVE)
    assert server.registrations() == []
    assert "1003" in _failed_users(server)


# -- several peers at once ----------------------------------------------------------------------
def test_two_different_peers_on_two_extensions_are_both_registered(
    pbx_factory: Callable[..., PbxServer],
    linphone_factory: Callable[..., Linphone],
    pyvoip_factory: Callable[..., Any],
) -> None:
    server = pbx_factory()
    server.add_user("1002", PASSWORD)
    server.add_user("1003", PASSWORD)
    linphone = linphone_factory()
    reg_id = linphone.register("1002", PASSWORD, server.sip_port)
    linphone.wait_registered(reg_id, timeout=10)
    pyvoip = pyvoip_factory(server.sip_port, "1003", PASSWORD)
    server.wait_registered("1003", timeout=5)

    regs = {r["extension"]: r for r in server.registrations()}

    assert set(regs) == {"1002", "1003"}
    assert _source_host_port(regs["1002"]) == ("127.0.0.1", linphone.sip_port)
    assert _source_host_port(regs["1003"]) == ("127.0.0.1", pyvoip.sip_port)
    assert regs["1003"]["user_agent"].startswith("pyVoIP")
    assert not regs["1002"]["user_agent"].startswith("pyVoIP")


# -- old-phone advice: what baresip 1.0.0 (libre 1.1.0) does with two challenges -----------------
@pytest.mark.netns
@pytest.mark.parametrize("order", [["SHA-256", "MD5"], ["MD5", "SHA-256"]], ids="-then-".join)
def test_baresip_cannot_answer_a_challenge_pair_whatever_the_order(
    order: list[str],
    pbx_factory: Callable[..., PbxServer],
    baresip_factory: Callable[..., Baresip],
) -> None:
    """libre refuses the whole 401 (ENOSYS) when ANY WWW-Authenticate names an algorithm
    other than MD5, so only ``[auth] algorithms = ["MD5"]`` serves such phones."""
    algorithms = ", ".join(f'"{a}"' for a in order)
    server = pbx_factory(site_toml=f"[auth]\nalgorithms = [{algorithms}]\n" + DEBUG_TOML)
    server.add_user("1001", PASSWORD)
    account = BaresipAccount("1001", PASSWORD, server.sip_port)
    agent = baresip_factory([account])

    assert _wait_baresip_failed(agent, account) in ("ERR", "Function not implemented")

    baresip_log = agent.log_path.read_text(encoding="utf-8", errors="replace")
    assert "Register: Function not implemented" in baresip_log
    assert _algorithms_used(server, "1001") == []
    assert _failed_users(server) == []  # it never sent credentials at all
    assert server.registrations() == []
