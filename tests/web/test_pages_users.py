"""Users pages: list, create, edit, delete, SIP credentials, provisioning, CSV import/export."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient

from pbx.credentials import SecretBox
from pbx.store import audit, users
from pbx.store import credentials as store_credentials
from tests.web.conftest import add_account, login, post
from web.backend import WebContext


def _admin(client: FlaskClient, ctx: WebContext) -> FlaskClient:
    add_account(ctx, "root")
    login(client, "root")
    return client


def _create(client: FlaskClient, **data: Any) -> Any:
    return post(client, "/users/new", {"extension": "100", "display_name": "Ann", **data})


def test_create_user_generates_credentials_and_shows_them_once(
    client: FlaskClient, ctx: WebContext, sites_ab: tuple[int, int]
) -> None:
    _admin(client, ctx)
    response = _create(client, site_id=str(sites_ab[0]), enabled="on")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Provisioning for 100" in page
    user = ctx.store.read(users.get_user, "100")
    assert user is not None and user.site_id == sites_ab[0] and user.display_name == "Ann"
    assert not user.call_waiting  # checkbox not ticked
    creds = ctx.store.read(store_credentials.get_credentials, "100")
    assert creds is not None and creds.realm == ctx.config.auth.realm
    password = SecretBox(ctx.data_dir / "secret.key").decrypt(creds.password_enc)
    assert password in page
    entry = ctx.store.read(audit.list_entries)[0]
    assert (entry.actor, entry.action, entry.target) == ("web:root", "user.add", "100")
    assert password not in str(entry.new)


def test_create_user_bad_input_saves_nothing(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    for bad in (
        {"extension": ""},
        {"extension": "1 00"},
        {"extension": "x" * 40},
        {"password": "short"},
        {"static_contact": "sip:host.example.com"},
        {"site_id": "999"},
        {"site_id": "abc"},
        {"display_name": "a\nb"},
    ):
        response = _create(client, **bad)
        assert response.status_code == 422, bad
        assert "flash error" in response.get_data(as_text=True)
    assert ctx.store.read(users.list_users) == []
    assert ctx.store.read(store_credentials.get_credentials, "100") is None


def test_duplicate_extension_is_a_conflict(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client)
    assert _create(client).status_code == 409


def test_user_list_filters_by_site(
    client: FlaskClient, ctx: WebContext, sites_ab: tuple[int, int]
) -> None:
    _admin(client, ctx)
    _create(client, extension="100", site_id=str(sites_ab[0]))
    _create(client, extension="200", site_id=str(sites_ab[1]))
    page = client.get(f"/users?site={sites_ab[1]}").get_data(as_text=True)
    assert ">200<" in page and ">100<" not in page
    page = client.get("/users").get_data(as_text=True)
    assert ">200<" in page and ">100<" in page


def test_edit_user_changes_fields_and_audits_old_and_new(
    client: FlaskClient, ctx: WebContext
) -> None:
    _admin(client, ctx)
    _create(client, call_waiting="on", enabled="on")
    assert client.get("/users/100").status_code == 200
    response = post(client, "/users/100", {"display_name": "Anna", "enabled": "on"})
    assert response.status_code == 302
    user = ctx.store.read(users.get_user, "100")
    assert user is not None and user.display_name == "Anna" and not user.call_waiting
    entry = ctx.store.read(audit.list_entries, action="user.update")[0]
    assert entry.old == {"display_name": "Ann", "call_waiting": True}
    assert entry.new == {"display_name": "Anna", "call_waiting": False}


def test_edit_user_bad_input_changes_nothing(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client, enabled="on")
    before = ctx.store.read(users.get_user, "100")
    response = post(client, "/users/100", {"display_name": "", "site_id": "5"})
    assert response.status_code == 422
    response = post(client, "/users/100", {"display_name": "Bob", "site_id": "77"})
    assert response.status_code == 422
    assert ctx.store.read(users.get_user, "100") == before


def test_unknown_user_is_404(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    assert client.get("/users/999").status_code == 404
    assert post(client, "/users/999/delete").status_code == 404


def test_delete_user(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client)
    assert post(client, "/users/100/delete").status_code == 302
    assert ctx.store.read(users.get_user, "100") is None
    assert ctx.store.read(audit.list_entries, action="user.delete")


def test_show_password_is_audited_and_new_password_replaces_old(
    client: FlaskClient, ctx: WebContext
) -> None:
    _admin(client, ctx)
    _create(client, password="Secret-Pass-123")
    page = post(client, "/users/100/provisioning").get_data(as_text=True)
    assert "Secret-Pass-123" in page and "5060" in page
    assert ctx.store.read(audit.list_entries, action="user.show_password")
    page = post(client, "/users/100/password").get_data(as_text=True)
    assert "Secret-Pass-123" not in page
    creds = ctx.store.read(store_credentials.get_credentials, "100")
    assert creds is not None
    new = SecretBox(ctx.data_dir / "secret.key").decrypt(creds.password_enc)
    assert new in page and new != "Secret-Pass-123"


def test_edit_page_never_shows_the_password(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client, password="Secret-Pass-123")
    assert "Secret-Pass-123" not in client.get("/users/100").get_data(as_text=True)


def test_csv_import_adds_all_rows_and_lists_generated_passwords(
    client: FlaskClient, ctx: WebContext, sites_ab: tuple[int, int]
) -> None:
    _admin(client, ctx)
    text = "extension,password,name,site\n# comment\n101,Good-Pass-1,Bob,Berlin\n102,,Carl,\n"
    response = post(client, "/users/import", {"text": text})
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "102" in page
    ext = [u.extension for u in ctx.store.read(users.list_users)]
    assert ext == ["101", "102"]
    bob = ctx.store.read(users.get_user, "101")
    assert bob is not None and bob.site_id == sites_ab[0]


def test_csv_import_is_all_or_nothing(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client, extension="105")
    for text in (
        "101,,Bob\n1 02,,Bad\n",
        "101,,Bob\n101,,Twice\n",
        "101,,Bob\n105,,Exists\n",
        "101,,Bob,NoSuchSite\n",
        "",
    ):
        response = post(client, "/users/import", {"text": text})
        assert response.status_code == 422, text
    assert [u.extension for u in ctx.store.read(users.list_users)] == ["105"]


def test_csv_import_file_upload_and_bad_encoding(client: FlaskClient, ctx: WebContext) -> None:
    import io

    _admin(client, ctx)
    ok = post(
        client,
        "/users/import",
        {"file": (io.BytesIO(b"301,,Dora\n"), "u.csv")},
        content_type="multipart/form-data",
    )
    assert ok.status_code == 200
    bad = post(
        client,
        "/users/import",
        {"file": (io.BytesIO(b"\xff\xfe302"), "u.csv")},
        content_type="multipart/form-data",
    )
    assert bad.status_code == 422
    assert [u.extension for u in ctx.store.read(users.list_users)] == ["301"]


def test_csv_export_has_no_passwords(client: FlaskClient, ctx: WebContext) -> None:
    _admin(client, ctx)
    _create(client, password="Secret-Pass-123")
    response = client.get("/users/export.csv")
    body = response.get_data(as_text=True)
    assert response.mimetype == "text/csv"
    assert body.splitlines()[0].startswith("extension,password,name")
    assert "100,,Ann" in body and "Secret-Pass-123" not in body
