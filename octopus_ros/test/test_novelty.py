"""Novelty scores (issue 12 item 4): text and image novelty, and the decline policy on them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from test_runtime_engine import FakeCall, FakeDecision, Registry, ScriptedModel

from octopus_ros.model.checkpoint import CheckpointError
from octopus_ros.model.novelty import (
    IMAGE_PROFILE_FILE,
    TEXT_VOCAB_FILE,
    ImageNovelty,
    NoveltyProfile,
    TextNovelty,
    text_units,
    word_forms,
)
from octopus_ros.model.runtime import Octopus
from octopus_ros.model.testing import make_tiny_checkpoint
from octopus_ros.paths import config_path
from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome


def test_the_text_profile_holds_the_requests_the_model_acts_on_without_their_copied_text():
    from octopus_ros.functions import load_default_registry
    from octopus_ros.training.novelty_profile import action_texts

    registry = load_default_registry()
    records = [
        {
            "instruction": "pick up the red cup",
            "answer": "<nexa_0>('red cup')<nexa_end>",
            "function": "pick_up",
        },
        # an absent object's request, answered with the decline: its words are a request's words
        {"instruction": "grab the blue bowl", "answer": "<nexa_12>()<nexa_end>", "function": "pick_up"},
        {
            "instruction": "text bob: the eagle has landed",
            "answer": "<nexa_10>('bob', 'the eagle has landed')<nexa_end>",
            "function": "send_message",
        },
        {
            "instruction": "what's the weather like",
            "answer": "<nexa_12>()<nexa_end>",
            "function": "no_action",
        },
    ]
    vocab = TextNovelty.from_texts(action_texts(records, registry)).vocabulary
    assert {"pick", "red", "cup", "grab", "blue", "bowl", "text", "bob"} <= vocab
    assert not vocab & {"eagle", "landed", "weather", "like"}
    answer = '{"function":"send_message","arguments":{"contact":"mom","text":"hi there"}}'
    json_records = [{"instruction": "text mom: hi there", "answer": answer, "function": "send_message"}]
    assert action_texts(json_records, registry, "json") == ["text mom:  "]


def test_text_units_are_words_and_chinese_characters():
    assert text_units("Pick up the RED cup, don't drop it!") == [
        "pick",
        "up",
        "the",
        "red",
        "cup",
        "don't",
        "drop",
        "it",
    ]
    assert text_units("把红色杯子拿起来") == list("把红色杯子拿起来")
    assert text_units("给Bob发消息 hello") == ["给", "bob", "发", "消", "息", "hello"]


def test_text_novelty_is_the_unseen_share():
    t = TextNovelty.from_texts(["pick up the red cup", "把红色的杯子拿起来"])
    assert t.score("pick up the cup") == 0.0
    assert t.score("pick up the meeting notes") == pytest.approx(2 / 5)
    assert t.unseen("pick up the meeting notes") == ["meeting", "notes"]
    assert t.score("把杯子拿起来") == 0.0
    assert t.score("天气怎么样") == 1.0
    assert t.score("?!") == 1.0  # nothing recognisable at all


def test_an_inflection_of_a_seen_word_is_seen():
    t = TextNovelty.from_texts(["feed the dog", "fix the light", "carry the box", "stop"])
    # plural, possessive, past, progressive, clitics: forms of words the model saw
    for text in ("feed the dogs", "the dog's bowl", "fixed it", "fixing the lights", "it's fixed"):
        assert t.unseen(text) == [u for u in text_units(text) if u in ("bowl", "it", "it's")], text
    assert t.score("carried the boxes") == 0.0
    assert t.score("stopped") == 0.0
    assert t.score("the dogs are fed") == pytest.approx(2 / 4)  # "are", "fed": no ending gives them
    # the other direction: the vocabulary's inflection covers the plain word
    assert TextNovelty.from_texts(["the boxes stopped"]).score("box stop") == 0.0
    # Chinese characters and digits are their own only form
    assert word_forms("灯") == {"灯"} and word_forms("5") == {"5"}
    assert {"do"} <= word_forms("don't") and {"can"} <= word_forms("can't") and {"i"} <= word_forms("i'll")
    # short words keep their endings: "bus", "bed", "was" are not forms of "bu", "b", "wa"
    assert word_forms("bus") == {"bus"} and word_forms("bed") == {"bed"} and word_forms("was") == {"was"}


def test_image_novelty_separates_shifted_features_and_round_trips(tmp_path):
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(16, 16, generator=g)
    train = torch.randn(2000, 16, generator=g) @ basis
    profile = ImageNovelty.fit(train)
    inside = profile.distances(torch.randn(500, 16, generator=g) @ basis) / profile.scale
    outside = profile.distances(torch.randn(500, 16, generator=g) @ basis + 12.0 * basis[0]) / profile.scale
    assert float(torch.quantile(inside, 0.5)) < 1.0
    assert float((outside > 1.5).float().mean()) > 0.95
    # the score of one encoding is the distance of its pooled tokens
    tokens = torch.stack([train[0]] * 6)[None]  # (1, K=6, D)
    assert profile.score(tokens) == pytest.approx(
        float(profile.distances(train[:1])[0]) / profile.scale, rel=1e-5
    )
    profile.save(tmp_path / IMAGE_PROFILE_FILE)
    back = ImageNovelty.load(tmp_path / IMAGE_PROFILE_FILE)
    assert torch.equal(back.mean, profile.mean) and back.scale == profile.scale


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return make_tiny_checkpoint(tmp_path_factory.mktemp("novelty") / "m", config_path("functions.yaml"))


def test_octopus_reports_the_checkpoint_novelty(checkpoint, tmp_path):
    frame = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    d = Octopus.load(checkpoint).decide("pick up the red cup", frame)
    assert math.isnan(d.text_novelty) and math.isnan(d.image_novelty)  # no profiles: unknown

    TextNovelty.from_texts(["pick up the red cup"]).save(checkpoint / TEXT_VOCAB_FILE)
    octopus = Octopus.load(checkpoint)
    hidden = octopus.model.lm.get_input_embeddings().embedding_dim
    feats = torch.randn(200, hidden, generator=torch.Generator().manual_seed(1))
    ImageNovelty.fit(feats).save(checkpoint / IMAGE_PROFILE_FILE)
    octopus = Octopus.load(checkpoint)
    d = octopus.decide("pick up the blue ball", frame)
    assert d.text_novelty == pytest.approx(2 / 5)
    enc = octopus.encode(frame)
    assert d.image_novelty == pytest.approx(octopus.novelty.image_score(enc.embeds)) and d.image_novelty > 0

    ImageNovelty.fit(torch.randn(50, hidden + 1)).save(checkpoint / IMAGE_PROFILE_FILE)
    with pytest.raises(CheckpointError, match=IMAGE_PROFILE_FILE):
        Octopus.load(checkpoint)
    (checkpoint / IMAGE_PROFILE_FILE).unlink()
    (checkpoint / TEXT_VOCAB_FILE).write_text('{"vocabulary": 3}')
    with pytest.raises(CheckpointError, match=TEXT_VOCAB_FILE):
        NoveltyProfile.load(checkpoint)
    (checkpoint / TEXT_VOCAB_FILE).unlink()


@dataclass
class Decision(FakeDecision):
    text_novelty: float = math.nan
    image_novelty: float = math.nan
    request_novelty: float = math.nan


def outcome(decision, **kw):
    return decision_outcome(
        decision, Registry(), lambda call, allowlist=None: None, allowlist=None, threshold=0.5, **kw
    )


def test_decision_outcome_declines_novel_requests():
    call = FakeCall("pick_up", 0)
    novel_text = Decision(call, None, 0.99, text_novelty=0.6, image_novelty=0.5)
    code, reason = outcome(novel_text, max_text_novelty=0.5)
    assert code == OutcomeCode.NO_ACTION and reason.startswith("not understood:") and "60%" in reason
    assert outcome(novel_text, max_text_novelty=0.7)[0] == OutcomeCode.OK
    assert outcome(novel_text)[0] == OutcomeCode.OK  # no limit set
    novel_image = Decision(call, None, 0.99, text_novelty=0.0, image_novelty=4.0)
    code, reason = outcome(novel_image, max_text_novelty=0.5, max_image_novelty=2.0)
    assert code == OutcomeCode.NO_ACTION and reason.startswith("image unlike training:")
    unknown = Decision(call, None, 0.99)  # a model without profiles: NaN never exceeds a limit
    assert outcome(unknown, max_text_novelty=0.1, max_image_novelty=0.1)[0] == OutcomeCode.OK
    # the model's own decline keeps its reason
    decline = Decision(FakeCall("no_action", 12), None, 0.9, text_novelty=1.0)
    assert "the model declined" in outcome(decline, max_text_novelty=0.5)[1]


def test_engine_applies_the_novelty_limits_and_reports_the_scores(harness):
    decisions = [
        Decision(
            FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>", text_novelty=0.8, image_novelty=0.9
        ),
        Decision(
            FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>", text_novelty=0.1, image_novelty=7.0
        ),
        Decision(
            FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>", text_novelty=0.1, image_novelty=0.9
        ),
    ]
    h = harness(
        model=ScriptedModel(decisions),
        prefetch_rate=0,
        rate_limit=0,
        max_text_novelty=0.5,
        max_image_novelty=3.0,
    )
    h.frame()
    for _ in decisions:
        h.say("stop now")
    results = h.wait(3)
    assert [r.code for r in results] == [OutcomeCode.NO_ACTION, OutcomeCode.NO_ACTION, OutcomeCode.OK]
    assert results[0].reason.startswith("not understood") and results[1].reason.startswith("image unlike")
    assert (results[1].text_novelty, results[1].image_novelty) == (0.1, 7.0)
    counts = h.engine.snapshot()["counts"]
    assert counts["declined_not_understood"] == 1 and counts["declined_image_unlike_training"] == 1


def test_a_copied_message_body_does_not_count_as_not_understood():
    """The words a call copies into a source: utterance argument are meant to be new."""
    from octopus_ros.functions import load_default_registry, parse_call
    from octopus_ros.model.runtime import Decision

    octopus = Octopus.__new__(Octopus)  # only the registry is needed
    octopus.registry = load_default_registry()
    utterance = "text bob that the zorblax quantum meeting is cancelled"
    call = parse_call(
        "<nexa_10>('bob', 'the zorblax quantum meeting is cancelled')<nexa_end>", octopus.registry
    )
    words = octopus._words_to_understand(utterance, Decision(call, None, 0.9, ""))
    assert "zorblax" not in words and words.split() == ["text", "bob", "that"]
    vocab = TextNovelty.from_texts(["text bob that hello"])
    assert vocab.score(words) == 0.0 and vocab.score(utterance) > 0.5
    pick = parse_call("<nexa_0>('red cup')<nexa_end>", octopus.registry)  # nothing copied: all counts
    assert (
        octopus._words_to_understand("grab the zorblax", Decision(pick, None, 0.9, "")) == "grab the zorblax"
    )
