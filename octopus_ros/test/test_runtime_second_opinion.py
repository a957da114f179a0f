"""The second opinion (runtime/second_opinion.py): a call is published only when a second model makes
the same one; the rule, the setting, the functions check and the engine around them, without DDS
(the node over DDS: test_node_second_opinion.py)."""

from __future__ import annotations

import functools
import shutil
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest

from octopus_ros.functions import load_default_registry, parse_plain, validate_call
from octopus_ros.lean.grounding import Grounding, GroundingRules
from octopus_ros.paths import config_path
from octopus_ros.runtime.engine import ActionEngine, EngineConfig
from octopus_ros.runtime.outcomes import Frame, OutcomeCode, Request, Source
from octopus_ros.runtime.second_opinion import (
    SECOND_OPINION_DIR,
    SecondOpinionError,
    same_functions,
    second_opinion_dir,
    second_opinion_outcome,
    sees_the_same_unsaid_colour,
)

REGISTRY = load_default_registry()


def call(text):
    return parse_plain(text, REGISTRY)


def test_the_rule():
    pick = call("pick_up('red cup')")
    assert second_opinion_outcome(pick, OutcomeCode.OK, "pick_up decided", call("pick_up('red cup')"))[0] == (
        OutcomeCode.OK
    )
    code, reason = second_opinion_outcome(
        pick, OutcomeCode.OK, "find_item decided", call("find_item('red cup')")
    )
    assert code == OutcomeCode.NO_ACTION
    assert (
        reason.startswith("second opinion")
        and "find_item('red cup')" in reason
        and "pick_up('red cup')" in reason
    )
    # the same function with another argument is another call
    assert (
        second_opinion_outcome(pick, OutcomeCode.OK, "", call("pick_up('blue cup')"))[0]
        == OutcomeCode.NO_ACTION
    )
    code, reason = second_opinion_outcome(pick, OutcomeCode.NOT_IN_VIEW, "'red cup' is not in view", pick)
    assert code == OutcomeCode.NO_ACTION and "NOT_IN_VIEW" in reason and "not in view" in reason
    assert second_opinion_outcome(pick, OutcomeCode.MODEL_ERROR, "bad", None)[0] == OutcomeCode.NO_ACTION


class Rules(GroundingRules):
    """A grounding head's vocabulary: keys and cups, in three colours."""

    def __init__(self):
        colours = ("red", "blue", "orange")
        self.categories = [
            {"name": "keys", "en": "keys", "zh": "钥匙", "colours": list(colours)},
            {"name": "cup", "en": "cup", "zh": "杯子", "colours": list(colours)},
        ]
        zh = {"red": "红色", "blue": "蓝色", "orange": "橙色"}
        self.colours = [{"name": c, "en": c, "zh": zh[c], "zh_short": zh[c][0]} for c in colours]
        self.colour_mismatch = None
        self.threshold = 0.1  # the NOT_IN_VIEW threshold the engine takes from a model's head
        self._index_words()


RULES = Rules()


def sees_blue(phrase="orange keys"):
    """The second model's head: its phrase is not in view, the blue keys are there."""
    return Grounding(phrase=phrase, grounded=True, score=0.0, category="keys", other_colour="blue keys")


def test_the_colour_a_request_does_not_say_is_the_views():
    """ "set the keys on the shelf": the second model's guess of a colour nobody said does not
    outvote what both grounding heads see."""
    first = call("place('blue keys', 'shelf')")
    same = functools.partial(sees_the_same_unsaid_colour, REGISTRY, RULES)
    assert same("set the keys on the shelf", first, call("place('orange keys', 'shelf')"), sees_blue())
    assert same("把钥匙放架子上", first, call("place('orange keys', 'shelf')"), sees_blue())
    # the request says the colour: a wrong one is the models' mistake, and counts
    assert not same(
        "set the orange keys on the shelf", first, call("place('orange keys', 'shelf')"), sees_blue()
    )
    # the second head sees another colour than the call's, or nothing in its place
    other = Grounding(
        phrase="orange keys", grounded=True, score=0.0, category="keys", other_colour="red keys"
    )
    assert not same("set the keys on the shelf", first, call("place('orange keys', 'shelf')"), other)
    absent = Grounding(phrase="orange keys", grounded=True, score=0.0, category="keys")
    assert not same("set the keys on the shelf", first, call("place('orange keys', 'shelf')"), absent)
    # another place, another object, another function, no head
    assert not same("set the keys on the shelf", first, call("place('orange keys', 'table')"), sees_blue())
    assert not same(
        "set the keys on the shelf", first, call("place('orange cup', 'shelf')"), sees_blue("orange cup")
    )
    assert not same("set the keys on the shelf", first, call("pick_up('orange keys')"), sees_blue())
    assert not sees_the_same_unsaid_colour(
        REGISTRY, None, "set the keys on the shelf", first, call("place('orange keys', 'shelf')"), sees_blue()
    )
    # what the rule then decides: NOT_IN_VIEW for the guess is the same call; anything else is not
    code, reason = second_opinion_outcome(
        first,
        OutcomeCode.NOT_IN_VIEW,
        "'orange keys' is not in view",
        call("place('orange keys', 'shelf')"),
        same_unsaid_colour=True,
    )
    assert code == OutcomeCode.OK and "both models' grounding heads" in reason
    for code in (OutcomeCode.NO_ACTION, OutcomeCode.REJECTED_LOW_CONFIDENCE):
        assert (
            second_opinion_outcome(
                first, code, "", call("place('orange keys', 'shelf')"), same_unsaid_colour=True
            )[0]
            == OutcomeCode.NO_ACTION
        )
    assert (
        second_opinion_outcome(first, OutcomeCode.NOT_IN_VIEW, "", call("place('orange keys', 'shelf')"))[0]
        == OutcomeCode.NO_ACTION
    )


