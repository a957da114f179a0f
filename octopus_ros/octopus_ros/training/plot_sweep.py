"""Plot novelty sweeps side by side: published wrong against expected calls published right.

``python -m octopus_ros.training.novelty_sweep CKPT --out A.json`` replays the node's rule for
every pair of novelty limits on the natural, check and third sets. Where two models are compared,
one operating point each says little: a model can publish fewer wrong actions only because it
acts less. This draws each model's whole grid as a trade-off, one panel per set, so that a model
is better where its points lie up and to the left of the other's (more right calls for as many
wrong ones), and marks each model's default limits.

usage: python -m octopus_ros.training.plot_sweep A.json B.json --labels v9 v11
           [--defaults 0.4/0.998 0.3/0.99] [--out docs/images/novelty_tradeoff.png]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from octopus_ros.training.novelty_sweep import SETS  # the grid's set prefixes ("natural_all", …)


def _limit(value: float | None) -> str:
    return "off" if value is None else f"{value:g}"


def points(sweep: dict, prefix: str) -> list[tuple[float, float, str]]:
    """(published wrong %, calls published right %, "text/request") of every grid row for ``prefix``."""
    out = []
    for row in sweep["grid"]:
        cell = row.get(f"{prefix}_all")
        if cell is None:
            continue
        label = f"{_limit(row['max_text_novelty'])}/{_limit(row['max_request_novelty'])}"
        out.append((100 * cell["published_wrong"], 100 * cell["calls_published_right"], label))
    return out


def plot(sweeps: list[dict], labels: list[str], defaults: list[str], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(SETS), figsize=(5 * len(SETS), 4.2))
    colours = ("tab:blue", "tab:orange", "tab:green", "tab:red")
    for ax, prefix in zip(axes, SETS, strict=True):
        for i, (sweep, label) in enumerate(zip(sweeps, labels, strict=True)):
            pts = points(sweep, prefix)
            if not pts:
                continue
            colour = colours[i % len(colours)]
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=18, color=colour, alpha=0.6, label=label)
            for x, y, name in pts:
                if i < len(defaults) and name == defaults[i]:
                    ax.scatter([x], [y], s=120, facecolors="none", edgecolors=colour, linewidths=2)
                    ax.annotate(
                        f"{label} default {name}",
                        (x, y),
                        textcoords="offset points",
                        xytext=(6, -12),
                        fontsize=8,
                        color=colour,
                    )
        ax.set_title(f"{prefix} set")
        ax.set_xlabel("published wrong (%)  - lower is safer")
        ax.set_ylabel("expected calls published right (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=8)
    fig.suptitle("Novelty limits (text / request) as the node acts: each point one pair of limits")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sweeps", nargs="+", help="novelty_sweep --out files")
    parser.add_argument("--labels", nargs="+", required=True, help="one name per sweep")
    parser.add_argument(
        "--defaults", nargs="*", default=[], help="each model's default 'text/request' limits"
    )
    parser.add_argument("--out", default="docs/images/novelty_tradeoff.png")
    args = parser.parse_args(argv)
    if len(args.labels) != len(args.sweeps):
        parser.error(f"{len(args.sweeps)} sweeps but {len(args.labels)} labels")
    sweeps = [json.loads(Path(p).read_text(encoding="utf-8")) for p in args.sweeps]
    print(f"written {plot(sweeps, args.labels, args.defaults, Path(args.out))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
