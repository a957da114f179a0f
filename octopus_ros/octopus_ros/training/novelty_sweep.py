"""What the novelty limits do, measured: published wrong and actionable accuracy per limit.

Runs the checkpoint once on the natural set (and ``--n`` examples of each held-out synthetic
split), as the node would act with no novelty limit, keeping each request's text and image
novelty; then replays the node's rule (:func:`octopus_ros.runtime.outcomes.decision_outcome`)
for each ``max_text_novelty`` / ``max_image_novelty`` in the grid and prints:

* natural set: published wrong, should-decline requests published, expected calls published
  right (actionable accuracy as the node acts), per language;
* synthetic splits: published right (the novelty limits must not cost the templates).

usage: python -m octopus_ros.training.novelty_sweep CHECKPOINT [--n 100] [--out runs/novelty_sweep.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

TEXT_LIMITS = (None, 0.7, 0.5, 0.4, 0.3, 0.2)
IMAGE_LIMITS = (None, 5.0, 3.0, 2.0, 1.5)


def _rows(octopus: Any, n: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    from octopus_ros.data import generate
    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.training.evaluate import EVAL_SPLITS, _got

    registry = octopus.registry
    rows = []

    def row(split, lang, kind, expected, d):
        return {
            "split": split,
            "language": lang,
            "kind": kind,
            "expected": expected,
            "got": _got(d),
            "_d": d,
            "text_novelty": float(d.text_novelty),
            "image_novelty": float(d.image_novelty),
        }

    for item in tqdm(load_natural_set(registry=registry), desc="natural", disable=not progress, leave=False):
        d = octopus.decide(item.text, item.frame())
        rows.append(row("natural", item.language, item.kind, item.expected_text(registry), d))
    for split in EVAL_SPLITS if n > 0 else ():
        for ex in tqdm(generate(split, n, 1234), desc=split, disable=not progress, leave=False):
            rows.append(row(split, ex.language, ex.mode, ex.answer, octopus.decide(ex.instruction, ex.image)))
    return rows


def acting(
    rows: list[dict], registry: Any, threshold: float, max_text: float | None, max_image: float | None
):
    """Each row's action ('published', 'declined', 'held_back') under the limits."""
    from octopus_ros.functions import validate_call
    from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome

    validate = functools.partial(validate_call, registry=registry)
    out = []
    for r in rows:
        code, _ = decision_outcome(
            r["_d"],
            registry,
            validate,
            allowlist=None,
            threshold=threshold,
            max_text_novelty=max_text,
            max_image_novelty=max_image,
        )
        out.append(
            "declined"
            if code == OutcomeCode.NO_ACTION
            else "published"
            if code == OutcomeCode.OK
            else "held_back"
        )
    return out


def figures(rows: list[dict], actions: list[str]) -> dict:
    def frac(sel, pred):
        sel = list(sel)
        return sum(1 for i in sel if pred(i)) / len(sel) if sel else math.nan

    out: dict[str, Any] = {}
    nat = [i for i, r in enumerate(rows) if r["split"] == "natural"]
    for lang in ("all", "en", "zh"):
        idx = [i for i in nat if lang == "all" or rows[i]["language"] == lang]
        calls = [i for i in idx if rows[i]["expected"] is not None]
        declines = [i for i in idx if rows[i]["expected"] is None]
        out[f"natural_{lang}"] = {
            "published_wrong": frac(
                idx,
                lambda i: (
                    actions[i] == "published"
                    and (rows[i]["expected"] is None or rows[i]["got"] != rows[i]["expected"])
                ),
            ),
            "declines_published": frac(declines, lambda i: actions[i] == "published"),
            "calls_published_right": frac(
                calls, lambda i: actions[i] == "published" and rows[i]["got"] == rows[i]["expected"]
            ),
        }
    for split in sorted({r["split"] for r in rows} - {"natural"}):
        idx = [i for i, r in enumerate(rows) if r["split"] == split]
        out[split] = {
            "published_right": frac(
                idx, lambda i: actions[i] == "published" and rows[i]["got"] == rows[i]["expected"]
            )
        }
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from octopus_ros.model import Octopus
    from octopus_ros.runtime.engine import EngineConfig

    parser = argparse.ArgumentParser(description="Measure the novelty limits on the natural set.")
    parser.add_argument("checkpoint")
    parser.add_argument("--n", type=int, default=100, help="examples per synthetic held-out split")
    parser.add_argument("--out", default="runs/novelty_sweep.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    octopus = Octopus.load(args.checkpoint)
    threshold = EngineConfig().confidence_threshold
    rows = _rows(octopus, args.n, progress=True)
    results = []
    grid = [(t, None) for t in TEXT_LIMITS] + [(None, m) for m in IMAGE_LIMITS[1:]]
    grid += [(t, m) for t in (0.5, 0.4, 0.3) for m in (3.0, 2.0)]
    for max_text, max_image in grid:
        f = figures(rows, acting(rows, octopus.registry, threshold, max_text, max_image))
        results.append({"max_text_novelty": max_text, "max_image_novelty": max_image, **f})
    splits = sorted({r["split"] for r in rows} - {"natural"})
    head = f"{'text':>5s} {'image':>5s} | {'WRONG':>6s} {'en':>6s} {'zh':>6s} | {'decl.pub':>8s} | {'calls ok':>8s} {'en':>6s} {'zh':>6s}"
    print(f"temperature {octopus.temperature:.3f}, confidence threshold {threshold}")
    print(head + " | " + " ".join(f"{s[:14]:>14s}" for s in splits))
    for r in results:
        a, en, zh = r["natural_all"], r["natural_en"], r["natural_zh"]
        t = "-" if r["max_text_novelty"] is None else f"{r['max_text_novelty']:.2f}"
        m = "-" if r["max_image_novelty"] is None else f"{r['max_image_novelty']:.1f}"
        print(
            f"{t:>5s} {m:>5s} | {a['published_wrong']:6.1%} {en['published_wrong']:6.1%} {zh['published_wrong']:6.1%}"
            f" | {a['declines_published']:8.1%} | {a['calls_published_right']:8.1%} {en['calls_published_right']:6.1%}"
            f" {zh['calls_published_right']:6.1%} | "
            + " ".join(f"{r[s]['published_right']:14.1%}" for s in splits)
        )
    scores = {
        kind: {
            "text_novelty_median": float(sorted(x["text_novelty"] for x in rs)[len(rs) // 2]),
            "image_novelty_median": float(sorted(x["image_novelty"] for x in rs)[len(rs) // 2]),
            "n": len(rs),
        }
        for kind in sorted({(r["split"], r["kind"]) for r in rows})
        if (rs := [x for x in rows if (x["split"], x["kind"]) == kind])
    }
    print("\nmedian novelty by split/kind:")
    for (split, kind), s in scores.items():
        print(
            f"  {split:16s} {kind:16s} n={s['n']:4d} text {s['text_novelty_median']:.2f} image {s['image_novelty_median']:.2f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "checkpoint": args.checkpoint,
                "temperature": octopus.temperature,
                "threshold": threshold,
                "grid": results,
                "median_novelty": {f"{s}/{k}": v for (s, k), v in scores.items()},
            },
            indent=1,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
