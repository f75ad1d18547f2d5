"""Call-record search, per-day/per-user counts and retention purge (web call history)."""

from __future__ import annotations

import time

from pbx.store import cdr, sites, users
from pbx.store.cdr import CallRecord
from pbx.store.db import Store

DAY = 86400.0
T0 = 1_700_000_000.0


def _add(store: Store, n: int, caller: str, callee: str, at: float, **kw: object) -> None:
    record = CallRecord(
        call_id=f"c{n}",
        caller=caller,
        dialled=callee,
        started_at=at,
        callee=callee,
        caller_user=caller,
        callee_user=callee,
        disposition=str(kw.pop("disposition", "answered")),
        **kw,  # type: ignore[arg-type]
    )
    store.write(cdr.add_record, record)


def _fill(store: Store) -> None:
    _add(store, 1, "100", "200", T0)
    _add(store, 2, "100", "300", T0 + 10, disposition="busy")
    _add(store, 3, "200", "300", T0 + DAY)
    _add(store, 4, "300", "4_5", T0 + 2 * DAY, disposition="no answer")


def test_search_filters_and_total(store: Store) -> None:
    _fill(store)
    page, total = store.read(cdr.search_records)
    assert total == 4 and [r.call_id for r in page] == ["c4", "c3", "c2", "c1"]
    assert store.read(cdr.search_records, user="100")[1] == 2
    assert [r.call_id for r in store.read(cdr.search_records, number="30")[0]] == ["c4", "c3", "c2"]
    assert [r.call_id for r in store.read(cdr.search_records, disposition="busy")[0]] == ["c2"]
    window = store.read(cdr.search_records, since=T0 + 5, until=T0 + 2 * DAY)
    assert [r.call_id for r in window[0]] == ["c3", "c2"]
    assert store.read(cdr.search_records, direction="inbound") == ([], 0)


def test_search_number_treats_like_wildcards_literally(store: Store) -> None:
    _fill(store)
    assert [r.call_id for r in store.read(cdr.search_records, number="_")[0]] == ["c4"]
    assert store.read(cdr.search_records, number="%")[1] == 0


def test_search_pages_with_limit_and_offset(store: Store) -> None:
    _fill(store)
    page, total = store.read(cdr.search_records, limit=2, offset=2)
    assert total == 4 and [r.call_id for r in page] == ["c2", "c1"]


def test_search_by_site_uses_the_users_site(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(users.add_user, "100", "Alice", site_id=site.id)
    store.write(users.add_user, "400", "Dora")
    _fill(store)
    _add(store, 5, "900", "901", T0, caller_site=str(site.id))
    found = store.read(cdr.search_records, site_id=site.id)
    assert sorted(r.call_id for r in found[0]) == ["c1", "c2", "c5"]


def test_counts_per_day_and_user(store: Store) -> None:
    _fill(store)
    day = time.strftime("%Y-%m-%d", time.localtime(T0))
    per_day = store.read(cdr.counts_per_day, T0 - 1, T0 + 3 * DAY)
    assert per_day[0] == (day, 2) and [n for _, n in per_day] == [2, 1, 1]
    assert store.read(cdr.counts_per_day, T0 + DAY, T0 + 2 * DAY) == [
        (time.strftime("%Y-%m-%d", time.localtime(T0 + DAY)), 1)
    ]
    per_user = store.read(cdr.counts_per_user, T0, T0 + DAY + 1)
    assert per_user == [("100", 2), ("200", 2), ("300", 2)]


def test_counts_per_user_of_one_site(store: Store) -> None:
    site = store.write(sites.add_site, "A", "UTC")
    store.write(users.add_user, "300", "Carol", site_id=site.id)
    _fill(store)
    assert store.read(cdr.counts_per_user, T0, T0 + 3 * DAY, site.id) == [("300", 3)]
    assert [n for _, n in store.read(cdr.counts_per_day, T0, T0 + 3 * DAY, site.id)] == [1, 1, 1]


def test_purge_before_keeps_newer_and_open_records(store: Store) -> None:
    _fill(store)
    store.write(cdr.open_record, CallRecord("live", "100", "200", T0 - DAY, answered_at=T0 - DAY))
    assert store.write(cdr.purge_before, T0 + DAY) == 2
    remaining = store.read(cdr.search_records)[0]
    assert sorted(r.call_id for r in remaining) == ["c3", "c4", "live"]


def test_records_keep_the_sites_their_users_had_at_call_time(store: Store) -> None:
    site = store.write(sites.add_site, "Berlin", "Europe/Berlin")
    other = store.write(sites.add_site, "Munich", "Europe/Berlin")
    store.write(users.add_user, "100", "Alice", site_id=site.id)
    store.write(users.add_user, "200", "Bob")
    _add(store, 1, "100", "200", T0)
    store.write(users.set_user_site, "100", other.id)  # Alice moves after the call
    (record,), _ = store.read(cdr.search_records)
    assert (record.caller_site, record.callee_site) == (str(site.id), None)
