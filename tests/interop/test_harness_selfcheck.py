"""Self-check of the interop harness: every driver proven against a real peer.

Against SIPp acting as a digest registrar (scenarios/uas_registrar.xml): the SIPp reg_auth
client, baresip, linphone-daemon and pyVoIP each register. Plus the port reservation, the
private network namespace, and the PbxServer lifecycle against the real ``pbx serve``.
Imports nothing from ``pbx``.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import REGISTRAR_PASSWORD
from .harness import netns, ports
from .harness.baresip import Baresip, BaresipAccount, BaresipError
from .harness.linphone import Linphone, LinphoneError
from .harness.pbx_server import PbxServer, PbxServerError, sip_options
from .harness.sipp import Sipp, write_users_csv

pytestmark = pytest.mark.interop


def test_free_ports_are_distinct_and_bindable_for_udp_and_tcp() -> None:
    got = ports.free_ports(5)
    try:
        assert len(set(got)) == 5
        for port in got:
            for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
                with socket.socket(socket.AF_INET, kind) as s:
                    s.bind(("127.0.0.1", port))
        assert not set(got) & set(ports.free_ports(20))
    finally:
        ports.release(*got)


def test_port_block_is_contiguous_even_and_reserved() -> None:
    low, high = ports.free_port_block(10)
    try:
        assert high - low == 9 and low % 2 == 0
        for _ in range(20):
            assert not low <= ports.free_port() <= high
    finally:
        ports.release_block(low, high)


def test_ports_reserved_by_another_process_are_never_handed_out() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _HOLD_BLOCK],
        cwd=Path(__file__).resolve().parents[2],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        held = set(map(int, child.stdout.readline().split()))
        assert len(held) == 2000
        mine = ports.free_ports(300)
        assert not held & set(mine)
        ports.release(*mine)
    finally:
        child.kill()
        child.wait()


_HOLD_BLOCK = (
    "from tests.interop.harness import ports; import sys\n"
    "print(*ports.free_ports(2000), flush=True); sys.stdin.read()\n"
)


def test_private_netns_has_loopback_and_127_0_0_2_and_is_left_afterwards() -> None:
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    outside = Path("/proc/thread-self/ns/net").stat().st_ino
    with netns.private_netns() as ns:
        assert ns.inode != outside and netns.current() == ns
        for addr in ("127.0.0.1", "127.0.0.2"):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((addr, 0))
    assert Path("/proc/thread-self/ns/net").stat().st_ino == outside
    assert netns.current() is None


def test_sipp_client_registers_with_digest_then_unregisters(
    sipp_registrar: Sipp, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    users = write_users_csv(
        tmp_path / "users.csv", [("1001", REGISTRAR_PASSWORD), ("1002", "secret")]
    )
    registrar = ("127.0.0.1", sipp_registrar.local_port)

    reg = sipp_factory(
        "reg_auth", remote=registrar, inf=[users], calls=2, rate=10.0, timeout_s=10
    ).run()
    assert reg.ok, reg.log_tail
    assert (reg.successful, reg.count("401", "Recv"), reg.count("200", "Recv")) == (2, 2, 2)

    unreg = sipp_factory("unregister", remote=registrar, inf=[users], calls=1, timeout_s=10).run()
    assert unreg.ok, unreg.log_tail
    ping = sipp_factory("options", remote=registrar, calls=1, timeout_s=10).run()
    assert ping.ok and ping.count("200", "Recv") == 1, ping.log_tail


def test_sipp_client_with_wrong_password_is_refused(
    sipp_registrar: Sipp, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    users = write_users_csv(tmp_path / "bad.csv", [("1003", "not-the-password")])
    registrar = ("127.0.0.1", sipp_registrar.local_port)

    refused = sipp_factory(
        "reg_wrong_pw", remote=registrar, inf=[users], calls=1, timeout_s=10
    ).run()
    assert refused.ok and refused.count("403", "Recv") == 1, refused.log_tail
    # the same user through reg_auth fails: the scenario wants a 200
    failed = sipp_factory("reg_auth", remote=registrar, inf=[users], calls=1, timeout_s=10).run()
    assert (failed.returncode, failed.failed) == (1, 1)


@pytest.mark.netns
def test_baresip_registers_calls_and_hangs_up_with_sipp_registrar(
    sipp_registrar: Sipp, baresip_factory: Callable[..., Baresip]
) -> None:
    port = sipp_registrar.local_port
    good = BaresipAccount("1001", REGISTRAR_PASSWORD, port)
    agent = baresip_factory([good])
    agent.wait_registered(good, timeout=10)
    assert agent.reginfo()[good.aor()] == "OK"

    agent.dial(f"sip:2000@127.0.0.1:{port}")
    agent.wait_event("CALL_ESTABLISHED", timeout=10)
    agent.hangup()
    agent.wait_event("CALL_CLOSED", timeout=10)

    bad = BaresipAccount("1004", "wrong-password", port)
    agent.register(bad)
    with pytest.raises(BaresipError, match="REGISTER_FAIL"):
        agent.wait_registered(bad, timeout=10)
    assert agent.quit() == 0
    stats = sipp_registrar.stop()
    assert stats.count("BYE", "Recv") == 1 and stats.count("403", "Sent") == 1


def test_sipp_run_against_a_silent_port_ends_at_its_timeout(
    sipp_factory: Callable[..., Sipp],
) -> None:
    silent = ports.free_port()
    started = time.monotonic()
    result = sipp_factory("options", remote=("127.0.0.1", silent), calls=1, timeout_s=1).run()
    assert result.timed_out and not result.ok
    assert time.monotonic() - started < 5
    ports.release(silent)


def test_baresip_refuses_to_start_outside_a_netns(tmp_path: Path) -> None:
    if netns.current() is not None:
        pytest.skip("already in a netns")
    agent = Baresip(tmp_path, [])
    with pytest.raises(BaresipError, match="netns"):
        agent.start()
    agent.stop()


def test_linphone_daemon_registers_and_unregisters_with_sipp_registrar(
    sipp_registrar: Sipp, linphone_factory: Callable[..., Linphone]
) -> None:
    port = sipp_registrar.local_port
    daemon = linphone_factory()
    reg_id = daemon.register("1002", REGISTRAR_PASSWORD, port)
    daemon.wait_registered(reg_id, timeout=10)
    assert daemon.register_status()[reg_id] == "LinphoneRegistrationOk"

    bad_id = daemon.register("1005", "wrong-password", port)
    with pytest.raises(LinphoneError, match="failed"):
        daemon.wait_registered(bad_id, timeout=10)
    daemon.unregister(reg_id)
    assert reg_id not in daemon.register_status()
    with pytest.raises(ValueError):
        daemon.command("call-stats")
    assert daemon.quit() == 0


def test_pyvoip_phone_registers_and_unregisters_with_sipp_registrar(
    sipp_registrar: Sipp, pyvoip_factory: Callable[..., Any]
) -> None:
    from .harness.pyvoip_phone import PhoneStatus, PyVoipError

    port = sipp_registrar.local_port
    phone = pyvoip_factory(port, "1003", REGISTRAR_PASSWORD)
    assert phone.status() == PhoneStatus.REGISTERED
    phone.stop()
    assert phone.status() == PhoneStatus.INACTIVE

    with pytest.raises(PyVoipError, match="failed"):
        pyvoip_factory(port, "1006", "wrong-password")
    stats = sipp_registrar.stop()
    assert stats.count("403", "Sent") >= 1


def test_pbx_server_starts_answers_options_and_reports_status(pbx_server: PbxServer) -> None:
    assert sip_options("127.0.0.1", pbx_server.sip_port) is not None
    status = pbx_server.status()
    listening = {(x["transport"], x["port"]) for x in status["listening"]}
    assert {("udp", pbx_server.sip_port), ("tcp", pbx_server.sip_port)} <= listening
    assert ("tls", pbx_server.tls_port) in listening
    assert pbx_server.cert_path.is_file()
    assert pbx_server.cli("--version").returncode == 0


def test_pbx_server_that_cannot_start_raises_with_its_log_tail(tmp_path: Path) -> None:
    server = PbxServer(tmp_path / "data", extra_args=["--no-such-flag"])
    with pytest.raises(PbxServerError, match="exited .* during startup") as info:
        server.start(timeout=20)
    assert "no-such-flag" in str(info.value)
    server.close()


def test_pbx_server_restart_and_kill9_keep_the_data_dir(pbx_server: PbxServer) -> None:
    pbx_server.add_user("1001", "secret-1001")
    first_pid = pbx_server.pid
    pbx_server.restart()
    assert pbx_server.pid != first_pid
    assert sip_options("127.0.0.1", pbx_server.sip_port) is not None
    assert pbx_server.kill9() == -9
    assert sip_options("127.0.0.1", pbx_server.sip_port, timeout=0.3) is None
    pbx_server.start()
    shown = pbx_server.cli("user", "show", "1001")
    assert shown.returncode == 0 and "1001" in shown.stdout
    assert pbx_server.stop() == 0


# -- every peer against the real server ----------------------------------------------------


def test_sipp_registers_unregisters_and_is_refused_by_pbx_with_md5(
    pbx_server_md5: PbxServer, sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    pbx = pbx_server_md5
    pbx.add_user("1001", "secret-1001")
    good = write_users_csv(tmp_path / "good.csv", [("1001", "secret-1001")])
    bad = write_users_csv(tmp_path / "bad.csv", [("1001", "wrong-password")])
    server = ("127.0.0.1", pbx.sip_port)

    for transport in ("u1", "t1"):
        reg = sipp_factory(
            "reg_auth", remote=server, transport=transport, inf=[good], calls=1, timeout_s=10
        ).run()
        assert reg.ok, reg.log_tail
    assert {r["transport"] for r in pbx.registrations("1001")} >= {"udp", "tcp"}

    refused = sipp_factory("reg_wrong_pw", remote=server, inf=[bad], calls=1, timeout_s=10).run()
    assert refused.ok, refused.log_tail
    unreg = sipp_factory("unregister", remote=server, inf=[good], calls=1, timeout_s=10).run()
    assert unreg.ok, unreg.log_tail
    assert pbx.registrations("1001") == []


@pytest.mark.netns
def test_baresip_registers_with_pbx_over_udp_tcp_and_tls(
    pbx_server_md5: PbxServer, baresip_factory: Callable[..., Baresip]
) -> None:
    pbx = pbx_server_md5
    accounts = [
        BaresipAccount("1011", "secret-1011", pbx.sip_port, transport="udp"),
        BaresipAccount("1012", "secret-1012", pbx.sip_port, transport="tcp"),
        BaresipAccount("1013", "secret-1013", pbx.tls_port, transport="tls"),
    ]
    for account in accounts:
        pbx.add_user(account.user, account.password or "")
    agent = baresip_factory([], cafile=pbx.cert_path)
    for account in accounts:
        agent.register(account)
        agent.wait_registered(account, timeout=10)
    got = {r["extension"]: r["transport"] for r in pbx.status()["registrations"]}
    assert got == {"1011": "udp", "1012": "tcp", "1013": "tls"}
    assert agent.quit() == 0
    assert pbx.registrations() == []


def test_linphone_and_pyvoip_register_with_pbx_default_digest(
    pbx_server: PbxServer,
    linphone_factory: Callable[..., Linphone],
    pyvoip_factory: Callable[..., Any],
) -> None:
    pbx_server.add_user("1021", "secret-1021")
    pbx_server.add_user("1022", "secret-1022")
    daemon = linphone_factory()
    reg_id = daemon.register("1021", "secret-1021", pbx_server.sip_port)
    daemon.wait_registered(reg_id, timeout=10)
    phone = pyvoip_factory(pbx_server.sip_port, "1022", "secret-1022")

    agents = {r["extension"]: r["user_agent"] for r in pbx_server.status()["registrations"]}
    assert set(agents) == {"1021", "1022"} and "pyVoIP" in agents["1022"]
    phone.stop()
    daemon.unregister(reg_id)
