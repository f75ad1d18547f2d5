"""Calls through an IP-authenticated trunk with SIPp as the provider. In: its INVITE to a DID,
from the provider's address, is not challenged and rings the extension the DID maps to (a SIPp
callee at a static contact); the same INVITE from another address is challenged (407); an
unknown DID gets 404. Out: an extension dials a number that takes the route; the provider's
401 is answered with the trunk's credentials (SIPp checks the digest) and the call connects."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

from .harness.pbx_server import PbxServer
from .harness.sipp import Sipp, write_users_csv

PROVIDER_IP = "127.0.0.5"
STRANGER_IP = "127.0.0.6"
DID = "+4930123456710"
SippFactory = Callable[..., Sipp]
# A SIPp UAS aborts on any request its scenario does not expect, and the trunk's OPTIONS pings
# (tested against Kamailio in test_trunk_registration) reach the provider whenever they fall
# due: these servers do not ping.
NO_PINGS_TOML = "[sip]\ntrunk_options_interval = 0\n"


def _wait_trunk(pbx: PbxServer, name: str) -> None:
    """Until the running server has picked the trunk up (it looks every 5 s)."""
    deadline = time.monotonic() + 10
    while not any(t.get("name") == name for t in pbx.status().get("trunks", [])):
        assert time.monotonic() < deadline, pbx.log_tail()
        time.sleep(0.3)


def _only_record(pbx: PbxServer) -> dict[str, str]:
    """The one call record, once it is closed (``pbx cdr --csv``)."""
    deadline = time.monotonic() + 5
    while True:
        rows = list(csv.DictReader(io.StringIO(pbx.cli("cdr", "--csv", check=True).stdout)))
        if rows and rows[0]["disposition"] != "open" or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    (row,) = rows
    return row


def _pbx_with_trunk(pbx_factory: Callable[..., PbxServer], callee_port: int) -> PbxServer:
    pbx = pbx_factory(md5_only=True, site_toml=NO_PINGS_TOML)
    pbx.cli("user", "add", "10", "--password", "Extension-10-pw",
            "--contact", f"sip:127.0.0.1:{callee_port}", check=True)  # fmt: skip
    pbx.cli("trunk", "add", "carrier", "--preset", "generic", "--domain", "sip.carrier.test",
            "--proxy", f"{PROVIDER_IP}:5060", "--no-register", "--allow-from", f"{PROVIDER_IP}/32",
            check=True)  # fmt: skip
    pbx.cli("did", "add", DID, "--to", "10", check=True)
    _wait_trunk(pbx, "carrier")
    return pbx


def test_a_provider_s_invite_to_a_did_rings_its_extension_without_a_challenge(
    pbx_factory: Callable[..., PbxServer], sipp_factory: SippFactory
) -> None:
    callee = sipp_factory("uas_answer_tolerant.xml", calls=1, timeout_s=30)
    pbx = _pbx_with_trunk(pbx_factory, callee.local_port)
    callee.start()
    caller = sipp_factory(
        "trunk_uac.xml", remote=("127.0.0.1", pbx.sip_port), local_ip=PROVIDER_IP,
        service=DID, calls=1, timeout_s=20, extra_args=["-d", "500"],
    )  # fmt: skip
    result = caller.run()
    assert result.ok, result.log_tail + pbx.log_tail()
    assert callee.wait().ok
    row = _only_record(pbx)
    # the CSV export neutralises a leading "+" against spreadsheet formulas: "'+49..."
    assert (row["caller"], row["callee"], row["disposition"]) == (
        "'+4915112345678",
        "10",
        "answered",
    )
    assert (row["direction"], row["caller_user"]) == ("inbound", "")


def test_the_same_invite_from_another_address_is_challenged_and_an_unknown_did_gets_404(
    pbx_factory: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    pbx = _pbx_with_trunk(pbx_factory, 9)
    stranger = sipp_factory(
        "invite_407_ack.xml", remote=("127.0.0.1", pbx.sip_port), local_ip=STRANGER_IP,
        service=DID, calls=1, timeout_s=15,
    )  # fmt: skip
    assert stranger.run().ok, pbx.log_tail()
    unknown = sipp_factory(
        "trunk_uac_404.xml", remote=("127.0.0.1", pbx.sip_port), local_ip=PROVIDER_IP,
        service="+4930123456799", calls=1, timeout_s=15,
    )  # fmt: skip
    assert unknown.run().ok, pbx.log_tail()
    del tmp_path


def test_an_extension_calls_out_through_the_route_and_the_trunk_answers_the_providers_401(
    pbx_factory: Callable[..., PbxServer], sipp_factory: SippFactory, tmp_path: Path
) -> None:
    provider = sipp_factory("trunk_uas_auth.xml", calls=1, timeout_s=30)
    pbx = pbx_factory(md5_only=True, site_toml=NO_PINGS_TOML)
    pbx.cli("user", "add", "2001", "--password", "Caller-2001-pw", check=True)
    pbx.cli("trunk", "add", "carrier", "--preset", "generic", "--domain", "provider.test",
            "--proxy", f"127.0.0.1:{provider.local_port}", "--no-register",
            "--allow-from", "127.0.0.7/32", "--username", "trunk1",
            "--password", "trunk-secret-42", check=True)  # fmt: skip
    pbx.cli("route", "add", "international", "--pattern", "000.", "--exit-digit", "0",
            "--trunk", "carrier", check=True)  # fmt: skip
    _wait_trunk(pbx, "carrier")
    provider.start()
    caller = sipp_factory(
        "call_uac.xml", remote=("127.0.0.1", pbx.sip_port), service="0004930123456",
        inf=[write_users_csv(tmp_path / "caller.csv", [("2001", "Caller-2001-pw")])],
        calls=1, timeout_s=20, extra_args=["-d", "500"],
    )  # fmt: skip
    result = caller.run()
    assert result.ok, result.log_tail + pbx.log_tail()
    assert provider.wait().ok, pbx.log_tail()  # SIPp checked the digest (verifyauth)
    row = _only_record(pbx)
    assert (row["direction"], row["callee"], row["disposition"]) == (
        "outbound", "'+4930123456", "answered",
    )  # fmt: skip
