"""A request that only asks about an act, not for it, is declined (functions/questions.py)."""

from __future__ import annotations

import functools
from types import SimpleNamespace

import pytest

from octopus_ros.functions import FunctionRegistry, parse_plain
from octopus_ros.functions.calls import validate_call
from octopus_ros.functions.questions import asked_about
from octopus_ros.paths import config_path
from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.mark.parametrize(
    ("text", "asked"),
    [
        ("Did you already water the plant this morning?", "did you"),
        ("have you fed the cat yet", "have you"),
        ("hey, did you take a photo of the garden?", "did you"),
        ("um has anyone fed the dog today", "has anyone"),
        ("你浇过花了吗", "了吗"),
        ("狗喂了没有？", "了没有"),
        ("你给妈妈发过消息没有", "过…没有"),
        ("你浇过花吗", "过…吗"),
        ("did you feed the dog? did you water the plant?", "did you"),
        ("If you had to pick up the red cup, would you use both hands?", "if you had to"),
        ("what if you fed the dog twice", "what if"),
        ("hypothetically, could you go to the kitchen", "hypothetically"),
        ("假如让你去厨房，你会怎么走", "假如"),
    ],
)
def test_a_question_about_the_act(text, asked):
    assert asked_about(text) == asked


@pytest.mark.parametrize(
    "text",
    [
        "have you seen my red phone? look for it",  # the second clause asks for the search
        "did you hear me, feed the dog",
        "please water the plant",
        "can you feed the dog",
        "帮我拿一下杯子好吗",  # a polite question asks for it
        "你能去厨房吗",
        "把杯子拿起来可以吗",
        "你能把拿过来的杯子放下吗",  # 过来: a direction, not what was done
        "hey robot",
        "if you can, pick up the red cup",
        "if you don't mind, feed the dog",
        "如果你有空，帮我拿一下杯子",
        "i suppose you could feed the dog",
        "hide the candy you did not see",
        "",
        "？？",
    ],
)
def test_a_request_is_no_question_about_the_past(text):
    assert asked_about(text) is None


def _outcome(registry, utterance, plain):
    decision = SimpleNamespace(call=parse_plain(plain, registry), error=None, confidence=0.99)
    return decision_outcome(
        decision,
        registry,
        functools.partial(validate_call, registry=registry),
        allowlist=None,
        threshold=0.5,
        utterance=utterance,
    )


def test_the_node_declines_a_question_and_still_stops(registry):
    code, reason = _outcome(registry, "Did you already water the plant this morning?", "water_plant()")
    assert code is OutcomeCode.NO_ACTION
    assert reason == "the request asks about it ('did you'), not for it (water_plant not published)"
    assert _outcome(registry, "你喂过狗了吗", "feed_pet('dog')")[0] is OutcomeCode.NO_ACTION
    # a stop is honoured whatever the words around it (halts: true)
    assert _outcome(registry, "did you stop?", "stop()")[0] is OutcomeCode.OK
    assert _outcome(registry, "have you seen my red phone? look for it", "find_item('red phone')")[0] is (
        OutcomeCode.OK
    )


@pytest.mark.parametrize(
    ("text", "later"),
    [
        ("Remind me to water the plant tomorrow morning.", "remind me"),
        ("feed the dog tonight", "tonight"),
        ("go to the kitchen in 5 minutes", "in 5 minutes"),
        ("in an hour, take a photo of the garden", "in an hour"),
        ("明天早上提醒我给花浇水", "明天"),
        ("二十分钟以后去厨房看看汤", "二十分钟以后"),
        ("go to the kitchen in a minute", None),  # soon, not later
        ("描述一下周围", None),  # 一下 + 周围, no 下周
        ("提醒我妈记得带钥匙", None),  # a message to mom, no reminder for me
        ("下周一去厨房", "下周"),
        ("water the plant now", None),
    ],
)
def test_a_request_for_later(text, later):
    from octopus_ros.functions.questions import for_later

    assert for_later(text) == later


def test_the_node_declines_a_request_for_later_but_not_a_message_about_it(registry):
    code, reason = _outcome(registry, "二十分钟以后去厨房看看汤", "navigate_to('kitchen')")
    assert code is OutcomeCode.NO_ACTION and "asks for it later ('二十分钟以后')" in reason
    assert (
        _outcome(
            registry, "tell mom I'll be home tomorrow", "send_message('mom', \"I'll be home tomorrow\")"
        )[0]
        is OutcomeCode.OK
    )
    assert _outcome(registry, "stop, tomorrow we try again", "stop()")[0] is OutcomeCode.OK


def test_a_question_that_is_how_a_function_is_asked_for_keeps_its_call(registry):
    """find_item's phrasings hold "你见过我的{item}吗？": such a question asks for the search (the
    held-out templates lost ten of those to the rule before this exemption)."""
    assert asked_about("你见过我的黄球吗", registry.by_name("find_item")) is None
    assert _outcome(registry, "你见过我的黄球吗", "find_item('yellow ball')")[0] is OutcomeCode.OK
    # not for a function none of whose phrasings asks so
    assert asked_about("你浇过花了吗", registry.by_name("water_plant")) == "了吗"
