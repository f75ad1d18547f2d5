"""The number plan: what a dialled number means, resolved in one place.

:meth:`NumberPlan.resolve` maps what a phone dialled to a :class:`Target`: a feature code
(group pickup ``*8``, directed pickup ``**EXT``, park ``700``, the echo test ``*43``), a park
slot (``701``-``720``), or an extension (whether it exists is the lookup's business). The
codes come from the feature-code table (config/feature_codes.toml, pbx.featurecodes); groups,
IVRs, voicemail and trunk routes join here in later issues. The switch never tests number
strings itself. Sans-IO.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Kind(enum.Enum):
    EXTENSION = "extension"
    ECHO_TEST = "echo_test"
    GROUP_PICKUP = "group_pickup"
    DIRECTED_PICKUP = "directed_pickup"
    PARK = "park"
    PARK_SLOT = "park_slot"


@dataclass(frozen=True, slots=True)
class Target:
    """What a number means: ``argument`` is the extension of a directed pickup or the slot."""

    kind: Kind
    number: str
    argument: str = ""


@dataclass(frozen=True)
class NumberPlan:
    """The codes pbx answers itself; an empty code is switched off."""

    group_pickup: str = "*8"
    directed_pickup: str = "**"
    park: str = "700"
    park_slots: Sequence[str] = tuple(str(n) for n in range(701, 721))
    echo_test: str = "*43"

    @classmethod
    def of(cls, codes: object) -> NumberPlan:
        """From anything with the same attributes (pbx.featurecodes.FeatureCodes)."""
        fields = ("group_pickup", "directed_pickup", "park", "park_slots", "echo_test")
        return cls(**{name: getattr(codes, name) for name in fields if hasattr(codes, name)})

    def resolve(self, dialled: str) -> Target:
        exact = {
            self.group_pickup: Kind.GROUP_PICKUP,
            self.park: Kind.PARK,
            self.echo_test: Kind.ECHO_TEST,
        }
        kind = exact.get(dialled) if dialled else None
        if kind is not None:
            return Target(kind, dialled)
        if dialled in self.park_slots:
            return Target(Kind.PARK_SLOT, dialled, dialled)
        prefix = self.directed_pickup
        if prefix and dialled.startswith(prefix) and len(dialled) > len(prefix):
            return Target(Kind.DIRECTED_PICKUP, dialled, dialled[len(prefix) :])
        return Target(Kind.EXTENSION, dialled, dialled)

    def is_code(self, number: str) -> bool:
        """Whether ``number`` is taken by a feature code (so it cannot be an extension)."""
        return self.resolve(number).kind is not Kind.EXTENSION


__all__ = ["Kind", "NumberPlan", "Target"]
