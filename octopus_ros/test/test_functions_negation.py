"""A request that says not to do what the call does is declined (functions/negation.py)."""

from __future__ import annotations

import string
from types import SimpleNamespace

import pytest

from octopus_ros.functions import FunctionRegistry, parse_plain
from octopus_ros.functions.calls import Call
from octopus_ros.functions.negation import negated_request
from octopus_ros.paths import config_path
from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


NEGATED = [
    ("don't pick up the cup", "pick_up('red cup')", "don't pick"),
    ("actually no don't go to the kitchen", "navigate_to('kitchen')", "don't go"),
    ("you don't need to water the plant today", "water_plant()", "don't need to water"),
    ("I don't want you to go to the kitchen", "navigate_to('kitchen')", "don't want you to go"),
    ("never take a photo of me", "take_photo()", "never take"),
    ("don't bother picking up the cup", "pick_up('red cup')", "don't bother picking"),
    ("please do not send that message to mom", "send_message('mom', 'that message')", "do not send"),
    ("let's not take a photo", "take_photo()", "let's not take"),
    ("Don\u2019t feed the dog", "feed_pet('dog')", "don't feed"),
    ("不要把那个杯子拿起来", "pick_up('red cup')", "不要把"),
    ("别去厨房了", "navigate_to('kitchen')", "别去"),
    ("不用拍照了", "take_photo()", "不用拍"),
    ("那条消息别发了", "send_message('mom', '那条消息')", "别发"),
    ("不用帮我拍了", "take_photo()", "不用帮我拍"),
    ("别给狗喂东西", "feed_pet('dog')", "别给"),
    ("不用再拍照了", "take_photo()", "不用再拍"),
    ("千萬別去廚房", "navigate_to('kitchen')", "千万别去"),  # Traditional characters read as Simplified
    ("don't you dare feed the dog", "feed_pet('dog')", "don't you dare feed"),
    ("I told you not to feed the dog", "feed_pet('dog')", "not to feed"),
    ("you shouldn't feed the dog", "feed_pet('dog')", "shouldn't feed"),
    ("stop feeding the dog", "feed_pet('dog')", "stop feeding"),
    ("quit taking photos", "take_photo()", "quit taking"),
    ("不能去厨房", "navigate_to('kitchen')", "不能去"),
    ("禁止去厨房", "navigate_to('kitchen')", "禁止去"),
    ("停止拍照", "take_photo()", "停止拍"),
    ("狗我已经喂过了，你就别喂了", "feed_pet('dog')", "别喂"),  # the first clause reports, it asks nothing
    ("红球不用捡了，就让它放那儿吧", "pick_up('red ball')", "不用捡"),
    # a false decline left: a Chinese clause with another word of the function is not read
    ("别等我了，先去厨房吧", "navigate_to('kitchen')", "别等"),
]

ASKED = [
    (
        "don't stop",
        "stop()",
    ),  # a halts: true function is never declined for a negation: stopping harms no one
    ("don't move", "stop()"),  # how stop is asked for (its phrasings say so)
    ("don't you move", "stop()"),
    ("别再动了！", "stop()"),
    ("停下别走了", "stop()"),
    ("don't go any further", "stop()"),  # "go" asks for no stop
    ("don't forget to feed the dog", "feed_pet('dog')"),
    ("别忘了喂狗", "feed_pet('dog')"),
    ("don't worry, just grab the cup", "pick_up('red cup')"),
    ("don't worry just grab the cup", "pick_up('red cup')"),
    ("把杯子拿起来别摔了", "pick_up('red cup')"),
    ("go to the kitchen and don't touch anything", "navigate_to('kitchen')"),
    ("Put the black phone on the shelf, I don't want it getting stepped on", "place('black phone', 'shelf')"),
    ("I don't need the cup, put it on the shelf", "place('red cup', 'shelf')"),
    ("那个绿瓶子别放这儿，放到架子上去", "place('green bottle', 'shelf')"),  # asked again after it
    ("don't put it here put it on the shelf", "place('red cup', 'shelf')"),
    ("tell mom don't wait up", "send_message('mom', \"don't wait up\")"),  # the message's own words
    ("跟妈妈说别等我吃饭了", "send_message('mom', '别等我吃饭了')"),
    ("why don't you take a photo", "take_photo()"),  # a suggestion
    ("要不要去厨房看看", "navigate_to('kitchen')"),  # a question
    ("特别脏的杯子拿起来", "pick_up('red cup')"),  # 别 inside a word
    ("把别的杯子拿起来", "pick_up('red cup')"),
    ("no, go to the kitchen", "navigate_to('kitchen')"),  # "no" corrects, it does not cancel
    ("not the red one, pick up the blue cup", "pick_up('blue cup')"),
    ("never mind, just pick up the red cup", "pick_up('red cup')"),  # drops what came before
    ("put the cup on the shelf, don't drop it", "place('red cup', 'shelf')"),  # asked for in its own clause
    ("把杯子放桌上，别放地上", "place('red cup', 'table')"),
    ("feed the dog but don't give him too much", "feed_pet('dog')"),  # asked for before the negation
    ("don't get lost, head to the kitchen", "navigate_to('kitchen')"),
    ("能不能去厨房", "navigate_to('kitchen')"),  # a question
    ("stop at the kitchen", "navigate_to('kitchen')"),  # "stop" negates a doing only
    ("you never water the plant, do it now", "water_plant()"),  # a habit told, not an order
]


