"""A reason or an aside said beside a request (stop 48): the text novelty is also scored on the
clauses that carry the call (functions/asking.carrying_clauses, lean/decision.texts_to_understand),
and fine-tuning data from the registry can say its requests with a remark
(data/registry_data.aside_lines, with_aside, generate's ``asides``)."""

from __future__ import annotations

import pytest

from octopus_ros.data import registry_data
from octopus_ros.functions import FunctionRegistry, load_default_registry, parse_call
from octopus_ros.functions.asking import carrying_clauses
from octopus_ros.lean.decision import texts_to_understand
from octopus_ros.model.novelty import TextNovelty
from octopus_ros.model.runtime import Decision
from octopus_ros.paths import config_path


@pytest.fixture(scope="module")
def registry():
    return load_default_registry()


def _call(registry, text):
    return parse_call(text, registry)


@pytest.mark.parametrize(
    ("utterance", "call", "carried"),
    [
        ("Water the plant please, we forgot all weekend with the guests here", "<nexa_6>()<nexa_end>",
         "Water the plant please"),
        ("叶子都蔫了，你给它浇点水呗", "<nexa_6>()<nexa_end>", "你给它浇点水呗"),
        ("It's pretty dark in here, water the plant anyway", "<nexa_6>()<nexa_end>", "water the plant anyway"),
        ("the baby is asleep, keep your speed at forty percent", "<nexa_11>(0.4)<nexa_end>",
         "keep your speed at forty percent"),
    ],
)  # fmt: skip
def test_the_clauses_that_carry_the_call(registry, utterance, call, carried):
    assert (
        carrying_clauses(registry.by_name(_call(registry, call).function), _call(registry, call), utterance)
        == carried
    )


@pytest.mark.parametrize(
    ("utterance", "call"),
    [
        ("water the plant", "<nexa_6>()<nexa_end>"),  # one clause
        ("water the plant, the plant is dry", "<nexa_6>()<nexa_end>"),  # every clause carries it
        ("喂一下狗，早饭以后就没人喂过它", "<nexa_7>('dog')<nexa_end>"),  # 喂 asks for feed_pet in both
        ("we forgot all weekend, with the guests", "<nexa_6>()<nexa_end>"),  # none does
    ],
)
def test_no_clause_is_left_out_when_all_or_none_carry_it(registry, utterance, call):
    c = _call(registry, call)
    assert carrying_clauses(registry.by_name(c.function), c, utterance) is None


def test_the_text_novelty_is_the_least_of_the_whole_and_the_carrying_clauses(registry):
    vocab = TextNovelty.from_texts(["water the plant please", "哎 把 手机 拿 起来"])
    water = Decision(_call(registry, "<nexa_6>()<nexa_end>"), None, 0.9, "")
    texts = texts_to_understand(registry, "Water the plant please, we forgot all weekend", water)
    assert texts == ("Water the plant please, we forgot all weekend", "Water the plant please")
    assert min(vocab.score(t) for t in texts) == 0.0 < vocab.score(texts[0])
    # a message's clauses are where the message ends: never left out
    message = Decision(_call(registry, "<nexa_10>('bob', 'we are out of milk')<nexa_end>"), None, 0.9, "")
    assert len(texts_to_understand(registry, "hold on zorblax, text Bob we are out of milk", message)) == 1
    # a declined request is scored whole
    decline = Decision(_call(registry, "<nexa_12>()<nexa_end>"), None, 0.9, "")
    assert texts_to_understand(registry, "tell me a joke, water the plant", decline) == (
        "tell me a joke, water the plant",
    )


