"""Stage ablation: accuracy after stage 4 with and without each earlier stage.

Every variant gets the same (scaled) step budgets. By default a skipped stage's reference time
goes to stage 4 (converted to stage-4 steps), so every variant trains for about the same compute
and the table answers "what does this stage buy for the same compute"; ``--no-equal-total``
leaves it unspent instead.
Variants can be split over processes (``--variants``) that write one table each
(``--table``); ``--show`` prints the tables of a folder side by side.

usage: python -m octopus_ros.training.ablation --out runs/ablation --scale 0.15 [--eval-n 150]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from octopus_ros.training.evaluate import EVAL_SPLITS
from octopus_ros.training.stages import REFERENCE_SECONDS, TrainConfig
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
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--table", default="ablation.json", help="results file inside --out")
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--pool-calls", type=int, default=16000)
    parser.add_argument(
        "--no-equal-total",
        dest="equal_total",
        action="store_false",
        help="do not give a skipped stage's time to stage 4",
    )
    parser.add_argument("--show", action="store_true", help="only print the tables found in --out")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    results: dict = {}
    for path in sorted(args.out.glob("*.json")) if args.out.is_dir() else []:
        results.update(json.loads(path.read_text()))
    table = args.out / args.table
    mine = json.loads(table.read_text()) if table.exists() else {}
    for name in [] if args.show else args.variants:
        if name in results:
            continue
        cfg = TrainConfig(skip=VARIANTS[name], threads=args.threads)
        cfg.steps = {k: max(1, round(v * args.scale)) for k, v in cfg.steps.items()}
        cfg.seconds = {k: v * args.scale for k, v in cfg.seconds.items()}
        if args.equal_total:
            # a skipped stage's reference time goes to stage 4, at stage 4's steps per second
            extra = sum(REFERENCE_SECONDS[k] for k in VARIANTS[name]) / REFERENCE_SECONDS["calls"]
            cfg.steps["calls"] += round(extra * cfg.steps["calls"])
            cfg.seconds["calls"] += sum(cfg.seconds[k] for k in VARIANTS[name])
        cfg.pool_calls, cfg.pool_align = args.pool_calls, args.pool_calls // 2
        out = train(cfg, args.out / name.split(" (")[0].replace(" ", "_"), evaluate_n=args.eval_n)
        metrics = json.loads((out / "metrics.json").read_text())
        ev = metrics["eval_fp32"]
        results[name] = mine[name] = {
            "skip": list(VARIANTS[name]),
            "steps": cfg.steps,
            "train_seconds": metrics["train_seconds"],
            **{s: ev["split"][s]["exact_match"] for s in EVAL_SPLITS},
            "function_accuracy": ev["function_accuracy"],
            "language": {k: v["exact_match"] for k, v in ev["language"].items()},
        }
        args.out.mkdir(parents=True, exist_ok=True)
        table.write_text(json.dumps(mine, indent=2))
    results = {name: results[name] for name in VARIANTS if name in results}
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
