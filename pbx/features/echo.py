"""The echo test (``*43`` by default): pbx answers and sends back what it hears.

An audio-path check for users and installers: the caller hears their own voice about 80 ms
later (one jitter-buffer prefetch and a tick each way); ``#`` ends the call. Built as a local
leg (pbx.calls.localleg) bridged with the caller, the same way voicemail and IVR will be.
"""

from __future__ import annotations

import logging

from pbx.calls.control import CallControl
from pbx.calls.model import Party
from pbx.calls.numberplan import Target
from pbx.calls.sipleg import InboundLeg

log = logging.getLogger(__name__)


class EchoTest:
    def __init__(self, control: CallControl) -> None:
        self.control = control

    def __call__(self, caller: InboundLeg, target: Target) -> None:
        control = self.control
        conversation = caller.conversation
        assert conversation is not None
        echo = control.local_leg(conversation, Party(target.number, "Echo test"))

        def digit(pressed: str) -> None:
            if pressed == "#":
                control.end_call(conversation, "answered", "echo test ended")

        def hear(pcm: bytes) -> None:
            echo.play(pcm)

        echo.on_audio = hear
        echo.on_digit = digit
        try:
            answering = control.answer_locally(caller, by=echo)
        except Exception:
            echo.hang_up("refused")
            raise

        def answered(going_on: bool) -> None:
            if not going_on:
                echo.hang_up("cancelled")
                return
            echo.answer()
            control.connect(caller, echo)
            log.info("[%s] echo test for %s", caller.call_id, caller.party.number)

        answering.addCallback(answered)
        answering.addErrback(lambda f: log.error("[%s] echo test: %s", caller.call_id, f.getTraceback()))


__all__ = ["EchoTest"]
