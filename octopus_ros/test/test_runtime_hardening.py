"""Hardening of the request policy without DDS (issue 13): stamps, control characters, request
isolation of ~/ask images, the newest frame, the sticky e-stop, the standing instruction and
the idle worker. The same behaviours are checked over DDS in test_node_hardening.py."""

from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
from test_runtime_engine import FakeCall, FakeDecision, Harness, ScriptedModel, good_image

from octopus_ros.runtime.engine import ActionEngine, EngineConfig
from octopus_ros.runtime.guards import (
    MAX_STAMP_SEC,
    InvalidUtteranceError,
    check_stamp,
    clean_utterance,
    stamp_parts,
)
from octopus_ros.runtime.outcomes import Frame, OutcomeCode, Request, Source
from octopus_ros.runtime.standing import StandingGate, scene_signature


# ----------------------------------------------------------------------------- stamps
@pytest.mark.parametrize(
    "sec, nanosec, fragment",
    [
        (-1, 0, "negative"),
        (-(2**31), 0, "negative"),
        (5, 1_000_000_000, "outside"),
        (5, 2**32 - 1, "outside"),
        (1000 + 3600, 0, "in the future"),
        (MAX_STAMP_SEC, 999_999_999, "in the future"),
    ],
)
def test_bad_stamps_are_refused_with_the_reason(sec, nanosec, fragment):
    assert fragment in check_stamp(sec, nanosec, now=1000.0, future_tolerance=1.0)


def test_good_stamps_pass():
    assert check_stamp(0, 0, now=1000.0, future_tolerance=1.0) == ""  # unstamped
    assert check_stamp(999, 500, now=1000.0, future_tolerance=1.0) == ""
    assert check_stamp(1000, 900_000_000, now=1000.0, future_tolerance=1.0) == ""  # within the skew
    assert check_stamp(10**6, 0, now=0.0, future_tolerance=1.0) == ""  # sim clock not started


@pytest.mark.parametrize("seconds", [-5.0, 0.0, 1.5, 2147483647.999999999, 1e30, float("inf"), float("nan")])
def test_published_stamps_never_overflow(seconds):
    sec, nanosec = stamp_parts(seconds)
    assert 0 <= sec <= MAX_STAMP_SEC and 0 <= nanosec < 1_000_000_000


# ----------------------------------------------------------------------------- utterance text
@pytest.mark.parametrize("ws", ["\t", "\n", "\v", "\f", "\r", "\x85", "\u2028", "\u2029"])
def test_line_layout_characters_are_normalised_to_one_space(ws):
    assert clean_utterance(f"pick{ws}up{ws}{ws}the cup", max_length=50) == "pick up the cup"


