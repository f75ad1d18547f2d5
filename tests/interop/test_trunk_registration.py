"""A registering trunk against a real provider registrar: Kamailio with digest auth on
127.0.0.1. pbx registers with the trunk's credentials (answering Kamailio's 401), follows its
423 to the minimum expiry, shows the state in ``pbx status``; a wrong password is shown as
failed with the reason; ``pbx trunk del`` on the running server removes the binding; a
provider domain is found through NAPTR and SRV from the test's own DNS server (twisted.names
on 127.0.0.1, pbx pointed at it), and the second SRV target is used when the first does not
answer."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .harness import kamailio
from .harness.dns import DnsServer
from .harness.pbx_server import PbxServer

pytestmark = pytest.mark.skipif(not kamailio.available(), reason="kamailio is not installed")

PASSWORD = "trunk-secret-42"


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[kamailio.KamailioRegistrar]:
    with kamailio.KamailioRegistrar(tmp_path / "kamailio", PASSWORD, min_expires=900) as k:
        yield k


@pytest.fixture
def pbx(tmp_path: Path) -> Iterator[PbxServer]:
    server = PbxServer(tmp_path / "data", python=sys.executable, rtp_block=0)
    try:
        server.start()
        yield server
    finally:
        server.close()


def _trunk_state(pbx: PbxServer, name: str) -> dict[str, Any] | None:
    for trunk in pbx.status().get("trunks", []):
        if trunk.get("name") == name:
            return dict(trunk)
    return None


def _wait_state(pbx: PbxServer, name: str, state: str, timeout: float = 15.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        seen = _trunk_state(pbx, name)
        if seen is not None and seen.get("state") == state:
            return seen
        time.sleep(0.3)
    raise AssertionError(f"trunk {name} not {state} after {timeout:g}s: {seen}\n{pbx.log_tail()}")


def _wait_reachable(pbx: PbxServer, name: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while (_trunk_state(pbx, name) or {}).get("reachable") != "up":
        assert time.monotonic() < deadline, _trunk_state(pbx, name)
        time.sleep(0.3)


def _add_trunk(pbx: PbxServer, provider: kamailio.KamailioRegistrar, password: str) -> None:
    pbx.cli(
        "trunk", "add", "provider", "--preset", "generic", "--domain", "127.0.0.1",
        "--proxy", f"127.0.0.1:{provider.port}", "--username", "trunk1", "--password", password,
        "--expires", "600", check=True,
    )  # fmt: skip


def test_pbx_registers_at_kamailio_with_the_trunk_s_credentials_and_423_min_expires(
    pbx: PbxServer, provider: kamailio.KamailioRegistrar
) -> None:
    _add_trunk(pbx, provider, PASSWORD)  # picked up by the running server
    state = _wait_state(pbx, "provider", "registered")
    assert state["expires"] == 900  # asked 600, Kamailio answered 423 Min-Expires: 900
    _wait_reachable(pbx, "provider")  # Kamailio answers pbx's OPTIONS (with 405): it is there
    saved = provider.saved()
    assert saved, provider.log()[-2000:]
    aor, contact, expires = saved[-1]
    assert aor == "sip:trunk1@127.0.0.1" and expires == "900"
    assert contact == f"<sip:trunk1@127.0.0.1:{pbx.sip_port}>"
    assert provider.challenges() >= 1  # the credentials were asked for and accepted
    text = pbx.cli("status", check=True).stdout
    assert "trunk provider" in text and "registered" in text
    shown = pbx.cli("trunk", "show", "provider", "--json", check=True).stdout
    assert PASSWORD not in shown and PASSWORD not in pbx.log_tail(400)
    # deleting the trunk on the running server removes the binding (REGISTER, Expires: 0)
    pbx.cli("trunk", "del", "provider", check=True)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (
        provider.saved()[-1][2] != "0" or _trunk_state(pbx, "provider") is not None
    ):
        time.sleep(0.3)
    assert provider.saved()[-1][2] == "0"
    assert _trunk_state(pbx, "provider") is None


def test_a_wrong_password_is_shown_as_failed_with_the_reason(
    pbx: PbxServer, provider: kamailio.KamailioRegistrar
) -> None:
    _add_trunk(pbx, provider, "not-the-password")
    state = _wait_state(pbx, "provider", "failed")
    assert "refused" in state["reason"] and state["retry_in"] > 0
    assert provider.saved() == []
    assert provider.challenges() == 2  # asked, answered once, refused: not sent again


def test_the_provider_is_found_through_naptr_and_srv_and_the_second_target_takes_over(
    tmp_path: Path, provider: kamailio.KamailioRegistrar
) -> None:
    silent = 9  # nothing answers on this port of 127.0.0.1
    zone = {
        "provider.test NAPTR": [[10, 10, "s", "SIP+D2U", "_sip._udp.provider.test"]],
        "_sip._udp.provider.test SRV": [
            [10, 0, silent, "first.provider.test"],
            [20, 0, provider.port, "second.provider.test"],
        ],
        "first.provider.test A": ["127.0.0.1"],
        "second.provider.test A": ["127.0.0.1"],
    }
    with DnsServer(tmp_path / "dns", zone) as server:
        site = f'[dns]\nservers = ["127.0.0.1:{server.port}"]\n'
        # shortened SIP timers: Timer F (64*T1) runs out on the first target in 3.2 s
        with PbxServer(tmp_path / "data", python=sys.executable, rtp_block=0, site_toml=site,
                       env={"PBX_SIP_T1": "0.05", "PBX_SIP_T2": "0.4"}) as pbx:  # fmt: skip
            pbx.cli(
                "trunk", "add", "provider", "--preset", "generic", "--domain", "provider.test",
                "--username", "trunk1", "--password", PASSWORD, check=True,
            )  # fmt: skip
            state = _wait_state(pbx, "provider", "registered", timeout=30)
            assert state["expires"] == 900
            _wait_reachable(pbx, "provider")  # the OPTIONS ping fails over the same way
            aor, contact, _ = provider.saved()[-1]
            assert aor == "sip:trunk1@provider.test"
            assert contact == f"<sip:trunk1@127.0.0.1:{pbx.sip_port}>"
            assert f"fails over to udp:127.0.0.1:{provider.port}" in pbx.log_tail(200)
