"""The CUDA path, fp32 / fp16 / bf16, in one run: decisions, latency and decode against the floor.

    python benchmarks/bench_gpu.py                     # all three sections on the first CUDA device
    python benchmarks/bench_gpu.py --quick --device cpu --precisions fp32 bf16   # a CPU smoke test

1. **The bundled model** (``octopus_ros/models/octopus_tiny``) in each precision on the GPU and in
   fp32 on the CPU, on the natural set and ``--n`` examples of each held-out split: every decision
   (the decoded call and how the node would act on it, by the engine's own rule) is compared with
   the CPU fp32 one, and the figures (exact match, natural published wrong / right) are printed
   side by side with the latency per decision (frame to decision, p50 / p95).
2. **The 0.5B shape** (ViT-B/32 + Qwen2-0.5B, random weights): constrained + jump-forward,
   constrained, and ``hf.generate`` per precision, interleaved sample by sample, with an oracle
   steering the random LM (timing only); decode per pass against the floor (one read of the LM's
   weights at the device-to-device copy bandwidth measured in the same run). Then the same
   weights unsteered: the decisions and the first decode step's logits of fp16 / bf16 against fp32
   (random weights make near-ties, so this is a weak check of the kernels, not of accuracy).
3. **The SmolVLM-256M shape** (benchmarks/bench_vlm.py's build: real sizes, random weights) on the
   native VLM backend, steered like section 2, and unsteered decisions against fp32.

Timings on CUDA: each decision ends in host-side token ids, so the wall clock includes the GPU's
work. The figures are for the machine this runs on; print its name with them.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "octopus_ros"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_model import (  # noqa: E402
    EXAMPLES,
    MODES,
    Oracle,
    make_tokenizer,
    measure_interleaved,
    targets_for,
)

from octopus_ros.functions import FunctionRegistry  # noqa: E402
from octopus_ros.model import Octopus, attach_tokenizer, build_model, get_model_config  # noqa: E402
from octopus_ros.model.precision import apply_precision, decode_weight_bytes  # noqa: E402
from octopus_ros.paths import config_path  # noqa: E402

BUNDLED = ROOT / "octopus_ros" / "models" / "octopus_tiny"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth_gbs(device: torch.device, mbytes: int = 1024, repeats: int = 10) -> float:
    """(read + write) bytes per second of one tensor copy on ``device`` (best of ``repeats``)."""
    src = torch.ones(mbytes * 2**18, device=device)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats + 2):
        sync(device)
        t = time.perf_counter()
        dst.copy_(src)
        sync(device)
        best = min(best, time.perf_counter() - t)
    del src, dst
    return 2 * mbytes * 2**20 / best / 1e9


def pct(x: float) -> str:
    return f"{100 * x:5.1f} %"


def quantiles_ms(values: list[float]) -> tuple[float, float]:
    a = np.asarray(values) * 1000
    return float(np.percentile(a, 50)), float(np.percentile(a, 95))


# ----------------------------------------------------------------------------- 1. the bundled model
def bundled_section(args, configs: list[tuple[str, str, str]]) -> tuple[list[str], dict]:
    from octopus_ros.data import generate
    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.training.evaluate import EVAL_SPLITS, _got, decode_mode, node_action, node_grounding

    threshold = EngineConfig().confidence_threshold
    registry = FunctionRegistry.from_yaml(BUNDLED / "functions.yaml")
    items = load_natural_set(registry=registry)
    if args.quick:
        items = items[::8]
    cases = [
        ("natural", it.id, it.text, it.frame(), it.expected_text(registry) or "decline", it.kind)
        for it in items
    ]
    for split in EVAL_SPLITS:
        for k, ex in enumerate(generate(split, args.n, 1234)):
            cases.append((split, f"{split}-{k}", ex.instruction, ex.image, ex.answer, "call"))
    lines = [
        f"== 1. bundled model ({BUNDLED.name}): {len(items)} natural requests + {args.n} per held-out split, "
        f"node threshold {threshold}"
    ]
    results: dict[str, list[dict]] = {}
    for device, prec, static in configs:
        t0 = time.perf_counter()
        octopus = Octopus.load(BUNDLED, device=device, precision=prec, static_decode=static)
        load_s = time.perf_counter() - t0
        grounding, mode = node_grounding(octopus), decode_mode(octopus)
        for _, _, text, image, _, _ in cases[:5]:  # warm-up: kernels, caches
            octopus.decide(text, image, mode=mode)
        rows = []
        for split, cid, text, image, expected, kind in cases:
            sync(octopus.device)
            t = time.perf_counter()
            d = octopus.decide(text, image, mode=mode)
            sync(octopus.device)
            dt = time.perf_counter() - t
            got = _got(d)
            action = node_action(d, registry, threshold, grounding, text)
            rows.append(
                {
                    "split": split,
                    "id": cid,
                    "kind": kind,
                    "expected": expected,
                    "got": got,
                    "action": action,
                    "confidence": float(d.confidence),
                    "s": dt,
                }
            )
        key = f"{device}:{prec}" + ("" if device == "cpu" else f":{octopus.static_decode}")
        results[key] = rows
        replays = octopus._static.replays if octopus._static is not None else 0
        lines.append(f"  {key} loaded in {load_s:.1f} s; passes replayed as a CUDA graph: {replays}")
        del octopus
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    ref_key = next(iter(results))
    ref = results[ref_key]
    head = f"  {'config':<17}{'exact held-out':>15}{'nat. pub. wrong':>16}{'nat. pub. right':>16}"
    head += f"{'same decision':>15}{'same action':>13}{'max |dconf|':>12}{'p50 ms':>8}{'p95 ms':>8}"
    lines.append(head)
    for key, rows in results.items():
        held = [r for r in rows if r["split"] != "natural"]
        nat = [r for r in rows if r["split"] == "natural"]
        exact = sum(r["got"] == r["expected"] for r in held) / max(len(held), 1)
        wrong = sum(
            r["action"] == "published" and (r["expected"] == "decline" or r["got"] != r["expected"])
            for r in nat
        ) / max(len(nat), 1)
        right = sum(r["action"] == "published" and r["got"] == r["expected"] for r in nat) / max(len(nat), 1)
        same = sum(a["got"] == b["got"] for a, b in zip(rows, ref, strict=True)) / len(rows)
        same_action = sum(a["action"] == b["action"] for a, b in zip(rows, ref, strict=True)) / len(rows)
        dconf = max(abs(a["confidence"] - b["confidence"]) for a, b in zip(rows, ref, strict=True))
        p50, p95 = quantiles_ms([r["s"] for r in rows])
        lines.append(
            f"  {key:<17}{pct(exact):>15}{pct(wrong):>16}{pct(right):>16}{pct(same):>15}{pct(same_action):>13}"
            f"{dconf:>12.4f}{p50:>8.1f}{p95:>8.1f}"
        )
    for key, rows in results.items():
        diff = [
            (a, b)
            for a, b in zip(rows, ref, strict=True)
            if a["got"] != b["got"] or a["action"] != b["action"]
        ]
        for a, b in diff[:6]:
            lines.append(
                f"    {key} vs {ref_key}: {a['id']}: {b['got']} [{b['action']}, {b['confidence']:.3f}] -> "
                f"{a['got']} [{a['action']}, {a['confidence']:.3f}]"
            )
    lines.append(
        f"  same decision / action: against {ref_key}; latency: frame + utterance to decision, one at a time"
    )
    return lines, {
        k: [{kk: r[kk] for kk in ("id", "got", "action", "confidence", "s")} for r in v]
        for k, v in results.items()
    }


# ----------------------------------------------------------------------------- 2. the 0.5B shape
def big_section(
    args, device: torch.device, precisions: list[str], bandwidth: float
) -> tuple[list[str], dict]:
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    tok = make_tokenizer(registry, 2000)
    cfg = attach_tokenizer(get_model_config("octopus-0.5b-shape"), tok, registry.num_tokens)
    torch.manual_seed(0)
    t = time.perf_counter()
    base = build_model(cfg).eval()
    lines = [
        f"== 2. 0.5B shape: {base.num_parameters() / 1e6:.0f}M params (vision {base.num_parameters('vision') / 1e6:.0f}M, "
        f"LM {base.num_parameters('lm') / 1e6:.0f}M), built in {time.perf_counter() - t:.0f} s, random weights"
    ]
    rng = np.random.default_rng(1)
    picks = [0, 2, 9] if not args.quick else [0]
    samples = [(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), EXAMPLES[i][0]) for i in picks]
    all_targets = targets_for(tok, base.config.eos_token_id, registry)
    targets = {k: [v[i] for i in picks] for k, v in all_targets.items()}
    octopi, runs = {}, {}
    for prec in precisions:
        model = copy.deepcopy(base)
        for mode_label, mode, options, kind in MODES[:3]:
            o = Octopus(
                model=model,
                tokenizer=tok,
                registry=registry,
                device=device,
                precision=prec,
                inplace=True,
                static_decode="off",  # the oracle's hooks read ids back: not recordable as a graph
                **options,
            )
            model = o.model  # the modes share one copy per precision
            runs[(prec, mode_label)] = (o, mode, kind)
        octopi[prec] = runs[(prec, MODES[0][0])][0]
    got = measure_interleaved(runs, samples, args.repeats, targets=targets, warmup=1)
    lines.append(
        f"  {'prec':<6}{'mode':<16}{'encode':>8}{'imgKV':>8}{'prefill':>9}{'ms/pass':>9}{'passes':>7}"
        f"{'total':>8}{'floor ms':>10}{'x floor':>8}"
    )
    # one read of the LM's weights at the measured bandwidth, per precision
    weights = {p: decode_weight_bytes(octopi[p].model.lm) for p in precisions}
    floors = {p: w / (bandwidth * 1e9) for p, w in weights.items()}
    out = {}
    for (prec, mode_label), m in got.items():
        floor = floors[prec]
        out[f"{prec}:{mode_label}"] = {k: v for k, v in m.items() if k != "texts"} | {"floor_s": floor}
        lines.append(
            f"  {prec:<6}{mode_label:<16}{1000 * m['encode']:>8.2f}{1000 * m.get('image_prefill', 0.0):>8.2f}"
            f"{1000 * m['prefill']:>9.2f}{1000 * m['per_pass']:>9.2f}{m['mean_forward_passes']:>7.1f}"
            f"{1000 * m['total']:>8.1f}{1000 * floor:>10.3f}{m['per_pass'] / floor:>8.1f}"
        )
    for prec in precisions:
        a, b = got[(prec, "constrained+JF")], got[(prec, "hf.generate")]
        lines.append(
            f"  {prec}: constrained+JF / hf.generate: per pass {a['per_pass'] / b['per_pass']:.2f}x, "
            f"total {a['total'] / b['total']:.2f}x ({weights[prec] / 2**20:.0f} MiB "
            f"read per pass at {bandwidth:.0f} GB/s)"
        )
    lines += unsteered(octopi, precisions, samples_for(args), "0.5B")
    lines += graph_rows(args, octopi, precisions, floors, out)
    return lines, out


def graph_rows(args, octopi: dict, precisions: list[str], floors: dict, out: dict) -> list[str]:
    """Unsteered constrained decoding, dynamic cache against the static cache replayed as a CUDA
    graph (eager static cache on a CPU), with and without jump-forward, interleaved."""
    static = "graph" if octopi[precisions[0]].device.type == "cuda" else "eager"
    runs = {}
    for prec in precisions:
        base = octopi[prec]
        for jf in (True, False):
            for sd in ("off", static):
                o = Octopus(
                    model=base.model,
                    tokenizer=base.tokenizer,
                    registry=base.registry,
                    device=base.device,
                    precision=prec,
                    inplace=True,
                    jump_forward=jf,
                    static_decode=sd,
                )
                runs[(prec, f"{'JF' if jf else 'no JF'} {sd}")] = (o, "constrained", "functional")
    samples = samples_for(args)[:4]
    got = measure_interleaved(runs, samples, args.repeats, warmup=2)
    lines = [
        f"  unsteered, {len(samples)} samples: the dynamic cache (off) against the static cache ({static})",
        f"  {'prec':<6}{'decoding':<14}{'prefill':>9}{'ms/pass':>9}{'passes':>7}{'total':>8}{'x floor':>8}"
        f"{'graph passes':>13}",
    ]
    for (prec, label), m in got.items():
        floor = floors[prec]
        st = runs[(prec, label)][0]._static
        out[f"{prec}:unsteered {label}"] = {k: v for k, v in m.items() if k != "texts"} | {"floor_s": floor}
        lines.append(
            f"  {prec:<6}{label:<14}{1000 * m['prefill']:>9.2f}{1000 * m['per_pass']:>9.2f}"
            f"{m['mean_forward_passes']:>7.1f}{1000 * m['total']:>8.1f}{m['per_pass'] / floor:>8.1f}"
            f"{st.replays if st is not None else 0:>13}"
        )
    for prec in precisions:
        for jf in ("JF", "no JF"):
            a, b = got[(prec, f"{jf} {static}")], got[(prec, f"{jf} off")]
            same = sum(x == y for x, y in zip(a["texts"], b["texts"], strict=True))
            lines.append(
                f"  {prec} {jf}: {static} / off per pass {a['per_pass'] / b['per_pass']:.2f}x, total "
                f"{a['total'] / b['total']:.2f}x; same decision {same}/{len(a['texts'])}"
            )
    return lines


def samples_for(args) -> list[tuple[np.ndarray, str]]:
    rng = np.random.default_rng(2)
    n = 3 if args.quick else len(EXAMPLES)
    return [(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), EXAMPLES[i][0]) for i in range(n)]


def unsteered(octopi: dict, precisions: list[str], samples, name: str) -> list[str]:
    """Decisions and first-step logits of each precision against the first one, same weights, no oracle."""
    ref = precisions[0]
    texts: dict[str, list[str]] = {p: [] for p in precisions}
    logits: dict[str, list[torch.Tensor]] = {p: [] for p in precisions}
    for p in precisions:
        o = octopi[p]
        head = (
            o.model.get_output_embeddings()
            if hasattr(o.model, "get_output_embeddings")
            else o.model.lm.get_output_embeddings()
        )
        first: list[torch.Tensor] = []
        h = head.register_forward_hook(lambda m, a, out, first=first: first.append(out[0, -1].float().cpu()))
        try:
            for image, text in samples:
                first.clear()
                d = o.decide(text, image)
                texts[p].append(d.raw_text)
                if first:
                    logits[p].append(first[0])
        finally:
            h.remove()
    lines = []
    for p in precisions[1:]:
        same = sum(a == b for a, b in zip(texts[p], texts[ref], strict=True))
        cos = [
            torch.nn.functional.cosine_similarity(a, b, dim=0).item()
            for a, b in zip(logits[p], logits[ref], strict=False)
        ]
        top = [int(a.argmax() == b.argmax()) for a, b in zip(logits[p], logits[ref], strict=False)]
        lines.append(
            f"  {name} unsteered {p} vs {ref}: same decision {same}/{len(samples)}; first step's logits: "
            f"cosine min {min(cos):.5f}, same argmax {sum(top)}/{len(top)}"
        )
    return lines


# ----------------------------------------------------------------------------- 3. SmolVLM-256M
def vlm_section(
    args, device: torch.device, precisions: list[str], bandwidth: float
) -> tuple[list[str], dict]:
    from bench_vlm import SAMPLES, SHAPES_DIR, build, lm_pass_bytes

    from octopus_ros.model.vlm import VLMOctopus

    shape = json.loads((SHAPES_DIR / "smolvlm-256m.json").read_text())
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    t = time.perf_counter()
    base, processor = build(shape, registry)
    lines = [
        f"== 3. SmolVLM-256M shape: {sum(p.numel() for p in base.parameters()) / 1e6:.0f}M params, built in "
        f"{time.perf_counter() - t:.0f} s, random weights"
    ]
    rng = np.random.default_rng(0)
    n = 1 if args.quick else 3
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(n)]
    octopi = {}
    for prec in precisions:
        model = apply_precision(copy.deepcopy(base), precision=prec, device=device, inplace=True)
        octopi[prec] = VLMOctopus(
            model=model, processor=processor, registry=registry, device=device, precision=prec
        )
    lines.append(
        f"  {'prec':<6}{'imgtok':>7}{'encode':>8}{'imgKV':>8}{'prefill':>9}{'ms/pass':>9}{'passes':>7}"
        f"{'floor ms':>10}{'x floor':>8}"
    )
    out = {}
    rows: dict[str, dict[str, list[float]]] = {p: {} for p in precisions}
    oracles = {p: Oracle(octopi[p].model) for p in precisions}
    image_tokens = 0
    try:
        for r in range(args.repeats + 1):
            for i, image in enumerate(frames):
                instruction, answer = SAMPLES[i % len(SAMPLES)]
                for p in precisions[r % len(precisions) :] + precisions[: r % len(precisions)]:
                    o = octopi[p]
                    enc = o.encode(image)
                    image_tokens = int(enc.embeds.shape[1])
                    oracles[p].start(o.tokenizer.encode(answer, add_special_tokens=False))
                    d = o.decide(instruction, enc)
                    oracles[p].start(None)
                    if d.raw_text != answer:
                        raise RuntimeError(f"SmolVLM {p}: steered decision {d.raw_text!r} != {answer!r}")
                    if r == 0:
                        continue
                    passes = max(d.timings["forward_passes"], 1.0)
                    for k, v in (
                        ("encode", enc.timings["preprocess"] + enc.timings["encode"]),
                        ("image_prefill", enc.timings["image_prefill"]),
                        ("prefill", d.timings["prefill"]),
                        ("per_pass", d.timings["decode"] / passes),
                        ("passes", d.timings["forward_passes"]),
                    ):
                        rows[p].setdefault(k, []).append(v)
    finally:
        for oracle in oracles.values():
            oracle.remove()
    for p in precisions:
        m = {k: statistics.median(v) for k, v in rows[p].items()}
        floor = lm_pass_bytes(octopi[p].model) / (bandwidth * 1e9)
        out[p] = m | {"floor_s": floor, "image_tokens": image_tokens}
        lines.append(
            f"  {p:<6}{image_tokens:>7}{1000 * m['encode']:>8.2f}{1000 * m['image_prefill']:>8.2f}"
            f"{1000 * m['prefill']:>9.2f}{1000 * m['per_pass']:>9.2f}{m['passes']:>7.1f}{1000 * floor:>10.3f}"
            f"{m['per_pass'] / floor:>8.1f}"
        )
    lines += unsteered_vlm(octopi, precisions, frames)
    return lines, out


def unsteered_vlm(octopi: dict, precisions: list[str], frames) -> list[str]:
    from bench_vlm import SAMPLES

    ref = precisions[0]
    texts = {
        p: [
            octopi[p].decide(s[0], octopi[p].encode(f)).raw_text
            for f, s in zip(frames, SAMPLES, strict=False)
        ]
        for p in precisions
    }
    return [
        f"  SmolVLM unsteered {p} vs {ref}: same decision "
        f"{sum(a == b for a, b in zip(texts[p], texts[ref], strict=True))}/{len(frames)}"
        for p in precisions[1:]
    ]


def bundled_configs(args) -> list[tuple[str, str, str]]:
    """(device, precision, static_decode): CPU fp32 first (the reference), then each precision on
    the device with the static cache (a CUDA graph there), and fp32 / fp16 with the dynamic one."""
    static = "graph" if args.device.startswith("cuda") else "eager"
    out = [("cpu", "fp32", "off")]
    for p in args.precisions:
        if p in ("fp32", "fp16"):
            out.append((args.device, p, "off"))
        out.append((args.device, p, static))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "fp16", "bf16"])
    parser.add_argument("--n", type=int, default=100, help="examples per held-out split (section 1)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds (sections 2 and 3)")
    parser.add_argument("--sections", nargs="+", default=["bundled", "big", "vlm"])
    parser.add_argument("--quick", action="store_true", help="few examples and samples (a smoke test)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.repeats = 5, 1
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    bandwidth = copy_bandwidth_gbs(device)
    print(
        f"device {name}; torch {torch.__version__}; copy bandwidth (read + write) {bandwidth:.0f} GB/s; "
        f"precisions {' '.join(args.precisions)}",
        flush=True,
    )
    figures: dict = {"device": name, "bandwidth_gbs": bandwidth}
    sections = {
        "bundled": lambda: bundled_section(args, bundled_configs(args)),
        "big": lambda: big_section(args, device, args.precisions, bandwidth),
        "vlm": lambda: vlm_section(args, device, args.precisions, bandwidth),
    }
    failed = 0
    for key in args.sections:
        t = time.perf_counter()
        try:
            lines, figures[key] = sections[key]()
        except Exception as e:  # one section's failure must not hide the others' figures
            import traceback

            traceback.print_exc()
            lines, failed = [f"== {key}: FAILED: {type(e).__name__}: {e}"], failed + 1
        print("\n".join(lines) + f"\n  ({time.perf_counter() - t:.0f} s)", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=1, default=str))
    if device.type == "cuda":
        print(f"GPU memory peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
