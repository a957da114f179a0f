"""Warm start vs random start of a new functional token: the same short fine-tune, twice per seed.

Adds ``open_door(door)`` (token 13, example phrasings in EN and ZH, some held out) to the bundled
model and fine-tunes with LoRA on the registry's phrasings mixed with the synthetic world, once
with the new row started from the mean embedding of "open door: <description>" and once from a
random row. Prints held-out exact match (new function's unseen phrasings; bundled iid) and
held-out loss, per seed, and the mean difference.

    python benchmarks/bench_warm_start.py [--steps 60] [--seeds 0 1 2] [--threads 1]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from pathlib import Path

import numpy as np

from octopus_ros.paths import config_path, default_model_dir
from octopus_ros.training import finetune

OPEN_DOOR = """
  - name: open_door
    token: 13
    description: {en: Open one of the doors of the house., zh: 打开家里的一扇门。}
    args:
      - name: door
        type: enum
        values: [front, back, garage]
        description: {en: Which door., zh: 哪扇门。}
        examples:
          en: {front: [front, main], back: [back, rear], garage: garage}
          zh: {front: [前, 大], back: 后, garage: 车库}
    examples:
      en:
        - open the {door} door
        - please open the {door} door
        - can you open the {door} door
        - unlock and open the {door} door
        - I need the {door} door open
        - get the {door} door open for me
        - could you get the {door} door
        - the {door} door, open it
      zh:
        - 打开{door}门
        - 请把{door}门打开
        - 帮我开一下{door}门
        - 把{door}门开开
        - 我要{door}门开着
        - 麻烦开{door}门
        - "{door}门打开一下"
        - 开一下{door}门吧
"""


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="warm_start_"))
    functions = tmp / "functions.yaml"
    functions.write_text(
        config_path("functions.yaml").read_text(encoding="utf-8").rstrip("\n") + OPEN_DOOR, "utf-8"
    )
    base = default_model_dir()
    rows = []
    for seed in args.seeds:
        for init in ("mean", "random"):
            argv = ["--base", str(base), "--functions", str(functions), "--data", "registry", "synthetic"]
            argv += ["--mix", "1", "1", "--lora", "--merge", "--steps", str(args.steps), "--batch", "16"]
            argv += ["--lr", "2e-3", "--eval-n", "96", "--eval-every", "0", "--synthetic-n", "600"]
            argv += ["--init-new", init, "--seed", str(seed), "--threads", str(args.threads)]
            argv += ["--copier-steps", "0"]  # open_door copies nothing: the span copier is not measured
            argv += ["--out", str(tmp / f"{init}_{seed}")]
            m = finetune.run(finetune.build_parser().parse_args(argv))
            after = m["heldout_exact_match"]["after"]
            rows.append(
                {
                    "seed": seed,
                    "init": init,
                    "new_em": after["registry"]["exact_match"],
                    "new_en": after["registry"]["by_language"].get("en", float("nan")),
                    "new_zh": after["registry"]["by_language"].get("zh", float("nan")),
                    "new_loss": m["heldout_loss"]["after"]["registry"],
                    "new_loss_0": m["heldout_loss"]["before"]["registry"],
                    "iid_before": m["heldout_exact_match"]["before"]["synthetic"]["exact_match"],
                    "iid_after": after["synthetic"]["exact_match"],
                    "seconds": m["seconds"],
                }
            )
    print(f"\nwarm vs random start of <nexa_13> open_door: {args.steps} LoRA steps, batch 16, bundled base")
    head = (
        "seed",
        "init",
        "new_em",
        "new_en",
        "new_zh",
        "new_loss_0",
        "new_loss",
        "iid_before",
        "iid_after",
        "seconds",
    )
    print(" ".join(f"{h:>10}" for h in head))
    for r in rows:
        print(" ".join(f"{r[h]:>10.3f}" if isinstance(r[h], float) else f"{r[h]!s:>10}" for h in head))
    for key in ("new_em", "new_loss_0", "new_loss", "iid_after"):
        warm = np.mean([r[key] for r in rows if r["init"] == "mean"])
        cold = np.mean([r[key] for r in rows if r["init"] == "random"])
        print(f"mean {key}: warm {warm:.3f}  random {cold:.3f}  (warm - random {warm - cold:+.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
