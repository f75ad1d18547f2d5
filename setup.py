"""Packaging glue: installs config/, templates/ and firmware/ as the pbx_data package data.

Everything else lives in pyproject.toml; this file only exists because a top-level folder that
is not a Python package cannot be mapped into the wheel from pyproject.toml alone.
"""

from setuptools import find_packages, setup

_DATA_DIRS = ("config", "templates", "firmware")

setup(
    packages=find_packages(include=["pbx", "pbx.*", "web", "web.*"])
    + ["pbx_data"]
    + [f"pbx_data.{name}" for name in _DATA_DIRS],
    package_dir={"pbx_data": "pbx_data_pkg", **{f"pbx_data.{n}": n for n in _DATA_DIRS}},
    package_data={
        "pbx": ["py.typed"],
        "web": ["static/**/*"],
        **{f"pbx_data.{n}": ["*", "**/*"] for n in _DATA_DIRS},
    },
)
