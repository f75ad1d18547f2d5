"""The rules for extension numbers and pickup group names, one for the CLI, the web forms and
the REST API.

An extension is the user part of the SIP URIs its phones register and are called at, so it
holds only characters that need no escaping there (RFC 3261 §25.1, ``user = 1*(unreserved /
escaped / user-unreserved)``): ASCII letters, digits and ``- _ . + *``, 1 to 32 of them.
(``#`` is not valid unescaped in a URI: calls to such an extension broke.)
A pickup group name (users of one group answer each other's ringing calls with the group
pickup code) is 1 to 32 ASCII letters, digits or ``- _ .``.
Sans-IO; imports nothing from pbx.
"""

from __future__ import annotations

import re

EXTENSION_MAX = 32
EXTENSION_ERROR = f"extension: use 1 to {EXTENSION_MAX} letters, digits or - _ . + *"
_EXTENSION = re.compile(rf"[A-Za-z0-9_.+*-]{{1,{EXTENSION_MAX}}}")


def check_extension(value: str) -> str:
    """``value`` when it is a valid extension, else ValueError(EXTENSION_ERROR)."""
    if not isinstance(value, str) or _EXTENSION.fullmatch(value) is None:
        raise ValueError(EXTENSION_ERROR)
    return value


PICKUP_GROUP_MAX = 32
PICKUP_GROUP_ERROR = f"pickup group: use 1 to {PICKUP_GROUP_MAX} letters, digits or - _ ."
_PICKUP_GROUP = re.compile(rf"[A-Za-z0-9_.-]{{1,{PICKUP_GROUP_MAX}}}")


def check_pickup_group(value: str) -> str:
    """``value`` when it is a valid pickup group name, else ValueError(PICKUP_GROUP_ERROR)."""
    if not isinstance(value, str) or _PICKUP_GROUP.fullmatch(value) is None:
        raise ValueError(PICKUP_GROUP_ERROR)
    return value
