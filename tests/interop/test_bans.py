"""Brute-force protection of the real pbx: bans, lifting them, scanners, the allowlist.

Covers: 5 failed digest checks from one address ban it (no answer at all afterwards, shown by
``pbx ban list``) while other addresses still register; ``pbx ban del`` (another process)
reaches the running server within seconds; an address that authenticated successfully before
only gets the (address, user) pair banned; scanner User-Agents get no answer; allowlisted
addresses are never banned. Each address is its own 127.0.0.x source. Imports nothing from
``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .harness.pbx_server import PbxServer
from .harness.raw_sip import Registerer, SipClient, SipResponse, new_tag, pick_challenge

MAX_FAILURES = 5  # shipped [guard] max_failures
USERS = {"6001": "pw-6001-bans", "6002": "pw-6002-bans", "6003": "pw-6003-bans"}


def _server(make: Callable[..., PbxServer], site_toml: str | None = None) -> PbxServer:
    pbx = make(site_toml=site_toml) if site_toml else make()
    for ext, password in USERS.items():
        pbx.add_user(ext, password)
    return pbx


def _client(pbx: PbxServer, local_ip: str) -> SipClient:
    return SipClient(("127.0.0.1", pbx.sip_port), local_ip=local_ip, timeout=1.0)


def _fail(pbx: PbxServer, local_ip: str, ext: str, times: int) -> list[SipResponse | None]:
    """One REGISTER, then up to ``times`` answers to the challenges with a wrong password, all
    in one dialogue (Call-ID) as a password guesser would (fewer if an answer does not come:
    the list then ends with None). The server answers the first failure with a fresh 401 and
    repeats on the same Call-ID with 403; the guesser keeps using the last challenge."""
    with _client(pbx, local_ip) as client:
        reg = Registerer(client, ext, "wrong-password-x")
        contact = [f"<{reg.contact()}>"]
        resp = reg.send(reg.build(contact, expires=600))
        answers = [resp]
        for _ in range(times):
            if resp is None:
                break
            assert resp.status in (401, 403), f"unexpected answer: {resp}"
            challenge = pick_challenge(resp, "MD5") if resp.status == 401 else None
            auth = reg.authorization(challenge)
            resp = reg.send(reg.build(contact, expires=600, authorization=auth))
            answers.append(resp)
    return answers


def _expected(failures: int) -> list[int | None]:
    """The first challenge, a fresh 401 for the first failure, 403 for every repeat."""
    return [401, 401] + [403] * (failures - 1)


def _register(pbx: PbxServer, local_ip: str, ext: str) -> SipResponse | None:
    with _client(pbx, local_ip) as client:
        reg = Registerer(client, ext, USERS[ext])
        return reg.register([f"<{reg.contact()}>"], expires=600)


def _options(pbx: PbxServer, local_ip: str, user_agent: str = "raw-sip-test/1.0") -> int | None:
    """Status of the answer to an OPTIONS from local_ip, or None if none came."""
    with _client(pbx, local_ip) as client:
        client.send(
            client.build(
                "OPTIONS",
                from_user="probe",
                call_id=f"{new_tag()}@{local_ip}",
                from_tag=new_tag(),
                cseq=1,
                headers=[("User-Agent", user_agent)],
            )
        )
        resp = client.final()
    return None if resp is None else resp.status


def _ban_list(pbx: PbxServer) -> str:
    return pbx.cli("ban", "list", check=True).stdout


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def test_five_wrong_passwords_ban_the_address_but_not_other_addresses(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    pbx = _server(pbx_factory)
    answers = _fail(pbx, "127.0.0.3", "6001", MAX_FAILURES)
    assert [r and r.status for r in answers] == _expected(MAX_FAILURES)

    assert _register(pbx, "127.0.0.3", "6001") is None  # right password, still silence
    assert _options(pbx, "127.0.0.3") is None  # the whole address, every method
    assert _wait_for(lambda: "127.0.0.3 " in _ban_list(pbx), 5), _ban_list(pbx)
    assert "127.0.0.3 user" not in _ban_list(pbx)

    other = _register(pbx, "127.0.0.4", "6002")
    assert other is not None and other.status == 200, other


def test_ban_del_lifts_the_ban_in_the_running_server(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    pbx = _server(pbx_factory)
    _fail(pbx, "127.0.0.3", "6001", MAX_FAILURES)
    assert _wait_for(lambda: "127.0.0.3 " in _ban_list(pbx), 5)
    assert _options(pbx, "127.0.0.3") is None

    lifted = pbx.cli("ban", "del", "127.0.0.3", check=True)
    assert "lifted" in lifted.stdout
    assert _wait_for(lambda: _options(pbx, "127.0.0.3") == 200, 10), "ban still applied"
    resp = _register(pbx, "127.0.0.3", "6001")
    assert resp is not None and resp.status == 200, resp
    assert "no active bans" in _ban_list(pbx)


def test_address_that_authenticated_before_only_gets_the_user_banned(
    pbx_factory: Callable[..., PbxServer],
) -> None:
    pbx = _server(pbx_factory)
    ok = _register(pbx, "127.0.0.6", "6001")
    assert ok is not None and ok.status == 200, ok

    answers = _fail(pbx, "127.0.0.6", "6002", MAX_FAILURES + 1)
    statuses = [r and r.status for r in answers]
    assert statuses == _expected(MAX_FAILURES) + [None]  # then nothing for that user
    assert _register(pbx, "127.0.0.6", "6002") is None
    assert _wait_for(lambda: "127.0.0.6 user 6002" in _ban_list(pbx), 5), _ban_list(pbx)

    for ext in ("6001", "6003"):  # other users behind the same address are unaffected
        resp = _register(pbx, "127.0.0.6", ext)
        assert resp is not None and resp.status == 200, (ext, resp)
    assert _options(pbx, "127.0.0.6") == 200


def test_scanner_user_agent_gets_no_answer(pbx_factory: Callable[..., PbxServer]) -> None:
    pbx = _server(pbx_factory)
    for agent in ("friendly-scanner", "sipvicious 0.3", "SIPCLI/v1.8"):
        assert _options(pbx, "127.0.0.8", user_agent=agent) is None, agent
        with _client(pbx, "127.0.0.8") as client:
            reg = Registerer(client, "6001", USERS["6001"], user_agent=agent)
            assert reg.register([f"<{reg.contact()}>"], expires=600) is None, agent
    assert _options(pbx, "127.0.0.8") == 200  # the same address with a phone's agent
    assert pbx.registrations("6001") == []


def test_allowlisted_address_is_never_banned(pbx_factory: Callable[..., PbxServer]) -> None:
    pbx = _server(pbx_factory, site_toml='[guard]\nallowlist = ["127.0.0.5"]\n')
    answers = _fail(pbx, "127.0.0.5", "6001", 3 * MAX_FAILURES)
    assert [r and r.status for r in answers] == _expected(3 * MAX_FAILURES)
    resp = _register(pbx, "127.0.0.5", "6001")
    assert resp is not None and resp.status == 200, resp
    assert "no active bans" in _ban_list(pbx)
