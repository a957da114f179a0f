"""A tiny end-to-end training run: every stage runs, the loss falls, the checkpoint loads and decides."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_tiny_training_run_reduces_loss_and_saves_a_loadable_checkpoint(tmp_path):
    from octopus_ros.model import Octopus, load_checkpoint
    from octopus_ros.model.testing import tiny_config
    from octopus_ros.training.stages import STAGES, TrainConfig
    from octopus_ros.training.train_all import train

    cfg = TrainConfig(
        seconds={"vision": 30.0, "text": 30.0, "align": 30.0, "calls": 60.0},
        max_steps={"vision": 5, "text": 5, "align": 5, "calls": 40},
        pool_calls=150,
        pool_align=80,
        batch=8,
        vocab_size=600,
        image_size=32,
        pool_stride=2,
    )
    out = train(cfg, tmp_path / "ckpt", evaluate_n=0, model_config=tiny_config(image_size=32))
    progress = json.loads((out / "stages" / "progress.json").read_text())
    assert progress["done"] == list(STAGES)
    calls = next(c for c in progress["curves"] if c["stage"] == "calls")
    first, last = calls["loss"][:3], calls["loss"][-3:]
    assert sum(last) / 3 < sum(first) / 3, calls["loss"]
    assert (out / "training_curves.png").stat().st_size > 1000
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["stages_run"] == list(STAGES)
    ckpt = load_checkpoint(out)  # verifies the weights' sha256
    assert ckpt.model.config.num_image_tokens == 4  # 4x4 patch grid pooled with stride 2
    decision = Octopus.load(out).decide(
        "pick up the red cup", __import__("numpy").zeros((32, 32, 3), "uint8")
    )
    assert decision.call is not None or decision.error is not None


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
    tables = format_tables(m)
    assert "iid" in tables and "iid/deictic" in tables and "as the node would act" in tables


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
