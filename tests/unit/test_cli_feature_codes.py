"""``pbx user add`` and ``pbx user import`` refuse extensions that are feature codes or park
slots or start with the directed-pickup prefix, by the site's table."""

from __future__ import annotations

from pathlib import Path

import pytest

from .test_cli import pbx


@pytest.mark.parametrize(
    ("extension", "reason"),
    [
        ("700", "700 is the park feature code"),
        ("715", "715 is a park slot (701-720)"),
        ("**12", "**12 starts with the directed pickup prefix **"),
        ("*8", "*8 is the group pickup feature code"),
    ],
)
def test_user_add_refuses_a_feature_code(tmp_path: Path, extension: str, reason: str) -> None:
    data = tmp_path / "data"
    refused = pbx("user", "add", extension, data=data)
    assert refused.returncode == 1
    assert f"extension: {reason}; choose another number" in refused.stderr
    assert not (data / "pbx.sqlite").exists()


def test_the_sites_table_decides(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "feature_codes.toml").write_text('park = "800"\npark_slots = "801-809"\n')
    assert pbx("user", "add", "700", data=data).returncode == 0
    assert pbx("user", "add", "715", data=data).returncode == 0
    assert "is a park slot (801-809)" in pbx("user", "add", "805", data=data).stderr
    (data / "feature_codes.toml").write_text('park = "80"\npark_slots = "80-81"\n')
    broken = pbx("user", "add", "900", data=data)
    assert broken.returncode == 2 and "park_slots: 80 is also park" in broken.stderr


def test_user_import_refuses_the_whole_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    refused = pbx("user", "import", "-", data=data, stdin="100,,Ann\n701,,Slot\n")
    assert refused.returncode == 1
    assert "row 2: extension: 701 is a park slot (701-720)" in refused.stderr
    assert "100" not in pbx("user", "list", data=data).stdout
