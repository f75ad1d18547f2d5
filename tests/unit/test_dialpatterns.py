"""Dial patterns, E.164 from a site's codes, and the number forms trunks ask for."""

from __future__ import annotations

import pytest

from pbx.dialpatterns import compile_pattern, for_trunk, matches, specificity, to_e164


@pytest.mark.parametrize(
    ("pattern", "dialled", "hit"),
    [("0Z.", "030123456", True), ("0Z.", "0030123", False), ("00.", "0041441234567", True),
     ("11[02]", "110", True), ("11[02]", "111", False), ("NXXNXXXXXX", "2125550100", True),
     ("NXXNXXXXXX", "1125550100", False), ("+.", "+4930123", True), ("*43", "*43", True),
     ("0!", "0", True), ("X", "12", False), ("re:0[1-9][0-9]{3,}", "030123", True)],
)  # fmt: skip
def test_patterns_match_the_whole_dialled_string(pattern: str, dialled: str, hit: bool) -> None:
    assert matches(pattern, dialled) is hit


@pytest.mark.parametrize("bad", ["", "0Q.", "0.X", "[5", "[a-b]", "re:(", "X" * 65])
def test_bad_patterns_say_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError):
        compile_pattern(bad)


def test_more_literal_patterns_are_more_specific() -> None:
    assert specificity("0049.") > specificity("00.") > specificity("X.") == specificity("re:.*")


@pytest.mark.parametrize(
    ("dialled", "country", "area", "e164"),
    [("030123456", "49", "30", "+4930123456"), ("123456", "49", "030", "+4930123456"),
     ("0041441234567", "49", "30", "+41441234567"), ("+12125550100", "", "", "+12125550100"),
     ("123456", "49", "", None), ("030123", "", "", None), ("0", "49", "30", None)],
)  # fmt: skip
def test_dialled_numbers_become_e164_from_the_site(
    dialled: str, country: str, area: str, e164: str | None
) -> None:
    assert to_e164(dialled, country, area) == e164


@pytest.mark.parametrize(
    ("fmt", "country", "sent"),
    [("e164", "49", "+4930123456"), ("e164-digits", "49", "4930123456"),
     ("international", "49", "004930123456"), ("national", "49", "030123456"),
     ("national", "41", "004930123456")],
)  # fmt: skip
def test_numbers_leave_in_the_trunk_s_form(fmt: str, country: str, sent: str) -> None:
    assert for_trunk("+4930123456", fmt, country) == sent
