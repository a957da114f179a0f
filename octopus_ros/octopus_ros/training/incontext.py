"""Do fixed in-context examples help a model? Held-out splits and the natural set with 0, 1, 2, 4...

    python -m octopus_ros.training.incontext [CHECKPOINT] [--ks 0 1 2 4] [--n 200] [--seed 1234]

The examples are what a user would give the node (``context_examples``): fixed, text-only
(instruction -> call) pairs, the same for every request. They are drawn once from the synthetic
world's *training* split (``--pool-seed``): the first example of each function whose call the
words alone decide (named and text instructions, not "pick that up"), languages alternating; k
examples are the first k of that list, so a larger k adds to a smaller one. Each k then runs
:func:`octopus_ros.training.evaluate.evaluate` on the held-out splits and the natural set exactly
as the evaluation does without examples (the model's prompt carries them, see
:mod:`octopus_ros.model.prompt`).

Printed side by side per k: exact match per split and, as the node would act, published wrong
per split and on the natural set (with published right and declines). ``--out`` gets the figures
as JSON. CPU threads: ``--threads`` (default 1).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from octopus_ros.training.evaluate import EVAL_SPLITS, evaluate

log = logging.getLogger(__name__)


def example_pool(registry: Any, *, seed: int = 7, n: int = 2000) -> list[tuple[str, str]]:
    """Fixed (instruction, call text) examples, one per function, from the training split; the
    order alternates languages (en, zh, en, ...) as far as the functions allow."""
    from octopus_ros.data import generate

    first: dict[tuple[str, str], tuple[str, str]] = {}
    order: list[str] = []
    for ex in generate("train", n, seed):
        if ex.mode == "deictic" or registry.by_name(ex.function) is None:
            continue
        if ex.function not in order:
            order.append(ex.function)
        first.setdefault((ex.function, ex.language), (ex.instruction, ex.answer))
    pool, lang = [], "en"
    for fn in order:
        pick = first.get((fn, lang)) or first.get((fn, "zh" if lang == "en" else "en"))
        if pick is not None:
            pool.append(pick)
            lang = "zh" if lang == "en" else "en"
    return pool


def run(
    checkpoint: str | Path,
    *,
    ks: list[int],
    n: int,
    seed: int,
    pool_seed: int = 7,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate ``checkpoint`` with each number of fixed examples; returns the figures per k."""
    from octopus_ros.model import Octopus

    octopus = Octopus.load(checkpoint)
    pool = example_pool(octopus.registry, seed=pool_seed)
    if max(ks) > len(pool):
        raise ValueError(f"--ks asks for {max(ks)} examples but the pool has {len(pool)} (one per function)")
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "n_per_split": n, "seed": seed, "k": {}}
    for k in ks:
        examples = pool[:k]
        octopus.set_context(examples)
        t0 = time.monotonic()
        m = evaluate(octopus, n=n, seed=seed, splits=EVAL_SPLITS, progress=progress, natural=True)
        nat = m["natural"]["all"]
        out["k"][str(k)] = {
            "examples": [{"instruction": c.instruction, "call": c.answer} for c in octopus.context],
            "exact_match": {s: m["split"][s]["exact_match"] for s in EVAL_SPLITS},
            "published_wrong": {s: m["node"][s]["published_wrong"] for s in EVAL_SPLITS},
            "natural": {
                key: nat[key]
                for key in (
                    "n",
                    "published_wrong",
                    "published_right",
                    "declines_right",
                    "calls_published_right",
                )
            },
            "seconds": round(time.monotonic() - t0, 1),
        }
        log.info("k=%d done in %.0f s", k, time.monotonic() - t0)
    octopus.set_context(())
    return out


def format_table(res: dict[str, Any]) -> str:
    """The figures per k, side by side (percentages)."""
    ks = list(res["k"])
    short = {"iid": "iid", "unseen_phrasing": "unseen phr.", "unseen_combo": "unseen combo"}
    head = f"{'':38s}" + "".join(f"{'k=' + k:>9s}" for k in ks)
    lines = [f"in-context examples, {res['checkpoint']} (n={res['n_per_split']} per split)", head]

    def row(label: str, get) -> None:
        lines.append(f"{label:38s}" + "".join(f"{100 * get(res['k'][k]):8.1f}%" for k in ks))

    for s in EVAL_SPLITS:
        row(f"exact match {short[s]}", lambda r, s=s: r["exact_match"][s])
    for s in EVAL_SPLITS:
        row(f"published wrong {short[s]}", lambda r, s=s: r["published_wrong"][s])
    row("natural: PUBLISHED WRONG", lambda r: r["natural"]["published_wrong"])
    row("natural: published right", lambda r: r["natural"]["published_right"])
    row("natural: declines right", lambda r: r["natural"]["declines_right"])
    row("natural: expected calls published right", lambda r: r["natural"]["calls_published_right"])
    lines.append("")
    last = res["k"][ks[-1]]["examples"]
    lines.append(f"examples (k takes the first k of these {len(last)}):")
    lines += [f"  {e['instruction']!r} => {e['call']}" for e in last]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.paths import default_model_dir

    p = argparse.ArgumentParser(
        prog="python -m octopus_ros.training.incontext",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("checkpoint", nargs="?", help="checkpoint directory (default: the bundled model)")
    p.add_argument("--ks", type=int, nargs="+", default=[0, 1, 2, 4], help="numbers of examples")
    p.add_argument("--n", type=int, default=200, help="examples per held-out split")
    p.add_argument("--seed", type=int, default=1234, help="seed of the held-out examples")
    p.add_argument("--pool-seed", type=int, default=7, help="seed of the training examples given as context")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=Path("runs/incontext/metrics.json"), help="JSON output")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if any(k < 0 for k in args.ks) or args.n < 1:
        p.error("--ks must be >= 0 and --n >= 1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    checkpoint = args.checkpoint or str(default_model_dir())
    res = run(
        checkpoint,
        ks=args.ks,
        n=args.n,
        seed=args.seed,
        pool_seed=args.pool_seed,
        progress=not args.no_progress,
    )
    print(format_table(res))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
