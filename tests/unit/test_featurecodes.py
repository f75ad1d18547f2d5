"""The feature-code table (pbx.featurecodes): shipped defaults, site overrides, and every bad
key or value stopped with a ConfigError naming the key."""

from __future__ import annotations

import tomllib
from dataclasses import fields
from pathlib import Path

import pytest

from pbx import featurecodes
from pbx.config import ConfigError
from pbx.featurecodes import FeatureCodes

SLOTS = tuple(str(n) for n in range(701, 721))


def _site(tmp_path: Path, text: str) -> Path:
    (tmp_path / "feature_codes.toml").write_text(text, encoding="utf-8")
    return tmp_path


def test_the_shipped_table_is_the_documented_default_with_a_comment_per_key(
    tmp_path: Path,
) -> None:
    shipped = featurecodes.shipped_file()
    assert shipped.parent.name == "config" and shipped.is_file()
    text = shipped.read_text(encoding="utf-8")
    assert set(tomllib.loads(text)) == {f.name for f in fields(FeatureCodes)}
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"key without a comment: {line}"
    codes = featurecodes.load(tmp_path)
    assert codes == FeatureCodes() == FeatureCodes("*8", "**", "700", SLOTS, "*43")


def test_site_overrides_replace_only_their_keys(tmp_path: Path) -> None:
    codes = featurecodes.load(_site(tmp_path, 'park = "*70"\npark_slots = "071-079"\n'))
    assert codes.park == "*70" and codes.park_slots == tuple(f"0{n}" for n in range(71, 80))
    assert (codes.group_pickup, codes.directed_pickup, codes.echo_test) == ("*8", "**", "*43")
    assert codes.slots_text() == "071-079"


def test_an_empty_value_turns_a_code_off(tmp_path: Path) -> None:
    text = 'group_pickup = ""\ndirected_pickup = ""\npark_slots = ""\necho_test = " "\n'
    codes = featurecodes.load(_site(tmp_path, text))
    assert codes.codes() == {"park": "700"} and codes.park_slots == ()
    rows = {row["key"]: row["code"] for row in codes.describe()}
    assert rows == {
        "group_pickup": "",
        "directed_pickup": "",
        "park": "700",
        "park_slots": "",
        "echo_test": "",
    }
    assert codes.conflict("**1") is None and codes.conflict("701") is None


def test_one_park_slot(tmp_path: Path) -> None:
    codes = featurecodes.load(_site(tmp_path, 'park_slots = "799"\n'))
    assert codes.park_slots == ("799",) and codes.slots_text() == "799"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('parking = "700"\n', "parking: unknown key"),
        ("park = 700\n", "park: expected a string"),
        ('park = "7a0"\n', "park: use 1 to 16 digits, * and #"),
        ('echo_test = "*4 3"\n', "echo_test: use 1 to 16 digits"),
        ('group_pickup = "' + "1" * 17 + '"\n', "group_pickup: use 1 to 16"),
        ('park = "*43"\n', "echo_test: '*43' is also park"),
        ('park_slots = "700-705"\n', "park_slots: 700 is also park"),
        ('park_slots = "99-101"\n', "park_slots: 99 and 101 need the same number of digits"),
        ('park_slots = "720-701"\n', "park_slots: the start 720 is after the end 701"),
        ('park_slots = "100-200"\n', "park_slots: at most 100 slots"),
        ('park_slots = "701-"\n', 'park_slots: use "START-END"'),
        ('park_slots = "*1-*9"\n', 'park_slots: use "START-END"'),
        ('group_pickup = "**8"\n', "group_pickup: '**8' starts with the directed_pickup"),
        ('directed_pickup = "7"\n', "park: '700' starts with the directed_pickup prefix '7'"),
        (
            'directed_pickup = "70"\npark = ""\n',
            "park_slots: 701 starts with the directed_pickup prefix '70'",
        ),
        ("park = [\n", "not valid TOML"),
    ],
)
def test_a_bad_site_table_names_the_key_and_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        featurecodes.load(_site(tmp_path, text))
    assert message in str(refused.value)
    assert str(tmp_path / "feature_codes.toml") in str(refused.value)


def test_describe_gives_a_row_per_key_for_the_ui() -> None:
    rows = FeatureCodes().describe()
    assert [(r["key"], r["code"]) for r in rows] == [
        ("group_pickup", "*8"),
        ("directed_pickup", "**"),
        ("park", "700"),
        ("park_slots", "701-720"),
        ("echo_test", "*43"),
    ]
    assert all(r["name"] and r["description"] for r in rows)
    assert "**1002" in rows[1]["description"]


@pytest.mark.parametrize(
    ("extension", "reason"),
    [
        ("*8", "*8 is the group pickup feature code"),
        ("700", "700 is the park feature code"),
        ("*43", "*43 is the echo test feature code"),
        ("701", "701 is a park slot (701-720)"),
        ("720", "720 is a park slot (701-720)"),
        ("**", "** starts with the directed pickup prefix **"),
        ("**1002", "**1002 starts with the directed pickup prefix **"),
        ("100", None),
        ("7000", None),
        ("721", None),
        ("*80", None),
        ("*", None),
    ],
)
def test_conflict_says_why_a_number_cannot_be_an_extension(
    extension: str, reason: str | None
) -> None:
    assert FeatureCodes().conflict(extension) == reason
