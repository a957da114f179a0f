"""Stage 4 message bodies from real text (issue 12 item 2): the body is replaced in the
instruction and in the call together, so the call's body is always a span of the instruction."""

from __future__ import annotations

import random

import numpy as np

from octopus_ros.data import generate
from octopus_ros.functions import load_default_registry, parse_call
from octopus_ros.training.stages import TrainConfig, Trainer

SENTENCES = {
    "en": ["the cat's bowl is empty", "back at 5, don't wait", 'a "quoted" word \\ slash'],
    "zh": ["猫粮吃完了", "我五点回来，别等我"],
}


def _trainer(p: float) -> Trainer:
    t = Trainer.__new__(Trainer)  # only what _varied needs: no model
    t.cfg = TrainConfig(message_corpus=p)
    t.rng, t.np_rng = random.Random(0), np.random.default_rng(0)
    t.pools = {"message_corpus": SENTENCES}
    return t


def test_a_new_message_body_is_copied_into_the_call():
    registry = load_default_registry()
    records = [
        {"instruction": e.instruction, "answer": e.answer, "function": e.function, "language": e.language}
        for e in generate("train", 400, 0)
        if e.function == "send_message"
    ]
    t = _trainer(1.0)
    bodies = set()
    for rec in records:
        text, answer = t._varied("calls", rec)
        call = parse_call(answer, registry)
        body = call.args[1].value
        assert body in SENTENCES[rec["language"]] and body in text, (text, answer)
        assert call.args[0].value == parse_call(rec["answer"], registry).args[0].value  # contact kept
        bodies.add(body)
    assert len(records) > 20 and len(bodies) == 5
    assert all(_trainer(0.0)._varied("calls", rec) is None for rec in records)


def test_message_bodies_are_what_the_call_grammar_can_write():
    from octopus_ros.data.message_bodies import message_bodies

    corpus = {
        "en": ["short", "a < b holds here", "x > y in this case", "fine sentence here", "tab\there", "y" * 49]
    }
    assert message_bodies(corpus) == {"en": ["fine sentence here"]}


def test_finetune_replay_varies_as_stage_4_does():
    """octopus_finetune --augment: a replayed message gets a new body in its instruction and its
    call together; other replayed calls keep their answer; registry examples are never varied."""
    from dataclasses import replace

    from octopus_ros.training.finetune import FinetuneConfig, Finetuner, Item

    registry = load_default_registry()
    tuner = Finetuner.__new__(Finetuner)  # only what vary needs: no model
    tuner.cfg, tuner.registry = FinetuneConfig(augment=1.0), registry
    tuner.rng, tuner.np_rng = random.Random(0), np.random.default_rng(0)
    tuner._bodies = SENTENCES

    def item(e, source="synthetic"):
        return Item(lambda: None, e.instruction, e.answer, source, e.language, e.function)

    examples = generate("train", 300, 1)
    messages = [item(e) for e in examples if e.function == "send_message"]
    assert len(messages) > 10
    for it in messages:
        varied = tuner.vary(it)
        call = parse_call(varied.answer, registry)
        assert call.args[1].value in SENTENCES[it.language] and call.args[1].value in varied.instruction
    others = [item(e) for e in examples if e.function in ("pick_up", "navigate_to", "recycle")]
    changed = 0
    for it in others:
        varied = tuner.vary(it)
        assert varied.answer == it.answer
        changed += varied.instruction != it.instruction
    assert changed > len(others) // 2
    registry_items = [replace(it, source="registry") for it in messages + others]
    assert all(tuner.vary(it) is it for it in registry_items)
    tuner.cfg = FinetuneConfig(augment=0.0)
    assert all(tuner.vary(it) is it for it in messages + others)
