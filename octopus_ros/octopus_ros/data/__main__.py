"""``python -m octopus_ros.data``: split sizes, generation speed, and a contact sheet of samples.

python -m octopus_ros.data --sheet docs/images/world_samples.png --n 32 --bench 500
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

from .render import contact_sheet, render
from .tasks import SPLITS, generate, split_summary
from .world import sample_scene

log = logging.getLogger("octopus_ros.data")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m octopus_ros.data", description=__doc__.splitlines()[0])
    parser.add_argument("--sheet", help="write a contact sheet PNG of --n training samples here")
    parser.add_argument("--n", type=int, default=32, help="samples on the sheet (default 32)")
    parser.add_argument("--seed", type=int, default=0, help="generation seed (default 0)")
    parser.add_argument("--split", default="train", choices=SPLITS, help="split for the sheet")
    parser.add_argument("--bench", type=int, default=0, help="time generation of this many examples")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    summary = split_summary()
    log.info(
        "%d categories, %d colours, %d combos (%d holdable, %d held out: %s)",
        summary["categories"],
        summary["colours"],
        summary["combos"],
        summary["holdable_combos"],
        len(summary["heldout_combos"]),
        ", ".join(f"{col} {cat}" for cat, col in summary["heldout_combos"]),
    )
    log.info(
        "%d templates, %d held out for unseen_phrasing", summary["templates"], summary["heldout_templates"]
    )
    if args.bench > 0:
        rng = np.random.default_rng(args.seed)
        t0 = time.perf_counter()
        scenes = [sample_scene(rng) for _ in range(args.bench)]
        t1 = time.perf_counter()
        for scene in scenes:
            render(scene, 64)
        t2 = time.perf_counter()
        generate("train", args.bench, args.seed)
        t3 = time.perf_counter()
        k = 1000.0 / args.bench
        log.info(
            "per item: sample_scene %.3f ms, render 64 px %.3f ms, full example %.3f ms",
            (t1 - t0) * k,
            (t2 - t1) * k,
            (t3 - t2) * k,
        )
    if args.sheet:
        examples = generate(args.split, args.n, args.seed)
        contact_sheet(examples, args.sheet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
