"""The bundled default model: it loads (weights' sha256 verified) and meets a floor on a fixed
held-out sample, a little under the accuracy the README states for it, so a regression fails.

The floors are pinned here to the README's figures, not read from the model's metrics.json: that
file is written by the same evaluation code, so a worse model evaluated again would lower its
own floor. A new bundled model updates the README and these constants together (the README check
below fails until both say the same)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from octopus_ros.paths import default_model_dir

pytestmark = pytest.mark.slow
README = Path(__file__).resolve().parents[2] / "README.md"
# README, "The bundled model and training": "Held-out exact match (function and every argument,
# 3000 per split, …): iid 98.2 %, unseen phrasing 86.8 %, unseen colour × object 92.7 %" (model v11,
# stop 33's span copier, stop 36's object narrowing, stop 37's numbers, stop 38's copying rule;
# 3000 per split since stop 41, docs/training.md item 42).
README_EXACT_MATCH = {"iid": 0.982, "unseen_phrasing": 0.868, "unseen_combo": 0.927}
README_SENTENCE = re.compile(
    r"iid (?P<iid>[\d.]+) %, unseen phrasing (?P<unseen_phrasing>[\d.]+) %,\s+unseen colour × object "
    r"(?P<unseen_combo>[\d.]+) %"
)
N_PER_SPLIT = 60  # the first 60 of the README evaluation's examples (same seed)
# The evaluation is deterministic, so the margin only covers the gap between this 60-example
# sample and the README's figures (3000 per split since stop 41; 300 before). Stop 33's copier
# lifted unseen phrasing on the 300 (88.0 -> 89.3 %) but not on the first 60 (83.3 % both times:
# 6 points under the 300's); 7 points leaves one example (1.7 points) of slack in every split.
MARGIN = 0.07


def test_readme_states_the_pinned_figures_and_the_tracked_metrics_agree():
    """The constants above are the README's sentence; the tracked metrics.json says the same."""
    found = README_SENTENCE.search(README.read_text(encoding="utf-8"))
    assert found, f"{README}: the held-out exact-match sentence is gone; update README_SENTENCE"
    stated = {split: float(found[split]) / 100 for split in README_EXACT_MATCH}
    assert stated == pytest.approx(README_EXACT_MATCH, abs=1e-9), (
        f"the README now states {stated}; pin the new figures in README_EXACT_MATCH"
    )
    recorded = json.loads((default_model_dir() / "metrics.json").read_text())["eval_fp32"]["split"]
    for split, figure in README_EXACT_MATCH.items():
        assert recorded[split]["exact_match"] == pytest.approx(figure, abs=0.0005), (
            f"models/octopus_tiny/metrics.json says {split} {recorded[split]['exact_match']:.1%}, "
            f"the README {figure:.1%}"
        )


def test_bundled_model_meets_the_readme_accuracy():
    from octopus_ros.model import Octopus, load_checkpoint
    from octopus_ros.training.evaluate import EVAL_SPLITS, evaluate

    path = default_model_dir()
    load_checkpoint(path)  # raises CheckpointError on a corrupt or mismatched file
    measured = evaluate(Octopus.load(path), n=N_PER_SPLIT, seed=1234, progress=False)
    assert set(EVAL_SPLITS) == set(README_EXACT_MATCH)
    for split in EVAL_SPLITS:
        floor = README_EXACT_MATCH[split] - MARGIN
        got = measured["split"][split]["exact_match"]
        assert got >= floor, (
            f"{split}: {got:.1%} < floor {floor:.1%} (README {README_EXACT_MATCH[split]:.1%})"
        )
    size_mb = (path / "model.safetensors").stat().st_size / 1e6
    assert size_mb < 50, f"bundled weights are {size_mb:.0f} MB"


# int8 and bf16 against fp32 on the bundled model, 20 held-out examples per split (seed 1234):
# measured 60 of 60 same calls for both, mean |confidence change| 0.0050 (int8) and 0.0014 (bf16).
# The floor allows 2 of 60 calls to differ (another CPU's kernels may round a near tie the other
# way) and 4x the measured confidence change.
AGREEMENT_PER_SPLIT = 20
MIN_SAME_CALLS = 58  # of 60
MAX_MEAN_CONFIDENCE_DELTA = {"int8": 0.02, "bf16": 0.006}


