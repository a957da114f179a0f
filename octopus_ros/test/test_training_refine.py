"""Stage 5's pair sampling: with --refine-balance the declines the stage-4 model should have made and
the calls it should have made are drawn equally often, whatever their counts."""

from __future__ import annotations

import random
from collections import Counter

from octopus_ros.training.stages import draw_pairs

DECLINE = "<nexa_12>"


def _pairs(n_decline: int, n_call: int) -> list[dict]:
    return [{"chosen": f"{DECLINE}()<nexa_end>"}] * n_decline + [
        {"chosen": "<nexa_0>('red cup')<nexa_end>"}
    ] * n_call


def _share_decline(pairs, idx) -> float:
    return sum(pairs[i]["chosen"].startswith(DECLINE) for i in idx) / len(idx)


def test_balanced_draws_take_both_kinds_equally():
    pairs = _pairs(10, 290)
    rng = random.Random(0)
    idx = [i for _ in range(50) for i in draw_pairs(pairs, 16, rng, decline=DECLINE, balance=True)]
    assert _share_decline(pairs, idx) == 0.5
    assert len(set(idx)) > 100  # the calls are still spread over all of them


def test_unbalanced_draws_follow_the_counts_and_one_kind_falls_back():
    pairs = _pairs(10, 290)
    rng = random.Random(0)
    idx = [i for _ in range(200) for i in draw_pairs(pairs, 16, rng, decline=DECLINE, balance=False)]
    assert 0.01 < _share_decline(pairs, idx) < 0.07
    only_calls = _pairs(0, 5)
    assert Counter(draw_pairs(only_calls, 8, random.Random(1), decline=DECLINE, balance=True)).keys() <= set(
        range(5)
    )


def test_absent_object_records_carry_their_present_twin():
    """Stage 5's twins: an absent-object record that answers with the decline carries the same
    request over the scene that holds the named object, with the call; no other record does."""
    from octopus_ros.data.tasks import generate, generate_one
    from octopus_ros.training.stages import TrainConfig, present_twin
    from octopus_ros.training.train_all import with_present_twins

    cfg = TrainConfig(image_size=32)
    examples = generate(
        "train", 120, 5, image_size=32, named_decoy=0.5, colour_decoy=0.2, decline_absent=True
    )
    records = with_present_twins(examples, cfg, 5)
    twins = [(ex, rec) for ex, rec in zip(examples, records, strict=True) if "twin_answer" in rec]
    assert len(twins) >= 5
    for ex, rec in twins:
        assert ex.decoy_kind == "absent" and rec["answer"].startswith(DECLINE)
        plain = generate_one("train", 5, examples.index(ex), image_size=32)
        assert plain.instruction == rec["instruction"] and plain.decoy_kind == ""
        assert rec["twin_answer"] == plain.answer and not plain.answer.startswith(DECLINE)
        assert ex.scene.target is None or ex.scene.target.category != plain.scene.target.category
        assert (rec["twin_image"] == plain.image).all() and not (rec["twin_image"] == rec["image"]).all()
        pair = present_twin(rec)
        assert pair["chosen"] == plain.answer and pair["rejected"] == rec["answer"]
        assert pair["image"] is rec["twin_image"] and pair["instruction"] == rec["instruction"]
    others = [rec for ex, rec in zip(examples, records, strict=True) if ex.decoy_kind != "absent"]
    assert others and all("twin_answer" not in rec for rec in others)
