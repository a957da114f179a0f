"""Capitals and full-width letters reach the bundled model as ordinary text (lean/prompt.model_utterance).

A speech recogniser that writes in capitals (wav2vec2's CTC models: "PICK UP THE RED CUP") made
the bundled model decline nearly everything it was given: 1 of the natural set's 322 English
requests was published, against 144 as written. Read in lower case, the same requests are decided
as written ones are.
"""

from __future__ import annotations

import pytest

from octopus_ros.data import generate
from octopus_ros.model.runtime import Octopus
from octopus_ros.paths import default_model_dir


@pytest.fixture(scope="module")
def octopus():
    return Octopus.load(default_model_dir())


def _full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def test_capitals_and_full_width_letters_decide_as_the_words_do(octopus):
    examples = [
        ex
        for ex in generate("iid", 80, 2718)
        if ex.language == "en" and ex.function not in ("send_message", "no_action")
    ][:12]
    assert len(examples) >= 8
    for ex in examples:
        plain = octopus.decide(ex.instruction.lower(), ex.image)
        for variant in (ex.instruction.upper(), _full_width(ex.instruction.lower())):
            got = octopus.decide(variant, ex.image)
            assert got.raw_text == plain.raw_text, (variant, got.raw_text, plain.raw_text)
            assert got.confidence == pytest.approx(plain.confidence, abs=1e-5)


def test_a_message_in_capitals_is_copied_in_lower_case(octopus):
    image = generate("iid", 1, 1)[0].image
    d = octopus.decide("TEXT BOB THAT THE MEETING IS CANCELLED", image)
    assert d.raw_text == "<nexa_10>('bob', 'the meeting is cancelled')<nexa_end>"