@pytest.mark.parametrize(
    "char",
    ["\x00", "\x07", "\x1b", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f", "\x80", "\x9f", "\u200b", "\u202e"],
)
def test_other_control_and_format_characters_are_rejected(char):
    with pytest.raises(InvalidUtteranceError, match="control/format/unassigned"):
        clean_utterance(f"pick up{char} the cup", max_length=50)


def test_huge_utterance_is_rejected_without_scanning_it_all():
    t0 = time.perf_counter()
    with pytest.raises(InvalidUtteranceError, match="characters"):
        clean_utterance("x" * 5_000_000, max_length=200)
    assert time.perf_counter() - t0 < 0.5


# ----------------------------------------------------------------------------- ask images
class EncodingModel(ScriptedModel):
    """decide() records which image encoding (the image's mean value) each request used."""

    def __init__(self):
        super().__init__()
        self.used: dict[str, float] = {}

    def decide(self, text, encoding, *, allowlist=None, mode="constrained"):
        self.used[text] = encoding
        return super().decide(text, encoding, allowlist=allowlist, mode=mode)


def _image(value):
    return lambda: np.full((8, 8, 3), value, np.uint8)


def test_ask_images_never_leak_into_camera_requests_under_concurrency():
    """100 trials: asks with their own image race camera utterances; each is decided on its own image."""
    model = EncodingModel()
    h = Harness(model=model, rate_limit=0.0, queue_depth=1000, prefetch_rate=50.0)
    h.engine.start()
    try:
        camera_value = 10
        h.engine.on_frame(Frame(1, h.clock, h.clock, "cam", _image(camera_value)))
        rng = random.Random(7)
        expected: dict[str, float] = {}

        def submit(i: int) -> None:
            if rng.random() < 0.5:
                value = 100 + i % 150
                text = f"ask {i}"
                image = Frame(10_000 + i, 0.0, h.clock, "ask", _image(value))
                h.engine.submit(Request(f"a{i}", text, Source.SERVICE, h.clock, image=image, publish=False))
            else:
                value, text = camera_value, f"camera {i}"
                h.engine.submit(Request(f"c{i}", text, Source.UTTERANCE, h.clock))
            expected[text] = float(value)

        threads = [threading.Thread(target=submit, args=(i,)) for i in range(100)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = h.wait(100)
    finally:
        h.engine.stop()
    assert len(results) == 100 and {r.code for r in results} == {OutcomeCode.OK}
    assert any(t.startswith("ask") for t in expected) and any(t.startswith("camera") for t in expected)
    leaks = [t for t, value in expected.items() if model.used[t] != value]
    assert leaks == []


# ----------------------------------------------------------------------------- the newest frame
def test_corrupt_newest_frame_is_not_covered_by_the_prefetched_one(harness):
    """A frame that passes the header check but fails to decode, 0.1 s after a good prefetched one."""
    h = harness(prefetch_max_lag=0.25)
    h.frame(decode=_image(50))
    deadline = time.monotonic() + 5
    while h.model.encodes == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    assert h.model.encodes == 1  # the good frame is pre-encoded

    def corrupt():
        raise ValueError("jpeg: premature end of data")

    h.clock += 0.1
    h.frame(decode=corrupt)
    h.say("pick it up")
    res = h.wait(1)[0]
    assert res.code == OutcomeCode.INVALID_INPUT and "premature end" in res.reason


def test_valid_newest_frame_may_use_the_prefetched_encoding_within_the_lag(harness):
    h = harness(prefetch_max_lag=0.25, prefetch_rate=0.0)
    h.frame(decode=_image(50))
    h.say("first")  # encodes frame 1
    h.wait(1)
    decoded = []

    def newest():
        decoded.append(1)
        return np.full((8, 8, 3), 52, np.uint8)  # the same scene, a little brighter

    h.clock += 0.1
    h.frame(decode=newest)
    h.say("second")
    res = h.wait(2)[1]
    assert res.code == OutcomeCode.OK and res.frame.seq == 1  # the prefetched encoding, by design
    assert decoded == [1]  # ... but only after the newest frame was checked to decode
    assert h.model.encodes == 1


# ----------------------------------------------------------------------------- e-stop at start
def test_engine_created_with_the_estop_engaged_answers_estop():
    results = []
    engine = ActionEngine(
        model=ScriptedModel(),
        registry=Harness().engine.registry,
        config=EngineConfig(),
        validate=lambda call, allowlist=None: None,
        on_result=results.append,
        estop=True,
    )
    engine.start()
    try:
        engine.on_frame(Frame(1, time.time(), time.time(), "cam", good_image))
        res = engine.submit(Request("a", "stop", Source.UTTERANCE, time.time()))
    finally:
        engine.stop()
    assert res.code == OutcomeCode.ESTOP and engine.estop


# ----------------------------------------------------------------------------- standing instruction
def test_standing_gate_acts_on_change_only():
    gate = StandingGate()
    scene_a = scene_signature(np.full((48, 64, 3), 40, np.uint8))
    scene_b = scene_signature(np.full((48, 64, 3), 200, np.uint8))
    call = "<nexa_0>('red cup')<nexa_end>"
    assert gate.repeat_reason(call, scene_a, 0.0, 10.0, 0.08) == ""
    assert "ago" in gate.repeat_reason(call, scene_b, 5.0, 10.0, 0.08)  # cooldown
    assert "unchanged" in gate.repeat_reason(call, scene_a, 20.0, 10.0, 0.08)  # same scene
    assert gate.repeat_reason(call, scene_b, 21.0, 10.0, 0.08) == ""  # scene changed, cooldown over
    other = "<nexa_3>()<nexa_end>"
    assert gate.repeat_reason(other, scene_b, 21.5, 10.0, 0.08) == ""  # a different call acts at once
    gate.reset()
    assert gate.repeat_reason(other, scene_b, 22.0, 10.0, 0.08) == ""


def test_standing_instruction_does_not_repeat_the_same_action_every_tick():
    model = ScriptedModel(
        [FakeDecision(FakeCall("pick_up", 0), None, 0.99, "<nexa_0>('red cup')<nexa_end>")] * 6
    )
    h = Harness(model=model, standing_cooldown=10.0)
    h.engine.start()
    try:
        for _ in range(6):  # one tick a second on an unchanged scene
            h.frame()
            h.say("if you see a cup, pick it up", source=Source.STANDING_INSTRUCTION)
            h.wait(len(h.results) + 1)
            h.clock += 1.0
    finally:
        h.engine.stop()
    codes = [r.code for r in h.results]
    assert codes == [OutcomeCode.OK] + [OutcomeCode.NO_ACTION] * 5
    assert h.engine.counts["standing_repeats_suppressed"] == 5


# ----------------------------------------------------------------------------- idle worker
def test_worker_sleeps_once_the_newest_frame_is_encoded(harness):
    h = harness(prefetch_rate=50.0)
    h.frame()
    deadline = time.monotonic() + 5
    while h.model.encodes == 0 and time.monotonic() < deadline:
        time.sleep(0.002)
    waits = []
    cond = h.engine._cond
    original = cond.wait

    def counting_wait(timeout=None):
        waits.append(timeout)
        return original(timeout)

    cond.wait = counting_wait
    time.sleep(0.5)
    cond.wait = original
    assert len(waits) <= 2, f"{len(waits)} wake-ups in 0.5 s with nothing to do"


def test_prefetched_encoding_never_stands_in_for_a_new_scene(harness):
    """Within prefetch_max_lag, but the newest frame shows another scene: it is encoded afresh."""
    h = harness(prefetch_max_lag=0.25, prefetch_rate=0.0)
    h.frame(decode=_image(50))
    h.say("first")  # encodes frame 1 (scene A)
    h.wait(1)
    h.clock += 0.1
    h.frame(decode=_image(200))  # scene B, 0.1 s later
    h.say("second")
    res = h.wait(2)[1]
    assert res.code == OutcomeCode.OK and res.frame.seq == 2
    assert h.model.encodes == 2 and h.engine.counts["prefetch_scene_changed"] == 1
