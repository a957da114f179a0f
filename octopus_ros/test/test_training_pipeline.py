"""A tiny end-to-end training run: every stage runs, the loss falls, the checkpoint loads and decides."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = pytest.mark.slow


def test_tiny_training_run_reduces_loss_and_saves_a_loadable_checkpoint(tmp_path):
    from octopus_ros.model import Octopus, load_checkpoint
    from octopus_ros.model.testing import tiny_config
    from octopus_ros.training.stages import STAGES, TrainConfig
    from octopus_ros.training.train_all import train

    cfg = TrainConfig(
        steps={"vision": 5, "text": 5, "align": 5, "calls": 40, "refine": 3},
        pool_calls=150,
        pool_align=80,
        pool_refine=24,
        pool_refine_val=12,
        batch=8,
        vocab_size=600,
        image_size=32,
        pool_stride=2,
        refine_twins=True,
    )
    stale = tmp_path / "ckpt" / "second_opinion"  # a second model trained apart, already there
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    out = train(cfg, tmp_path / "ckpt", evaluate_n=0, model_config=tiny_config(image_size=32))
    progress = json.loads((out / "stages" / "progress.json").read_text())
    assert progress["done"] == list(STAGES)
    calls = next(c for c in progress["curves"] if c["stage"] == "calls")
    first, last = calls["loss"][:3], calls["loss"][-3:]
    assert sum(last) / 3 < sum(first) / 3, calls["loss"]
    assert (out / "training_curves.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages_run"] == list(STAGES)
    assert metrics["second_opinion_kept"] == str(stale)  # said, and left in place (not this run's to delete)
    refine = metrics["stage_figures"]["refine"]  # stage 5 decided its pool and counted its pairs
    assert refine["records"] == 24 and refine["pairs"] - refine["twin_pairs"] <= refine["wrong"] <= 24
    # a present twin only for an absent-object record the model acted on
    assert refine["twin_pairs"] <= refine["wrong_by_kind"].get("decline:absent", 0)
    # the validation gate decided which weights stage 5 leaves (stage 4's when it made more mistakes)
    val = refine["validation"]
    assert val["records"] == 12 and refine["kept"] == (
        "refined" if val["wrong_refined"] <= val["wrong_stage4"] else "stage 4"
    )
    by_kind = refine["validation_by_kind"]  # the same counts by kind (decline/call x absent/plain)
    assert sum(by_kind["stage4"].values()) == val["wrong_stage4"]
    assert sum(by_kind["refined"].values()) == val["wrong_refined"]
    ckpt = load_checkpoint(out)  # verifies the weights' sha256
    assert ckpt.model.config.num_image_tokens == 4  # 4x4 patch grid pooled with stride 2
    decision = Octopus.load(out).decide(
        "pick up the red cup", __import__("numpy").zeros((32, 32, 3), "uint8")
    )
    assert decision.call is not None or decision.error is not None
    # novelty profiles fitted at training time: the words of the requests it acts on are not novel,
    # the decline corpus's and unseen words are
    assert 0.0 <= decision.text_novelty <= 1.0 and 0.0 < decision.image_novelty < 1e6
    novelty = Octopus.load(out).novelty
    seen = sorted(novelty.text.vocabulary)
    assert {"pick", "the"} <= set(seen) and "weather" not in seen
    assert novelty.text_score(" ".join(seen[:8])) == 0.0
    assert novelty.text_score("quaternion sonnets") == 1.0

    # stage 1's text tower is kept beside its own tower (CLIP zero-shot, training/zero_shot.py)
    from octopus_ros.training import zero_shot
    from octopus_ros.training.grounding import make_scenes

    vision = out / "stages" / "vision"
    text, scale = zero_shot.load_text_tower(vision)
    assert 0 < scale <= 100 and not (out / zero_shot.TEXT_TOWER).exists()  # the final tower moved on
    octopus = Octopus.load(vision, prefix_cache=False)
    from octopus_ros.data.render import render

    images = [render(s, 32) for s in make_scenes(0, 3)]
    got = zero_shot.scores(octopus, text, scale, images)
    cats, pairs = zero_shot.prompts()
    cat, pair = got["softmax"]
    assert cat.shape == (3, len(cats)) and torch.allclose(cat.sum(-1), torch.ones(3))
    assert pair.shape[:2] == (3, len(cats)) and int(torch.isfinite(pair).sum()) == 3 * len(pairs)
    assert float(got["cosine"][0].abs().max()) <= 1.0 + 1e-5
    with pytest.raises(FileNotFoundError, match="no stage-1 text tower"):
        zero_shot.load_text_tower(out)


def test_summary_tables_from_rows():
    from octopus_ros.training.evaluate import format_tables, summarize

    rows = [
        {
            "split": "iid",
            "language": "en",
            "function": "stop",
            "mode": "text",
            "expected": "<nexa_3>()<nexa_end>",
            "got": "<nexa_3>()<nexa_end>",
            "correct": True,
            "function_correct": True,
            "action": "published",
            "ms": 10.0,
        },
        {
            "split": "iid",
            "language": "zh",
            "function": "pick_up",
            "mode": "deictic",
            "expected": "<nexa_0>('red cup')<nexa_end>",
            "got": "<nexa_0>('red can')<nexa_end>",
            "correct": False,
            "function_correct": True,
            "action": "published",
            "ms": 12.0,
        },
    ]
    m = summarize(rows)
    assert m["exact_match"] == 0.5 and m["function_accuracy"] == 1.0
    assert m["split_language"]["iid/en"]["exact_match"] == 1.0
    assert m["confusion"]["wrong_arguments"][0]["got"] == "<nexa_0>('red can')<nexa_end>"
    assert m["split_mode"]["iid/deictic/zh"]["exact_match"] == 0.0
    assert m["split_mode"]["iid/text/en"]["n"] == 1
    assert m["node"]["iid"]["published_right"] == 0.5 and m["node"]["iid"]["published_wrong"] == 0.5
    assert m["node"]["iid"]["declined"] == 0.0 and m["node"]["iid"]["declines_expected"] == 0
    assert m["split"]["iid"]["exact_match_ci95"] == pytest.approx([0.0945, 0.9055], abs=1e-4)
    assert m["split_language"]["iid/en"]["exact_match_ci95"][1] == 1.0
    tables = format_tables(m)
    assert "iid" in tables and "iid/deictic" in tables and "as the node would act" in tables
    low, high = m["split"]["iid"]["exact_match_ci95"]
    assert "95 % interval" in tables and f"{100 * low:.1f}–{100 * high:.1f} %" in tables


def test_wilson_interval():
    """The 95 % interval of a share: textbook values, the edges, and the width at the two sample
    sizes the evaluation has used (300 and 3000 per split)."""
    from octopus_ros.training.evaluate import wilson_interval

    assert wilson_interval(90, 100) == pytest.approx((0.8256, 0.9448), abs=1e-4)
    low, high = wilson_interval(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    assert wilson_interval(20, 20)[1] == 1.0
    assert all(math.isnan(x) for x in wilson_interval(0, 0))
    w300 = wilson_interval(270, 300)
    w3000 = wilson_interval(2700, 3000)
    assert w300[1] - w300[0] == pytest.approx(0.068, abs=0.002)  # 90 % of 300: 86.1-93.0 %
    assert w3000[1] - w3000[0] == pytest.approx(0.0215, abs=0.001)  # of 3000: 88.9-91.1 %


def test_paired_difference_interval():
    """The interval of a change measured on the same examples: only the examples that changed
    widen it; hand-computed values; the 300-vs-3000 widths; a mismatch is an error."""
    from octopus_ros.training.evaluate import paired_difference_interval

    assert paired_difference_interval([True] * 5, [True] * 5) == (0.0, 0.0)  # nothing changed
    # 10 examples: one lost, one gained, one lost: mean -0.1, sd of (-1, 1, -1, 0 x 7) = sqrt(0.3222)
    before = [True, False, True] + [True] * 7
    after = [False, True, False] + [True] * 7
    low, high = paired_difference_interval(before, after)
    half = 1.96 * math.sqrt((2 * 0.81 + 1.21 + 7 * 0.01) / 9) / math.sqrt(10)  # deviations from -0.1
    assert (low, high) == pytest.approx((-0.1 - half, -0.1 + half))
    # 300 examples, 14 lost and 5 gained (net -9, -3 points, the demo's stop-41 loss): about +-2.8
    # points, so a 1-point target cannot be told at 300; the same shares on 3000: about +-0.9
    b300 = [True] * 14 + [False] * 5 + [True] * 281
    a300 = [False] * 14 + [True] * 5 + [True] * 281
    lo, hi = paired_difference_interval(b300, a300)
    assert (lo + hi) / 2 == pytest.approx(-0.03) and (hi - lo) / 2 == pytest.approx(0.0283, abs=0.0005)
    lo, hi = paired_difference_interval(b300 * 10, a300 * 10)
    assert (hi - lo) / 2 == pytest.approx(0.0090, abs=0.0002)
    assert all(math.isnan(x) for x in paired_difference_interval([], []))
    with pytest.raises(ValueError, match="same examples"):
        paired_difference_interval([True], [True, False])


def test_summarize_absent_counts_actions_on_objects_not_in_view():
    """The absent-object probe's figures: a manipulation published counts as acted on, a search
    only as "any call"; per kind, language and kind/language, with the interval; and the table."""
    from octopus_ros.training.evaluate import format_absent, summarize_absent, wilson_interval

    def row(kind, lang, manipulation, any_call):
        return {
            "kind": kind,
            "language": lang,
            "manipulation_published": manipulation,
            "any_published": any_call,
        }

    rows = [row("absent", "en", True, True), row("absent", "en", False, True)]  # a pick_up; a find_item
    rows += [row("absent", "zh", False, False), row("colour", "zh", False, False)]
    m = summarize_absent(rows)
    assert (
        m["all"]["n"] == 4 and m["all"]["manipulation_published"] == 0.25 and m["all"]["any_published"] == 0.5
    )
    assert m["absent"]["manipulation_published"] == pytest.approx(1 / 3)
    assert m["absent/en"]["manipulation_published"] == 0.5 and m["colour/zh"]["n"] == 1
    assert m["zh"]["manipulation_published"] == 0.0
    assert m["all"]["manipulation_published_ci95"] == pytest.approx(list(wilson_interval(1, 4)))
    table = format_absent(m)
    assert "category not in view" in table and "named colour not in view" in table and "25.0%" in table


def test_function_doc_corpus_is_the_registry_documentation_only():
    from octopus_ros.data.instructions import templates_for
    from octopus_ros.functions import load_default_registry
    from octopus_ros.training.train_all import function_doc_corpus

    registry = load_default_registry()
    lines = function_doc_corpus(registry)
    text = "\n".join(lines)
    for spec in registry.enabled():
        assert f"{spec.token_text} {spec.name.replace('_', ' ')}: {spec.describe('en')}" in lines
        assert spec.describe("zh") in text
    # No instruction template (seen or held out) is in it: only the registry's own words.
    for spec in registry.enabled():
        for lang in ("en", "zh"):
            for t in templates_for(spec.name, lang):
                if "{" not in t.text and len(t.text) > 8:
                    assert t.text not in text, t.text


def _tiny_run(tmp_path, name, *, seed=0, seconds=None):
    from octopus_ros.model import load_checkpoint
    from octopus_ros.model.testing import tiny_config
    from octopus_ros.training.stages import TrainConfig
    from octopus_ros.training.train_all import train

    cfg = TrainConfig(
        steps={"vision": 3, "text": 3, "align": 3, "calls": 6, "refine": 2},
        pool_calls=60,
        pool_align=40,
        pool_refine=12,
        pool_refine_val=6,
        batch=4,
        vocab_size=500,
        image_size=32,
        pool_stride=2,
        seed=seed,
        **({"seconds": seconds} if seconds else {}),
    )
    out = train(cfg, tmp_path / name, evaluate_n=0, model_config=tiny_config(image_size=32))
    curves = json.loads((out / "training_curves.json").read_text())
    state = load_checkpoint(out).model.state_dict()
    return curves, state, json.loads((out / "metrics.json").read_text())


def test_step_budgets_make_training_reproducible(tmp_path):
    import torch

    curves_a, state_a, metrics_a = _tiny_run(tmp_path, "a")
    curves_b, state_b, _ = _tiny_run(tmp_path, "b")
    assert metrics_a["stage_steps"] == {"vision": 3, "text": 3, "align": 3, "calls": 6, "refine": 2}
    assert metrics_a["stages_cut_short"] == []
    assert [c["loss"] for c in curves_a] == [c["loss"] for c in curves_b]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    curves_c, state_c, _ = _tiny_run(tmp_path, "c", seed=1)  # the seed matters
    assert [c["loss"] for c in curves_c] != [c["loss"] for c in curves_a]


def test_the_wall_clock_guard_cuts_a_stage_short_and_says_so(tmp_path, caplog):
    guard = {"vision": 1e-9, "text": 60.0, "align": 60.0, "calls": 60.0}
    with caplog.at_level("WARNING"):
        curves, _, metrics = _tiny_run(tmp_path, "g", seconds=guard)
    assert metrics["stages_cut_short"] == ["vision"]
    vision = next(c for c in curves if c["stage"] == "vision")
    assert vision["cut_short"] and vision["planned_steps"] == 3 and vision["loss"] == []
    assert "stage vision cut short by its wall-clock guard" in caplog.text


def test_the_refine_gate_keeps_stage_4_when_stage_5_makes_more_mistakes(tmp_path, monkeypatch):
    """Stage 5 whose refined model gets more validation records wrong leaves stage 4's weights."""
    import torch

    from octopus_ros.model import load_checkpoint
    from octopus_ros.training.stages import Trainer

    real = Trainer._mistakes

    def worse_after(self, records, desc):
        pairs, wrong = real(self, records, desc)
        if desc == "stage refine: validate":  # the refined model: every record wrong
            return pairs, {"call:plain": len(records)}
        return pairs, {"call:plain": 0}

    monkeypatch.setattr(Trainer, "_mistakes", worse_after)
    _, state, metrics = _tiny_run(tmp_path, "gated")
    refine = metrics["stage_figures"]["refine"]
    assert refine["kept"] == "stage 4" and refine["validation"] == {
        "records": 6,
        "wrong_stage4": 0,
        "wrong_refined": 6,
    }
    stage4 = load_checkpoint(tmp_path / "gated" / "stages" / "calls").model.state_dict()
    assert all(torch.equal(state[k], stage4[k]) for k in stage4)
