"""What a site's own hold music is: the ``site_music`` table.

Owns one row per site with uploaded music (the audio itself is the file
``DATA/moh/site-<id>/music.wav``, written by the web layer): the uploaded file's name, how
long it plays, when and by whom it was uploaded. A site without a row plays the default music.
The row goes with its site (ON DELETE CASCADE). Must not import twisted or anything outside
pbx.store.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from sqlite_utils import Database

from pbx.store.errors import NotFound

_COLUMNS = "site_id, original_name, duration_s, uploaded_at, uploaded_by"


@dataclass(frozen=True)
class SiteMusic:
    site_id: int
    original_name: str
    duration_s: float
    uploaded_at: float
    uploaded_by: str  # the audit actor, e.g. web:alice


def set_site_music(db: Database, music: SiteMusic) -> SiteMusic | None:
    """Record a site's new music (replacing the row of the old one, which is returned);
    NotFound for no such site."""
    old = get_site_music(db, music.site_id)
    try:
        db.execute(
            f"INSERT INTO site_music ({_COLUMNS}) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (site_id) DO UPDATE SET original_name = excluded.original_name, "
            "duration_s = excluded.duration_s, uploaded_at = excluded.uploaded_at, "
            "uploaded_by = excluded.uploaded_by",
            [
                music.site_id,
                music.original_name,
                music.duration_s,
                music.uploaded_at,
                music.uploaded_by,
            ],
        )
    except sqlite3.IntegrityError as exc:
        raise NotFound(f"no site {music.site_id}") from exc
    return old


def get_site_music(db: Database, site_id: int) -> SiteMusic | None:
    """The site's own music, or None when it plays the default music."""
    row = db.execute(f"SELECT {_COLUMNS} FROM site_music WHERE site_id = ?", [site_id]).fetchone()
    return None if row is None else SiteMusic(*row)


def delete_site_music(db: Database, site_id: int) -> SiteMusic | None:
    """Forget the site's own music (it plays the default again); returns what it was."""
    old = get_site_music(db, site_id)
    if old is not None:
        db.execute("DELETE FROM site_music WHERE site_id = ?", [site_id])
    return old
