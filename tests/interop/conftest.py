"""Fixtures for interop tests: the pbx server and real SIP peers (tests/interop/harness).

Owns: the ``netns`` marker (the whole test runs in a private network namespace; an autouse
fixture enters it before every other function-scoped fixture), the ``interop`` marker on every
test under tests/interop, and factories that start servers/peers and always stop them.
Missing peer binaries skip the test with the binary's name. Imports nothing from ``pbx``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from .harness import missing_binaries, netns
from .harness.baresip import Baresip, BaresipAccount
from .harness.linphone import Linphone
from .harness.pbx_server import MD5_ONLY_TOML, PbxServer
from .harness.raw_phone import RawPhone
from .harness.sipp import Sipp

log = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
REGISTRAR_PASSWORD = "secret"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "netns: run the whole test in a private network namespace (harness.netns)"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.interop)


@cache
def _netns_unavailable() -> str | None:
    return netns.unavailable_reason()


@pytest.fixture(autouse=True)
def _netns_for_marked_tests(request: pytest.FixtureRequest) -> Iterator[None]:
    """Enter a private netns first (autouse) for tests marked netns; leave it last."""
    if request.node.get_closest_marker("netns") is None:
        yield
        return
    reason = _netns_unavailable()
    if reason is not None:
        pytest.skip(f"private network namespace unavailable: {reason}")
    with netns.private_netns():
        yield


def _need(*binaries: str) -> None:
    missing = missing_binaries(*binaries)
    if missing:
        pytest.skip(f"missing binaries: {', '.join(missing)} (make test installs them)")


@pytest.fixture
def pbx_factory(tmp_path: Path) -> Iterator[Callable[..., PbxServer]]:
    """make(name="pbx", start=True, md5_only=False, **PbxServer kwargs) -> a server in
    tmp_path/name/data. md5_only writes DIR/pbx.toml offering only the MD5 challenge, which
    SIPp and baresip need (see harness.pbx_server.MD5_ONLY_TOML)."""
    servers: list[PbxServer] = []

    def make(
        name: str = "pbx", start: bool = True, md5_only: bool = False, **kwargs: Any
    ) -> PbxServer:
        kwargs.setdefault("python", sys.executable)
        if md5_only:
            kwargs["site_toml"] = MD5_ONLY_TOML + kwargs.get("site_toml", "")
        server = PbxServer(tmp_path / name / "data", **kwargs)
        servers.append(server)
        return server.start() if start else server

    yield make
    for server in reversed(servers):
        server.close()


@pytest.fixture
def pbx_server(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    """A started pbx server with shipped defaults (SHA-256 + MD5 challenges) on free ports."""
    return pbx_factory()


@pytest.fixture
def pbx_server_md5(pbx_factory: Callable[..., PbxServer]) -> PbxServer:
    """A started pbx server offering only MD5 digest (for SIPp and baresip peers)."""
    return pbx_factory(md5_only=True)


@pytest.fixture
def sipp_factory(tmp_path: Path) -> Iterator[Callable[..., Sipp]]:
    """make(scenario, **Sipp kwargs) -> an unstarted Sipp working in tmp_path/sipp."""
    _need("sipp")
    runs: list[Sipp] = []

    def make(scenario: str | Path, **kwargs: Any) -> Sipp:
        run = Sipp(scenario, tmp_path / "sipp", **kwargs)
        runs.append(run)
        return run

    yield make
    for run in runs:
        run.stop()


@pytest.fixture
def sipp_registrar(sipp_factory: Callable[..., Sipp]) -> Sipp:
    """SIPp as a digest registrar/UAS (scenarios/uas_registrar.xml), password "secret" for
    every user, realm "pbx.test", MD5, listening on 127.0.0.1:<.local_port>."""
    return sipp_factory(
        "uas_registrar", variables={"pw": REGISTRAR_PASSWORD}, timeout_s=120, name="registrar"
    ).start()


@pytest.fixture
def baresip_factory(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """make(accounts, name=..., **Baresip kwargs) -> a started baresip (test must be netns)."""
    _need("baresip")
    agents: list[Baresip] = []

    def make(accounts: list[BaresipAccount], name: str | None = None, **kwargs: Any) -> Baresip:
        agent = Baresip(tmp_path, accounts, name=name or f"baresip{len(agents) + 1}", **kwargs)
        agents.append(agent)
        return agent.start()

    yield make
    for agent in agents:
        try:
            agent.quit(timeout=3)
        except Exception:  # noqa: BLE001 - teardown must go on; stop() below kills it
            log.warning("baresip %s did not quit cleanly", agent.name)
        agent.stop()


@pytest.fixture
def linphone_factory(tmp_path: Path) -> Iterator[Callable[..., Linphone]]:
    """make(name=...) -> a started linphone-daemon with fresh HOME and rc."""
    _need("linphone-daemon")
    daemons: list[Linphone] = []

    def make(name: str | None = None, **kwargs: Any) -> Linphone:
        daemon = Linphone(tmp_path, name=name or f"linphone{len(daemons) + 1}", **kwargs)
        daemons.append(daemon)
        return daemon.start()

    yield make
    for daemon in daemons:
        try:
            daemon.quit(timeout=3)
        except Exception:  # noqa: BLE001 - teardown must go on; stop() below kills it
            log.warning("linphone %s did not quit cleanly", daemon.name)
        daemon.stop()


@pytest.fixture
def pyvoip_factory() -> Iterator[Callable[..., Any]]:
    """make(server_port, user, password, start=True, **kw) -> a PyVoipPhone (registered)."""
    pytest.importorskip("pyVoIP", reason="pyVoIP==1.6.8 is a test dependency")
    from .harness.pyvoip_phone import PyVoipPhone

    phones: list[PyVoipPhone] = []

    def make(
        server_port: int, user: str, password: str, start: bool = True, **kwargs: Any
    ) -> PyVoipPhone:
        phone = PyVoipPhone(server_port, user, password, **kwargs)
        phones.append(phone)
        if start:
            phone.start()
        return phone

    yield make
    for phone in phones:
        phone.stop()


@pytest.fixture
def raw_phone_factory() -> Iterator[Callable[..., RawPhone]]:
    """make(server_port, user, password=None, register=True, **RawPhone kwargs) -> a raw SIP
    phone (harness.raw_phone) talking to 127.0.0.1:server_port, registered unless told not
    to; hung up and closed afterwards."""
    phones: list[RawPhone] = []

    def make(
        server_port: int,
        user: str,
        password: str | None = None,
        register: bool = True,
        **kwargs: Any,
    ) -> RawPhone:
        phone = RawPhone(("127.0.0.1", server_port), user, password, **kwargs)
        phones.append(phone)
        if register:
            phone.register()
        return phone

    yield make
    for phone in phones:
        try:
            phone.hangup_all()
        except Exception:  # noqa: BLE001 - teardown must go on; close() below frees it
            log.warning("raw phone %s did not hang up cleanly", phone.user)
        phone.close()
