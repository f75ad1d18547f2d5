"""Calls answered by pbx itself (echo test now; voicemail, IVR and conferences later).

Owns :func:`local_answer`, the SDP side of answering a phone's offer with pbx as the far end:
the caller's first codec pbx can code (pbx.calls.negotiate), telephone-event when offered, and
pbx's own SRTP key when the offer is SRTP. And :data:`FEATURES`, the built-in features a
service number can start: each gets the call, its :class:`pbx.media.endpoint.MediaEndpoint`
(play, record, collect DTMF) and a function that hangs the call up, the same call-model API
voicemail and IVR will use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from pbx.calls import anchor, negotiate
from pbx.calls.model import Call
from pbx.calls.negotiate import NegotiationError, StreamFormat
from pbx.media.endpoint import MediaEndpoint
from pbx.media.sdes import SdesError

log = logging.getLogger(__name__)

HangUp = Callable[[str], None]
Feature = Callable[[Call, MediaEndpoint, HangUp], None]


class LocalRefused(Exception):
    """pbx cannot take this offer (answered 488)."""


@dataclass(frozen=True)
class LocalAnswer:
    body: bytes  # SDP answer, ports not yet anchored
    stream: StreamFormat  # what the phone sends and takes
    srtp: anchor.SrtpTerms | None


def local_answer(offer: bytes) -> LocalAnswer:
    """Answer ``offer`` with pbx as the far end (RFC 3264 §6)."""
    try:
        srtp = anchor.srtp_offered(offer)
        plan = negotiate.plan(offer, offer)  # the phone's own first codec, as if echoed
    except (SdesError, NegotiationError) as exc:
        raise LocalRefused(str(exc)) from None
    if not plan.caller.transcodable:
        raise LocalRefused(f"pbx cannot code {plan.caller.codec}")
    body = plan.caller_answer_body
    if srtp is not None:
        body = anchor.secure(body, srtp)
    return LocalAnswer(body, plan.caller, srtp)


def echo_test(call: Call, endpoint: MediaEndpoint, hang_up: HangUp) -> None:
    """Sends back what the phone sends (its own voice about 80 ms later); # ends the call."""

    def digit(pressed: str) -> None:
        if pressed == "#":
            hang_up("echo test ended")

    def echo(pcm: bytes) -> None:
        endpoint.play(pcm)

    endpoint.on_audio = echo
    endpoint.on_digit = digit
    log.info("[%s] echo test for %s", call.call_id, call.caller)


FEATURES: dict[str, Feature] = {"echo": echo_test}