def test_the_decision_takes_the_least_novelty(registry):
    """lean/decision._finish: the text novelty is the least of the whole request's and the
    carrying clauses' (an aside's new words do not count; leaving a known one out never raises it)."""
    from types import SimpleNamespace

    from octopus_ros.lean.decision import finish_decision

    vocab = TextNovelty.from_texts(["hey water the plant please"])
    model = SimpleNamespace(
        registry=registry, novelty=SimpleNamespace(text_score=vocab.score), grounding=None
    )
    encoding = SimpleNamespace(novelty=0.0, grounding=None)

    def novelty(utterance):
        decision = Decision(_call(registry, "<nexa_6>()<nexa_end>"), None, 0.9, "")
        return finish_decision(model, decision, encoding, utterance).text_novelty

    assert novelty("water the plant please, we forgot zorblax weekend") == 0.0  # the carrying clause
    # whole: 1 of 3 words new; the carrying clause alone: 1 of 2
    whole = vocab.score("hey, water zorblax")
    assert whole < vocab.score("water zorblax") and novelty("hey, water zorblax") == pytest.approx(whole)


def test_aside_lines_keep_plain_remarks_only():
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    corpus = {
        "en": [
            "I like to chat with people.",  # kept
            "Some people feel happy, others feel sad.",  # kept
            "What is your name?",  # a question
            "you are dull",  # spoken to the listener
            "The kitchen is warm today.",  # names a place of the registry
            "Don't do that again.",  # calls something off
            "I was born in 1990.",  # a digit
            "Hello",  # too short
        ],
        "zh": ["我喜欢和人聊天。", "你是个酒鬼", "厨房里很暖和。", "别这样做了。", "今天的天气真好啊。"],
    }
    lines = registry_data.aside_lines(registry, corpus)
    assert lines == {
        "en": ("I like to chat with people.", "Some people feel happy, others feel sad."),
        "zh": ("我喜欢和人聊天。", "今天的天气真好啊。"),
    }
    assert registry_data.with_aside("water the plant", "I like to chat with people.", "en", False) == (
        "water the plant, I like to chat with people."
    )
    assert (
        registry_data.with_aside("给花浇水。", "今天的天气真好啊。", "zh", True)
        == "今天的天气真好啊，给花浇水。"
    )


def test_generate_says_a_share_of_the_requests_with_a_remark(tmp_path):
    from octopus_ros.training.add_function_demo import compose_registry

    registry, _ = compose_registry(
        config_path("functions.yaml"), config_path("examples/set_light.yaml"), tmp_path / "functions.yaml"
    )
    refs = registry_data.phrasings(registry)
    plain = registry_data.generate(registry, refs, 200, seed=3)
    assert (
        registry_data.generate(registry, refs, 200, seed=3, asides={"en": ("I like tea",)}, aside_share=0.0)
        == plain
    )
    asides = {"en": ("I like tea",), "zh": ("我喜欢喝茶",)}
    said = registry_data.generate(registry, refs, 200, seed=3, asides=asides, aside_share=0.5)
    with_remark = [e for e in said if "I like tea" in e.instruction or "我喜欢喝茶" in e.instruction]
    assert 60 <= len(with_remark) <= 140  # about half
    assert all(not e.alone for e in plain) and all(not e.alone for e in said if e not in with_remark)
    spec = registry.by_name("set_light")
    for e in with_remark:
        remark = asides[e.language][0]
        # the request alone, with the remark before or after it; the answer is the bare request's
        assert e.instruction in {
            registry_data.with_aside(e.alone, remark, e.language, b) for b in (True, False)
        }
        room = parse_call(e.answer, registry).args[0].value
        assert any(f.lower() in e.alone.lower() for f in spec.args[0].spoken_forms(room)), e
        assert all(remark in twin for twin, _ in e.twins)
    # a remark that says on or off (a narrow bool's words) could change the answer: left out
    kept = registry_data.aside_lines(registry, {"en": ["I left it on all night", "I like tea very much"]})
    assert kept == {"en": ("I like tea very much",)}
    with pytest.raises(ValueError, match="aside_share"):
        registry_data.generate(registry, refs, 10, asides=asides, aside_share=1.5)
