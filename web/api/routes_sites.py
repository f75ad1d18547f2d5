"""API routes for sites (create, read, change, delete, hold music) and devices (list).

Owns the /api/v1/sites* and /api/v1/devices routes and their schemas; changes go through
web/services. ``PUT /sites/{id}/music`` takes the audio file itself as the body (not JSON),
with its own body limit (50 MB instead of the API's 64 KiB). Must not import twisted.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import jsonify
from flask.typing import ResponseReturnValue

from pbx.media.audiofile import MAX_BYTES
from web import services
from web.api.context import account, web_context
from web.api.registry import api_route
from web.api.routes_users import SITE_ID
from web.api.schema import Field, Schema

log = logging.getLogger(__name__)

_SITE_FIELDS = {
    "name": Field("string", max_length=64),
    "timezone": Field("string", max_length=64, description="IANA time zone, e.g. Europe/Berlin"),
    "country_code": Field("string", max_length=3, description="Digits, e.g. 49"),
    "area_code": Field("string", max_length=6, description="Digits"),
    "number_block_start": Field("string", max_length=15, description="Digits"),
    "number_block_end": Field("string", max_length=15, description="Digits, same length"),
}
CREATE_SITE = Schema(
    _SITE_FIELDS
    | {
        "name": Field("string", required=True, max_length=64),
        "timezone": Field("string", required=True, max_length=64),
    }
)
UPDATE_SITE = Schema(_SITE_FIELDS, "Only the fields given change.")
DEVICES_QUERY = Schema({"site_id": SITE_ID})


@api_route("/sites", "GET", summary="List sites", tag="sites", response="Site[]")
def list_sites() -> ResponseReturnValue:
    return jsonify(services.list_sites(web_context(), account()))


@api_route(
    "/sites", "POST", summary="Create a site", tag="sites", body=CREATE_SITE, response="Site",
    status=201,
)  # fmt: skip
def create_site(body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.create_site(web_context(), account(), body)), 201


@api_route("/sites/<id:site_id>", "GET", summary="One site", tag="sites", response="Site")
def get_site(site_id: int) -> ResponseReturnValue:
    return jsonify(services.get_site(web_context(), account(), site_id))


@api_route(
    "/sites/<id:site_id>", "PATCH", summary="Change a site", tag="sites", body=UPDATE_SITE,
    response="Site",
)  # fmt: skip
def update_site(site_id: int, body: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.update_site(web_context(), account(), site_id, body))


@api_route(
    "/sites/<id:site_id>",
    "DELETE",
    summary="Delete a site (409 while users belong to it)",
    tag="sites",
    status=204,
)
def delete_site(site_id: int) -> ResponseReturnValue:
    services.delete_site(web_context(), account(), site_id)
    return "", 204


MUSIC_UPLOAD = Schema(
    {"filename": Field("string", max_length=200, description="The file's name, kept to show later")}
)


@api_route(
    "/sites/<id:site_id>/music", "GET", summary="A site's hold music (its own or the default)",
    tag="sites", response="SiteMusic",
)  # fmt: skip
def get_site_music(site_id: int) -> ResponseReturnValue:
    return jsonify(services.get_site_music(web_context(), account(), site_id))


@api_route(
    "/sites/<id:site_id>/music",
    "PUT",
    summary=(
        "Upload a site's hold music: the raw MP3 or WAV file as the body (at most 50 MB); "
        "pbx converts it (422 with field file when it cannot)"
    ),
    tag="sites",
    query=MUSIC_UPLOAD,
    response="SiteMusic",
    max_body=MAX_BYTES,
    raw_body=("audio/*", "application/octet-stream"),
)
def put_site_music(site_id: int, query: dict[str, Any], raw: bytes) -> ResponseReturnValue:
    music = services.upload_site_music(
        web_context(), account(), site_id, raw, query.get("filename", "")
    )
    return jsonify(music)


@api_route(
    "/sites/<id:site_id>/music", "DELETE",
    summary="Remove a site's own hold music (the default music plays again)", tag="sites",
    status=204,
)  # fmt: skip
def delete_site_music(site_id: int) -> ResponseReturnValue:
    services.delete_site_music(web_context(), account(), site_id)
    return "", 204


@api_route(
    "/devices",
    "GET",
    summary="Known phones with model, MAC, last seen and state",
    tag="devices",
    query=DEVICES_QUERY,
    response="Device[]",
)
def list_devices(query: dict[str, Any]) -> ResponseReturnValue:
    return jsonify(services.list_devices(web_context(), account(), query.get("site_id")))
