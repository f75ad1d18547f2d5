"""The users CSV format: what the web's users export writes, and where both imports (`pbx
user import` and the web's) find their columns in it.

Columns as the export writes them: ``extension,password,name,site,enabled,call_waiting,
pickup_group`` (the password column is always empty there). An import reads ``extension``,
``password``, ``name``, ``site`` (a site's name or id) and ``pickup_group``. Without a header
row the columns are where the export writes them, so the short form ``extension,password,
name`` of earlier releases still reads; with one (its first cell ``extension``), a column is
found by its header name. Lines whose first cell starts with ``#`` are comments. Cells but the
password are unquoted (:func:`pbx.csvsafe.unquote_cell`), so an export imports back unchanged.
:func:`site_id` finds the site a row names. Sans-IO: checks nothing but the layout and the
site reference; the callers validate the values.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

from pbx.csvsafe import unquote_cell

EXPORT_HEADER = (
    "extension", "password", "name", "site", "enabled", "call_waiting", "pickup_group"
)  # fmt: skip
IMPORT_COLUMNS = ("extension", "password", "name", "site", "pickup_group")
_POSITIONS = {name: EXPORT_HEADER.index(name) for name in IMPORT_COLUMNS}


def read_rows(lines: Iterable[str]) -> list[list[str]]:
    """The CSV rows of ``lines``, blank lines and ``#`` comments left out (csv.Error on a
    malformed file)."""
    return [row for row in csv.reader(lines) if row and not row[0].startswith("#")]


def import_columns(rows: list[list[str]]) -> tuple[list[list[str]], dict[str, int | None]]:
    """The data rows and where each imported column is (None: not in the file). A column the
    header does not name is at its usual position unless the header gives that position another
    known name (so the pickup_group column may be anywhere, or absent)."""
    if not rows or rows[0][0].strip().lower() != "extension":
        return rows, dict(_POSITIONS)
    names = [cell.strip().lower() for cell in rows[0]]
    columns: dict[str, int | None] = {}
    for name in IMPORT_COLUMNS:
        if name in names:
            columns[name] = names.index(name)
        elif name != "pickup_group" and not (
            _POSITIONS[name] < len(names) and names[_POSITIONS[name]] in IMPORT_COLUMNS
        ):
            columns[name] = _POSITIONS[name]
        else:
            columns[name] = None
    return rows[1:], columns


def cells(row: list[str], columns: dict[str, int | None]) -> dict[str, str]:
    """The imported columns of one row, stripped (empty where absent); the export's quote
    before a formula character is undone, the password is taken as typed."""
    found = {}
    for name, index in columns.items():
        cell = row[index].strip() if index is not None and index < len(row) else ""
        found[name] = cell if name == "password" else unquote_cell(cell)
    return found


def site_id(ref: str, sites: Iterable[Any]) -> int | None:
    """The id of the site whose name or id is ``ref`` (sites have ``id`` and ``name``); None
    for an empty ``ref``, ValueError("no site 'REF'") when no site matches."""
    if not ref:
        return None
    for site in sites:
        if ref == site.name or ref == str(site.id):
            found: int = site.id
            return found
    raise ValueError(f"no site {ref!r}")
