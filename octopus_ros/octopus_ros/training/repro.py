"""Two runs of the same training command, their figures side by side (issue 12 item 6).

    python -m octopus_ros.training.repro --out runs/repro --scale 0.02 --pool-calls 2000

Runs ``train_all`` twice with the same arguments (step budgets, seed, threads) into
``OUT/run_a`` and ``OUT/run_b``, one after the other, then prints every held-out and natural-set
figure of the two metrics.json side by side with the difference, whether the two models'
tensors are bit-identical (``torch.equal``; the files themselves can differ in their metadata
order), and the largest parameter difference; writes
``OUT/repro.json``. Budgets are steps with a seeded data order, so on one machine with the same
torch build and thread count the two runs should agree exactly; a stage cut short by its
wall-clock guard (listed) is the one way load can change the result.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file


def _figures(metrics: dict) -> dict[str, float]:
    out: dict[str, float] = {}
    e = metrics.get("eval_fp32", {})
    for split, v in e.get("split", {}).items():
        out[f"{split} exact"] = v["exact_match"]
    for split, v in e.get("node", {}).items():
        out[f"{split} published wrong"] = v["published_wrong"]
    nat = e.get("natural", {}).get("all", {})
    for key in ("published_wrong", "published_right", "declines_published", "free_text_copied"):
        if key in nat:
            out[f"natural {key.replace('_', ' ')}"] = nat[key]
    for stage, steps in metrics.get("stage_steps", {}).items():
        out[f"steps {stage}"] = steps
    return out


def compare(a: Path, b: Path) -> dict:
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    fa, fb = _figures(ma), _figures(mb)
    # compare tensors, not file hashes: safetensors writes its metadata map in a random order,
    # so two bit-identical models can be two different files
    digest = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (a, b)]
    ta, tb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    shared = [k for k in ta if k in tb and ta[k].shape == tb[k].shape]
    max_diff = max((float((ta[k].float() - tb[k].float()).abs().max()) for k in shared), default=float("nan"))
    identical = set(ta) == set(tb) and all(torch.equal(ta[k], tb[k]) for k in ta)  # False on a shape change
    return {
        "figures": {k: [fa[k], fb.get(k)] for k in fa},
        "identical_weights": identical,
        "identical_files": digest[0] == digest[1],
        "max_parameter_difference": max_diff,
        "cut_short": [ma.get("stages_cut_short", []), mb.get("stages_cut_short", [])],
        "train_seconds": [ma.get("train_seconds"), mb.get("train_seconds")],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--compare-only", action="store_true", help="only compare OUT/run_a and OUT/run_b")
    args, train_args = parser.parse_known_args(argv)
    if not args.compare_only:
        from octopus_ros.training.train_all import main as train_main

        for run in ("run_a", "run_b"):
            train_main(["--out", str(args.out / run), *train_args])
    result = compare(args.out / "run_a", args.out / "run_b")
    (args.out / "repro.json").write_text(json.dumps(result, indent=2))
    print(f"{'figure':40s} {'run a':>9s} {'run b':>9s} {'b - a':>8s}")
    for key, (x, y) in result["figures"].items():
        diff = "" if y is None else f"{y - x:+8.4f}"
        print(f"{key:40s} {x:9.4f} {'-' if y is None else f'{y:9.4f}'} {diff}")
    print(
        f"weights bit-identical: {result['identical_weights']}; largest parameter difference "
        f"{result['max_parameter_difference']:.3g}; stages cut short: {result['cut_short']}; "
        f"train seconds: {result['train_seconds']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