@pytest.mark.parametrize("text, call, words", NEGATED)
def test_a_negation_that_scopes_the_functions_words_negates_the_request(registry, text, call, words):
    got = parse_plain(call, registry)
    assert negated_request(registry.by_name(got.function), got, text) == words


@pytest.mark.parametrize("text, call", ASKED)
def test_a_negation_elsewhere_leaves_the_request(registry, text, call):
    got = parse_plain(call, registry)
    assert negated_request(registry.by_name(got.function), got, text) is None


def test_no_phrasing_of_the_registry_is_negated(registry):
    """Every phrasing and example, held-out ones too, with its slots filled: asks for its function."""
    checked = 0
    for spec in registry.functions:
        says = [p.say for items in (spec.examples or {}).values() for p in items]
        if spec.phrasings is not None:
            says += [p.say for _, items in spec.phrasings.languages for p in items]
        for say in says:
            text = "".join(
                lit + ("thing" if field else "") for lit, field, *_ in string.Formatter().parse(say)
            )
            assert negated_request(spec, Call(spec.name, spec.token, ()), text) is None, (spec.name, say)
            checked += 1
    assert checked > 500


def test_the_decline_function_is_never_negated(registry):
    spec = registry.decline_function
    assert negated_request(spec, Call(spec.name, spec.token, ()), "don't do anything") is None


def test_the_node_declines_a_negated_request_with_the_reason(registry):
    call = parse_plain("pick_up('red cup')", registry)
    decision = SimpleNamespace(error=None, call=call, confidence=0.99)
    code, reason = decision_outcome(
        decision,
        registry,
        lambda *_a, **_k: None,
        allowlist=None,
        threshold=0.5,
        utterance="don't pick up the red cup",
    )
    assert code is OutcomeCode.NO_ACTION
    assert reason == 'the request says not to: "don\'t pick" (pick_up not published)'
    code, _ = decision_outcome(
        decision,
        registry,
        lambda *_a, **_k: None,
        allowlist=None,
        threshold=0.5,
        utterance="pick up the red cup",
    )
    assert code is OutcomeCode.OK


@pytest.mark.parametrize(
    "text",
    [
        "stop, you're about to drive into the wall",
        "快停下来要撞墙了",
        "stop! you'll fall down the stairs",
        "stop, the dog is right there, you'll run it over",
        "停下，前面是楼梯，要掉下楼梯了",
    ],
)
def test_a_stop_that_names_a_hazard_is_published_and_nothing_else_is(registry, text):
    """The safety screen trips on the hazard a stop request warns of; the stop is published (its
    function halts the robot), any other call on the same words is declined."""
    from octopus_ros.runtime.safety import default_screen

    screen = default_screen()
    assert screen.check(text) is not None
    outcomes = {}
    for plain in ("stop()", "navigate_to('kitchen')"):
        decision = SimpleNamespace(error=None, call=parse_plain(plain, registry), confidence=0.99)
        code, reason = decision_outcome(
            decision,
            registry,
            lambda *_a, **_k: None,
            allowlist=None,
            threshold=0.5,
            utterance=text,
            screen=screen,
        )
        outcomes[plain] = (code, reason)
    assert outcomes["stop()"][0] is OutcomeCode.OK
    assert outcomes["navigate_to('kitchen')"][0] is OutcomeCode.NO_ACTION
    assert outcomes["navigate_to('kitchen')"][1].startswith("unsafe request")


def test_halts_is_a_registry_key_of_stop_only(registry):
    from octopus_ros.functions.registry import RegistryError

    assert [s.name for s in registry.functions if s.halts] == ["stop"]
    assert FunctionRegistry.from_dict(registry.to_dict()).by_name("stop").halts
    assert FunctionRegistry.from_dict(registry.interface_dict()).by_name("stop").halts
    data = registry.to_dict()
    data["functions"][-1]["halts"] = True  # the decline function
    with pytest.raises(RegistryError, match="halts: true is for a function that stops the robot"):
        FunctionRegistry.from_dict(data)


@pytest.mark.parametrize(
    ("text", "plain", "dismissed"),
    [
        ("要是待会儿狗饿了你再喂它，现在先不用", "feed_pet('dog')", "现在先不用"),
        ("take a photo, actually not now", "take_photo()", "actually not now"),
        ("拍张照吧，算了", "take_photo()", "算了"),
        ("go to the kitchen, never mind", "navigate_to('kitchen')", "never mind"),
        ("feed the dog, not yet", "feed_pet('dog')", "not yet"),
        ("feed the dog, thanks", "feed_pet('dog')", None),
        (
            "不用了，帮我拍张照",
            "take_photo()",
            None,
        ),  # the dismissal comes first: the request after it stands
        ("take a photo now", "take_photo()", None),
        ("stop, never mind the cup", "stop()", None),  # a stop is never declined
    ],
)
def test_a_request_put_off_or_called_off_at_its_end(registry, text, plain, dismissed):
    call = parse_plain(plain, registry)
    assert negated_request(registry.by_name(call.function), call, text) == dismissed
