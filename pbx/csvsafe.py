"""CSV cells that are safe to open in a spreadsheet (OWASP "CSV injection"), and back.

Every CSV export of pbx writes its cells through :func:`safe_cell`; the CSV imports read
them through :func:`unquote_cell`, so an export imports back unchanged.

The rule: a text cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
(after any leading single quotes, see below) gets one ``'`` in front, which spreadsheets take
as "this is text". It applies to every text cell, whoever wrote it: caller names, numbers and
Call-IDs come from phones. So an E.164 number written as text, ``+4930123456``, is exported as
``'+4930123456``, and an extension ``-7`` as ``'-7``. Numbers pbx writes as numbers (ids,
timestamps, durations, 0/1 flags: Python ``int``/``float``) stay numbers, ``None`` stays
empty. A text cell already starting with quotes before such a character (``'=x``) gets one
more, so that :func:`unquote_cell` (drop one leading quote before such a character) gives
back exactly what was exported. Sans-IO; imports nothing from pbx.
"""

from __future__ import annotations

from typing import Any

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _looks_quoted_formula(text: str) -> bool:
    return text.lstrip("'").startswith(FORMULA_START)


def safe_cell(value: Any) -> Any:
    """``value`` as it may go into a CSV export: text neutralised, numbers and None as is."""
    if isinstance(value, str) and _looks_quoted_formula(value):
        return "'" + value
    return value


def safe_row(values: list[Any]) -> list[Any]:
    """:func:`safe_cell` of every value, for ``csv.writer.writerow``."""
    return [safe_cell(value) for value in values]


def unquote_cell(text: str) -> str:
    """A cell of an imported CSV file as :func:`safe_cell` had it: one leading ``'`` before a
    formula character is dropped."""
    if text.startswith("'") and _looks_quoted_formula(text):
        return text[1:]
    return text
