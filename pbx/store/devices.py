"""Known phones: model, vendor and MAC learnt from registrations, with when they were seen.

Owns the ``devices`` table. The server calls :func:`record_sightings` (coalesced, off the
reactor) with what REGISTERs showed: extension, User-Agent, source address and the RFC 5626
instance id. :func:`parse_user_agent` reads vendor, model and MAC from the User-Agent strings of
common phones. One row per device, keyed by its MAC when known, else its instance id, else
extension + User-Agent. The state ('registered'/'offline') is computed from the live bindings
when listing. Must not import twisted or anything outside pbx.store.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from typing import Any

from sqlite_utils import Database

log = logging.getLogger(__name__)

_COLUMNS = "id, mac, model, vendor, user_agent, extension, address, first_seen, last_seen"
_MAC = re.compile(
    r"(?<![0-9A-Fa-f:.-])((?:[0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}|[0-9A-Fa-f]{12})(?![0-9A-Fa-f:-])"
)
_VERSIONISH = re.compile(r"^\d+(\.\d+)*")


@dataclass(frozen=True)
class UserAgentInfo:
    vendor: str
    model: str
    mac: str | None  # 12 lower-case hex digits, no separators


@dataclass(frozen=True)
class Device:
    id: int
    mac: str | None
    model: str
    vendor: str
    user_agent: str
    extension: str | None
    address: str
    first_seen: float
    last_seen: float
    state: str = "offline"  # 'registered' while a binding with this User-Agent is active


@dataclass(frozen=True)
class Sighting:
    """One REGISTER's view of a device."""

    extension: str
    user_agent: str
    address: str  # "host:port" the REGISTER came from
    seen_at: float
    instance_id: str | None = None


def _mac(text: str) -> str | None:
    for match in _MAC.finditer(text):
        digits = re.sub(r"[:-]", "", match.group(1)).lower()
        # a 12-digit run of decimal digits is more likely a build number than a MAC
        if digits.isdigit() and ":" not in match.group(1) and "-" not in match.group(1):
            continue
        if digits in ("000000000000", "ffffffffffff"):
            continue
        return digits
    return None


def _product(ua: str, prefix: str) -> str:
    """The word after ``prefix`` (``Yealink SIP-T46S 66.86`` -> ``SIP-T46S``)."""
    rest = ua[len(prefix) :].strip().split()
    return rest[0] if rest and not _VERSIONISH.match(rest[0]) else ""


def _polycom(ua: str) -> str:
    # PolycomVVX-VVX_410-UA/5.9.0  PolycomSoundPointIP-SPIP_650-UA/4.0.3
    match = re.match(r"Polycom[A-Za-z]*-([A-Za-z]+)_(\w+?)-UA", ua)
    return f"{match.group(1)} {match.group(2)}" if match else ""


def _slash_or_space(ua: str, prefix_len: int) -> str:
    match = re.match(r"[-/ ]?([A-Za-z0-9][\w.+-]*)", ua[prefix_len:])
    return match.group(1) if match and not _VERSIONISH.match(match.group(1)) else ""


def parse_user_agent(user_agent: str) -> UserAgentInfo:
    """Vendor, model and MAC (when the string carries one) of a phone's User-Agent."""
    ua = user_agent.strip()
    lower = ua.lower()
    mac = _mac(ua)
    vendor, model = "", ""
    if lower.startswith("yealink"):
        vendor, model = "Yealink", _product(ua, ua.split()[0])
    elif lower.startswith("snom"):
        vendor = "Snom"
        match = re.match(r"snom\s*-?([A-Za-z]*\d+[A-Za-z]*)", ua, re.IGNORECASE)
        model = match.group(1) if match else ""
    elif lower.startswith("grandstream"):
        vendor, model = "Grandstream", _product(ua, ua.split()[0])
    elif lower.startswith("polycom") or lower.startswith("poly/"):
        vendor, model = "Polycom", _polycom(ua)
    elif lower.startswith("innovaphone"):
        vendor = "innovaphone"
        match = re.match(r"innovaphone-([\w-]+?)/", ua, re.IGNORECASE)
        model = match.group(1) if match else _slash_or_space(ua, len("innovaphone"))
    elif lower.startswith("baresip"):
        vendor, model = "baresip", "baresip"
    elif "linphone" in lower:
        vendor = "Linphone"
        first = ua.split("/")[0].split(" (")[0]
        model = first if first.lower() != "linphone" else "Linphone"
    elif lower.startswith("zoiper") or re.match(r"z \d", lower):
        vendor, model = "Zoiper", "Zoiper"
    elif lower.startswith("microsip"):
        vendor, model = "MicroSIP", "MicroSIP"
    elif ua:
        vendor = re.split(r"[/ ]", ua, maxsplit=1)[0]
    return UserAgentInfo(vendor, model, mac)


def _key(sighting: Sighting, info: UserAgentInfo) -> str:
    if info.mac:
        return f"mac:{info.mac}"
    if sighting.instance_id:
        return f"instance:{sighting.instance_id}"
    return f"ua:{sighting.extension}|{sighting.user_agent}"


def record_sightings(db: Database, sightings: list[Sighting]) -> int:
    """Insert or refresh the device of each sighting; return how many rows changed."""
    changed = 0
    for sighting in sightings:
        info = parse_user_agent(sighting.user_agent)
        key = _key(sighting, info)
        cursor = db.execute(
            "INSERT INTO devices (device_key, mac, model, vendor, user_agent, extension, address, "
            "first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(device_key) DO UPDATE SET model = excluded.model, "
            "vendor = excluded.vendor, user_agent = excluded.user_agent, "
            "extension = excluded.extension, address = excluded.address, "
            "last_seen = MAX(last_seen, excluded.last_seen)",
            [
                key,
                info.mac,
                info.model,
                info.vendor,
                sighting.user_agent,
                sighting.extension,
                sighting.address,
                sighting.seen_at,
                sighting.seen_at,
            ],
        )
        changed += cursor.rowcount
    return changed


def list_devices(
    db: Database, site_id: int | None = None, *, now: float | None = None
) -> list[Device]:
    """Every known device (or those whose extension belongs to one site), most recently seen
    first, with state 'registered' when its extension has an active binding from the same
    User-Agent."""
    at = time.time() if now is None else now
    sql = (
        f"SELECT {', '.join('d.' + c.strip() for c in _COLUMNS.split(','))}, "
        "EXISTS (SELECT 1 FROM bindings b WHERE b.extension = d.extension "
        "AND b.user_agent = d.user_agent AND b.expires_at > ?) FROM devices d"
    )
    params: list[Any] = [at]
    if site_id is not None:
        sql += " WHERE d.extension IN (SELECT extension FROM users WHERE site_id = ?)"
        params.append(site_id)
    rows = db.execute(sql + " ORDER BY d.last_seen DESC, d.id", params).fetchall()
    return [_device(row) for row in rows]


def _device(row: tuple[Any, ...]) -> Device:
    return Device(
        id=row[0],
        mac=row[1],
        model=row[2],
        vendor=row[3],
        user_agent=row[4],
        extension=row[5],
        address=row[6],
        first_seen=row[7],
        last_seen=row[8],
        state="registered" if row[9] else "offline",
    )


def delete_device(db: Database, device_id: int) -> bool:
    """Forget a device; True if it existed."""
    return bool(db.execute("DELETE FROM devices WHERE id = ?", [device_id]).rowcount)
