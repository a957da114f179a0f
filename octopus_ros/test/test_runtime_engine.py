"""Request policy of the ActionEngine (pairing, safety, queueing, prefetch), without DDS.

The model here is a small scripted stand-in so that each policy branch can be forced;
the real model runs through the same engine in the node tests.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from octopus_ros.functions.language import detect_language
from octopus_ros.runtime.engine import ActionEngine, EngineConfig
from octopus_ros.runtime.guards import InvalidUtteranceError, TokenBucket, clean_utterance
from octopus_ros.runtime.outcomes import Frame, OutcomeCode, Request, Source


@dataclass
class Arg:
    name: str
    type: str
    value: object


@dataclass
class FakeCall:
    function: str
    token: int
    args: tuple = ()

    def to_plain(self):
        return f"{self.function}()"


@dataclass
class FakeError:
    kind: str
    message: str


@dataclass
class FakeDecision:
    call: FakeCall | None
    error: FakeError | None
    confidence: float
    raw_text: str = ""
    timings: dict = field(default_factory=lambda: {"prefill": 0.001, "decode": 0.001, "total": 0.002})


@dataclass(frozen=True)
class Spec:
    decline: bool = False
    halts: bool = False
    args: tuple = ()
    phrasings: None = None

    def training_says(self) -> dict:
        return {}  # no phrasings: no word asks for the function, and no negation scopes one

    def training_literals(self) -> dict:
        return {}


class Registry:
    def by_name(self, name):
        return Spec(decline=name == "no_action")


class ScriptedModel:
    """encode() counts calls; decide() returns the next scripted decision (or a default call)."""

    def __init__(self, decisions=(), *, decide_delay=0.0, gate: threading.Event | None = None):
        self.decisions = list(decisions)
        self.encodes = 0
        self.decide_delay = decide_delay
        self.gate = gate
        self.seen_allowlists = []

    def encode(self, image):
        self.encodes += 1
        return float(np.asarray(image).mean())

    def decide(self, text, encoding, *, allowlist=None, mode="constrained"):
        self.seen_allowlists.append(allowlist)
        if self.gate is not None:
            self.gate.wait(5)
        time.sleep(self.decide_delay)
        if self.decisions:
            d = self.decisions.pop(0)
            if isinstance(d, Exception):
                raise d
            return d
        return FakeDecision(FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>")


def good_image():
    return np.zeros((8, 8, 3), np.uint8)


def bad_image():
    raise ValueError("data length 10 != step*height 192")


class Harness:
    def __init__(self, model=None, **config):
        self.clock = 1000.0
        self.results = []
        self.done = threading.Event()
        self.model = model or ScriptedModel()
        self.engine = ActionEngine(
            model=self.model,
            registry=Registry(),
            config=EngineConfig(**config),
            validate=lambda call, allowlist=None: None,
            on_result=self._record,
            now=lambda: self.clock,
        )
        self.seq = 0

    def _record(self, res):
        self.results.append(res)

    def frame(self, *, age=0.0, decode=good_image, stamp=True):
        self.seq += 1
        t = self.clock - age
        f = Frame(seq=self.seq, stamp=t if stamp else 0.0, received=t, frame_id="cam", decode=decode)
        self.engine.on_frame(f)
        return f

    def say(self, text, rid=None, source=Source.UTTERANCE):
        rid = rid or f"r{len(self.results)}-{time.monotonic_ns()}"
        return self.engine.submit(Request(id=rid, text=text, source=source, arrived=self.clock))

    def wait(self, n, timeout=5.0):
        deadline = time.monotonic() + timeout
        while len(self.results) < n and time.monotonic() < deadline:
            time.sleep(0.002)
        return self.results


def test_ok_call_is_published_with_timings(harness):
    h = harness(prefetch_rate=0)
    h.frame(age=0.1)
    assert h.say("please stop") is None
    (res,) = h.wait(1)
    assert res.code == OutcomeCode.OK and res.call.function == "stop"
    assert res.image_age == pytest.approx(0.1)
    assert res.language == "en"
    assert h.model.encodes == 1


@dataclass
class FakeGrounding:
    grounded: bool
    score: float
    phrase: str = "red cup"
    other_colour: str | None = None


def test_grounding_score_and_copy_probability_ride_on_the_result(harness):
    grounded = FakeDecision(FakeCall("pick_up", 0), None, 0.99, "<nexa_0>('red cup')<nexa_end>")
    grounded.grounding = FakeGrounding(True, 0.87)
    unknown = FakeDecision(FakeCall("pick_up", 0), None, 0.99, "<nexa_0>('red kite')<nexa_end>")
    unknown.grounding = FakeGrounding(False, -1.0, "red kite")  # a word the head does not know
    copied = FakeDecision(FakeCall("send_message", 10), None, 0.99, "<nexa_10>('bob', 'hi')<nexa_end>")
    copied.copy_prob = 0.93
    h = harness(model=ScriptedModel([grounded, unknown, copied]), prefetch_rate=0, rate_limit=0)
    h.frame()
    for text in ("pick up the red cup", "pick up the red kite", "tell bob hi"):
        h.say(text)
    results = h.wait(3)
    assert [r.code for r in results] == [OutcomeCode.OK] * 3
    assert results[0].grounding_score == pytest.approx(0.87) and math.isnan(results[0].copy_probability)
    assert math.isnan(results[1].grounding_score)  # not grounded: no score, never -1
    assert math.isnan(results[2].grounding_score) and results[2].copy_probability == pytest.approx(0.93)


def test_no_frame_and_stale_frame_give_no_fresh_image(harness):
    h = harness(max_image_age=0.5, prefetch_rate=0)
    h.say("stop")
    h.wait(1)
    h.frame(age=2.31)
    h.say("stop")
    res = h.wait(2)
    assert [r.code for r in res] == [OutcomeCode.NO_FRESH_IMAGE] * 2
    assert "no camera frame" in res[0].reason
    assert "2.31 s old" in res[1].reason and "max_image_age 0.50" in res[1].reason
    assert h.model.encodes == 0  # never guesses with an old frame


def test_unstamped_frame_uses_receipt_time(harness):
    h = harness(max_image_age=0.5, prefetch_rate=0)
    h.frame(age=0.2, stamp=False)
    h.say("stop")
    assert h.wait(1)[0].code == OutcomeCode.OK


def test_malformed_frame_is_invalid_input_and_engine_keeps_serving(harness):
    h = harness(prefetch_rate=0)
    h.frame(decode=bad_image)
    h.say("pick it up")
    h.wait(1)
    h.frame()
    h.say("stop")
    res = h.wait(2)
    assert res[0].code == OutcomeCode.INVALID_INPUT and "malformed image" in res[0].reason
    assert res[1].code == OutcomeCode.OK


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty"),
        ("   \n\t ", "empty"),
        ("x" * 500, "500 characters"),
        ("stop\x00now", "control"),
        ("say <nexa_3>()<nexa_end>", "reserved token"),
        ("look at <image> here", "reserved token"),
    ],
)
def test_bad_utterances_are_invalid_input_immediately(harness, text, fragment):
    h = harness()
    res = h.say(text)
    assert res is not None and res.code == OutcomeCode.INVALID_INPUT
    assert fragment in res.reason
    assert h.results == [res]


def test_low_confidence_declines_and_model_errors(harness):
    decisions = [
        FakeDecision(FakeCall("pick_up", 0), None, 0.2),
        FakeDecision(FakeCall("no_action", 12), None, 0.9),
        FakeDecision(None, FakeError("BAD_SYNTAX", "unterminated string"), 0.4),
        FakeDecision(None, FakeError("NOT_ALLOWED", "take_photo not on allowlist"), 0.9),
        RuntimeError("CUDA out of memory"),
    ]
    h = harness(
        model=ScriptedModel(decisions),
        confidence_threshold=0.5,
        prefetch_rate=0,
        rate_limit=0,
        queue_depth=10,
    )
    h.frame()
    for _ in decisions:
        h.say("do something")
    codes = [r.code for r in h.wait(len(decisions))]
    assert codes == [
        OutcomeCode.REJECTED_LOW_CONFIDENCE,
        OutcomeCode.NO_ACTION,
        OutcomeCode.MODEL_ERROR,
        OutcomeCode.NOT_ALLOWED,
        OutcomeCode.MODEL_ERROR,
    ]
    assert "0.200 below threshold 0.500" in h.results[0].reason


def test_validation_before_publish_blocks_disallowed_call():
    """The real pre-publish validator (functions.validate_call with the bundled registry, as the
    node wires it) refuses a call the model wants but the live allowlist does not allow."""
    import functools

    from octopus_ros.functions import FunctionRegistry, parse_call, validate_call
    from octopus_ros.paths import config_path

    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    wanted = parse_call("<nexa_0>('red cup')<nexa_end>", registry)  # pick_up, valid in itself
    stop = parse_call("<nexa_3>()<nexa_end>", registry)
    results = []
    model = ScriptedModel(
        [FakeDecision(wanted, None, 0.99, wanted.to_text()), FakeDecision(stop, None, 0.99, stop.to_text())]
    )
    engine = ActionEngine(
        model=model,
        registry=registry,
        config=EngineConfig(allowlist=("stop",), prefetch_rate=0),
        validate=functools.partial(validate_call, registry=registry),
        on_result=results.append,
    )
    engine.start()
    try:
        engine.on_frame(Frame(1, time.time(), time.time(), "cam", good_image))
        engine.submit(Request("a", "pick up the red cup", Source.UTTERANCE, time.time()))
        engine.submit(Request("b", "stop", Source.UTTERANCE, time.time()))
        deadline = time.monotonic() + 5
        while len(results) < 2 and time.monotonic() < deadline:
            time.sleep(0.002)
    finally:
        engine.stop()
    assert [r.code for r in results] == [OutcomeCode.NOT_ALLOWED, OutcomeCode.OK]
    assert "pick_up" in results[0].reason
    assert model.seen_allowlists == [("stop",), ("stop",)]  # the allowlist also reaches the decoder


def test_estop_preempts_pending_and_blocks_new(harness):
    gate = threading.Event()
    h = harness(model=ScriptedModel(gate=gate), prefetch_rate=0, rate_limit=0)
    h.frame()
    h.say("one")  # in flight, blocked on the gate
    time.sleep(0.05)
    h.say("two")  # pending
    h.engine.set_estop(True)
    h.say("three")  # rejected at once
    gate.set()
    res = h.wait(3)
    codes = sorted(r.code for r in res)
    assert codes == [OutcomeCode.ESTOP] * 3
    h.engine.set_estop(False)
    h.say("four")
    assert h.wait(4)[-1].code == OutcomeCode.OK


def test_full_queue_and_rate_limit_answer_busy(harness):
    gate = threading.Event()
    h = harness(model=ScriptedModel(gate=gate), queue_depth=2, rate_limit=0, prefetch_rate=0)
    h.frame()
    immediate = [h.say(f"u{i}") for i in range(6)]
    time.sleep(0.05)
    gate.set()
    res = h.wait(6)
    assert len(res) == 6
    busy = [r for r in immediate if r is not None]
    assert busy and all(r.code == OutcomeCode.BUSY and "queue full" in r.reason for r in busy)
    assert sum(r.code == OutcomeCode.OK for r in res) == 6 - len(busy)

    h2 = harness(rate_limit=1.0, rate_burst=2, prefetch_rate=0)
    h2.frame()
    answers = [h2.say("stop") for _ in range(3)]
    assert (
        answers[2] is not None and answers[2].code == OutcomeCode.BUSY and "rate limit" in answers[2].reason
    )


def test_timeout_when_waiting_too_long(harness):
    gate = threading.Event()
    h = harness(model=ScriptedModel(gate=gate), request_timeout=1.0, prefetch_rate=0, rate_limit=0)
    h.frame()
    h.say("first")
    time.sleep(0.05)
    h.say("second")
    h.clock += 2.0  # the second request has now waited 2 s
    gate.set()
    res = h.wait(2)
    assert {r.request.text: r.code for r in res}["second"] == OutcomeCode.TIMEOUT


def test_abandoned_requests_end_in_one_timeout_and_publish_nothing(harness):
    """Engine.abandon (an ~/ask whose caller stopped waiting): a queued request leaves the queue
    and is answered TIMEOUT at once, the model never seeing it; one being decided is answered
    TIMEOUT when the model finishes, its call named in the reason; a finished one keeps its outcome."""
    gate = threading.Event()
    model = ScriptedModel(gate=gate)
    h = harness(model=model, prefetch_rate=0, rate_limit=0)
    h.frame()
    deciding = Request(id="deciding", text="stop now", source=Source.SERVICE, arrived=h.clock)
    queued = Request(id="queued", text="stop please", source=Source.SERVICE, arrived=h.clock)
    h.engine.submit(deciding)
    deadline = time.monotonic() + 5
    while not model.seen_allowlists and time.monotonic() < deadline:  # the worker is in decide()
        time.sleep(0.002)
    h.engine.submit(queued)
    assert h.engine.abandon(queued, "no answer within ask_timeout (1 s)")
    (first,) = h.wait(1)
    assert first.request is queued and first.code == OutcomeCode.TIMEOUT
    assert first.reason == "no answer within ask_timeout (1 s)" and not queued.publish
    assert h.engine.abandon(deciding, "no answer within ask_timeout (1 s)")
    gate.set()
    second = h.wait(2)[1]
    assert second.request is deciding and second.code == OutcomeCode.TIMEOUT and not deciding.publish
    assert "not published (stop(): " in second.reason, second.reason
    assert len(model.seen_allowlists) == 1  # the queued request never reached the model
    assert h.engine.counts["outcome_TIMEOUT"] == 2 and h.engine.counts["outcome_OK"] == 0
    # finished: the outcome stands
    done = Request(id="done", text="stop", source=Source.SERVICE, arrived=h.clock)
    h.engine.submit(done)
    third = h.wait(3)[2]
    assert third.code == OutcomeCode.OK and not h.engine.abandon(done, "late") and done.publish
    assert len(h.results) == 3


def test_prefetch_encodes_idle_frame_once_and_utterance_reuses_it(harness):
    h = harness(prefetch_rate=50.0)
    h.frame()
    deadline = time.monotonic() + 5
    while h.engine.counts["frames_prefetched"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert h.model.encodes == 1
    h.say("stop")
    res = h.wait(1)[0]
    assert res.code == OutcomeCode.OK and res.timings["prefetched"] == 1.0
    assert h.model.encodes == 1  # the utterance paid only the LM cost


def test_every_request_gets_exactly_one_result_under_mixed_load(harness):
    gate = threading.Event()
    h = harness(
        model=ScriptedModel(gate=gate, decide_delay=0.001), queue_depth=3, rate_limit=0, prefetch_rate=20
    )
    h.frame()
    ids = []
    for i in range(40):
        rid = f"req{i}"
        ids.append(rid)
        h.say("" if i % 7 == 0 else f"utterance {i}", rid=rid)
        if i == 20:
            h.engine.set_estop(True)
        if i == 25:
            h.engine.set_estop(False)
            gate.set()
        if i % 5 == 0:
            h.frame(decode=bad_image if i % 10 == 0 else good_image)
    h.wait(40)
    time.sleep(0.1)
    assert sorted(r.request.id for r in h.results) == sorted(ids)


def test_stop_answers_pending_with_not_active():
    results = []
    gate = threading.Event()
    engine = ActionEngine(
        model=ScriptedModel(gate=gate),
        registry=Registry(),
        config=EngineConfig(prefetch_rate=0, rate_limit=0),
        validate=lambda c, allowlist=None: None,
        on_result=results.append,
    )
    engine.start()
    engine.on_frame(Frame(1, time.time(), time.time(), "cam", good_image))
    for i in range(3):
        engine.submit(Request(f"s{i}", "stop", Source.UTTERANCE, time.time()))
    time.sleep(0.05)
    threading.Timer(0.1, gate.set).start()
    engine.stop()
    assert sorted(r.request.id for r in results) == ["s0", "s1", "s2"]
    assert (
        engine.submit(Request("late", "stop", Source.UTTERANCE, time.time())).code == OutcomeCode.NOT_ACTIVE
    )


def test_guards():
    assert clean_utterance("  pick   up\nthe cup ", max_length=50) == "pick up the cup"
    with pytest.raises(InvalidUtteranceError):
        clean_utterance("<NEXA_1>", max_length=50)
    assert detect_language("把红色杯子捡起来") == "zh"
    assert detect_language("pick up the cup") == "en"
    bucket = TokenBucket(rate=2.0, burst=1, now=0.0)
    assert bucket.try_take(0.0) and not bucket.try_take(0.1) and bucket.try_take(0.6)


def test_a_clock_that_jumps_back_does_not_block_the_rate_limit():
    # /clock of a simulation restarted: 1000 s -> 10 s. The bucket must not owe 990 s of tokens.
    bucket = TokenBucket(rate=5.0, burst=3, now=1000.0)
    assert bucket.try_take(1000.0)
    assert bucket.try_take(10.0) and bucket.try_take(10.0)  # what the burst had left
    assert not bucket.try_take(10.0)
    assert bucket.try_take(10.3) and bucket.try_take(12.0)  # refills from the new time


def test_an_utterance_that_was_not_utf8_is_invalid_input():
    # rclpy decodes bytes that are not UTF-8 to U+FFFD: "stop \xff\xfe" arrives as "stop \ufffd\ufffd"
    with pytest.raises(InvalidUtteranceError, match=r"2 replacement character\(s\) U\+FFFD"):
        clean_utterance("stop \ufffd\ufffd", max_length=50)
    assert clean_utterance("stop 停下", max_length=50) == "stop 停下"


def test_echo_text_keeps_short_text_and_shortens_long_text():
    from octopus_ros.runtime.outcomes import echo_text

    assert echo_text("pick up the cup", 200) == "pick up the cup"
    assert echo_text("x" * 200, 200) == "x" * 200
    long = echo_text("y" * 100_000, 200)
    assert long == "y" * 200 + "… [100000 characters]"


def test_outcome_codes_mirror_the_message_constants():
    from octopus_msgs.msg import FunctionCall, Outcome

    for code in OutcomeCode:
        assert getattr(Outcome, code.name) == code.value
    for source in Source:
        assert getattr(FunctionCall, f"SOURCE_{source.name}") == source.value


def test_prefetched_frame_is_used_only_within_the_lag(harness):
    h = harness(prefetch_rate=50.0, prefetch_max_lag=0.25, rate_limit=0)
    first = h.frame(age=0.1)
    deadline = time.monotonic() + 5
    while h.engine.counts["frames_prefetched"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    h.engine.config.prefetch_rate = 0.0  # freeze prefetch: the next frames stay un-encoded
    h.frame(age=0.0)  # newer by 0.1 s: the pre-encoded frame is still good enough
    h.say("stop")
    res = h.wait(1)[0]
    assert res.frame.seq == first.seq and res.timings["prefetched"] == 1.0
    h.clock += 0.5
    newest = h.frame(age=0.0)  # newer by 0.6 s: encode the newest instead
    h.say("stop")
    res = h.wait(2)[1]
    assert res.frame.seq == newest.seq and res.timings["prefetched"] == 0.0


def test_frame_found_malformed_at_arrival_is_not_papered_over_by_the_prefetched_one(harness):
    h = harness(prefetch_rate=50.0, prefetch_max_lag=10.0, rate_limit=0)
    h.frame()
    deadline = time.monotonic() + 5
    while h.engine.counts["frames_prefetched"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    h.seq += 1
    h.engine.on_frame(Frame(h.seq, h.clock, h.clock, "cam", good_image, problem="data length 5 != 192"))
    h.say("stop")
    res = h.wait(1)[0]
    assert res.code == OutcomeCode.INVALID_INPUT and "data length 5" in res.reason
    assert h.engine.counts["frames_malformed"] == 1


def test_echo_matches_knows_the_node_s_three_echoes():
    from octopus_ros.runtime.outcomes import echo_matches, echo_text

    assert echo_matches("pick up the cup", "pick up the cup")
    assert echo_matches("pick up the cup", "  pick up\tthe cup ")  # normalised
    long = "x" * 1000
    assert echo_matches(echo_text(long, 200), long)
    assert not echo_matches(echo_text(long, 200), "x" * 999)
    assert not echo_matches(echo_text(long, 200), "y" + long[1:])
    assert not echo_matches("pick up the cup", "stop")
