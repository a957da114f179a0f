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
    # "tab\there" is read as "tab here" (lean/prompt.py model_utterance), which a call can write
    assert message_bodies(corpus) == {"en": ["fine sentence here", "tab here"]}
    assert message_bodies({"en": ["a bell \x07 rings here"]}) == {"en": []}  # not printable
    # a body loses the marks that end it, as the utterance the model reads does
    ended = {"en": ["it ends here.", "wow, it works!!"], "zh": ["会议取消了。", "生日快乐！"]}
    assert message_bodies(ended) == {"en": ["it ends here", "wow, it works"], "zh": []}  # ZH: < 6 chars
    assert message_bodies({"zh": ["我们明天早上见面。"]}) == {"zh": ["我们明天早上见面"]}


def test_a_body_fragment_is_a_clause_start_without_edge_punctuation():
    """The copier's short bodies: the first words / characters of one of the sentence's clauses,
    never punctuation or space at either end, never a piece from inside a clause."""
    from octopus_ros.data.message_bodies import body_fragment

    en = "The meeting moved to Friday, bring the slides; thanks!"
    zh = "会议改到周五了，记得带上幻灯片。谢谢"
    clauses = {
        "en": ["The meeting moved to Friday", "bring the slides", "thanks"],
        "zh": ["会议改到周五了", "记得带上幻灯片", "谢谢"],
    }
    rng = random.Random(0)
    seen = {"en": set(), "zh": set()}
    for _ in range(300):
        for lang, sentence in (("en", en), ("zh", zh)):
            piece = body_fragment(sentence, lang, rng)
            assert piece is not None and len(piece) >= 2
            assert piece == piece.strip(" ,.;:!?，。；：！？"), piece
            assert any(c.startswith(piece) for c in clauses[lang]), (lang, piece)
            seen[lang].add(piece)
    assert {"bring", "The meeting moved to Friday", "thanks"} <= seen["en"]  # one word to a whole clause
    assert {"会议", "记得带上幻灯片", "谢谢"} <= seen["zh"]
    assert max(len(p) for p in seen["zh"]) <= 8
    assert body_fragment("。，", "zh", rng) is None and body_fragment("!", "en", rng) is None


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


def test_chatter_wraps_a_request_in_a_statement_and_keeps_its_answer():
    """``chatter`` (off by default): a call or decline said inside a short statement of the decline
    corpus, before or after it; never a question, an unsafe-request pattern, a message or a speed."""
    from octopus_ros.data.decline_corpus import unsafe_requests

    unsafe = next(text for lang, text in unsafe_requests() if lang == "en" and len(text) < 60)
    t = Trainer.__new__(Trainer)
    t.cfg = TrainConfig(chatter=1.0, message_corpus=0.0, augment=0.0, decline_noise=0.0, decline_corpus=0.0)
    t.rng, t.np_rng = random.Random(0), np.random.default_rng(0)
    t.pools = {
        "decline_corpus": {
            "en": ["I'm staying home.", "is it raining?", unsafe, "x" * 80],
            "zh": ["我今天很累。", "下雨了吗？"],
        }
    }
    t._chatter = None
    records = [
        {"instruction": e.instruction, "answer": e.answer, "function": e.function, "language": e.language}
        for e in generate("train", 300, 0)
    ]
    before = after = 0
    for rec in records:
        varied = t._varied("calls", rec)
        if rec["function"] in ("send_message", "set_speed"):
            assert varied is None
            continue
        text, answer = varied
        assert answer == rec["answer"]
        chatter = "I'm staying home" if rec["language"] == "en" else "我今天很累"
        comma = ", " if rec["language"] == "en" else "，"
        assert text in (f"{chatter}{comma}{rec['instruction']}", f"{rec['instruction']}{comma}{chatter}")
        before += text.startswith(chatter)
        after += not text.startswith(chatter)
    assert before > 20 and after > 20
    t.cfg = TrainConfig(chatter=0.0, message_corpus=0.0, augment=0.0, decline_noise=0.0, decline_corpus=0.0)
    assert all(t._varied("calls", rec) is None for rec in records)
