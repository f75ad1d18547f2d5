"""E.164 numbers: what an admin types and what providers send."""

from __future__ import annotations

import pytest

from pbx.numbers import e164, from_provider


@pytest.mark.parametrize(
    ("typed", "number"),
    [("+4930123456710", "+4930123456710"), ("+49 30 1234567-10", "+4930123456710"),
     ("004930123456710", "+4930123456710"), ("+1 (212) 555-0100", "+12125550100")],
)  # fmt: skip
def test_typed_numbers_become_e164(typed: str, number: str) -> None:
    assert e164(typed) == number


@pytest.mark.parametrize("bad", ["030123456", "+0301234567", "+49301234567890123", "+49abc", ""])
def test_bad_numbers_say_what_is_expected(bad: str) -> None:
    with pytest.raises(ValueError, match="international number"):
        e164(bad)


@pytest.mark.parametrize(
    ("sent", "number"),
    [("+4930123456710", "+4930123456710"), ("004930123456710", "+4930123456710"),
     ("4930123456710", "+4930123456710"), ("12125550100", "+12125550100"),
     ("030123456710", None), ("10", None), ("anonymous", None), ("+49;x", None)],
)  # fmt: skip
def test_provider_forms_are_read_as_e164_or_not_at_all(sent: str, number: str | None) -> None:
    assert from_provider(sent) == number
