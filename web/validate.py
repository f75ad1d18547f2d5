"""Input checks shared by web.services and web.accounts (HTML forms and JSON bodies alike).

Owns the field validators: each takes the submitted mapping and a field name and returns a
clean value or raises web.errors.ValidationError naming the field. Form fields arrive as
strings, JSON fields as their JSON types; both are accepted where they mean the same thing.
Must not import flask, twisted or the store (pbx.extensions holds the rule for extensions).
"""

from __future__ import annotations

import re
import time
import zoneinfo
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pbx.extensions import check_extension, check_pickup_group
from web.errors import ValidationError

NAME_MAX = 100
_TRUE = ("1", "true", "on", "yes")
_FALSE = ("0", "false", "off", "no", "")
_USERNAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_DIGITS = re.compile(r"^[0-9]*$")


def reject_unknown(data: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse fields this form or body does not have (an API client's typo must not pass)."""
    known = set(allowed)
    for key in data:
        if key not in known:
            raise ValidationError(str(key)[:64], f"unknown field {str(key)[:64]!r}")


def text(
    data: Mapping[str, Any],
    field: str,
    *,
    required: bool = False,
    max_len: int = NAME_MAX,
    default: str = "",
) -> str:
    """A single-line string, stripped; printable characters only."""
    value = data.get(field)
    if value is None:
        value = default
    if not isinstance(value, str):
        raise ValidationError(field, f"{field}: expected text")
    value = value.strip()
    if required and not value:
        raise ValidationError(field, f"{field}: required")
    if len(value) > max_len:
        raise ValidationError(field, f"{field}: at most {max_len} characters")
    if not value.isprintable():
        raise ValidationError(field, f"{field}: only printable characters on one line")
    return value


def boolean(data: Mapping[str, Any], field: str, default: bool = False) -> bool:
    """true/false from JSON, or a form checkbox/select value."""
    value = data.get(field, default)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE + _FALSE:
        return value.strip().lower() in _TRUE
    raise ValidationError(field, f"{field}: expected true or false")


def integer(
    data: Mapping[str, Any],
    field: str,
    *,
    low: int,
    high: int,
    default: int | None = None,
    required: bool = False,
) -> int | None:
    """A whole number within [low, high]; empty/missing gives ``default``."""
    value = data.get(field)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required and default is None:
            raise ValidationError(field, f"{field}: required")
        return default
    if isinstance(value, bool):
        raise ValidationError(field, f"{field}: expected a whole number")
    if isinstance(value, str):
        stripped = value.strip()
        if not re.fullmatch(r"-?[0-9]{1,18}", stripped):
            raise ValidationError(field, f"{field}: expected a whole number")
        value = int(stripped)
    if not isinstance(value, int):
        raise ValidationError(field, f"{field}: expected a whole number")
    if not low <= value <= high:
        raise ValidationError(field, f"{field}: must be between {low} and {high}")
    return value


def extension(value: Any, field: str = "extension") -> str:
    """An extension number/name, stripped: the rule of pbx.extensions (as `pbx user add`)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"{field}: expected text")
    try:
        return check_extension(value.strip())
    except ValueError as exc:
        raise ValidationError(field, str(exc)) from None


def pickup_group(data: Mapping[str, Any], field: str = "pickup_group") -> str | None:
    """A pickup group name (the rule of pbx.extensions); empty, missing or null is None."""
    value = data.get(field)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"{field}: expected text")
    value = value.strip()
    if not value:
        return None
    try:
        return check_pickup_group(value)
    except ValueError as exc:
        raise ValidationError(field, str(exc)) from None


def sip_password(value: Any, field: str = "password") -> str:
    """A SIP password someone typed: 8..128 printable characters, no quotes or backslashes."""
    if not isinstance(value, str):
        raise ValidationError(field, f"{field}: expected text")
    if len(value) < 8 or len(value) > 128:
        raise ValidationError(field, "SIP passwords need 8 to 128 characters")
    if any(c in value for c in '"\\') or not value.isprintable() or value != value.strip():
        raise ValidationError(
            field, "SIP passwords must be printable, without quotes, backslashes or spaces"
        )
    return value


def admin_password(value: Any, field: str = "new_password") -> str:
    """A web account password: 10..256 characters."""
    if not isinstance(value, str):
        raise ValidationError(field, f"{field}: expected text")
    if len(value) < 10:
        raise ValidationError(field, "passwords need at least 10 characters")
    if len(value) > 256:
        raise ValidationError(field, "passwords may have at most 256 characters")
    return value


def username(value: Any, field: str = "username") -> str:
    if not isinstance(value, str) or not _USERNAME.match(value.strip()):
        raise ValidationError(field, f"{field}: 1 to 64 letters, digits or _ . @ -")
    return value.strip()


def digits(data: Mapping[str, Any], field: str, max_len: int) -> str:
    value = data.get(field)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    value = text({**data, field: value}, field, max_len=max_len)
    if not _DIGITS.match(value):
        raise ValidationError(field, f"{field}: digits only")
    return value


def timezone(data: Mapping[str, Any], field: str = "timezone") -> str:
    value = text(data, field, required=True, max_len=64)
    if value not in zoneinfo.available_timezones():
        raise ValidationError(field, f"{field}: unknown time zone {value!r} (e.g. Europe/Berlin)")
    return value


def role(data: Mapping[str, Any], roles: Iterable[str], field: str = "role") -> str:
    value = data.get(field)
    allowed = tuple(roles)
    if value not in allowed:
        raise ValidationError(field, f"{field}: one of {', '.join(allowed)}")
    return str(value)


def timestamp(
    data: Mapping[str, Any], field: str, *, end_of_day: bool = False, required: bool = False
) -> float | None:
    """A point in time: a Unix timestamp (JSON number), or ISO 'YYYY-MM-DD[THH:MM]' (UTC)."""
    value = data.get(field)
    if value is None or value == "":
        if required:
            raise ValidationError(field, f"{field}: required")
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not 0 <= value <= 32503680000:  # year 3000
            raise ValidationError(field, f"{field}: out of range")
        return float(value)
    if not isinstance(value, str) or len(value) > 40:
        raise ValidationError(
            field, f"{field}: expected a date like 2025-01-31 or 2025-01-31T14:00"
        )
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ValidationError(
            field, f"{field}: expected a date like 2025-01-31 or 2025-01-31T14:00"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    stamp = parsed.timestamp()
    if end_of_day and len(value.strip()) == 10:
        stamp += 86400 - 0.001
    return stamp


def future(value: float | None, field: str, now: float | None = None) -> float | None:
    if value is not None and value <= (time.time() if now is None else now):
        raise ValidationError(field, f"{field}: must be in the future")
    return value
