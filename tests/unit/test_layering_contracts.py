"""The import-linter contracts in setup.cfg cover every part of the pbx package.

lint-imports checks only the modules a contract names: a module left out of the ``layers``
contract may import anything, one left out of "Only pbx.store touches SQL" may open the
database. So every top-level module and package of pbx is named in both (pbx.store aside).
"""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NOT_LAYERED = {"pbx.__init__", "pbx.__main__"}


def _contract(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    return parser[f"importlinter:contract:{name}"]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def _top_level_parts() -> set[str]:
    package = ROOT / "pbx"
    parts = {f"pbx.{p.stem}" for p in package.glob("*.py")}
    parts |= {f"pbx.{p.parent.name}" for p in package.glob("*/__init__.py")}
    return parts - NOT_LAYERED


def test_every_part_of_pbx_is_in_a_layer() -> None:
    layered = {
        name.strip() for line in _lines(_contract("layers")["layers"]) for name in line.split("|")
    }
    assert _top_level_parts() - layered == set()


def test_every_part_of_pbx_but_the_store_is_kept_from_sql() -> None:
    sources = set(_lines(_contract("store-only-sql")["source_modules"]))
    assert _top_level_parts() - {"pbx.store"} - sources == set()
