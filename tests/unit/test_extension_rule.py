"""One rule for extensions (pbx.extensions), the same for the CLI, the web forms and the API.

An extension is the user part of the SIP URIs it registers and is called at, so everything
the rule accepts must parse as one (RFC 3261 §25.1), and ``#`` (not valid unescaped) is
refused everywhere with the same message.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pbx.extensions import EXTENSION_ERROR, check_extension
from pbx.sip.errors import RemoteProtocolError
from pbx.sip.uri import SipUri, parse_uri
from tests.web.api_support import ADMIN, World, api_world
from web import services
from web.errors import ValidationError

from .test_cli import pbx

GOOD = ["1001", "0", "alice.smith", "+4930123456", "*43", "a-b_c", "x" * 32, "Desk+1*2"]
BAD = ["", "x" * 33, "10#1", "#", "10 01", "caf\u00e9", "a@b", "a;b", "%41", "a:b", "1/2", "\u0661"]


@pytest.mark.parametrize("extension", GOOD)
def test_accepted_extensions_are_sip_uri_user_parts(extension: str) -> None:
    assert check_extension(extension) == extension
    uri = parse_uri(f"sip:{extension}@127.0.0.1")
    assert isinstance(uri, SipUri) and uri.user == extension


@pytest.mark.parametrize("extension", BAD)
def test_refused_extensions_get_the_one_message(extension: str) -> None:
    with pytest.raises(ValueError) as raised:
        check_extension(extension)
    assert str(raised.value) == EXTENSION_ERROR


def test_hash_is_not_a_sip_uri_user_part() -> None:
    with pytest.raises(RemoteProtocolError):
        parse_uri("sip:10#1@127.0.0.1")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def test_cli_web_and_api_refuse_a_hash_with_the_same_message(world: World, tmp_path: Path) -> None:
    data = tmp_path / "data"
    cli = pbx("user", "add", "10#1", data=data)
    assert cli.returncode == 1 and EXTENSION_ERROR in cli.stderr, cli.stderr
    imported = pbx("user", "import", "-", data=data, stdin="1001,,A\n10#2,,B\n")
    assert imported.returncode == 1 and f"row 2: {EXTENSION_ERROR}" in imported.stderr

    with pytest.raises(ValidationError) as form:
        services.create_user(world.ctx, ADMIN, {"extension": "10#1"})
    assert (form.value.field, form.value.message) == ("extension", EXTENSION_ERROR)
    with pytest.raises(ValidationError) as csv_import:
        services.import_users_csv(world.ctx, ADMIN, "10#2,,B\n")
    assert csv_import.value.message == f"row 1: {EXTENSION_ERROR}"

    api = world.call("admin", "POST", "/api/v1/users", json={"extension": "10#1"})
    assert api.status_code == 422
    assert api.json == {"error": EXTENSION_ERROR, "error_id": "invalid", "field": "extension"}
