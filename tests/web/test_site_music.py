"""Music on hold per site: upload (REST PUT with the raw file, or the site page's form),
conversion to DATA/moh/site-<id>/music.wav, metadata, removal, audit, the running server told,
permissions, and a file that cannot be decoded changing nothing. Real WAV files made with the
stdlib wave module, and garbage."""

from __future__ import annotations

import array
import html
import io
import math
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from pbx.store import audit
from pbx.store import music as store_music
from tests.web.api_support import SITE_1, SITE_2, World, api_world, dump
from tests.web.conftest import post
from web.backend import WebContext
from web.services.music import clean_name

GARBAGE = b"this is not audio at all " * 400


def wav_file(seconds: float, rate: int = 16000, channels: int = 2) -> bytes:
    """A sine WAV file of ``seconds`` at ``rate`` Hz, 16-bit, ``channels`` channels."""
    frames = int(seconds * rate)
    tone = [round(8000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(frames)]
    interleaved = array.array("h", [v for v in tone for _ in range(channels)])
    out = io.BytesIO()
    with wave.open(out, "wb") as writer:
        writer.setnchannels(channels)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(interleaved.tobytes())
    return out.getvalue()


def music_file(data_dir: Path, site_id: int) -> Path:
    return data_dir / "moh" / f"site-{site_id}" / "music.wav"


def folder_names(data_dir: Path, site_id: int) -> list[str]:
    folder = data_dir / "moh" / f"site-{site_id}"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with api_world(tmp_path) as w:
        yield w


def _put(world: World, role: str, site_id: int, data: bytes, **kw: Any) -> Any:
    kw.setdefault("content_type", "audio/wav")
    query = kw.pop("query", "?filename=folder/jingle.wav")
    return world.call(role, "PUT", f"/api/v1/sites/{site_id}/music{query}", data=data, **kw)


# -- REST API --------------------------------------------------------------------------------


def test_upload_converts_stores_audits_and_tells_the_server(world: World) -> None:
    default = world.call("admin", "GET", f"/api/v1/sites/{SITE_1}/music")
    assert default.status_code == 200 and default.json["custom"] is False
    source = wav_file(2.0)
    assert len(source) > 64 * 1024  # above the API's JSON body limit
    response = _put(world, "admin", SITE_1, source)
    assert response.status_code == 200, response.json
    meta = response.json
    assert meta["custom"] is True and meta["original_name"] == "jingle.wav"
    assert meta["duration_s"] == pytest.approx(2.0, abs=0.01)
    assert meta["uploaded_by"] == "api:pbx_test_admin" and meta["uploaded_at"] > 0
    assert world.call("admin", "GET", f"/api/v1/sites/{SITE_1}/music").json == meta
    with wave.open(str(music_file(world.ctx.data_dir, SITE_1)), "rb") as stored:
        shape = (stored.getframerate(), stored.getnchannels(), stored.getsampwidth())
        assert shape == (8000, 1, 2) and stored.getnframes() == 16000
    assert folder_names(world.ctx.data_dir, SITE_1) == ["music.wav"]  # no temporary file left
    assert world.live.music == [SITE_1]
    [entry] = world.store.read(audit.list_entries, action="site.music.set")
    assert (entry.actor, entry.target, entry.old) == ("api:pbx_test_admin", "HQ", None)
    assert entry.new["original_name"] == "jingle.wav"


def test_a_second_upload_replaces_the_first(world: World) -> None:
    _put(world, "admin", SITE_1, wav_file(1.0), query="?filename=one.wav")
    second = _put(
        world,
        "admin",
        SITE_1,
        wav_file(3.0, 8000, 1),
        query="",
        content_type="application/octet-stream",
    )
    assert second.status_code == 200 and second.json["original_name"] == "upload"
    assert second.json["duration_s"] == pytest.approx(3.0)
    entry = world.store.read(audit.list_entries, action="site.music.set")[0]
    assert entry.old["original_name"] == "one.wav"
    assert world.live.music == [SITE_1, SITE_1]


def test_a_file_that_cannot_be_decoded_is_422_and_the_old_music_stays(world: World) -> None:
    _put(world, "admin", SITE_1, wav_file(1.0))
    path = music_file(world.ctx.data_dir, SITE_1)
    before, rows = path.read_bytes(), dump(world)
    for data in (GARBAGE, b""):
        refused = _put(world, "admin", SITE_1, data, query="?filename=song.mp3")
        assert refused.status_code == 422 and refused.json["field"] == "file"
        assert refused.json["error"].startswith("file: ")
    assert "not an audio file pbx can read" in _put(world, "admin", SITE_1, GARBAGE).json["error"]
    assert path.read_bytes() == before and dump(world) == rows
    assert folder_names(world.ctx.data_dir, SITE_1) == ["music.wav"]
    assert world.live.music == [SITE_1]


def test_body_type_and_size_are_checked(world: World) -> None:
    wrong = _put(world, "admin", SITE_1, b'{"a": 1}', content_type="application/json")
    assert wrong.status_code == 415 and "audio/*" in wrong.json["error"]
    assert _put(world, "admin", SITE_1, wav_file(0.5), content_type="audio/mpeg").status_code != 415
    huge = _put(world, "admin", SITE_1, b"\0" * (50 * 1024 * 1024 + 1))
    assert huge.status_code == 413 and huge.json["error"]
    other = world.call(
        "admin", "POST", "/api/v1/sites", data=b"{" + b" " * 70_000 + b"}",
        content_type="application/json",
    )  # fmt: skip
    assert other.status_code == 413  # the 64 KiB limit still holds everywhere else


def test_delete_goes_back_to_the_default_music(world: World) -> None:
    _put(world, "admin", SITE_1, wav_file(1.0))
    assert world.call("admin", "DELETE", f"/api/v1/sites/{SITE_1}/music").status_code == 204
    assert not music_file(world.ctx.data_dir, SITE_1).exists()
    assert world.store.read(store_music.get_site_music, SITE_1) is None
    assert world.call("admin", "GET", f"/api/v1/sites/{SITE_1}/music").json["custom"] is False
    assert world.live.music == [SITE_1, SITE_1]
    [entry] = world.store.read(audit.list_entries, action="site.music.delete")
    assert entry.old["original_name"] == "jingle.wav"
    again = world.call("admin", "DELETE", f"/api/v1/sites/{SITE_1}/music")
    assert again.status_code == 404 and again.json["error"]


def test_permissions_admin_any_site_site_admin_own_others_none(world: World) -> None:
    source = wav_file(0.5)
    before = dump(world)
    for role, site_id, status in (
        ("site_admin", SITE_2, 404),
        ("readonly", SITE_1, 403),
        ("user", SITE_1, 403),
    ):
        assert _put(world, role, site_id, source).status_code == status, role
        path = f"/api/v1/sites/{site_id}/music"
        assert world.call(role, "GET", path).status_code == status, role
        assert world.call(role, "DELETE", path).status_code == status, role
    assert _put(world, "admin", 99, source).status_code == 404
    assert dump(world) == before and not (world.ctx.data_dir / "moh").exists()
    assert world.live.music == []
    assert _put(world, "site_admin", SITE_1, source).status_code == 200
    assert _put(world, "admin", SITE_2, source).status_code == 200
    assert world.call("site_admin", "GET", f"/api/v1/sites/{SITE_1}/music").json["custom"]
    assert world.call("site_admin", "DELETE", f"/api/v1/sites/{SITE_1}/music").status_code == 204


def test_deleting_a_site_removes_its_music(world: World) -> None:
    _put(world, "admin", 3, wav_file(0.5))
    assert music_file(world.ctx.data_dir, 3).exists()
    assert world.call("admin", "DELETE", "/api/v1/sites/3").status_code == 204
    assert not (world.ctx.data_dir / "moh" / "site-3").exists()


def test_openapi_documents_the_raw_body(world: World) -> None:
    document = world.call(None, "GET", "/api/v1/openapi.json").json
    put = document["paths"]["/api/v1/sites/{site_id}/music"]["put"]
    assert set(put["requestBody"]["content"]) == {"audio/*", "application/octet-stream"}
    assert {"413", "415", "422"} <= set(put["responses"])


def test_clean_name_keeps_only_the_files_own_name() -> None:
    assert clean_name("C:\\music\\hold.mp3") == "hold.mp3"
    assert clean_name("../../etc/passwd") == "passwd"
    assert clean_name("a\x00b\n.wav") == "ab.wav" and clean_name("") == "upload"
    assert len(clean_name("x" * 500)) == 200


# -- the site page -----------------------------------------------------------------------------


def _upload(client: FlaskClient, site_id: int, data: bytes, name: str = "hold.wav") -> Any:
    return post(
        client,
        f"/sites/{site_id}/music",
        {"file": (io.BytesIO(data), name)},
        content_type="multipart/form-data",
    )


def test_site_page_uploads_shows_and_removes_music(
    as_role: Any, ctx: WebContext, sites_ab: tuple[int, int], live: Any
) -> None:
    client = as_role("admin")
    site = sites_ab[0]
    page = client.get(f"/sites/{site}").get_data(as_text=True)
    assert "Music on hold" in page and "plays the default music" in page
    assert "Use the default music" not in page
    big = wav_file(330.0, 8000, 1)  # more than the pages' 4 MB limit
    assert len(big) > 4 * 1024 * 1024
    done = _upload(client, site, big, "Big Band.wav")
    assert done.status_code == 302, done.get_data(as_text=True)
    page = client.get(f"/sites/{site}").get_data(as_text=True)
    assert "Big Band.wav" in page and "5:30" in page and "by web:admin-" in page
    assert "Use the default music" in page and "Replace with" in page
    assert live.music == [site]
    refused = _upload(client, site, GARBAGE, "song.mp3")
    text = html.unescape(refused.get_data(as_text=True))
    assert refused.status_code == 422 and '"song.mp3" is not an audio file pbx can read' in text
    assert "Big Band.wav" in text
    assert music_file(ctx.data_dir, site).stat().st_size == 44 + 330 * 8000 * 2
    assert post(client, f"/sites/{site}/music/delete").status_code == 302
    assert not music_file(ctx.data_dir, site).exists() and live.music == [site, site]
    assert "plays the default music" in client.get(f"/sites/{site}").get_data(as_text=True)


def test_site_page_music_follows_the_roles(
    as_role: Any, ctx: WebContext, sites_ab: tuple[int, int]
) -> None:
    mine, other = sites_ab
    readonly = as_role("readonly")
    assert "Music on hold" not in readonly.get(f"/sites/{mine}").get_data(as_text=True)
    assert _upload(readonly, mine, wav_file(0.5)).status_code == 403
    assert post(readonly, f"/sites/{mine}/music/delete").status_code == 403
    site_admin = as_role("site_admin")
    assert "Music on hold" in site_admin.get(f"/sites/{mine}").get_data(as_text=True)
    assert _upload(site_admin, other, wav_file(0.5)).status_code == 404
    assert not (ctx.data_dir / "moh").exists()
    assert _upload(site_admin, mine, wav_file(0.5)).status_code == 302
    assert as_role("user").get(f"/sites/{mine}").status_code == 403


def test_music_forms_need_the_csrf_token(
    as_role: Any, ctx: WebContext, sites_ab: tuple[int, int]
) -> None:
    client = as_role("admin")
    response = client.post(
        f"/sites/{sites_ab[0]}/music",
        data={"file": (io.BytesIO(wav_file(0.5)), "a.wav")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400 and not (ctx.data_dir / "moh").exists()
    assert client.post(f"/sites/{sites_ab[0]}/music/delete").status_code == 400
