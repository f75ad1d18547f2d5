"""A disabled extension on the real pbx: ``pbx user set EXT --enabled off``.

Its registration is dropped at once, a REGISTER with its right password is answered like a
wrong password (a fresh 401, the same headers), and SIPp calling it gets 480 Not Registered,
as for an extension no phone is registered to. Enabled again, it registers. Imports nothing
from ``pbx``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from .harness.pbx_server import PbxServer
from .harness.raw_sip import Registerer, SipClient, SipResponse
from .harness.sipp import Sipp, write_users_csv

PASSWORDS = {"7001": "pw-7001-disabled", "7002": "pw-7002-disabled"}
CREDENTIALS_TTL = 2.0  # pbx caches looked-up credentials this long (pbx.service)


def _register(pbx: PbxServer, ext: str, password: str | None = None) -> SipResponse | None:
    with SipClient(("127.0.0.1", pbx.sip_port)) as client:
        reg = Registerer(client, ext, PASSWORDS[ext])
        return reg.register([f"<{reg.contact()}>"], expires=300, password=password)


def _shape(resp: SipResponse | None) -> tuple[object, ...]:
    assert resp is not None
    return resp.status, resp.reason, resp.names, [c["algorithm"] for c in resp.challenges()]


def test_disabled_extension_cannot_register_and_calls_to_it_get_480(
    pbx_factory: Callable[..., PbxServer], sipp_factory: Callable[..., Sipp], tmp_path: Path
) -> None:
    pbx = pbx_factory(md5_only=True)
    for ext, password in PASSWORDS.items():
        pbx.add_user(ext, password)
    ok = _register(pbx, "7002")
    assert ok is not None and ok.status == 200, ok
    assert pbx.registrations("7002")

    pbx.cli("user", "set", "7002", "--enabled", "off", check=True)
    assert pbx.registrations("7002") == []  # dropped with the change, not at expiry
    time.sleep(CREDENTIALS_TTL + 0.2)
    disabled = _register(pbx, "7002")
    wrong = _register(pbx, "7001", password="not-the-password")
    assert _shape(disabled) == _shape(wrong)
    assert disabled is not None and disabled.status == 401
    assert pbx.registrations("7002") == []

    caller = sipp_factory(
        "call_uac_rejected",
        remote=("127.0.0.1", pbx.sip_port),
        inf=[write_users_csv(tmp_path / "caller.csv", [("7001", PASSWORDS["7001"])])],
        service="7002",
        calls=1,
        timeout_s=20,
    )
    result = caller.run()
    assert result.ok, result.log_tail
    assert (result.count("480", "Recv"), result.count("404", "Recv")) == (1, 0)

    pbx.cli("user", "set", "7002", "--enabled", "on", check=True)
    time.sleep(CREDENTIALS_TTL + 0.2)
    again = _register(pbx, "7002")
    assert again is not None and again.status == 200, again
