"""Locates the resources pbx ships with: config/, templates/, firmware/ and web/.

This is the only module that knows where they live, so a git checkout, an installed wheel
(where setup.py maps them into the ``pbx_data`` package) and a PyInstaller bundle
(``sys._MEIPASS``) all work the same way. Imports nothing from pbx.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

_RESOURCE_DIRS = ("config", "templates", "firmware")


@cache
def resource_root() -> Path:
    """Return the folder that holds config/, templates/ and firmware/."""
    bundle = getattr(sys, "_MEIPASS", None)
    candidates: list[Path] = []
    if bundle:
        candidates += [Path(bundle), Path(bundle) / "pbx_data"]
    checkout = Path(__file__).resolve().parent.parent
    candidates.append(checkout)
    try:
        import pbx_data

        candidates.append(Path(pbx_data.__file__).resolve().parent)
    except ImportError:
        pass
    for candidate in candidates:
        if (candidate / "config" / "pbx.toml").is_file():
            return candidate
    raise FileNotFoundError("pbx resources (config/pbx.toml) not found next to the package")


def config_dir() -> Path:
    """Shipped defaults (never edited on a site)."""
    return resource_root() / "config"


def templates_dir() -> Path:
    """Jinja2 templates of the web UI."""
    return resource_root() / "templates"


def firmware_dir() -> Path:
    """Phone provisioning templates and the firmware store."""
    return resource_root() / "firmware"


def default_config_file() -> Path:
    """The shipped config/pbx.toml."""
    return config_dir() / "pbx.toml"
