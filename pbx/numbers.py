"""Telephone numbers: E.164 (ITU-T E.164, at most 15 digits, written with "+") and reading
the forms providers use for them.

:func:`e164` checks a number an admin types (``+4930123456710``); :func:`from_provider` reads a
number from a trunk in the E.164-based forms (``+49...``, ``0049...``, ``49...``) into E.164.
National forms need the site's country and area code and come with sites' dialling rules.
Imports nothing from pbx.
"""

from __future__ import annotations

import re

_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_VISUAL = re.compile(r"[ ()./-]")  # separators people and providers write between digits


def e164(text: str) -> str:
    """``text`` as E.164 (separators removed); ValueError saying what is wrong."""
    number = _VISUAL.sub("", text.strip())
    if number.startswith("00"):
        number = "+" + number[2:]
    if not _E164.fullmatch(number):
        raise ValueError(
            f"{text!r} is not an international number like +4930123456710 (+, country code, "
            "at most 15 digits)"
        )
    return number


def from_provider(text: str) -> str | None:
    """The E.164 form of a called or calling number as a trunk sent it, or None when it is
    not in an international form (or not a number at all)."""
    number = _VISUAL.sub("", text.strip())
    if number.startswith("+"):
        candidate = number
    elif number.startswith("00"):
        candidate = "+" + number[2:]
    elif number[:1] in "123456789" and number.isdigit() and len(number) >= 8:
        candidate = "+" + number  # E.164 without "+" (e.g. sipgate's 49211...)
    else:
        return None
    return candidate if _E164.fullmatch(candidate) else None
