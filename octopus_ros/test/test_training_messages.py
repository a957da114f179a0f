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
