"""functions/language.py: the one definition of a Chinese character and of an utterance's language."""

import pytest

from octopus_ros.functions.language import count_cjk, detect_language, has_cjk, is_cjk


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("pick up the red cup", "en"),
        ("把红色的杯子拿起来", "zh"),
        ("跟Bob说晚安", "zh"),  # one ideograph is enough
        ("the 红色 cup", "zh"),
        ("", "en"),
        ("12:30!", "en"),
        ("\u3400", "zh"),  # Extension A
        ("\ufa11", "zh"),  # a compatibility ideograph NFC keeps
        ("、。「」", "en"),  # CJK punctuation is not an ideograph
        ("ひらがな", "en"),  # kana: a language the model does not speak
    ],
)
def test_detect_language(text, language):
    assert detect_language(text) == language
    assert has_cjk(text) == (language == "zh")


def test_is_cjk_is_one_character():
    assert is_cjk("红")
    assert not is_cjk("红色")
    assert not is_cjk("a")
    assert not is_cjk("")
    assert count_cjk("跟Bob说晚安") == 4


def test_every_room_uses_it():
    """The engine and the novelty units use it (no twin definitions)."""
    from octopus_ros.functions.language import text_units
    from octopus_ros.runtime import engine

    assert engine.detect_language is detect_language
    assert text_units("跟Bob说\u3400") == ["跟", "bob", "说", "\u3400"]
