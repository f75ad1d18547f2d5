"""Dial patterns of outbound routes, and what a dialled number becomes on its way to a trunk.

A pattern is matched against the whole dialled string. It is written the way PBX admins know
from Asterisk: digits, ``*``, ``#`` and ``+`` stand for themselves; ``X`` is any digit, ``Z``
1-9, ``N`` 2-9, ``[1-5]`` or ``[137]`` one digit of a set; a trailing ``.`` is one or more
further characters and ``!`` zero or more. Or, for anything else, a regular expression
written ``re:...`` (matched against the whole string, ``fullmatch``). :func:`compile_pattern`
raises ValueError with what is wrong; :func:`specificity` orders patterns that both match
(more literal characters first), as a tie-break after the routes' priorities.

:func:`to_e164` turns what a user dialled (after the route's exit digit) into E.164 from the
caller's site: ``+...`` and ``00...`` are international already, ``0...`` is national
(country code + the rest), anything else is local (country + area code + number).
:func:`for_trunk` writes an E.164 number in the form a trunk's preset asks for.
Imports nothing from pbx.
"""

from __future__ import annotations

import re

MAX_PATTERN = 64


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """The regular expression of ``pattern``; ValueError saying what is wrong."""
    text = pattern.strip()
    if not text or len(text) > MAX_PATTERN:
        raise ValueError(f"a pattern is 1 to {MAX_PATTERN} characters")
    if text.startswith("re:"):
        try:
            return re.compile(text[3:])
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
    out: list[str] = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        if char in "0123456789*#+":
            out.append(re.escape(char))
        elif char in "Xx":
            out.append("[0-9]")
        elif char in "Zz":
            out.append("[1-9]")
        elif char in "Nn":
            out.append("[2-9]")
        elif char == "[":
            end = text.find("]", pos)
            if end < 0 or not re.fullmatch(r"[0-9-]+", text[pos + 1 : end]):
                raise ValueError(f"{pattern!r}: a set is like [1-5] or [137]")
            out.append(text[pos : end + 1])
            pos = end
        elif char in ".!" and pos == len(text) - 1:
            out.append(".+" if char == "." else ".*")
        else:
            raise ValueError(
                f"{pattern!r}: {char!r} is not allowed here (digits, * # +, X Z N, [1-5], and "
                "a final . or !; or re:REGEX)"
            )
        pos += 1
    try:
        return re.compile("".join(out))
    except re.error as exc:  # a bad set such as [5-1]
        raise ValueError(f"{pattern!r}: {exc}") from None


def matches(pattern: str, dialled: str) -> bool:
    return compile_pattern(pattern).fullmatch(dialled) is not None


def specificity(pattern: str) -> int:
    """How many characters of ``pattern`` are literal (higher: more specific)."""
    if pattern.startswith("re:"):
        return 0
    return sum(1 for c in pattern if c in "0123456789*#+")


def to_e164(number: str, country_code: str, area_code: str = "") -> str | None:
    """What a user dialled (exit digit removed) as E.164 from their site; None when the site
    lacks the codes a national or local number needs, or it is not a number."""
    digits = re.sub(r"[ ()./-]", "", number)
    if digits.startswith("+"):
        candidate = digits
    elif digits.startswith("00"):
        candidate = "+" + digits[2:]
    elif digits.startswith("0"):
        if not country_code:
            return None
        candidate = f"+{country_code}{digits[1:]}"
    else:
        if not country_code or not area_code:
            return None
        candidate = f"+{country_code}{area_code.lstrip('0')}{digits}"
    return candidate if re.fullmatch(r"\+[1-9][0-9]{6,14}", candidate) else None


def for_trunk(e164: str, number_format: str, country_code: str = "") -> str:
    """``e164`` in a preset's ``number_format``: e164 (+49...), e164-digits (49...),
    international (0049...) or national (030..., for numbers of ``country_code``; others
    stay international)."""
    digits = e164.lstrip("+")
    if number_format == "e164":
        return e164
    if number_format == "e164-digits":
        return digits
    if number_format == "national" and country_code and digits.startswith(country_code):
        return "0" + digits[len(country_code) :]
    return "00" + digits