def test_int8_and_bf16_decide_as_fp32_does():
    from octopus_ros.data import generate
    from octopus_ros.model.agreement import compare_runtimes, format_report
    from octopus_ros.training.evaluate import EVAL_SPLITS

    samples = [
        (ex.image, ex.instruction, ex.answer)
        for split in EVAL_SPLITS
        for ex in generate(split, AGREEMENT_PER_SPLIT, 1234)
    ]
    paths = (("int8", {"precision": "int8"}), ("bf16", {"precision": "bf16"}))
    report = compare_runtimes(default_model_dir(), samples, paths=paths)
    table = format_report(report)
    n = len(samples)
    for label in ("int8", "bf16"):
        r = report[label]
        assert r.n == n == 3 * AGREEMENT_PER_SPLIT
        same = round(r.call_agreement * n)
        assert same >= MIN_SAME_CALLS, f"{label}: {same}/{n} calls as fp32\n{table}\n{r.disagreements}"
        assert r.mean_abs_confidence_delta <= MAX_MEAN_CONFIDENCE_DELTA[label], table
        assert abs(r.accuracy - report["fp32"].accuracy) * n <= n - MIN_SAME_CALLS, table


def test_the_bundled_model_carries_its_second_opinion():
    """The node's default second_opinion "auto" finds the bundled second model; it loads (sha256
    verified), knows the same functions, and is another model (v11b, trained with another seed)."""
    from octopus_ros.model import load_checkpoint
    from octopus_ros.runtime.second_opinion import same_functions, second_opinion_dir

    path = default_model_dir()
    second = second_opinion_dir(path, "auto")
    assert second == path / "second_opinion"
    same_functions(path, second)
    a, b = load_checkpoint(path), load_checkpoint(second)
    assert a.config.to_dict() == b.config.to_dict()  # the same architecture
    assert b.metrics["train_config"]["seed"] != a.metrics["train_config"]["seed"]
    recorded = json.loads((path / "metrics.json").read_text())["eval_fp32"]
    assert recorded.get("second_opinion", "").endswith("second_opinion")  # its figures include it


def test_absent_object_probe_on_the_bundled_model():
    """The absent-object probe asks only for objects that are not in view, of the functions that
    need them, in both kinds and both languages; the bundled pair acts on few of them (1.5 % of
    2,533 at 3000 per split, README; 0 of these 77). Broken once each on these draws: without the
    NOT_IN_VIEW check 80.5 % are acted on, without the colour check 40.3 %, without the second
    opinion 3.9 % (3 of 77); the 3 % ceiling fails all three and leaves two requests of slack for
    another CPU's rounding."""
    from octopus_ros.model import Octopus
    from octopus_ros.runtime.second_opinion import second_opinion_dir
    from octopus_ros.training.evaluate import ABSENT_KINDS, evaluate_absent

    path = default_model_dir()
    octopus = Octopus.load(path)
    second = Octopus.load(second_opinion_dir(path, "auto"))
    rows: list[dict] = []
    m = evaluate_absent(
        octopus, n=80, seed=1234, threshold=0.5, progress=False, second_opinion=second, rows_out=rows
    )
    needs_view = {s.name for s in octopus.registry.enabled() if s.requires_view}
    assert rows and {r["kind"] for r in rows} == set(ABSENT_KINDS)
    assert {r["language"] for r in rows} == {"en", "zh"}
    assert {r["function"] for r in rows} <= needs_view
    assert m["all"]["n"] == len(rows) == sum(m[k]["n"] for k in ABSENT_KINDS)
    acted = sum(r["manipulation_published"] for r in rows)
    assert m["all"]["manipulation_published"] == pytest.approx(acted / len(rows))
    assert m["all"]["manipulation_published"] <= 0.03, [r for r in rows if r["manipulation_published"]]


def test_the_bundled_registries_are_the_configs():
    """The node reads the checkpoint's functions.yaml by default, so a rule of config/functions.yaml
    (said words, halts, a named place) reaches the bundled model only through a copy: both bundled
    registries must equal it, phrasings included (stop 46 found them a change behind)."""
    from octopus_ros.functions import FunctionRegistry
    from octopus_ros.paths import config_path

    config = FunctionRegistry.from_yaml(config_path("functions.yaml")).to_dict()
    for path in (default_model_dir(), default_model_dir() / "second_opinion"):
        assert FunctionRegistry.from_yaml(path / "functions.yaml").to_dict() == config, path