def test_the_same_call_counts_when_only_the_second_models_novelty_limit_declines_it():
    """Whether the request is familiar is the first model's test; the second model's part is the call."""
    pick = call("pick_up('red cup')")
    novel = "not understood: the model's reading of the request is nearer to what it was taught to decline"
    code, reason = second_opinion_outcome(pick, OutcomeCode.NO_ACTION, novel, call("pick_up('red cup')"))
    assert code == OutcomeCode.OK and "same call" in reason
    unseen = "not understood: 40% of the utterance never seen in training"
    assert second_opinion_outcome(pick, OutcomeCode.NO_ACTION, unseen, pick)[0] == OutcomeCode.OK
    # another call, or a decline for any other reason, is still no
    assert second_opinion_outcome(pick, OutcomeCode.NO_ACTION, novel, call("pick_up('blue cup')"))[0] == (
        OutcomeCode.NO_ACTION
    )
    for other in (
        "image unlike training: image novelty 2.10 > max_image_novelty 1.50",
        "unsafe request (harm): ...",
        "the model declined: no function fits the request",
    ):
        assert second_opinion_outcome(pick, OutcomeCode.NO_ACTION, other, pick)[0] == OutcomeCode.NO_ACTION
    assert second_opinion_outcome(pick, OutcomeCode.REJECTED_LOW_CONFIDENCE, "confidence 0.3", pick)[0] == (
        OutcomeCode.NO_ACTION
    )


