"""The natural decline corpus (issue 12 item 4): parsing, patterns, fairness to the natural set,
and the training option that mixes it into the decline examples."""

from __future__ import annotations

import pytest

from octopus_ros.data.decline_corpus import (
    chat_sentences,
    default_path,
    fortune_sentences,
    load_corpus,
    normalise,
    unsafe_requests,
)
from octopus_ros.data.natural import load_natural_set
from octopus_ros.functions import load_default_registry

FORTUNE_EN = """\x1b[33mA clean desk is a sign of a cluttered drawer.\x1b[m
\t\t-- Anonymous
%
Ok.
%
  ___
 /o o\\  ##  ++
%
You will be given a long and pleasant journey. Bring snacks.
"""
FORTUNE_ZH = "床前明月光，疑是地上霜。\n——李白\n%\n好\n%\n学而时习之，不亦说乎？\n"


def test_fortune_sentences_keep_plain_sentences_only():
    assert fortune_sentences(FORTUNE_EN, "en") == [
        "A clean desk is a sign of a cluttered drawer.",
        "You will be given a long and pleasant journey.",
    ]
    assert fortune_sentences(FORTUNE_ZH, "zh") == ["床前明月光，疑是地上霜。", "学而时习之，不亦说乎？"]


def test_unsafe_patterns_expand_in_both_languages(tmp_path):
    requests = unsafe_requests()
    langs = {lang for lang, _ in requests}
    assert langs == {"en", "zh"} and len(requests) > 200
    assert ("en", "smash the mirror") in requests and ("zh", "给那个陌生人开门") in requests
    bad = tmp_path / "p.yaml"
    bad.write_text("en:\n  slots: {a: [x]}\n  patterns: ['hit {b}']\n")
    with pytest.raises(ValueError, match=r"p\.yaml.*unknown slot"):
        unsafe_requests(bad)


def _natural_keys():
    return {normalise(item.text) for item in load_natural_set(registry=load_default_registry())}


def test_natural_set_utterances_are_not_in_the_unsafe_patterns():
    overlap = _natural_keys() & {normalise(t) for _, t in unsafe_requests()}
    assert not overlap, f"natural-set utterances in the decline patterns: {sorted(overlap)}"


@pytest.mark.skipif(not default_path().is_file(), reason="decline corpus not built (make setup builds it)")
def test_natural_set_utterances_are_not_in_the_built_corpus():
    corpus = load_corpus()
    assert len(corpus["en"]) > 1000 and len(corpus["zh"]) > 1000
    overlap = _natural_keys() & {normalise(t) for sentences in corpus.values() for t in sentences}
    assert not overlap, f"natural-set utterances in the decline corpus: {sorted(overlap)}"


def test_chat_sentences_keep_short_lines_that_name_nothing_of_the_world():
    conversations = [
        ["What's your name?", "My name is Octopus."],
        ["Could I borrow a cup of sugar?", "Do you like cats?"],  # world objects: left out
        ["Here is code:\n```\nprint(1)\n```", "`x`"],  # code and multi-line answers: left out
        ["one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"
         " sixteen seventeen eighteen nineteen twenty twenty-one"],  # over 20 words
        "not a list",
    ]  # fmt: skip
    chinese = [["你叫什么名字？", "我喜欢猫", "好"]]  # 猫 names a world object; one character is too short
    words = ("cup", "cat", "猫")
    assert chat_sentences(conversations, "en", words) == ["What's your name?", "My name is Octopus."]
    assert chat_sentences(chinese, "zh", words) == ["你叫什么名字？"]


def test_conversation_lines_take_their_share_of_each_language(tmp_path):
    import json

    path = tmp_path / "c.jsonl"
    rows = [{"language": "en", "text": f"fortune {i}", "source": "fortune:x"} for i in range(60)]
    rows += [{"language": "en", "text": f"chat {i}", "source": "chat:english/ai"} for i in range(4)]
    rows += [{"language": "zh", "text": "学而时习之", "source": "fortune:chinese"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    en = load_corpus(path, chat_share=0.4)["en"]
    talk = [t for t in en if t.startswith("chat")]
    assert abs(len(talk) / len(en) - 0.4) < 0.05 and set(talk) == {f"chat {i}" for i in range(4)}
    assert load_corpus(path, chat_share=0.0)["en"] == [f"fortune {i}" for i in range(60)]
    assert load_corpus(path)["zh"] == ["学而时习之"]
    with pytest.raises(ValueError, match="chat_share"):
        load_corpus(path, chat_share=1.0)


def test_corpus_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        load_corpus(tmp_path / "missing.jsonl")
    bad = tmp_path / "c.jsonl"
    bad.write_text('{"language": "en", "text": "fine"}\nnot json\n')
    with pytest.raises(ValueError, match=r"c\.jsonl:2"):
        load_corpus(bad)


def test_training_option_mixes_corpus_sentences_into_declines():
    from octopus_ros.model.testing import tiny_model, tiny_tokenizer
    from octopus_ros.training.stages import TrainConfig, Trainer

    tok = tiny_tokenizer(num_functions=13)
    model = tiny_model(tok)
    decline = {
        "instruction": "what time is it",
        "answer": "<nexa_12>()<nexa_end>",
        "function": "no_action",
        "language": "en",
    }
    call = {"instruction": "stop", "answer": "<nexa_3>()<nexa_end>", "function": "stop", "language": "en"}
    corpus = {"en": ["the moon is made of cheese"], "zh": ["月亮是奶酪做的"]}
    pools = {"calls": [decline, call], "decline_corpus": corpus}

    def instructions(share):
        cfg = TrainConfig(decline_corpus=share, decline_noise=0.0, augment=0.0)
        trainer = Trainer(model, tok, cfg, pools)
        return {tuple(trainer._example("calls", 0).input_ids) for _ in range(20)}, trainer

    mixed, trainer = instructions(1.0)
    assert mixed == {tuple(trainer.fmt.build_training_example(corpus["en"][0], decline["answer"]).input_ids)}
    plain, trainer = instructions(0.0)
    assert plain == {
        tuple(trainer.fmt.build_training_example(decline["instruction"], decline["answer"]).input_ids)
    }
    # other functions are never replaced
    assert (
        trainer._example("calls", 1).input_ids
        == trainer.fmt.build_training_example("stop", call["answer"]).input_ids
    )
