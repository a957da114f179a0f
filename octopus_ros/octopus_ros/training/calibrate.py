"""Temperature calibration of the call confidence.

The node compares ``confidence`` (the probability of the whole call: product of the softmax
probabilities of the freely chosen tokens) with ``confidence_threshold``. A trained model is
usually over-confident, so that number is not a probability. One temperature T divides every
logit before that softmax (greedy choices do not change); T is fitted on **validation records of
the training distribution** (the ``train`` split drawn with a seed no training pool uses: fresh
images, combos and fills, never a held-out or natural item) by minimising the negative
log-likelihood of the decisions' correctness under their confidence:

    NLL(T) = -mean[ y log c_T + (1 - y) log(1 - c_T) ],  y = the decoded call is the expected one

which is the quantity the threshold is compared with (token-level NLL of the chosen tokens is
minimised by T -> 0, since greedy tokens are the argmax). T goes into the checkpoint's
``config.json`` (``model.temperature``); a model without it decodes with T = 1.

Reported: expected calibration error (ECE, 15 equal-width bins, over decisions that produced a
call) before and after, on the validation records, the iid / unseen splits and the natural set,
and a reliability diagram (PNG).

usage: python -m octopus_ros.training.calibrate CHECKPOINT [--n-val 1000] [--n 300]
           [--plot CHECKPOINT/calibration.png] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

VALIDATION_SEED = 424_242  # no training pool uses it (train_all draws seeds cfg.seed .. cfg.seed + 2)
EVAL_SEED = 1234  # evaluate.py's default: the held-out splits as make evaluate draws them
ECE_BINS = 15
T_MIN, T_MAX = 0.05, 50.0


@dataclass
class CalibrationRecord:
    """One decision: the logits of its free tokens and whether the call was right."""

    logits: torch.Tensor  # (F, V) logits of the F freely chosen tokens
    chosen: torch.Tensor  # (F,) chosen ids
    correct: bool


def record_of(decision: Any, correct: bool) -> CalibrationRecord | None:
    """A record from ``Octopus.decide(..., keep_logits=True)``; None when no call was decoded."""
    if decision.call is None or not decision.free_logits:
        return None
    rows = torch.stack([row for row, _ in decision.free_logits]).float()
    chosen = torch.tensor([tid for _, tid in decision.free_logits], dtype=torch.long)
    return CalibrationRecord(rows, chosen, bool(correct))


def _stack(records: list[CalibrationRecord]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, F, V) logits, (N, F) chosen ids and (N, F) mask, padded to the longest call."""
    F = max(r.logits.shape[0] for r in records)
    V = records[0].logits.shape[1]
    logits = torch.zeros(len(records), F, V)
    chosen = torch.zeros(len(records), F, dtype=torch.long)
    mask = torch.zeros(len(records), F)
    for i, r in enumerate(records):
        f = r.logits.shape[0]
        logits[i, :f], chosen[i, :f], mask[i, :f] = r.logits, r.chosen, 1.0
    return logits, chosen, mask


def _confidences(stacked, temperature: float) -> np.ndarray:
    logits, chosen, mask = stacked
    lp = torch.log_softmax(logits / temperature, dim=-1).gather(2, chosen[..., None])[..., 0]
    return torch.exp((lp * mask).sum(1)).double().numpy()


def confidences(records: list[CalibrationRecord], temperature: float) -> np.ndarray:
    """Call confidence of each record at ``temperature`` (as the decoder computes it)."""
    if not records:
        return np.empty(0)
    return _confidences(_stack(records), temperature)


def correctness(records: list[CalibrationRecord]) -> np.ndarray:
    return np.array([r.correct for r in records], dtype=float)


def nll(conf: np.ndarray, correct: np.ndarray) -> float:
    """Mean binary negative log-likelihood of ``correct`` under ``conf``."""
    c = np.clip(conf, 1e-7, 1 - 1e-7)
    return float(-np.mean(correct * np.log(c) + (1 - correct) * np.log(1 - c)))


