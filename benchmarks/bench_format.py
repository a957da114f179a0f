"""Answer format and connector side by side: accuracy, latency per decision and tokens per answer.

    python benchmarks/bench_format.py FUNCTIONAL_DIR JSON_DIR PERCEIVER_DIR \\
        [--eval F1 F2 F3] [--labels a b c] [--n 60] [--threads 1] [--out results.json]

Each argument is a trained checkpoint (``train_all --answer-format json`` / ``--connector
perceiver``; issue 14 item 6). The first is the reference: every ratio is to it.

- **Accuracy** comes from each model's evaluation (``python -m octopus_ros.training.evaluate DIR
  --out FILE``: held-out splits and the natural set, each model in the decode mode the node runs it
  in): ``--eval`` names those files in the same order; without it, ``DIR/metrics.json``
  (``eval_fp32``, written by train_all). Printed: exact match per held-out split, and on the natural
  set what the node would publish right and publish wrong.
- **Latency** is measured here: one ``decide()`` on a raw frame per request, ``--n`` held-out
  requests (unseen phrasings and iid, half each), each model in its own decode mode (constrained
  with jump-forward for a functional-token model, free generation to eos for a JSON model:
  ``functions/answer_format.py``). The models run interleaved, request by request with the model
  order rotating, so a burst of outside load lands on all of them alike. Printed: p50 of the whole
  decision, p50 of its decode part, tokens per answer (all of them, and those the model chose: a
  grammar-forced token is not chosen) and LM passes after the prefill.

The machine is shared and noisy: compare the ratios, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SPLITS = ("iid", "unseen_phrasing", "unseen_combo")


def load_eval(model_dir: Path, eval_file: Path | None) -> dict:
    """The evaluation figures of ``model_dir`` (see the module docstring); {} when there are none."""
    path = eval_file if eval_file is not None else model_dir / "metrics.json"
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data.get("eval_fp32", {})


def accuracy_row(m: dict) -> dict[str, float]:
    """Exact match per split, and the natural set as the node would act: published right / wrong."""
    nan = float("nan")
    row = {s: m.get("split", {}).get(s, {}).get("exact_match", nan) for s in SPLITS}
    natural = m.get("natural", {}).get("all", {})
    row["natural_right"] = natural.get("published_right", nan)
    row["natural_wrong"] = natural.get("published_wrong", nan)
    return row


def requests(n: int, seed: int) -> list:
    from octopus_ros.data import generate

    half = n // 2
    return generate("unseen_phrasing", n - half, seed) + generate("iid", half, seed + 1)


def measure(models: list, modes: list[str], examples: list, warmup: int = 3) -> list[dict]:
    """Per model: latency and token figures over ``examples``, interleaved (see the docstring)."""
    rows: list[dict[str, list[float]]] = [
        {"total": [], "decode": [], "tokens": [], "chosen": [], "passes": [], "ok": []} for _ in models
    ]
    for ex in examples[:warmup]:
        for octopus, mode in zip(models, modes, strict=True):
            octopus.decide(ex.instruction, ex.image, mode=mode)
    for i, ex in enumerate(examples):
        order = [(i + k) % len(models) for k in range(len(models))]
        for j in order:
            d = models[j].decide(ex.instruction, ex.image, mode=modes[j])
            t = d.timings
            rows[j]["total"].append(t.get("total", float("nan")) * 1000)
            rows[j]["decode"].append(t.get("decode", float("nan")) * 1000)
            rows[j]["tokens"].append(t.get("tokens", float("nan")))
            rows[j]["chosen"].append(t.get("tokens", float("nan")) - t.get("forced_tokens", 0.0))
            rows[j]["passes"].append(t.get("forward_passes", float("nan")))
            rows[j]["ok"].append(float(d.ok))
    return [
        {
            "p50_ms": float(np.median(r["total"])),
            "decode_p50_ms": float(np.median(r["decode"])),
            "tokens": float(np.mean(r["tokens"])),
            "chosen_tokens": float(np.mean(r["chosen"])),
            "passes": float(np.mean(r["passes"])),
            "parsed": float(np.mean(r["ok"])),
        }
        for r in rows
    ]


def table(labels: list[str], acc: list[dict], lat: list[dict]) -> str:
    def pct(x: float) -> str:
        return "-" if x != x else f"{x:.1%}"

    def ratio(x: float, ref: float) -> str:
        return "-" if not ref or x != x or ref != ref else f"{x / ref:.2f}x"

    head = (
        f"{'model':22s} {'iid':>7s} {'phrasing':>9s} {'combo':>7s} {'nat right':>10s} {'nat WRONG':>10s}"
        f" {'p50 ms':>8s} {'decode':>8s} {'tokens':>7s} {'chosen':>7s} {'passes':>7s}"
    )
    lines = [head]
    for label, a, t in zip(labels, acc, lat, strict=True):
        lines.append(
            f"{label:22s} {pct(a['iid']):>7s} {pct(a['unseen_phrasing']):>9s} {pct(a['unseen_combo']):>7s}"
            f" {pct(a['natural_right']):>10s} {pct(a['natural_wrong']):>10s} {t['p50_ms']:8.1f}"
            f" {t['decode_p50_ms']:8.1f} {t['tokens']:7.1f} {t['chosen_tokens']:7.1f} {t['passes']:7.1f}"
        )
    lines.append("")
    lines.append(f"ratios to {labels[0]}: p50 / decode p50 / tokens per answer / chosen tokens")
    ref = lat[0]
    for label, t in zip(labels[1:], lat[1:], strict=True):
        lines.append(
            f"  {label:20s} {ratio(t['p50_ms'], ref['p50_ms'])} / {ratio(t['decode_p50_ms'], ref['decode_p50_ms'])}"
            f" / {ratio(t['tokens'], ref['tokens'])} / {ratio(t['chosen_tokens'], ref['chosen_tokens'])}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", type=Path, help="checkpoint dirs; the first is the reference")
    p.add_argument("--eval", nargs="*", type=Path, default=None, help="evaluate --out files, same order")
    p.add_argument("--labels", nargs="*", default=None)
    p.add_argument("--n", type=int, default=60, help="requests timed per model")
    p.add_argument("--seed", type=int, default=4321)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also write the figures as JSON")
    args = p.parse_args(argv)
    if args.eval is not None and len(args.eval) != len(args.models):
        p.error("--eval needs one file per model")
    labels = args.labels or [m.name for m in args.models]
    if len(labels) != len(args.models):
        p.error("--labels needs one label per model")

    import torch

    from octopus_ros.model import Octopus
    from octopus_ros.training.evaluate import decode_mode

    torch.set_num_threads(args.threads)
    evals = args.eval or [None] * len(args.models)
    acc = [accuracy_row(load_eval(m, e)) for m, e in zip(args.models, evals, strict=True)]
    models = [Octopus.load(m) for m in args.models]
    modes = [decode_mode(o) for o in models]
    lat = measure(models, modes, requests(args.n, args.seed))
    labels = [f"{lab} ({mode[:5]})" for lab, mode in zip(labels, modes, strict=True)]
    print(table(labels, acc, lat))
    if args.out is not None:
        rows = [
            {"model": str(m), "label": lab, "decode_mode": mode, **a, **t}
            for m, lab, mode, a, t in zip(args.models, labels, modes, acc, lat, strict=True)
        ]
        args.out.write_text(json.dumps({"n": args.n, "threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
