"""The natural split of the evaluation: its figures, and where `evaluate` writes them."""

from __future__ import annotations

import json

import pytest

from octopus_ros.functions import load_default_registry
from octopus_ros.paths import config_path


def _row(kind, expected, got, action, lang="en"):
    return {
        "id": f"{lang}-{kind}",
        "language": lang,
        "kind": kind,
        "expected": expected,
        "got": got,
        "confidence": 0.9,
        "action": action,
        "decoded_right": (action == "declined") if expected == "decline" else got == expected,
        "published_right": action == "published" and expected != "decline" and got == expected,
        "published_wrong": action == "published" and (expected == "decline" or got != expected),
    }


def test_published_wrong_counts_actions_on_declines_and_wrong_calls():
    from octopus_ros.training.evaluate import format_natural, summarize_natural

    stop, photo = "<nexa_3>()<nexa_end>", "<nexa_4>()<nexa_end>"
    msg = "<nexa_10>('bob', 'hi there')<nexa_end>"
    rows = [
        _row("actionable", stop, stop, "published"),  # right
        _row("actionable", stop, photo, "published"),  # wrong call
        _row("actionable", stop, photo, "held_back"),  # wrong but not published
        _row("unsafe", "decline", stop, "published"),  # action on a decline
        _row("out_of_scope", "decline", "<nexa_12>()<nexa_end>", "declined", lang="zh"),
        _row("absent_object", "decline", photo, "held_back", lang="zh"),
        _row("free_text", msg, msg, "held_back", lang="zh"),  # copied, not published
        _row("free_text", msg, "<nexa_10>('bob', 'hi')<nexa_end>", "published", lang="zh"),
    ]
    m = summarize_natural(rows)
    assert m["all"]["published_wrong"] == pytest.approx(3 / 8)
    assert m["en"]["published_wrong"] == pytest.approx(2 / 4)
    assert m["zh"]["published_wrong"] == pytest.approx(1 / 4)
    assert m["all"]["declines_right"] == pytest.approx(1 / 3)
    assert m["all"]["declines_published"] == pytest.approx(1 / 3)
    assert m["all"]["out_of_scope_unsafe_published"] == pytest.approx(1 / 2)
    assert m["all"]["absent_published"] == 0.0
    assert m["all"]["free_text_copied"] == pytest.approx(1 / 2)
    assert m["kind"]["actionable"]["published_wrong"] == pytest.approx(1 / 3)
    assert [e["id"] for e in m["published_wrong_examples"]] == ["en-actionable", "en-unsafe", "zh-free_text"]
    text = format_natural(m, 0.5)
    assert "PUBLISHED WRONG" in text and "37.5%" in text
    # a set without declines (the message set) leaves out the rows it has nothing to count for
    only_messages = format_natural(summarize_natural(rows[-2:]), 0.5)
    assert "declines right" not in only_messages and "nan" not in only_messages
    assert "free text copied exactly" in only_messages and "–" in only_messages  # en has none


def test_the_natural_split_runs_a_model_as_the_node_would(tmp_path):
    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.model import Octopus
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.training.evaluate import evaluate_natural

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    octopus = Octopus.load(ckpt)
    items = load_natural_set(registry=load_default_registry())[::40]
    m = evaluate_natural(octopus, threshold=0.0, progress=False, items=items)
    assert m["all"]["n"] == len(items)
    # threshold 0: every valid non-decline call is published
    a = m["all"]
    assert a["published_right"] + a["published_wrong"] + a["declined"] + a["held_back"] == pytest.approx(1.0)
    strict = evaluate_natural(octopus, threshold=1.01, progress=False, items=items)
    assert strict["all"]["published_wrong"] == 0.0 and strict["all"]["published_right"] == 0.0


def test_evaluate_writes_runs_not_the_model_metrics_unless_asked(tmp_path):
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.training.evaluate import main

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    before = (ckpt / "metrics.json").read_text(encoding="utf-8")
    out = tmp_path / "runs" / "metrics.json"
    assert main([str(ckpt), "--n", "2", "--no-natural", "--no-check", "--out", str(out)]) == 0
    assert (ckpt / "metrics.json").read_text(encoding="utf-8") == before
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["checkpoint"] == str(ckpt) and data["eval_fp32"]["n"] == 6
    assert (
        main(
            [str(ckpt), "--n", "2", "--no-natural", "--no-check", "--out", str(out), "--write-model-metrics"]
        )
        == 0
    )
    assert json.loads((ckpt / "metrics.json").read_text(encoding="utf-8"))["eval_fp32"]["n"] == 6


def test_the_check_set_is_reported_by_its_figures_without_its_cases(tmp_path):
    from octopus_ros.data.natural import CHECK_SET_PATH, load_natural_set
    from octopus_ros.model import Octopus
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.training.evaluate import CHECK_TITLE, evaluate, format_tables

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    m = evaluate(Octopus.load(ckpt), splits=(), progress=False, threshold=0.0, check=True)
    check = m["natural_check"]
    assert check["all"]["n"] == len(load_natural_set(CHECK_SET_PATH)) and "natural" not in m
    assert "published_wrong_examples" not in check
    assert check["all"]["published_wrong"] > 0  # a random tiny model publishes wrong calls at threshold 0
    text = format_tables(m)
    assert CHECK_TITLE in text and "PUBLISHED WRONG" in text and "most confident" not in text
    # the set as a sample: the published-wrong share comes with its 95 % interval
    low, high = check["all"]["published_wrong_ci95"]
    assert low <= check["all"]["published_wrong"] <= high
    assert f"all {100 * low:.1f}–{100 * high:.1f} %" in text


def test_a_second_opinion_publishes_only_what_both_models_decide(tmp_path):
    import shutil

    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.model import Octopus
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.runtime.second_opinion import SECOND_OPINION_DIR
    from octopus_ros.training.evaluate import evaluate_natural, main

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    octopus = Octopus.load(ckpt)
    items = load_natural_set(registry=load_default_registry())[::20]
    alone = evaluate_natural(octopus, threshold=0.0, progress=False, items=items)["all"]
    # the same model as its own second opinion agrees with itself on everything
    same = evaluate_natural(octopus, threshold=0.0, progress=False, items=items, second_opinion=octopus)[
        "all"
    ]
    assert same == alone
    other = make_tiny_checkpoint(
        tmp_path / "b", functions=config_path("functions.yaml"), image_size=32, seed=1
    )
    rows = []
    both = evaluate_natural(
        octopus, threshold=0.0, progress=False, items=items, second_opinion=Octopus.load(other), rows_out=rows
    )["all"]
    # fewer (or as many) published, never a publication the first model alone would not make
    assert both["published_wrong"] <= alone["published_wrong"]
    assert both["published_right"] <= alone["published_right"]
    assert both["declined"] >= alone["declined"]
    # and the other random model does disagree: the first model's publications are declined
    assert alone["published_wrong"] > 0 and both["published_wrong"] < alone["published_wrong"]
    assert both["declined"] > alone["declined"]
    # `make evaluate` finds a checkpoint's own second_opinion/ folder by itself
    shutil.copytree(other, ckpt / SECOND_OPINION_DIR)
    out = tmp_path / "metrics.json"
    assert main([str(ckpt), "--n", "2", "--no-natural", "--no-check", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["eval_fp32"]["second_opinion"] == str(ckpt / SECOND_OPINION_DIR)
    assert (
        main(
            [
                str(ckpt),
                "--n",
                "2",
                "--no-natural",
                "--no-check",
                "--out",
                str(out),
                "--second-opinion",
                "off",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["eval_fp32"]["second_opinion"] is None
