"""Instruction templates, fillers, call text and captions/VQA wording."""

from __future__ import annotations

import itertools
import re

import numpy as np
import pytest

from octopus_ros.data import FUNCTIONS, LANGUAGES, TEMPLATES, format_call, templates_for
from octopus_ros.data.captions import vqa_questions
from octopus_ros.data.instructions import (
    MESSAGES,
    PREFIXES,
    SUFFIXES,
    call_text,
    en_number,
    gibberish,
    normalise,
    speed_phrase,
    zh_number,
)

CJK = re.compile(r"[\u4e00-\u9fff]")


def test_format_call_examples():
    assert format_call(1, ("blue book", "shelf")) == "<nexa_1>('blue book', 'shelf')<nexa_end>"
    assert format_call(3) == "<nexa_3>()<nexa_end>"
    assert format_call(0, ["red cup"]) == "<nexa_0>('red cup')<nexa_end>"
    assert format_call(11, (0.5,)) == "<nexa_11>(0.5)<nexa_end>"
    assert format_call(11, (1.0,)) == "<nexa_11>(1.0)<nexa_end>"
    assert format_call(11, (0.25,)) == "<nexa_11>(0.25)<nexa_end>"
    assert format_call(11, (7 / 20,)) == "<nexa_11>(0.35)<nexa_end>"
    assert format_call(4, (True, False, 3)) == "<nexa_4>(True, False, 3)<nexa_end>"
    assert format_call(10, ("mom", "I'll be late")) == "<nexa_10>('mom', 'I\\'ll be late')<nexa_end>"
    assert format_call(10, ("a\\b",)) == "<nexa_10>('a\\\\b')<nexa_end>"


@pytest.mark.parametrize("bad", [-1, 1.0, "1", True])
def test_format_call_rejects_bad_tokens(bad):
    with pytest.raises(ValueError):
        format_call(bad)


def test_format_call_rejects_bad_values():
    with pytest.raises(ValueError):
        format_call(0, (float("nan"),))
    with pytest.raises(ValueError):
        format_call(0, (None,))
    with pytest.raises(ValueError, match="takes 2 args"):
        call_text("place", ("cup",))


def test_format_call_agrees_with_the_registry():
    from octopus_ros.functions import format_value, quote_string

    for value in ("red cup", "it's", "a\\b", "晚饭做好了"):
        assert format_call(0, (value,)) == f"<nexa_0>({quote_string(value)})<nexa_end>"
    for k in range(21):
        assert format_call(11, (k / 20,)) == f"<nexa_11>({format_value('float', k / 20)})<nexa_end>"


def test_at_least_twelve_templates_per_function_and_language():
    for function in FUNCTIONS:
        for lang in LANGUAGES:
            assert len(templates_for(function, lang)) >= 12, (function, lang)


def test_template_ids_stable_and_unique():
    ids = [t.id for t in TEMPLATES]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z_]+\.(en|zh)\.\d\d", i) for i in ids)


def test_image_functions_have_named_and_deictic_phrasings():
    for function in ("pick_up", "place", "recycle", "find_item", "feed_pet"):
        for lang in LANGUAGES:
            modes = {t.mode for t in templates_for(function, lang)}
            assert modes == {"named", "deictic"}, (function, lang, modes)


def test_language_of_templates():
    for t in TEMPLATES:
        if t.language == "zh":
            assert CJK.search(t.text) or t.slots == {"gib"}, t.id
        else:
            assert not CJK.search(t.text), t.id
            assert t.text.isascii(), t.id


def _skeletons(t):
    """Every rendering of the template with each filler combination, slots kept as placeholders."""
    prefixes = ("", *PREFIXES[t.language])
    suffixes = ("", *SUFFIXES[t.language])
    return {normalise(p + t.text + s) for p, s in itertools.product(prefixes, suffixes)}


def test_no_two_templates_collide_even_with_fillers():
    """A phrasing plus fillers never equals another phrasing plus fillers (no label conflicts
    across functions, no train/held-out leaks within one)."""
    owner: dict[tuple[str, str], str] = {}
    for t in TEMPLATES:
        for sk in _skeletons(t):
            other = owner.setdefault((t.language, sk), t.id)
            assert other == t.id, f"{t.id} and {other} both render as {sk!r}"


def test_vqa_and_caption_prompts_are_not_function_phrasings():
    from octopus_ros.data.captions import CAPTION_PROMPTS

    skeletons = set()
    for t in TEMPLATES:
        skeletons |= _skeletons(t)
    for q in [*vqa_questions(), *(p for ps in CAPTION_PROMPTS.values() for p in ps)]:
        assert normalise(q) not in skeletons, q


def test_numbers_and_speeds():
    assert en_number(0) == "zero"
    assert en_number(35) == "thirty-five"
    assert en_number(100) == "one hundred"
    assert zh_number(10) == "十"
    assert zh_number(35) == "三十五"
    assert zh_number(50) == "五十"
    assert zh_number(100) == "一百"
    with pytest.raises(ValueError):
        zh_number(101)
    rng = np.random.default_rng(0)
    forms = {speed_phrase(0.5, "zh", rng) for _ in range(60)}
    assert forms == {"百分之五十", "50%", "0.5", "五成"}
    forms = {speed_phrase(0.35, "en", rng) for _ in range(60)}
    assert forms == {"35%", "35 percent", "0.35", "thirty-five percent"}


def test_messages_fit_the_registry():
    for lang, msgs in MESSAGES.items():
        for m in msgs:
            assert 0 < len(m) <= 48 and "<" not in m and ">" not in m, m
            assert bool(CJK.search(m)) == (lang == "zh")


def test_gibberish():
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert gibberish("en", rng).replace(" ", "").isalpha()
        assert CJK.search(gibberish("zh", rng))
