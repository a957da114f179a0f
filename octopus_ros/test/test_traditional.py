"""Traditional Chinese is read as Simplified (functions/language.to_simplified, fold_input): the
model, its templates and its vocabularies know Simplified, and speech recognisers write Mandarin in
either script. One character for one, Simplified text unchanged."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from octopus_ros.functions import language
from octopus_ros.functions.language import fold_input, to_simplified
from octopus_ros.functions.mentions import mention_spans, says
from octopus_ros.lean.prompt import as_written, model_utterance


@pytest.mark.parametrize(
    ("traditional", "simplified"),
    [
        ("把客廳的燈打開", "把客厅的灯打开"),
        ("幫我拿一下那個紅色的杯子", "帮我拿一下那个红色的杯子"),
        ("給媽媽發簡訊說我到了", "给妈妈发简讯说我到了"),
        ("裡面有什麼", "里面有什么"),  # a Taiwan variant form (裡) first becomes OpenCC's standard one
        ("跟Bob說晚安", "跟Bob说晚安"),
        ("pick up the red cup", "pick up the red cup"),
    ],
)
def test_traditional_characters_read_as_simplified(traditional, simplified):
    assert to_simplified(traditional) == simplified
    assert len(to_simplified(traditional)) == len(traditional)


def test_simplified_text_is_unchanged():
    """Every Chinese phrasing of the registry, of the four written sets and of the training
    vocabulary reads the same: folding never changes what the model was trained or measured on."""
    import json
    import re

    from octopus_ros.data.natural import (
        ASR_SET_PATH,
        CHATTY_SET_PATH,
        CHECK_SET_PATH,
        FRESH_SET_PATH,
        HOLIDAY_SET_PATH,
        MESSAGES_SET_PATH,
        NATURAL_SET_PATH,
        RAINY_SET_PATH,
        SITUATIONS_SET_PATH,
        THIRD_SET_PATH,
        VOICES_SET_PATH,
        WEEK_SET_PATH,
        WORKDAY_SET_PATH,
        load_natural_set,
    )
    from octopus_ros.paths import config_path, default_model_dir

    texts = [
        it.text
        for path in (
            NATURAL_SET_PATH,
            CHECK_SET_PATH,
            THIRD_SET_PATH,
            MESSAGES_SET_PATH,
            CHATTY_SET_PATH,
            ASR_SET_PATH,
            FRESH_SET_PATH,
            VOICES_SET_PATH,
            SITUATIONS_SET_PATH,
            WEEK_SET_PATH,
            HOLIDAY_SET_PATH,
            WORKDAY_SET_PATH,
            RAINY_SET_PATH,
        )
        for it in load_natural_set(path)
        if it.language == "zh"
    ]
    texts += re.findall(r"[^\x00-\x7f]+", config_path("functions.yaml").read_text(encoding="utf-8"))
    vocab = json.loads((default_model_dir() / "training_vocab.json").read_text(encoding="utf-8"))[
        "vocabulary"
    ]
    texts += vocab
    assert len(texts) > 1000
    changed = [t for t in texts if to_simplified(t) != t]
    assert not changed, changed[:10]


def test_the_flat_set_holds_traditional_chinese_that_folds():
    """Stop 51's flat set is left out above: a roommate from Taiwan writes Traditional characters
    (幫我把…拿起來), and the runtime reads them folded (functions/language.fold_input)."""
    from octopus_ros.data.natural import FLAT_SET_PATH, load_natural_set

    zh = [it.text for it in load_natural_set(FLAT_SET_PATH) if it.language == "zh"]
    traditional = [t for t in zh if to_simplified(t) != t]
    assert len(traditional) >= 15 and len(zh) - len(traditional) >= 90
    assert all(to_simplified(to_simplified(t)) == to_simplified(t) for t in traditional)


def test_the_model_the_screen_and_the_mentions_read_folded_text():
    assert model_utterance("把客廳的燈打開。") == "把客厅的灯打开"
    assert model_utterance("ＰＩＣＫ ＵＰ the 紅色 cup") == "PICK UP the 红色 cup"
    assert says("給媽媽發簡訊說我到了", ("妈妈",))
    text = "給媽媽發簡訊"
    assert [text[a:b] for a, b in mention_spans(text, ("妈妈",))] == ["媽媽"]  # the utterance's own range
    assert fold_input("Ｂｏｂ說") == "Bob说"


@pytest.mark.parametrize(
    ("utterance", "span", "written"),
    [
        ("跟媽媽說會議取消了。", "会议取消了", "會議取消了"),
        ("跟 Bob 說 晚飯 好了", "晚饭好了", "晚飯 好了"),  # the spaces the model's text leaves out come back
        ("TEXT BOB  THAT I'M LATE!", "i'm late", "I'M LATE"),
        ("tell bob that\tthe   meeting moved", "the meeting moved", "the meeting moved"),  # one space a run
        ("給Ｂｏｂ發消息：ＯＫ", "OK", "ＯＫ"),
        ("TELL BOB THAT HOME IS FAR, I'm at home", "at home", "at home"),  # whole words, not "AT HOME"
    ],
)
def test_a_copied_span_is_given_back_as_written(utterance, span, written):
    assert span in model_utterance(utterance)  # what the copier copies from
    assert as_written(span, utterance) == written


def test_a_span_not_in_the_utterance_is_left_alone():
    assert as_written("call me", "跟媽媽說會議取消了") == "call me"
    assert as_written("", "anything") == ""
    # the publish check reads a value as the model reads the utterance: a Traditional copy is a
    # copy, an invented text is not
    from octopus_ros.functions import FunctionRegistry
    from octopus_ros.functions.calls import ArgValue, Call
    from octopus_ros.paths import config_path
    from octopus_ros.runtime.outcomes import invented_args

    spec = FunctionRegistry.from_yaml(config_path("functions.yaml")).by_name("send_message")
    text = "跟媽媽說會議取消了"

    def call(body):
        return Call(
            "send_message", 10, (ArgValue("contact", "enum", "mom"), ArgValue("text", "string", body))
        )

    assert invented_args(spec, call("會議取消了"), text) == []
    assert invented_args(spec, call("会议取消了"), text) == []
    assert invented_args(spec, call("会议改期了"), text) == [("text", "会议改期了")]


def test_the_safety_screen_reads_traditional_too():
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.runtime.safety import screen_from_setting

    screen = screen_from_setting(EngineConfig().safety_screen)
    simplified = "把厨房点着火"
    hit = screen.check(simplified)
    assert hit is not None  # the rule this test relies on
    assert screen.check("把廚房點著火") is not None


def test_unreadable_tables_leave_text_as_written_with_a_warning(monkeypatch, caplog):
    class Missing:
        def __truediv__(self, other):
            return self

        def read_text(self, **kwargs):
            raise OSError("no such file")

    language._traditional_table.cache_clear()
    monkeypatch.setattr(language.resources, "files", lambda package: Missing())
    try:
        with caplog.at_level(logging.WARNING, logger=language.__name__):
            assert to_simplified("把客廳的燈打開") == "把客廳的燈打開"
        assert "opencc-python-reimplemented" in caplog.text
    finally:
        monkeypatch.undo()
        language._traditional_table.cache_clear()
    assert to_simplified("客廳") == "客厅"


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=40), cut=st.data())
def test_as_written_gives_back_a_piece_of_the_utterance(text, cut):
    """A space-delimited piece of what the model reads comes back as a piece of what was written
    (whitespace runs as one space) that reads as that piece."""
    read = model_utterance(text)
    words = read.split(" ")
    if not read:
        return
    i = cut.draw(st.integers(0, len(words) - 1))
    j = cut.draw(st.integers(i + 1, len(words)))
    span = " ".join(words[i:j])
    if not span:
        return
    back = as_written(span, text)
    assert " ".join(back.split()) == back
    # found, and the same characters as the model read them (spaces aside)
    assert fold_input(back).lower().replace(" ", "") == span.lower().replace(" ", "")
    assert back in " ".join(text.split()) or back.replace(" ", "") in "".join(text.split())
