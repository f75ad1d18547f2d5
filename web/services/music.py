"""Music on hold per site for the admin pages and the REST API.

Owns reading, uploading and removing a site's own hold music. An upload (MP3, WAV, ...) is
converted by pbx.media.audiofile.convert_upload to an 8 kHz mono 16-bit WAV file and stored
as ``DATA/moh/site-<id>/music.wav`` (pbx.media.moh plays the WAV files of that folder; names
starting with a dot are ignored there): written to a hidden temporary file in that folder,
fsynced, and renamed over the old file only after its metadata row and audit entry
(pbx.store.music) were committed, so a file that cannot be decoded or a failed write leaves
the old music playing. Removing deletes the row, then the file: the site plays the default
music again. After a change the running server is told (Live.music_changed). Conversion blocks
for seconds on a long file: it runs on the request's WSGI thread, never on the reactor.
Permissions: ``music.manage`` (administrators any site, site administrators their own).
Must not import flask or twisted.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import uuid
import wave
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pbx.media.audiofile import MAX_BYTES, AudioFileError, convert_upload
from pbx.store import audit, sites
from pbx.store import music as store_music
from web.auth import Account, check, in_scope
from web.backend import WebContext
from web.errors import NotFound, ValidationError
from web.services._common import _now, _write

log = logging.getLogger(__name__)

MUSIC_FILE = "music.wav"
NAME_MAX = 200
_LOCKS: dict[int, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def music_dir(data_dir: Path, site_id: int) -> Path:
    """Where a site's own music lives: DATA/moh/site-<id>/ (pbx.media.moh's class site-<id>)."""
    return Path(data_dir) / "moh" / f"site-{int(site_id)}"


def music_path(data_dir: Path, site_id: int) -> Path:
    return music_dir(data_dir, site_id) / MUSIC_FILE


def _site_lock(site_id: int) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(site_id, threading.Lock())


def _site_or_404(ctx: WebContext, actor: Account, site_id: int) -> sites.Site:
    site = ctx.store.read(sites.get_site, site_id)
    if site is None or not in_scope(actor, site.id):
        raise NotFound(f"no site {site_id}")
    check(actor, "music.manage", site.id)
    return site


def _music_dict(site_id: int, music: store_music.SiteMusic | None) -> dict[str, Any]:
    if music is None:
        return {
            "site_id": site_id,
            "custom": False,
            "original_name": None,
            "duration_s": None,
            "uploaded_at": None,
            "uploaded_by": None,
        }
    return asdict(music) | {"custom": True}


def get_site_music(ctx: WebContext, actor: Account, site_id: int) -> dict[str, Any]:
    """The site's own music (custom: true, with name, duration, when and by whom) or the
    default music (custom: false)."""
    _site_or_404(ctx, actor, site_id)
    return _music_dict(site_id, ctx.store.read(store_music.get_site_music, site_id))


def clean_name(filename: str) -> str:
    """The uploaded file's name as shown later: no folders, printable, at most 200 chars."""
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    text = "".join(c for c in base if c.isprintable()).strip()
    return text[:NAME_MAX] or "upload"


def _duration(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav), "rb") as reader:
        return round(reader.getnframes() / reader.getframerate(), 3)


def _convert(data: bytes, filename: str) -> bytes:
    if len(data) > MAX_BYTES:
        raise ValidationError("file", "file: the file is larger than 50 MB")
    try:
        return convert_upload(data, filename)
    except AudioFileError as exc:
        raise ValidationError("file", f"file: {exc}") from None


def _write_hidden(folder: Path, content: bytes) -> Path:
    """``content`` in a new hidden file of ``folder``, fsynced; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{MUSIC_FILE}.{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def upload_site_music(
    ctx: WebContext, actor: Account, site_id: int, data: bytes, filename: str = ""
) -> dict[str, Any]:
    """Convert and store ``data`` as the site's hold music; ValidationError (field ``file``)
    with the converter's message when it cannot be used, and then nothing changes."""
    site = _site_or_404(ctx, actor, site_id)
    if not isinstance(data, bytes | bytearray) or not data:
        raise ValidationError("file", "file: choose an MP3 or WAV file to upload")
    name = clean_name(filename)
    wav = _convert(bytes(data), name)
    now = _now()
    music = store_music.SiteMusic(site_id, name, _duration(wav), now, actor.actor)

    def record(db: Any) -> None:
        if sites.get_site(db, site_id) is None:
            raise NotFound(f"no site {site_id}")
        old = store_music.set_site_music(db, music)
        audit.record(
            db,
            actor=actor.actor,
            action="site.music.set",
            target=site.name,
            old=None if old is None else _music_dict(site_id, old),
            new=_music_dict(site_id, music),
            at=now,
        )

    folder = music_dir(ctx.data_dir, site_id)
    with _site_lock(site_id):
        tmp = _write_hidden(folder, wav)
        try:
            _write(ctx, record)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, folder / MUSIC_FILE)
        _fsync_dir(folder)
    log.info("site %d hold music: %s (%.1f s) by %s", site_id, name, music.duration_s, actor.actor)
    ctx.live.music_changed(site_id)
    return _music_dict(site_id, music)


def delete_site_music(ctx: WebContext, actor: Account, site_id: int) -> None:
    """Go back to the default music: the row (audited), then the file; NotFound when the
    site has no music of its own."""
    site = _site_or_404(ctx, actor, site_id)
    now = _now()

    def forget(db: Any) -> None:
        old = store_music.delete_site_music(db, site_id)
        if old is None:
            raise NotFound(f"site {site_id} plays the default music already")
        audit.record(
            db,
            actor=actor.actor,
            action="site.music.delete",
            target=site.name,
            old=_music_dict(site_id, old),
            at=now,
        )

    with _site_lock(site_id):
        _write(ctx, forget)
        remove_music_file(ctx.data_dir, site_id)
    ctx.live.music_changed(site_id)


def remove_music_file(data_dir: Path, site_id: int) -> None:
    """Delete the site's music file (and its folder when that is then empty)."""
    folder = music_dir(data_dir, site_id)
    (folder / MUSIC_FILE).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # missing, or other files (music put there by hand) remain
        pass