def fit_temperature(records: list[CalibrationRecord]) -> float:
    """T in [T_MIN, T_MAX] minimising :func:`nll` (log-spaced grid, then golden-section refine)."""
    if not records:
        raise ValueError("no calibration records (no decision produced a call)")
    y = correctness(records)
    stacked = _stack(records)

    def loss(log_t: float) -> float:
        return nll(_confidences(stacked, math.exp(log_t)), y)

    grid = np.linspace(math.log(T_MIN), math.log(T_MAX), 61)
    values = [loss(g) for g in grid]
    k = int(np.argmin(values))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    g = (math.sqrt(5) - 1) / 2
    a, b = hi - g * (hi - lo), lo + g * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(30):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - g * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + g * (hi - lo)
            fb = loss(b)
    return float(math.exp((lo + hi) / 2))


def ece(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width bins of |accuracy - confidence| x share."""
    if len(conf) == 0:
        return float("nan")
    idx = np.minimum((np.asarray(conf) * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def reliability(conf: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> list[dict]:
    """Per bin: mean confidence, accuracy and count (empty bins left out)."""
    idx = np.minimum((np.asarray(conf) * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        sel = idx == b
        if sel.any():
            out.append(
                {
                    "bin": [b / bins, (b + 1) / bins],
                    "confidence": float(conf[sel].mean()),
                    "accuracy": float(correct[sel].mean()),
                    "n": int(sel.sum()),
                }
            )
    return out


def plot_reliability(
    groups: dict[str, list[CalibrationRecord]], temperature: float, path: str | Path
) -> Path:
    """Reliability diagrams (accuracy vs confidence per bin) before and after, one line per group."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    for ax, t, title in (
        (axes[0], 1.0, "before (T = 1)"),
        (axes[1], temperature, f"after (T = {temperature:.3f})"),
    ):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
        for name, records in groups.items():
            if not records:
                continue
            conf, y = confidences(records, t), correctness(records)
            bins = reliability(conf, y)
            ax.plot(
                [b["confidence"] for b in bins],
                [b["accuracy"] for b in bins],
                marker="o",
                label=f"{name} (ECE {ece(conf, y):.3f}, n={len(records)})",
            )
        ax.set_title(title)
        ax.set_xlabel("confidence (call probability)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=7, loc="upper left")
    axes[0].set_ylabel("share of calls that are right")
    fig.suptitle("Reliability of the call confidence")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_temperature(checkpoint: str | Path, temperature: float) -> Path:
    """Set ``model.temperature`` in the checkpoint's config.json (nothing else changes)."""
    from octopus_ros.model.checkpoint import CONFIG_FILE, read_checkpoint_config

    path = Path(checkpoint) / CONFIG_FILE
    _, record = read_checkpoint_config(checkpoint)
    record["model"]["temperature"] = round(float(temperature), 6)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


# ----------------------------------------------------------------------------- collecting records
def collect_split(
    octopus: Any, split: str, n: int, seed: int, progress: bool = False
) -> list[CalibrationRecord]:
    """Records of ``n`` examples of a synthetic split."""
    from tqdm import tqdm

    from octopus_ros.data import generate

    out = []
    for ex in tqdm(generate(split, n, seed), desc=f"calibrate {split}", disable=not progress, leave=False):
        d = octopus.decide(ex.instruction, ex.image, keep_logits=True)
        r = record_of(d, d.call is not None and d.call.to_text() == ex.answer)
        if r is not None:
            out.append(r)
    return out


def collect_natural(
    octopus: Any, progress: bool = False, rows: list[dict] | None = None
) -> list[CalibrationRecord]:
    """Records of the natural set: right = the expected call, or the decline for a decline item.

    ``rows``: if given, one row per item is appended (id, kind, language, expected, got,
    confidence at T = 1, and the node's action at the default threshold), for later analysis."""
    from tqdm import tqdm

    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.training.evaluate import _got, node_action, node_grounding

    registry = octopus.registry
    threshold = EngineConfig().confidence_threshold
    grounding = node_grounding(octopus)
    out = []
    for item in tqdm(
        load_natural_set(registry=registry), desc="calibrate natural", disable=not progress, leave=False
    ):
        expected = item.expected_text(registry)
        d = octopus.decide(item.text, item.frame(), keep_logits=True)
        if rows is not None:
            rows.append(
                {
                    "id": item.id,
                    "kind": item.kind,
                    "language": item.language,
                    "text": item.text,
                    "expected": expected or "decline",
                    "got": _got(d),
                    "confidence": float(d.confidence),
                    "action": node_action(d, registry, threshold, grounding, item.text),
                    "threshold": threshold,
                }
            )
        if d.call is None:
            continue
        spec = registry.by_name(d.call.function)
        right = bool(spec is not None and spec.decline) if expected is None else d.call.to_text() == expected
        r = record_of(d, right)
        if r is not None:
            out.append(r)
    return out


def summary(records: list[CalibrationRecord], temperature: float) -> dict:
    y = correctness(records)
    before, after = confidences(records, 1.0), confidences(records, temperature)
    return {
        "n": len(records),
        "accuracy": float(y.mean()) if len(y) else float("nan"),
        "mean_confidence_before": float(before.mean()) if len(y) else float("nan"),
        "mean_confidence_after": float(after.mean()) if len(y) else float("nan"),
        "ece_before": ece(before, y),
        "ece_after": ece(after, y),
        "nll_before": nll(before, y) if len(y) else float("nan"),
        "nll_after": nll(after, y) if len(y) else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.model import Octopus

    parser = argparse.ArgumentParser(description="Fit the confidence temperature of a checkpoint.")
    parser.add_argument("checkpoint")
    parser.add_argument("--n-val", type=int, default=1000, help="validation records (train distribution)")
    parser.add_argument("--n", type=int, default=300, help="examples per held-out split for the report")
    parser.add_argument(
        "--plot", default=None, help="reliability diagram (default CHECKPOINT/calibration.png)"
    )
    parser.add_argument("--no-natural", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not write T into config.json")
    parser.add_argument("--rows", default=None, help="write the natural set's per-item rows here (JSON)")
    parser.add_argument("--records", default=None, help="save every group's records here (torch.save)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    octopus = Octopus.load(args.checkpoint)
    octopus.temperature = 1.0  # records keep raw logits; fit from scratch whatever is stored
    val = collect_split(octopus, "train", args.n_val, VALIDATION_SEED, progress=True)
    temperature = fit_temperature(val)
    groups = {"validation (train distribution)": val}
    for split in ("iid", "unseen_phrasing", "unseen_combo"):
        if args.n > 0:
            groups[split] = collect_split(octopus, split, args.n, EVAL_SEED, progress=True)
    if not args.no_natural:
        rows: list[dict] = []
        groups["natural"] = collect_natural(octopus, progress=True, rows=rows)
        if args.rows:
            Path(args.rows).write_text(
                json.dumps(rows, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
    if args.records:
        torch.save(
            {name: [(r.logits.half(), r.chosen, r.correct) for r in rs] for name, rs in groups.items()},
            args.records,
        )
    report = {
        "temperature": temperature,
        "objective": "binary NLL of call correctness under the call confidence",
        "validation": {"split": "train", "seed": VALIDATION_SEED, "n": args.n_val},
        "ece_bins": ECE_BINS,
        "groups": {name: summary(records, temperature) for name, records in groups.items()},
    }
    plot = plot_reliability(groups, temperature, args.plot or Path(args.checkpoint) / "calibration.png")
    print(f"temperature T = {temperature:.4f}  (fitted on {len(val)} validation decisions)")
    print(
        f"{'group':34s} {'n':>5s} {'acc':>7s} {'conf T=1':>9s} {'conf T':>8s} {'ECE T=1':>8s} {'ECE T':>7s}"
    )
    for name, s in report["groups"].items():
        print(
            f"{name:34s} {s['n']:5d} {s['accuracy']:7.1%} {s['mean_confidence_before']:9.3f}"
            f" {s['mean_confidence_after']:8.3f} {s['ece_before']:8.3f} {s['ece_after']:7.3f}"
        )
    print(f"reliability diagram: {plot}")
    out = Path(args.checkpoint) / "calibration.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")  # the report, with or without T
    print(f"report {out}")
    if not args.no_write:
        write_temperature(args.checkpoint, temperature)
        print(f"T written to {Path(args.checkpoint) / 'config.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
