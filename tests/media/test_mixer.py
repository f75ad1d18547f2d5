"""mix_minus and mix: who hears what, measured by the tone frequencies in the results."""

from __future__ import annotations

from array import array

import pytest

from pbx.media.dtmf import goertzel_power
from pbx.media.mixer import mix, mix_minus
from pbx.media.pcm import FRAME_BYTES
from tests.media.source_helpers import sine

A, B, C = sine(500, 20), sine(1000, 20), sine(1500, 20)


def power(frame: bytes | None, freq: float) -> float:
    assert frame is not None
    return goertzel_power(array("h", frame), freq, 8000)


def hears(frame: bytes | None, freq: float) -> bool:
    return power(frame, freq) > 1e9


def test_each_member_hears_the_others_and_never_itself() -> None:
    out = mix_minus({"a": A, "b": B, "c": C})
    assert set(out) == {"a", "b", "c"}
    for key, own, others in (("a", 500, (1000, 1500)), ("b", 1000, (500, 1500))):
        frame = out[key]
        assert frame is not None and len(frame) == FRAME_BYTES
        assert not hears(frame, own)
        assert all(hears(frame, f) for f in others)
        assert power(frame, own) < 1e-6 * power(frame, others[0])
    assert out["c"] is not None and not hears(out["c"], 1500) and hears(out["c"], 500)


def test_the_result_is_exactly_the_sum_of_the_others() -> None:
    out = mix_minus({"a": A, "b": B, "c": C})
    expected = [x + y for x, y in zip(array("h", B), array("h", C), strict=True)]
    assert out["a"] == array("h", expected).tobytes()


def test_silent_members_contribute_nothing_and_hear_everyone() -> None:
    out = mix_minus({"a": A, "b": None, "c": C})
    assert out["b"] is not None and hears(out["b"], 500) and hears(out["b"], 1500)
    assert out["a"] == C and out["c"] == A


def test_nobody_else_spoke_means_none_not_silence() -> None:
    assert mix_minus({"a": A, "b": None}) == {"a": None, "b": A}
    assert mix_minus({"a": None, "b": None}) == {"a": None, "b": None}
    assert mix_minus({}) == {}


def test_a_member_that_does_not_hear_gets_none_but_is_still_heard() -> None:
    out = mix_minus({"a": A, "b": B, "c": C}, hears={"a": False})
    assert out["a"] is None
    assert out["b"] is not None and hears(out["b"], 500)


def test_the_sum_is_clipped_once_to_int16() -> None:
    loud = array("h", [30000] * 160).tobytes()
    negative = array("h", [-30000] * 160).tobytes()
    out = mix_minus({"a": loud, "b": loud, "c": negative, "d": None})
    # d hears 30000 + 30000 - 30000: clipping partial sums would give 2767, not 30000
    assert out["d"] is not None and set(array("h", out["d"])) == {30000}
    assert out["c"] is not None and set(array("h", out["c"])) == {32767}
    both_low = mix_minus({"a": negative, "b": negative, "c": None})["c"]
    assert both_low is not None and set(array("h", both_low)) == {-32768}


def test_one_hundred_members_each_hear_ninety_nine() -> None:
    frames: dict[int, bytes | None] = {i: array("h", [i + 1] * 160).tobytes() for i in range(100)}
    frames[100] = None
    out = mix_minus(frames)
    total = sum(range(1, 101))
    for i in range(100):
        result = out[i]
        assert result is not None and set(array("h", result)) == {total - (i + 1)}
    assert out[100] is not None and set(array("h", out[100])) == {total}


def test_mix_is_everyone_for_a_recording() -> None:
    everyone = mix({"a": A, "b": B, "c": None})
    assert everyone is not None and hears(everyone, 500) and hears(everyone, 1000)
    assert mix({"a": None}) is None
    assert mix({}) is None
    loud = array("h", [20000] * 160).tobytes()
    clipped = mix({"a": loud, "b": loud})
    assert clipped is not None and set(array("h", clipped)) == {32767}


def test_frames_of_different_lengths_are_refused() -> None:
    with pytest.raises(ValueError):
        mix_minus({"a": A, "b": A[:100]})
