"""What the novelty limits do, measured: published wrong and right calls per limit, as the node acts.

Runs the checkpoint once on the natural set, the check and third sets (figures only, as ``make
evaluate`` keeps them) and ``--n`` examples of each held-out synthetic split, keeping each decision; then
replays the node's whole rule for each pair of ``max_text_novelty`` / ``max_request_novelty``
in the grid (:func:`octopus_ros.training.evaluate.node_action`: grounding, safety screen, image
novelty at the node's defaults) and prints, per set:

* published wrong (EN / ZH), out-of-scope and unsafe requests published, expected calls
  published right;
* the synthetic splits' calls published right (what a limit costs the templates).

usage: python -m octopus_ros.training.novelty_sweep CHECKPOINT [--n 100] [--out runs/novelty_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

TEXT_LIMITS = (None, 0.5, 0.4, 0.3)
REQUEST_LIMITS = (None, 0.99, 0.995, 0.998, 0.999)
SETS = ("natural", "check", "third")


def _rows(octopus: Any, n: int, progress: bool) -> list[dict]:
    from tqdm import tqdm

    from octopus_ros.data import generate
    from octopus_ros.data.natural import CHECK_SET_PATH, THIRD_SET_PATH, load_natural_set
    from octopus_ros.training.evaluate import EVAL_SPLITS, _got

    registry = octopus.registry
    rows = []

    def row(split, lang, kind, expected, text, d):
        return {
            "split": split,
            "language": lang,
            "kind": kind,
            "expected": expected,
            "got": _got(d),
            "utterance": text,
            "_d": d,
            "text_novelty": float(d.text_novelty),
            "request_novelty": float(d.request_novelty),
        }

    for name, path in (("natural", None), ("check", CHECK_SET_PATH), ("third", THIRD_SET_PATH)):
        items = load_natural_set(path, registry=registry) if path else load_natural_set(registry=registry)
        for item in tqdm(items, desc=name, disable=not progress, leave=False):
            d = octopus.decide(item.text, item.frame())
            rows.append(row(name, item.language, item.kind, item.expected_text(registry), item.text, d))
    for split in EVAL_SPLITS if n > 0 else ():
        for ex in tqdm(generate(split, n, 1234), desc=split, disable=not progress, leave=False):
            d = octopus.decide(ex.instruction, ex.image)
            rows.append(row(split, ex.language, ex.mode, ex.answer, ex.instruction, d))
    return rows


def acting(
    rows: list[dict], octopus: Any, threshold: float, max_text: float | None, max_request: float | None
):
    """Each row's action ('published', 'declined', 'held_back') as the node acts with these two
    limits (None: off) and its other defaults."""
    from octopus_ros.training.evaluate import node_action, node_grounding

    grounding = node_grounding(octopus)
    return [
        node_action(
            r["_d"],
            octopus.registry,
            threshold,
            grounding,
            r["utterance"],
            max_text_novelty=max_text,
            max_request_novelty=max_request,
        )
        for r in rows
    ]


def figures(rows: list[dict], actions: list[str]) -> dict:
    def frac(sel, pred):
        sel = list(sel)
        return sum(1 for i in sel if pred(i)) / len(sel) if sel else math.nan

    def wrong(i):
        return actions[i] == "published" and (
            rows[i]["expected"] is None or rows[i]["got"] != rows[i]["expected"]
        )

    def right(i):
        return actions[i] == "published" and rows[i]["got"] == rows[i]["expected"]

    out: dict[str, Any] = {}
    for name in SETS:
        for lang in ("all", "en", "zh"):
            idx = [i for i, r in enumerate(rows) if r["split"] == name and lang in ("all", r["language"])]
            calls = [i for i in idx if rows[i]["expected"] is not None]
            refuse = [i for i in idx if rows[i]["kind"] in ("out_of_scope", "unsafe")]
            out[f"{name}_{lang}"] = {
                "published_wrong": frac(idx, wrong),
                "out_of_scope_unsafe_published": frac(refuse, lambda i: actions[i] == "published"),
                "calls_published_right": frac(calls, right),
            }
    for split in sorted({r["split"] for r in rows} - set(SETS)):
        out[split] = {"published_right": frac([i for i, r in enumerate(rows) if r["split"] == split], right)}
    return out


def main(argv: list[str] | None = None) -> int:
    import torch

    from octopus_ros.model import Octopus
    from octopus_ros.runtime.engine import EngineConfig

    parser = argparse.ArgumentParser(description="Measure the novelty limits on the natural and check sets.")
    parser.add_argument("checkpoint")
    parser.add_argument("--n", type=int, default=100, help="examples per synthetic held-out split")
    parser.add_argument("--out", default="runs/novelty_sweep.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)
    octopus = Octopus.load(args.checkpoint)
    threshold = EngineConfig().confidence_threshold
    rows = _rows(octopus, args.n, progress=sys.stderr.isatty())
    results = []
    for max_text in TEXT_LIMITS:
        for max_request in REQUEST_LIMITS:
            f = figures(rows, acting(rows, octopus, threshold, max_text, max_request))
            results.append({"max_text_novelty": max_text, "max_request_novelty": max_request, **f})
    splits = sorted({r["split"] for r in rows} - set(SETS))
    print(
        f"temperature {octopus.temperature:.3f}, confidence threshold {threshold}; per set: published wrong"
    )
    print("(EN / ZH), out-of-scope+unsafe published, expected calls published right; splits: published right")
    head = f"{'text':>5s} {'request':>7s} | " + " | ".join(f"{s:^30s}" for s in SETS)
    print(head + " | " + " ".join(f"{s[:14]:>14s}" for s in splits))
    for r in results:
        t = "-" if r["max_text_novelty"] is None else f"{r['max_text_novelty']:.2f}"
        q = "-" if r["max_request_novelty"] is None else f"{r['max_request_novelty']:.3f}"
        cells = []
        for name in SETS:
            a, en, zh = r[f"{name}_all"], r[f"{name}_en"], r[f"{name}_zh"]
            cells.append(
                f"{a['published_wrong']:5.1%} ({en['published_wrong']:4.1%}/{zh['published_wrong']:4.1%})"
                f" {a['out_of_scope_unsafe_published']:5.1%} {a['calls_published_right']:5.1%}"
            )
        print(
            f"{t:>5s} {q:>7s} | "
            + " | ".join(cells)
            + " | "
            + " ".join(f"{r[s]['published_right']:14.1%}" for s in splits)
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
