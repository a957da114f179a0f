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
