"""What the call layer asks about extensions: their contacts and settings (the store answers).

:class:`Callee` is what a lookup of one extension finds: whether it exists, the contacts to
ring (registrations, a static contact first), call waiting, its name, site and pickup group.
:class:`Directory` is the protocol pbx.service implements over the store (every method a
Deferred: the reactor never waits for SQLite). Must not import pbx.store's SQL side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from twisted.internet import defer

from pbx.store.registrations import Binding


@dataclass(frozen=True, slots=True)
class Callee:
    """What the lookup of a dialled extension found: its contacts and call settings."""

    exists: bool
    bindings: list[Binding] = field(default_factory=list)
    call_waiting: bool = True
    name: str = ""
    site_id: int | None = None
    pickup_group: str | None = None
    country: str = ""  # the E.164 calling code of its site ("49"): call-progress tones
    area_code: str = ""  # its site's area code ("30"): local numbers it dials


class Directory(Protocol):
    def callee(self, extension: str) -> defer.Deferred[Callee]: ...

    def group_members(self, group: str) -> defer.Deferred[list[str]]: ...


__all__ = ["Callee", "Directory"]
