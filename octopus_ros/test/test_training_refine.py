"""Stage 5's pairs: with --refine-balance the declines the stage-4 model should have made and the calls
it should have made are drawn equally often, whatever their counts; with --refine-twins an
absent-object record the model acted on brings its present twin into the pairs."""

from __future__ import annotations

import random
from collections import Counter

from octopus_ros.functions import load_default_registry
from octopus_ros.training.stages import draw_pairs

REGISTRY = load_default_registry()
DECLINE = REGISTRY.decline_function.token_text  # "<nexa_12>"


def _pairs(n_decline: int, n_call: int) -> list[dict]:
    return [{"chosen": f"{DECLINE}()<nexa_end>"}] * n_decline + [
        {"chosen": "<nexa_0>('red cup')<nexa_end>"}
    ] * n_call


def _share_decline(pairs, idx) -> float:
    return sum(pairs[i]["chosen"].startswith(DECLINE) for i in idx) / len(idx)


def test_balanced_draws_take_both_kinds_equally():
    pairs = _pairs(10, 290)
    rng = random.Random(0)
    idx = [i for _ in range(50) for i in draw_pairs(pairs, 16, rng, registry=REGISTRY, balance=True)]
    assert _share_decline(pairs, idx) == 0.5
    assert len(set(idx)) > 100  # the calls are still spread over all of them


def test_unbalanced_draws_follow_the_counts_and_one_kind_falls_back():
    pairs = _pairs(10, 290)
    rng = random.Random(0)
    idx = [i for _ in range(200) for i in draw_pairs(pairs, 16, rng, registry=REGISTRY, balance=False)]
    assert 0.01 < _share_decline(pairs, idx) < 0.07
    only_calls = _pairs(0, 5)
    assert Counter(
        draw_pairs(only_calls, 8, random.Random(1), registry=REGISTRY, balance=True)
    ).keys() <= set(range(5))


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


def test_an_absent_object_mistake_brings_its_twin_into_the_pairs(monkeypatch):
    """Trainer._mistakes with refine_twins: each absent-object record the model acted on gives its own
    pair and its present twin's; an output that does not parse gives neither; without the option, no
    twin."""
    import types

    import numpy as np

    import octopus_ros.model.runtime as runtime
    from octopus_ros.data.tasks import generate
    from octopus_ros.training.stages import TrainConfig, Trainer
    from octopus_ros.training.train_all import with_present_twins

    acted = "<nexa_0>('red cup')<nexa_end>"

    class Acts:  # a model that picks up the red cup, or fails to parse on an all-zero frame
        def __init__(self, **_):
            pass

        def decide(self, text, image):
            parsed = types.SimpleNamespace(to_text=lambda: acted)
            return types.SimpleNamespace(call=parsed if image.any() else None)

    monkeypatch.setattr(runtime, "Octopus", Acts)
    cfg = TrainConfig(image_size=32)
    examples = generate("train", 80, 5, image_size=32, named_decoy=0.5, decline_absent=True)
    records = with_present_twins(examples, cfg, 5)
    absent = [r for r in records if "twin_answer" in r]
    assert len(absent) >= 5
    unparsed = {**absent[0], "image": np.zeros_like(absent[0]["image"])}
    batch = [*absent[1:], unparsed, *[r for r in records if "twin_answer" not in r][:10]]
    registry = REGISTRY
    for twins in (True, False):
        trainer = types.SimpleNamespace(
            cfg=TrainConfig(image_size=32, refine_twins=twins), registry=registry, model=None, tok=None
        )
        pairs, wrong_by = Trainer._mistakes(trainer, batch, "test")
        assert wrong_by["decline:absent"] == len(absent)  # the unparsed one is still a mistake
        own = [p for p in pairs if not p.get("twin") and "twin_answer" in p]
        assert len(own) == len(absent) - 1 and all(p["rejected"] == acted for p in own)
        twin = [p for p in pairs if p.get("twin")]
        assert len(twin) == (len(absent) - 1 if twins else 0)
        assert all(p["chosen"] == p["twin_answer"] and p["image"] is p["twin_image"] for p in twin)
