"""Collecting digits a caller presses: a media source that listens (RFC 4733, SIP INFO, in-band).

A :class:`DigitCollector` is attached to a leg by :meth:`pbx.calls.control.CallControl.
collect_digits`; the control feeds it every digit the leg sends (SIP INFO, and RFC 4733 events
or in-band tones pbx sees in its media) and it ends at ``max_digits``, at a terminator (not
included) or after ``timeout`` seconds without a digit, firing ``result`` with what it
collected. While attached it makes pbx look at the leg's media: a relayed call keeps its
untouched audio and gets an event relay that reports RFC 4733 digits; a phone without
telephone-event is decoded so the tone detector can hear it (``audio``).
Must not import pbx.sip or pbx.store.
"""

from __future__ import annotations

import logging
from typing import Any

from twisted.internet import defer

log = logging.getLogger(__name__)


class DigitCollector:
    """Digits from one leg until a count, a terminator or a pause; see the docstring."""

    def __init__(
        self, leg: Any, max_digits: int, timeout: float, terminators: str, reactor: Any
    ) -> None:
        if max_digits < 1:
            raise ValueError("collect at least one digit")
        self.leg = leg
        self.max_digits = max_digits
        self.timeout = timeout
        self.terminators = terminators
        self.digits = ""
        self.finished = False
        self.result: defer.Deferred[str] = defer.Deferred()
        self._reactor = reactor
        self._timer = reactor.callLater(timeout, self.finish)

    @property
    def audio(self) -> bool:
        """Whether the leg's media must be decoded to find the digits (no telephone-event)."""
        fmt = getattr(self.leg, "format", None)
        return fmt is not None and fmt.telephone_event is None

    def add(self, digit: str) -> None:
        if self.finished:
            return
        if digit in self.terminators:
            self.finish()
            return
        self.digits += digit
        if len(self.digits) >= self.max_digits:
            self.finish()
            return
        if self._timer.active():
            self._timer.reset(self.timeout)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self._timer.active():
            self._timer.cancel()
        self.result.callback(self.digits)

    def stop(self) -> None:
        self.finish()


__all__ = ["DigitCollector"]
