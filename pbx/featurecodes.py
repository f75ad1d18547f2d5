"""The feature-code table: the numbers pbx answers itself (pickup, park, echo test).

Shipped defaults in ``config/feature_codes.toml`` (one comment per key, never edited on a
site), site overrides in ``DATA/feature_codes.toml`` (the same keys, no section). :func:`load`
merges them into a frozen :class:`FeatureCodes`; an unknown key, a value that is not digits,
``*`` and ``#``, two codes that are equal, a code that starts with the directed-pickup prefix,
or a bad park slot range (different lengths, start > end, more than :data:`MAX_SLOTS` slots)
raises :class:`pbx.config.ConfigError` naming the key, as pbx.toml errors do. An empty string
turns a code off. :meth:`FeatureCodes.describe` gives the rows the web UI shows and
:meth:`FeatureCodes.conflict` tells why a number cannot be an extension.
Imports nothing from pbx but pbx.paths and pbx.config.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pbx import paths
from pbx.config import ConfigError

FILE_NAME = "feature_codes.toml"
MAX_SLOTS = 100
MAX_CODE = 16
_CODE = re.compile(rf"[0-9*#]{{1,{MAX_CODE}}}")
_RANGE = re.compile(r"([0-9]{1,15})(?:-([0-9]{1,15}))?")
CODE_KEYS = ("group_pickup", "directed_pickup", "park", "echo_test")

# key -> (name, what it does) for the web UI
_DESCRIPTIONS = {
    "group_pickup": (
        "Group pickup",
        "Answers a call ringing at another phone of your pickup group.",
    ),
    "directed_pickup": (
        "Directed pickup",
        "A prefix: followed by an extension (e.g. {code}1002) it answers the call ringing "
        "at that extension.",
    ),
    "park": (
        "Park",
        "Transfer a call to this number to park it: it waits in the first free park slot, "
        "which pbx reads back.",
    ),
    "park_slots": (
        "Park slots",
        "Dial a slot to take the call parked there; a parked call nobody takes rings the "
        "phone that parked it.",
    ),
    "echo_test": (
        "Echo test",
        "pbx answers and sends back what it hears (checks the audio path); # ends it.",
    ),
}


@dataclass(frozen=True)
class FeatureCodes:
    """The codes in effect; ``""`` (or no slots) means switched off."""

    group_pickup: str = "*8"
    directed_pickup: str = "**"
    park: str = "700"
    park_slots: tuple[str, ...] = tuple(str(n) for n in range(701, 721))
    echo_test: str = "*43"

    def codes(self) -> dict[str, str]:
        """key -> code of the codes that are on (park slots aside)."""
        return {key: getattr(self, key) for key in CODE_KEYS if getattr(self, key)}

    def slots_text(self) -> str:
        """The park slots as written in the file: ``701-720``, one slot, or ``""``."""
        if not self.park_slots:
            return ""
        first, last = self.park_slots[0], self.park_slots[-1]
        return first if first == last else f"{first}-{last}"

    def describe(self) -> list[dict[str, str]]:
        """One row per key for the UI: key, code (``""`` when off), name, description."""
        rows = []
        for key in (*CODE_KEYS[:3], "park_slots", "echo_test"):
            code = self.slots_text() if key == "park_slots" else getattr(self, key)
            name, text = _DESCRIPTIONS[key]
            example = code or "**"
            rows.append(
                {"key": key, "code": code, "name": name, "description": text.format(code=example)}
            )
        return rows

    def conflict(self, extension: str) -> str | None:
        """Why ``extension`` cannot be an extension (it is a code, a park slot or starts with
        the directed-pickup prefix), or None when it can."""
        for key, code in self.codes().items():
            if key != "directed_pickup" and extension == code:
                return f"{extension} is the {_DESCRIPTIONS[key][0].lower()} feature code"
        if extension in self.park_slots:
            return f"{extension} is a park slot ({self.slots_text()})"
        prefix = self.directed_pickup
        if prefix and extension.startswith(prefix):
            return f"{extension} starts with the directed pickup prefix {prefix}"
        return None


def shipped_file() -> Path:
    """The shipped defaults, ``config/feature_codes.toml``."""
    return paths.config_dir() / FILE_NAME


def site_file(data_dir: Path | str) -> Path:
    """The site overrides, ``DATA/feature_codes.toml``."""
    return Path(data_dir) / FILE_NAME


def load(data_dir: Path | str) -> FeatureCodes:
    """The shipped table with the site's overrides applied; ConfigError naming the key."""
    codes = _apply(FeatureCodes(), shipped_file())
    site = site_file(data_dir)
    if site.is_file():
        codes = _apply(codes, site)
    _check_distinct(codes, site if site.is_file() else shipped_file())
    return codes


def _read(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read: {exc.strerror or exc}") from exc


def _apply(codes: FeatureCodes, path: Path) -> FeatureCodes:
    known = {f.name for f in fields(FeatureCodes)}
    changes: dict[str, Any] = {}
    for key, value in _read(path).items():
        if key not in known:
            raise ConfigError(f"{key}: unknown key (in {path})")
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r} (in {path})")
        value = value.strip()
        changes[key] = _slots(value, path) if key == "park_slots" else _code(key, value, path)
    return replace(codes, **changes)


def _code(key: str, value: str, path: Path) -> str:
    if value and not _CODE.fullmatch(value):
        raise ConfigError(
            f'{key}: use 1 to {MAX_CODE} digits, * and # (or "" to turn it off), '
            f"got {value!r} (in {path})"
        )
    return value


def _slots(value: str, path: Path) -> tuple[str, ...]:
    if not value:
        return ()
    match = _RANGE.fullmatch(value)
    if match is None:
        raise ConfigError(
            f'park_slots: use "START-END" (digits) or one number, got {value!r} (in {path})'
        )
    start, end = match.group(1), match.group(2) or match.group(1)
    if len(start) != len(end):
        raise ConfigError(
            f"park_slots: {start} and {end} need the same number of digits (in {path})"
        )
    if int(start) > int(end):
        raise ConfigError(f"park_slots: the start {start} is after the end {end} (in {path})")
    if int(end) - int(start) + 1 > MAX_SLOTS:
        raise ConfigError(f"park_slots: at most {MAX_SLOTS} slots, got {value} (in {path})")
    return tuple(str(n).zfill(len(start)) for n in range(int(start), int(end) + 1))


def _check_distinct(codes: FeatureCodes, path: Path) -> None:
    """No two codes (or a code and a park slot) alike; none behind the directed prefix."""
    seen: dict[str, str] = {}
    for key, code in codes.codes().items():
        if code in seen:
            raise ConfigError(f"{key}: {code!r} is also {seen[code]} (in {path})")
        seen[code] = key
    for slot in codes.park_slots:
        if slot in seen:
            raise ConfigError(f"park_slots: {slot} is also {seen[slot]} (in {path})")
    prefix = codes.directed_pickup
    if not prefix:
        return
    for key, code in codes.codes().items():
        if key != "directed_pickup" and code.startswith(prefix):
            raise ConfigError(
                f"{key}: {code!r} starts with the directed_pickup prefix {prefix!r} (in {path})"
            )
    for slot in codes.park_slots:
        if slot.startswith(prefix):
            raise ConfigError(
                f"park_slots: {slot} starts with the directed_pickup prefix {prefix!r} (in {path})"
            )
