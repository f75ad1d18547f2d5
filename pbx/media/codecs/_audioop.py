"""The one import of ``audioop`` for pbx.media (stdlib on 3.11/3.12, PyPI ``audioop-lts`` on 3.13+).

Owns: nothing but the import. The stdlib module warns that it is deprecated on 3.11/3.12; the
``audioop-lts`` package (installed through the environment marker in pyproject.toml) provides
the same module name on 3.13 and later, so callers write ``from ._audioop import audioop``.

Must not import: twisted, socket, sqlite3, sqlite_utils, flask, pbx.store.
"""

from __future__ import annotations

import warnings

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

__all__ = ["audioop"]
