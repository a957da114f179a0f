"""Stage ablation: accuracy after stage 4 with and without each earlier stage.

Every variant gets the same (scaled) budgets; a skipped stage's time is simply not spent,
so a variant without stage 1 trains for less wall-clock time than the full recipe.

usage: python -m octopus_ros.training.ablation --out runs/ablation --scale 0.15 [--eval-n 150]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from octopus_ros.training.evaluate import EVAL_SPLITS
from octopus_ros.training.stages import TrainConfig
from octopus_ros.training.train_all import train

VARIANTS = {
    "all stages": (),
    "without vision pretraining (1)": ("vision",),
    "without LM text pretraining (2)": ("text",),
    "without alignment (3)": ("align",),
    "stage 4 only": ("vision", "text", "align"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=float, default=0.15)
    parser.add_argument("--eval-n", type=int, default=150)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results = {}
    table = args.out / "ablation.json"
    if table.exists():
        results = json.loads(table.read_text())
    for name in args.variants:
        if name in results:
            continue
        cfg = TrainConfig(skip=VARIANTS[name])
        cfg.seconds = {k: v * args.scale for k, v in cfg.seconds.items()}
        cfg.pool_calls, cfg.pool_align = 8000, 4000
        out = train(cfg, args.out / name.split(" (")[0].replace(" ", "_"), evaluate_n=args.eval_n)
        metrics = json.loads((out / "metrics.json").read_text())
        ev = metrics["eval_fp32"]
        results[name] = {
            "skip": list(VARIANTS[name]),
            "train_seconds": metrics["train_seconds"],
            **{s: ev["split"][s]["exact_match"] for s in EVAL_SPLITS},
            "function_accuracy": ev["function_accuracy"],
        }
        args.out.mkdir(parents=True, exist_ok=True)
        table.write_text(json.dumps(results, indent=2))
    print(
        f"{'variant':34s} {'iid':>7s} {'unseen phr.':>12s} {'unseen combo':>13s} {'function':>9s} {'min':>5s}"
    )
    for name, r in results.items():
        print(
            f"{name:34s} {r['iid']:7.1%} {r['unseen_phrasing']:12.1%} {r['unseen_combo']:13.1%} "
            f"{r['function_accuracy']:9.1%} {r['train_seconds'] / 60:5.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
