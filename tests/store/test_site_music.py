"""A site's hold music row (migration m011): set, replaced, read, deleted, gone with its site."""

from __future__ import annotations

import pytest

from pbx.store import music, sites
from pbx.store.db import Store
from pbx.store.errors import NotFound


def test_set_replace_get_and_delete(store: Store) -> None:
    site = store.write(sites.add_site, "HQ", "UTC")
    assert store.read(music.get_site_music, site.id) is None
    first = music.SiteMusic(site.id, "jazz.mp3", 61.5, 10.0, "web:alice")
    assert store.write(music.set_site_music, first) is None
    assert store.read(music.get_site_music, site.id) == first
    second = music.SiteMusic(site.id, "rock.wav", 30.0, 20.0, "api:deploy")
    assert store.write(music.set_site_music, second) == first
    assert store.read(music.get_site_music, site.id) == second
    assert store.write(music.delete_site_music, site.id) == second
    assert store.read(music.get_site_music, site.id) is None
    assert store.write(music.delete_site_music, site.id) is None


def test_music_of_no_such_site_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.write(music.set_site_music, music.SiteMusic(99, "x.wav", 1.0, 1.0, "cli"))


def test_the_row_goes_with_its_site(store: Store) -> None:
    site = store.write(sites.add_site, "HQ", "UTC")
    store.write(music.set_site_music, music.SiteMusic(site.id, "a.wav", 1.0, 1.0, "web:a"))
    store.write(sites.delete_site, site.id)
    count = store.read(lambda db: db.execute("SELECT COUNT(*) FROM site_music").fetchone()[0])
    assert count == 0
