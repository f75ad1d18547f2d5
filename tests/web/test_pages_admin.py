"""Dashboard, sites, devices, call history, settings, audit, tokens, accounts, support access."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from pbx import config as config_module
from pbx.store import admins, audit, cdr, devices, sites, tokens
from pbx.store import settings as store_settings
from tests.web.conftest import StaticLive, add_account, login, post
from web.auth import check_sse_token
from web.backend import WebContext


@pytest.fixture
def admin(client: FlaskClient, ctx: WebContext) -> FlaskClient:
    add_account(ctx, "root")
    login(client, "root")
    return client


def test_dashboard_renders_live_state_and_a_valid_sse_token(
    admin: FlaskClient, ctx: WebContext
) -> None:
    page = admin.get("/").get_data(as_text=True)
    for text in (
        "Yealink SIP-T46S",
        "127.0.0.2:5070",
        "PCMU, opus",
        "1:15",
        "1:02:03",
        "sipgate",
        "2023-11-14 22:13:20",  # since, UTC
        "expires in 600 s",
        "up (12.5 ms)",
        "credentials of &#39;u&#39; refused",
        "dashboard.js",
    ):
        assert text in page, text
    token = page.split("/events?token=")[1].split('"')[0]
    payload = check_sse_token(ctx.secret_key, token)
    assert payload == {"u": "root", "r": "admin", "s": None}
    assert check_sse_token(b"another key" * 3, token) is None
    assert check_sse_token(ctx.secret_key, token + "x") is None


def test_dashboard_empty_state(admin: FlaskClient, live: StaticLive) -> None:
    live.regs, live.calls, live.trunk_states = [], [], []
    page = admin.get("/").get_data(as_text=True)
    assert "No phone is registered." in page and "No calls in progress." in page
    assert "No trunk." in page


def test_static_assets_are_served_locally(admin: FlaskClient) -> None:
    for name in ("pbx.css", "dashboard.js"):
        assert admin.get(f"/static/{name}").status_code == 200
    page = admin.get("/").get_data(as_text=True)
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


def test_sites_create_edit_delete(admin: FlaskClient, ctx: WebContext) -> None:
    data = {
        "name": "Berlin",
        "timezone": "Europe/Berlin",
        "country_code": "49",
        "area_code": "30",
        "number_block_start": "1000",
        "number_block_end": "1999",
    }
    assert post(admin, "/sites/new", data).status_code == 302
    site = ctx.store.read(sites.list_sites)[0]
    assert (site.name, site.number_block_end) == ("Berlin", "1999")
    assert "Berlin" in admin.get("/sites").get_data(as_text=True)
    assert admin.get(f"/sites/{site.id}").status_code == 200
    assert post(admin, f"/sites/{site.id}", {**data, "name": "Berlin HQ"}).status_code == 302
    changed = ctx.store.read(sites.get_site, site.id)
    assert changed is not None and changed.name == "Berlin HQ"
    assert post(admin, f"/sites/{site.id}/delete").status_code == 302
    assert ctx.store.read(sites.list_sites) == []
    assert [e.action for e in ctx.store.read(audit.list_entries, action="site.*")] == [
        "site.delete",
        "site.update",
        "site.add",
    ]


def test_site_bad_input_saves_nothing(admin: FlaskClient, ctx: WebContext) -> None:
    good = {"name": "Berlin", "timezone": "Europe/Berlin"}
    for bad in (
        {"name": ""},
        {"timezone": "Mars/Base"},
        {"country_code": "4a"},
        {"number_block_start": "100"},
        {"number_block_start": "200", "number_block_end": "100"},
    ):
        assert post(admin, "/sites/new", {**good, **bad}).status_code == 422, bad
    assert ctx.store.read(sites.list_sites) == []
    post(admin, "/sites/new", good)
    assert post(admin, "/sites/new", good).status_code == 409


def test_site_with_users_cannot_be_deleted(admin: FlaskClient, ctx: WebContext) -> None:
    post(admin, "/sites/new", {"name": "Berlin", "timezone": "Europe/Berlin"})
    site = ctx.store.read(sites.list_sites)[0]
    post(admin, "/users/new", {"extension": "100", "site_id": str(site.id)})
    assert post(admin, f"/sites/{site.id}/delete").status_code == 409
    assert ctx.store.read(sites.list_sites) == [site]


def test_devices_page_lists_known_devices(admin: FlaskClient, ctx: WebContext) -> None:
    sighting = devices.Sighting(
        "100", "Yealink SIP-T46S 66.86.0.15 00:15:65:aa:bb:cc", "127.0.0.1:5070", time.time()
    )
    ctx.store.write(devices.record_sightings, [sighting])
    page = admin.get("/devices").get_data(as_text=True)
    assert "Yealink" in page and "001565aabbcc" in page


def _calls(ctx: WebContext) -> None:
    now = time.time()
    for i, (caller, dialled, disposition) in enumerate(
        [("100", "200", "answered"), ("200", "100", "busy"), ("100", "300", "no answer")] * 25
    ):
        ctx.store.write(
            cdr.add_record,
            cdr.CallRecord(
                call_id=f"c{i}",
                caller=caller,
                dialled=dialled,
                started_at=now - i * 3600,
                caller_user=caller,
                callee_user=dialled,
                answered_at=None,
                ended_at=now,
                disposition=disposition,
                duration=10.0 if disposition == "answered" else None,
            ),
        )


def test_call_history_filters_pages_and_draws_charts(admin: FlaskClient, ctx: WebContext) -> None:
    _calls(ctx)
    page = admin.get("/calls").get_data(as_text=True)
    assert "75 calls" in page and "Page 1 of 2" in page and "<svg" in page
    assert 'class="chart-bar"' in page
    page = admin.get("/calls?disposition=busy").get_data(as_text=True)
    assert "25 calls" in page
    page = admin.get("/calls?number=300&page=1").get_data(as_text=True)
    assert "25 calls" in page
    page = admin.get("/calls?page=2").get_data(as_text=True)
    assert "Page 2 of 2" in page


@pytest.mark.parametrize(
    "query",
    [
        "disposition=lost",
        "direction=up",
        "since=yesterday",
        "page=0",
        "per_page=100000",
        "since=2025-02-01&until=2025-01-01",
    ],
)
def test_call_history_bad_filters_are_422(admin: FlaskClient, query: str) -> None:
    assert admin.get(f"/calls?{query}").status_code == 422


def test_call_history_csv_export_respects_filters(admin: FlaskClient, ctx: WebContext) -> None:
    _calls(ctx)
    body = admin.get("/calls/export.csv?disposition=busy").get_data(as_text=True)
    lines = body.strip().splitlines()
    assert lines[0].startswith("id,call_id") and len(lines) == 26


def test_live_settings_save_apply_and_audit(
    admin: FlaskClient, ctx: WebContext, live: StaticLive
) -> None:
    page = admin.get("/settings").get_data(as_text=True)
    assert "180" in page and "daily job deletes" in page and "take effect at restart" in page
    data = {
        "calls.codec_order": "pcma, opus",
        "calls.no_answer_timeout": "20",
        "calls.max_duration": "3600",
        "calls.retention_days": "90",
    }
    assert post(admin, "/settings/live", data).status_code == 302
    stored = ctx.store.read(store_settings.all_settings)
    assert stored["calls.codec_order"] == ["PCMA", "opus"]
    assert stored["calls.retention_days"] == 90
    assert live.changed == 1
    assert ctx.store.read(audit.list_entries, action="settings.update")


@pytest.mark.parametrize(
    "bad",
    [
        {"calls.codec_order": "G729"},
        {"calls.codec_order": ""},
        {"calls.codec_order": "PCMU,pcmu"},
        {"calls.retention_days": "0"},
        {"calls.no_answer_timeout": "x"},
        {"calls.max_duration": "99999999"},
    ],
)
def test_live_settings_bad_input_saves_nothing(
    admin: FlaskClient, ctx: WebContext, live: StaticLive, bad: dict[str, str]
) -> None:
    data = {"calls.retention_days": "90", **bad}
    assert post(admin, "/settings/live", data).status_code == 422
    assert ctx.store.read(store_settings.all_settings) == {}
    assert live.changed == 0


def test_process_settings_go_to_the_override_file(admin: FlaskClient, ctx: WebContext) -> None:
    data = {
        "sip.port": "5070",
        "rtp.port_min": "40000",
        "rtp.port_max": "41000",
        "http.port": "8443",
        "sip.bind": "",
        "sip.tls_port": "5061",
    }
    assert post(admin, "/settings/process", data).status_code == 302
    override = config_module.read_override(ctx.data_dir)
    assert override["sip"]["port"] == 5070
    assert override["rtp"] == {"port_min": 40000, "port_max": 41000}
    assert ctx.store.read(audit.list_entries, action="settings.process")


@pytest.mark.parametrize(
    "bad",
    [
        {"sip.port": "0"},
        {"sip.port": "70000"},
        {"rtp.port_min": "30000", "rtp.port_max": "20000"},
        {"sip.bind": "not-an-ip"},
        {"http.port": "x"},
    ],
)
def test_process_settings_bad_input_writes_nothing(
    admin: FlaskClient, ctx: WebContext, bad: dict[str, str]
) -> None:
    assert post(admin, "/settings/process", {"sip.port": "5080", **bad}).status_code == 422
    assert config_module.read_override(ctx.data_dir) == {}


def test_audit_log_filters(admin: FlaskClient, ctx: WebContext) -> None:
    post(admin, "/users/new", {"extension": "100"})
    post(admin, "/sites/new", {"name": "Berlin", "timezone": "Europe/Berlin"})
    page = admin.get("/audit?action=site.add").get_data(as_text=True)
    assert ">site.add<" in page and ">user.add<" not in page
    page = admin.get("/audit?actor=web:root&target=100").get_data(as_text=True)
    assert ">user.add<" in page and ">site.add<" not in page
    assert "No entries" in admin.get("/audit?since=2999-01-01").get_data(as_text=True)
    assert admin.get("/audit?since=soon").status_code == 422


def test_tokens_create_shows_once_stores_hash_and_revoke(
    admin: FlaskClient, ctx: WebContext
) -> None:
    page = post(admin, "/tokens", {"name": "deploy", "role": "readonly"}).get_data(as_text=True)
    secret = page.split('class="secret token">')[1].split("<")[0]
    stored = ctx.store.read(tokens.list_tokens)[0]
    assert stored.token_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in admin.get("/tokens").get_data(as_text=True)
    assert post(admin, f"/tokens/{stored.id}/revoke").status_code == 302
    assert ctx.store.read(tokens.list_tokens)[0].revoked_at is not None
    assert post(admin, "/tokens/999/revoke").status_code == 404


@pytest.mark.parametrize(
    "bad",
    [
        {"name": ""},
        {"role": "root"},
        {"role": "site_admin"},
        {"expires_at": "2000-01-01"},
        {"site_id": "42"},
    ],
)
def test_token_bad_input_saves_nothing(
    admin: FlaskClient, ctx: WebContext, bad: dict[str, str]
) -> None:
    assert post(admin, "/tokens", {"name": "t", "role": "admin", **bad}).status_code == 422
    assert ctx.store.read(tokens.list_tokens) == []


def test_support_access_account_expires_and_logs_in_audited(
    admin: FlaskClient, ctx: WebContext, app: Any
) -> None:
    until = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 7200))
    page = post(
        admin,
        "/support",
        {"kind": "account", "name": "vendor", "role": "readonly", "expires_at": until},
    ).get_data(as_text=True)
    password = page.split('class="secret">')[1].split("<")[0]
    account = ctx.store.read(admins.get_admin, "vendor")
    assert account is not None and account.expires_at is not None
    assert not account.must_change_password
    from tests.web.conftest import https_client

    support = https_client(app)
    assert login(support, "vendor", password).status_code == 302
    entry = ctx.store.read(audit.list_entries, action="account.login")[0]
    assert entry.target == "vendor" and entry.new["support"] is True
    ctx.store.write(admins.update_admin, "vendor", expires_at=time.time() - 1)
    assert support.get("/").status_code == 302


def test_support_access_token_and_bad_input(admin: FlaskClient, ctx: WebContext) -> None:
    until = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3600))
    page = post(
        admin, "/support", {"kind": "token", "name": "vendor", "role": "admin", "expires_at": until}
    ).get_data(as_text=True)
    assert "pbx_" in page
    assert ctx.store.read(tokens.list_tokens)[0].expires_at is not None
    far = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 40 * 86400))
    for bad in (
        {"expires_at": ""},
        {"expires_at": "2000-01-01"},
        {"expires_at": far},
        {"kind": "vpn"},
        {"name": ""},
    ):
        data = {"kind": "token", "name": "v2", "role": "admin", "expires_at": until, **bad}
        assert post(admin, "/support", data).status_code == 422, bad
    assert len(ctx.store.read(tokens.list_tokens)) == 1


def test_accounts_create_disable_reset_delete(admin: FlaskClient, ctx: WebContext) -> None:
    page = post(admin, "/accounts", {"username": "bob", "role": "readonly"}).get_data(as_text=True)
    assert "bob" in page and 'class="secret"' in page
    bob = ctx.store.read(admins.get_admin, "bob")
    assert bob is not None and bob.must_change_password and bob.role == "readonly"
    post(admin, "/accounts/bob", {"role": "readonly", "disabled": "on"})
    disabled = ctx.store.read(admins.get_admin, "bob")
    assert disabled is not None and disabled.disabled
    assert post(admin, "/accounts/bob/reset").status_code == 200
    assert post(admin, "/accounts/root/delete").status_code == 403
    assert post(admin, "/accounts/bob/delete").status_code == 302
    assert ctx.store.read(admins.get_admin, "bob") is None


@pytest.mark.parametrize(
    "bad",
    [
        {"username": "bad name"},
        {"role": "god"},
        {"role": "site_admin"},
        {"role": "user"},
        {"password": "short"},
        {"username": "root"},
    ],
)
def test_account_bad_input_saves_nothing(
    admin: FlaskClient, ctx: WebContext, bad: dict[str, str]
) -> None:
    response = post(admin, "/accounts", {"username": "bob", "role": "admin", **bad})
    assert response.status_code in (409, 422)
    assert [a.username for a in ctx.store.read(admins.list_admins)] == ["root"]


def test_trunk_states_are_shown_to_system_roles_not_to_a_site_administrator(as_role: Any) -> None:
    for role in ("admin", "readonly"):
        assert "credentials of &#39;u&#39; refused" in as_role(role).get("/").get_data(as_text=True)
    page = as_role("site_admin").get("/").get_data(as_text=True)
    assert "sipgate" not in page and "No trunk." in page


def test_the_trunks_page_lists_trunks_dids_and_routes_for_the_system_roles(
    as_role: Any, ctx: WebContext
) -> None:
    from pbx.store import dids, routes, trunks

    ctx.store.write(trunks.add_trunk, trunks.Trunk(
        name="sipgate", preset="sipgate", domain="sipconnect.sipgate.de", username="1234567t0",
        password_enc="gAAAA-secret-token"))  # fmt: skip
    ctx.store.write(dids.add_did, "+4930123456710", "100")
    ctx.store.write(routes.add_route, routes.Route("national", "0Z.", ("sipgate",), 10, "0"))
    page = as_role("readonly").get("/trunks").get_data(as_text=True)
    for text in ("sipconnect.sipgate.de", "registers as 1234567t0", "registered",
                 "+4930123456710", "<code>0Z.</code>", 'href="/trunks"'):  # fmt: skip
        assert text in page, text
    assert "secret" not in page
    site_page = as_role("site_admin").get("/trunks").get_data(as_text=True)
    assert "sipconnect" not in site_page and "Trunks serve every site" in site_page
    assert 'href="/trunks"' not in site_page
    assert as_role("user").get("/trunks").status_code in (302, 403)