def test_the_setting(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    assert second_opinion_dir(model, "auto") is None  # no folder: off
    (model / SECOND_OPINION_DIR).mkdir()
    assert second_opinion_dir(model, "auto") is None  # a folder without a model: off
    (model / SECOND_OPINION_DIR / "config.json").write_text("{}")
    assert second_opinion_dir(model, "auto") == model / SECOND_OPINION_DIR
    assert second_opinion_dir(model, " Auto ") == model / SECOND_OPINION_DIR
    for off in ("", "off", "OFF", "none"):
        assert second_opinion_dir(model, off) is None
    assert str(second_opinion_dir(model, "/robot/models/b")) == "/robot/models/b"


def test_the_second_model_must_know_the_same_functions(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        shutil.copy(config_path("functions.yaml"), d / "functions.yaml")
    same_functions(a, b)
    text = (b / "functions.yaml").read_text(encoding="utf-8")
    (b / "functions.yaml").write_text(
        text.replace("name: take_photo", "name: take_picture"), encoding="utf-8"
    )
    with pytest.raises(SecondOpinionError, match="not .* functions"):
        same_functions(a, b)
    (b / "functions.yaml").unlink()
    with pytest.raises(SecondOpinionError, match="cannot compare"):
        same_functions(a, b)


@dataclass
class Decision:
    call: object
    error: object = None
    grounding: object = None
    confidence: float = 0.99
    request_novelty: float = float("nan")
    raw_text: str = ""
    timings: dict = field(default_factory=lambda: {"total": 0.001})


class Model:
    """decide() answers a fixed call (or raises); counts what it was asked."""

    def __init__(self, answer, request_novelty=float("nan"), seen=None):
        self.answer = answer
        self.request_novelty = request_novelty
        self.seen = seen  # the Grounding its decisions carry (None: no head)
        self.grounding = RULES if seen is not None else None
        self.asked = []

    def encode(self, image):
        return float(np.asarray(image).mean())

    def decide(self, text, image, *, allowlist=None, mode="constrained"):
        self.asked.append(text)
        if isinstance(self.answer, Exception):
            raise self.answer
        return Decision(call(self.answer), request_novelty=self.request_novelty, grounding=self.seen)


def run(first, second, text="please pick up the red cup", max_request_novelty=0.0):
    results, done = [], threading.Event()

    def record(res):
        results.append(res)
        done.set()

    engine = ActionEngine(
        model=first,
        second_opinion=second,
        registry=REGISTRY,
        config=EngineConfig(prefetch_rate=0, max_text_novelty=0, max_request_novelty=max_request_novelty),
        validate=functools.partial(validate_call, registry=REGISTRY),
        on_result=record,
        now=lambda: 100.0,
    )
    engine.on_frame(
        Frame(
            seq=1, stamp=100.0, received=100.0, frame_id="cam", decode=lambda: np.zeros((8, 8, 3), np.uint8)
        )
    )
    engine.start()
    try:
        engine.submit(Request(id="r1", text=text, source=Source.UTTERANCE, arrived=100.0))
        assert done.wait(5)
        time.sleep(0.01)
    finally:
        engine.stop()
    assert len(results) == 1  # exactly one outcome
    return results[0], engine


def test_engine_publishes_only_what_both_models_decide():
    res, engine = run(Model("pick_up('red cup')"), Model("pick_up('red cup')"))
    assert res.code == OutcomeCode.OK and res.call.to_plain() == "pick_up('red cup')"
    assert "second_opinion" in res.timings and "agrees" in res.reason
    res, engine = run(Model("pick_up('red cup')"), Model("find_item('red cup')"))
    assert res.code == OutcomeCode.NO_ACTION and res.reason.startswith("second opinion")
    assert res.call.to_plain() == "pick_up('red cup')"  # the first model's call, not published
    assert engine.counts["declined_second_opinion"] == 1
    res, _ = run(Model("pick_up('red cup')"), Model("no_action()"))
    assert res.code == OutcomeCode.NO_ACTION and "the model declined" in res.reason
    res, _ = run(Model("pick_up('red cup')"), Model(RuntimeError("out of memory")))
    assert res.code == OutcomeCode.MODEL_ERROR and "second opinion failed: out of memory" in res.reason


def test_engine_publishes_the_same_call_when_only_the_second_model_finds_the_request_novel():
    first, second = Model("pick_up('red cup')", 0.5), Model("pick_up('red cup')", 0.999)
    res, _ = run(first, second, max_request_novelty=0.99)
    assert res.code == OutcomeCode.OK and "same call" in res.reason
    # the first model's own limit still declines, and the second is not asked
    first, second = Model("pick_up('red cup')", 0.999), Model("pick_up('red cup')", 0.5)
    res, _ = run(first, second, max_request_novelty=0.99)
    assert (
        res.code == OutcomeCode.NO_ACTION and res.reason.startswith("not understood") and second.asked == []
    )
    # a novel request and another call: no
    res, _ = run(
        Model("pick_up('red cup')", 0.5), Model("find_item('red cup')", 0.999), max_request_novelty=0.99
    )
    assert res.code == OutcomeCode.NO_ACTION and res.reason.startswith("second opinion")


def test_engine_takes_an_unsaid_colour_from_what_both_heads_see():
    seen = Grounding(phrase="blue keys", grounded=True, score=0.9, category="keys", colour="blue")
    first = Model("place('blue keys', 'shelf')", seen=seen)
    res, _ = run(
        first, Model("place('orange keys', 'shelf')", seen=sees_blue()), text="set the keys on the shelf"
    )
    assert res.code == OutcomeCode.OK and "both models' grounding heads" in res.reason
    assert res.call.to_plain() == "place('blue keys', 'shelf')"
    # said: the second model's NOT_IN_VIEW holds it back, as before
    res, _ = run(
        Model("place('blue keys', 'shelf')", seen=seen),
        Model("place('orange keys', 'shelf')", seen=sees_blue()),
        text="set the orange keys on the shelf",
    )
    assert res.code == OutcomeCode.NO_ACTION and res.reason.startswith("second opinion")


def test_engine_asks_the_second_model_only_about_calls_it_would_publish():
    second = Model("pick_up('red cup')")
    res, _ = run(Model("no_action()"), second)
    assert res.code == OutcomeCode.NO_ACTION and second.asked == []
    res, _ = run(Model("pick_up('red cup')"), None)  # off: the first model alone
    assert res.code == OutcomeCode.OK
