"""Octopus model latency/memory benchmark: one command, figures and ratios side by side.

    python benchmarks/bench_model.py                  # tiny + 0.5B-shaped, random weights (~6-10 min loaded)
    python benchmarks/bench_model.py --no-big         # tiny only (~1 min)
    python benchmarks/bench_model.py --quick          # tiny MLP only, 4 samples, 1 round (tests)
    python benchmarks/bench_model.py --model octopus_ros/models/octopus_tiny   # a trained checkpoint

Per-stage latency (median, ms): preprocess, encode (vision + connector), imgKV (prefill of the
image tokens' KV, done at encode time so a pre-encoded frame skips it), prefill (the rest of the
prompt), decode per LM forward pass after the prefill, the model's chosen and the grammar's
forced tokens per call, decode ms per chosen token, and the total of one decide() on a raw
camera frame.

Compared: fp32 vs int8; constrained decoding with jump-forward vs without it vs plain
``transformers.generate`` (functional tokens, parsed afterwards) vs a JSON-text answer
(``{"function": ..., "args": {...}}``, no functional tokens); MLP vs Perceiver connector; torch
vs ONNX image side. For the 0.5B-shaped model (ViT-B/32 + Qwen2-0.5B shapes) the decode time per
pass is set against the memory-bandwidth floor (bytes of weights one pass reads / copy bandwidth
measured in the same run), and the int8 RSS is measured in a subprocess that builds the model
directly in int8 (``precision.build_int8``: it never held fp32 weights). The last rows load a
saved checkpoint in int8 in fresh processes, fp32 then quantized vs directly in int8 (the bundled
model, and a 0.5B-shaped random checkpoint written to a temporary directory, ~2.3 GB):
``--load-memory-only`` prints just those (~3 min), ``--no-load-memory`` skips them.

Fairness: the modes run interleaved, sample by sample (each round visits every sample once in
every mode, the mode order rotating), so a burst of outside load hits all modes alike. Every mode
uses the same cached system-prompt KV (generate too). "per pass" is decode time / LM passes after
the prefill in every mode; a jump-forward pass feeds several tokens, so "constrained vs generate
per pass" is given without jump-forward (one token per pass on both sides: the decoder's own
cost) and with it (what a pass costs when it carries the forced tokens).

Random weights would emit arbitrary text of arbitrary length, which makes the modes
incomparable. So, without ``--model``, an *oracle* steers the random LM along a target answer
(the call of each sample): a forward hook on the LM head adds +1000 to the next target token as
long as the output so far follows the target. Every mode then produces the same realistic call,
and only how it gets there differs (forward passes, masks, parsing). Such rows are for timing
only: their "same call" checks hold by construction, and they say nothing about accuracy. With
``--model`` the trained model's own outputs are used. The machine is shared and noisy: compare
ratios.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "octopus_ros"))
sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_memory

from octopus_ros.functions import FunctionRegistry, parse_call  # noqa: E402
from octopus_ros.model import (  # noqa: E402
    Octopus,
    OctopusModel,
    attach_tokenizer,
    build_model,
    get_model_config,
    resolve_config,
)
from octopus_ros.model.connector import build_connector  # noqa: E402
from octopus_ros.model.onnx_export import OnnxVisionEncoder, export_vision_onnx  # noqa: E402
from octopus_ros.model.precision import (  # noqa: E402
    apply_precision,
    build_int8,
    decode_weight_bytes,
    release_memory,
)
from octopus_ros.model.testing import TINY_CORPUS  # noqa: E402
from octopus_ros.model.tokenizer import train_tokenizer  # noqa: E402
from octopus_ros.paths import config_path  # noqa: E402

# (instruction, functional-token answer); the JSON-text answer is the same call (json_answer)
EXAMPLES = [
    ("pick up the red cup", "<nexa_0>('red cup')<nexa_end>"),
    ("please grab the green bottle", "<nexa_0>('green bottle')<nexa_end>"),
    ("put the blue box on the shelf", "<nexa_1>('blue box', 'shelf')<nexa_end>"),
    ("go to the kitchen", "<nexa_2>('kitchen')<nexa_end>"),
    ("drive to the charging dock", "<nexa_2>('charging_dock')<nexa_end>"),
    ("stop right now", "<nexa_3>()<nexa_end>"),
    ("throw the peel away", "<nexa_5>('banana peel', 'compost')<nexa_end>"),
    ("feed the cat", "<nexa_7>('cat')<nexa_end>"),
    ("set the speed to half", "<nexa_11>(0.5)<nexa_end>"),
    ("把红色的杯子拿起来", "<nexa_0>('红色杯子')<nexa_end>"),
    ("去厨房", "<nexa_2>('kitchen')<nexa_end>"),
    ("sing me a song", "<nexa_12>()<nexa_end>"),
]

# (label, decide mode, Octopus options, answer kind)
MODES = [
    ("constrained+JF", "constrained", {"jump_forward": True}, "functional"),
    ("constrained", "constrained", {"jump_forward": False}, "functional"),
    ("hf.generate", "generate", {"prefill_on_encode": False}, "functional"),
    ("JSON text", "plain", {"prefill_on_encode": False}, "json"),
]


def json_answer(functional: str, registry: FunctionRegistry) -> str:
    """The JSON-text answer of the same call, as ``parse_plain`` reads it."""
    call = parse_call(functional, registry)
    return json.dumps({"function": call.function, "args": call.kwargs()}, ensure_ascii=False)


class Oracle:
    """Steers a random LM along a target token sequence (see the module docstring).

    A forward hook on the input embedding records the ids fed after the prompt (the first
    embedding call after :meth:`start` is the prompt); a forward hook on the LM head pushes the
    next target token while the ids fed so far are a prefix of the target.
    """

    def __init__(self, lm: torch.nn.Module):
        self.target: list[int] | None = None
        self.calls = 0
        self.fed: list[int] = []
        self.handles = [
            lm.get_input_embeddings().register_forward_hook(self._on_embed),
            lm.get_output_embeddings().register_forward_hook(self._on_head),
        ]

    def start(self, target: list[int] | None) -> None:
        self.target, self.calls, self.fed = target, 0, []

    def _on_embed(self, module, args, output):
        if self.target is not None:
            if self.calls:
                self.fed += args[0].flatten().tolist()
            self.calls += 1

    def _on_head(self, module, args, output):
        k = len(self.fed)
        if self.target is not None and k < len(self.target) and self.fed == self.target[:k]:
            output = output.clone()
            output[..., self.target[k]] += 1000.0
            return output
        return None

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def ms(seconds: float) -> float:
    return 1000.0 * seconds


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    current = 0.0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                current = int(line.split()[1]) / 1024.0
    return current, peak


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def memory_bandwidth_gbs(mbytes: int = 256, repeats: int = 5) -> dict[str, float]:
    """Copy bandwidth ((read + write) bytes / s) with numpy (1 thread) and torch (all threads),
    and torch's read bandwidth (sum)."""
    n = mbytes * 2**20 // 4
    out = {}
    src, dst = np.ones(n, np.float32), np.empty(n, np.float32)
    out["numpy copy"] = 2 * src.nbytes / min(_timed(np.copyto, dst, src) for _ in range(repeats)) / 1e9
    tsrc, tdst = torch.ones(n), torch.empty(n)
    out["torch copy"] = 2 * tsrc.nbytes / min(_timed(tdst.copy_, tsrc) for _ in range(repeats)) / 1e9
    out["torch sum"] = tsrc.nbytes / min(_timed(tsrc.sum) for _ in range(repeats)) / 1e9
    del src, dst, tsrc, tdst
    gc.collect()
    return out


def make_tokenizer(registry: FunctionRegistry, vocab_size: int):
    """A byte-level BPE that has seen the instructions, both answer forms and the registry."""
    texts = (
        [t for ex in EXAMPLES for t in ex] + [json_answer(ex[1], registry) for ex in EXAMPLES] + TINY_CORPUS
    )
    for spec in registry.functions:
        texts += [spec.name, *spec.description.values()]
        for arg in spec.args:
            texts += list(arg.values)
    return train_tokenizer(texts * 4, vocab_size, num_functions=registry.num_tokens)


def targets_for(tokenizer, eos_id: int, registry: FunctionRegistry) -> dict[str, list[list[int]]]:
    functional = [tokenizer.encode(ex[1], add_special_tokens=False) for ex in EXAMPLES]
    js = [
        tokenizer.encode(json_answer(ex[1], registry), add_special_tokens=False) + [eos_id] for ex in EXAMPLES
    ]
    return {"functional": functional, "json": js}


def measure_interleaved(runs: dict, samples, repeats: int, *, targets=None, warmup=None, order=None):
    """Median per-stage timings of decide() on raw frames for several modes, interleaved.

    ``runs``: label -> (Octopus, decide mode, answer kind). Round 0 warms up (token caches,
    masks, allocator) on the first ``warmup`` samples (default all); rounds 1..repeats are timed.
    In every round each sample is decided in every mode before the next sample, the mode order
    rotating by one per sample and round. With ``targets`` (kind -> per-sample token ids) an
    :class:`Oracle` per LM steers the random weights. ``order`` (a list) records (round, sample,
    label) as run.
    """
    labels = list(runs)
    oracles = {}
    if targets is not None:
        for octopus, _, _ in runs.values():
            lm = octopus.model.lm
            if id(lm) not in oracles:
                oracles[id(lm)] = Oracle(lm)
    rows: dict[str, dict[str, list[float]]] = {label: {} for label in labels}
    texts: dict[str, list[str]] = {label: [] for label in labels}
    turn = 0
    try:
        for r in range(repeats + 1):
            for i, (image, instruction) in enumerate(samples):
                if r == 0 and warmup is not None and i >= warmup:
                    break
                turn += 1
                for label in labels[turn % len(labels) :] + labels[: turn % len(labels)]:
                    octopus, mode, kind = runs[label]
                    oracle = oracles.get(id(octopus.model.lm))
                    if oracle is not None:
                        oracle.start(targets[kind][i])
                    d = octopus.decide(instruction, image, mode=mode)
                    if oracle is not None:
                        oracle.start(None)
                    if order is not None:
                        order.append((r, i, label))
                    if r == 0:
                        continue
                    if r == 1:
                        texts[label].append(d.raw_text)
                    row = rows[label]
                    for k, v in d.timings.items():
                        row.setdefault(k, []).append(v)
                    passes = d.timings.get("forward_passes", 0.0)
                    forced = d.timings.get("forced_tokens", 0.0)
                    chosen = d.timings["tokens"] - forced
                    if passes > 0:  # a call the grammar forces whole (stop()) makes no pass
                        row.setdefault("per_pass", []).append(d.timings["decode"] / passes)
                        row.setdefault("fed_per_pass", []).append((d.timings["tokens"] - 1) / passes)
                    row.setdefault("per_chosen", []).append(d.timings["decode"] / max(chosen, 1.0))
                    row.setdefault("chosen", []).append(chosen)
                    row.setdefault("forced", []).append(forced)
                    row.setdefault("ok", []).append(float(d.ok))
    finally:
        for oracle in oracles.values():
            oracle.remove()
    out = {}
    for label in labels:
        row = rows[label]
        m = {k: statistics.median(v) for k, v in row.items()}
        m.setdefault("per_pass", float("nan"))
        for k in ("tokens", "forward_passes", "chosen", "forced", "ok", "fed_per_pass"):
            m["mean_" + k] = statistics.mean(row.get(k, [0.0]))
        m["texts"] = texts[label]
        out[label] = m
    return out


HEADER = (
    f"{'model':<16}{'prec':<6}{'mode':<16}{'prep':>6}{'encode':>8}{'imgKV':>7}{'prefill':>8}"
    f"{'ms/pass':>8}{'pass':>6}{'chosen':>7}{'forced':>7}{'ms/chosen':>10}{'total':>8}{'ok':>6}"
)


def fmt_row(name: str, prec: str, mode: str, m: dict) -> str:
    return (
        f"{name:<16}{prec:<6}{mode:<16}{ms(m['preprocess']):>6.2f}{ms(m['encode']):>8.2f}"
        f"{ms(m.get('image_prefill', 0.0)):>7.2f}{ms(m['prefill']):>8.2f}{ms(m['per_pass']):>8.2f}"
        f"{m['mean_forward_passes']:>6.1f}{m['mean_chosen']:>7.1f}{m['mean_forced']:>7.1f}"
        f"{ms(m['per_chosen']):>10.2f}{ms(m['total']):>8.1f}{m['mean_ok']:>6.0%}"
    )


def ratio_lines(label: str, res: dict, have_json: bool) -> list[str]:
    """Ratios of the rows of one model (all from one interleaved run)."""
    out = []
    for prec in ("fp32", "int8"):
        jf, nojf, gen = (res.get((label, prec, m)) for m in ("constrained+JF", "constrained", "hf.generate"))
        if jf and gen:
            line = (
                f"  {label} {prec}: hf.generate / constrained+JF total {gen['total'] / jf['total']:.2f}x "
                f"(passes {gen['mean_forward_passes']:.1f} vs {jf['mean_forward_passes']:.1f})"
            )
            if nojf:
                line += f"; without JF {nojf['total'] / jf['total']:.2f}x"
            js = res.get((label, prec, "JSON text"))
            if js and have_json:
                line += (
                    f"; JSON text / functional tokens: {js['mean_tokens']:.1f} vs {jf['mean_tokens']:.1f} "
                    f"tokens, total {js['total'] / jf['total']:.2f}x"
                )
            out.append(line)
            per = [f"  {label} {prec}: constrained / hf.generate per pass:"]
            if nojf:
                per.append(
                    f"without JF {nojf['per_pass'] / gen['per_pass']:.2f}x (1 token fed per pass on both sides)"
                )
            per.append(
                f"with JF {jf['per_pass'] / gen['per_pass']:.2f}x ({jf['mean_fed_per_pass']:.1f} tokens fed per pass)"
            )
            out.append(" ".join(per[:1]) + " " + "; ".join(per[1:]))
    f32, i8 = res.get((label, "fp32", "constrained+JF")), res.get((label, "int8", "constrained+JF"))
    if f32 and i8:
        out.append(
            f"  {label}: int8 / fp32: total {i8['total'] / f32['total']:.2f}x, encode "
            f"{i8['encode'] / f32['encode']:.2f}x, prefill {i8['prefill'] / f32['prefill']:.2f}x, "
            f"decode/pass {i8['per_pass'] / f32['per_pass']:.2f}x"
        )
    return out


def onnx_rows(model: OctopusModel, name: str, repeats: int) -> list[str]:
    """Image side (vision + connector), batch 1: torch fp32/int8, ONNX fp32/int8."""
    size = model.config.vision.image_size
    px = torch.randn(1, 3, size, size)
    out = []
    with torch.no_grad():
        ref = model.encode_image(px)
        q = apply_precision(model, precision="int8")
        variants = {"torch fp32": model.encode_image, "torch int8": q.encode_image}
        tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
        t = time.perf_counter()
        variants["onnx fp32"] = OnnxVisionEncoder(export_vision_onnx(model, tmp / "v.onnx")).encode_image
        export_s = time.perf_counter() - t
        path8 = export_vision_onnx(model, tmp / "v8.onnx", quantize_int8=True)
        variants["onnx int8"] = OnnxVisionEncoder(path8).encode_image
        base = None
        for label, fn in variants.items():
            fn(px)
            t_ms = statistics.median(ms(_timed(fn, px)) for _ in range(max(repeats, 5)))
            err = float((fn(px).float() - ref).abs().max() / ref.abs().max())
            base = base or t_ms
            out.append(
                f"  {name:<16}{label:<12}{t_ms:>9.2f} ms  {base / t_ms:>5.2f}x vs torch fp32   max rel err {err:.1e}"
            )
        out.append(f"  {name:<16}(ONNX export took {export_s:.1f} s)")
        del q
    return out


def run_rows(
    label, models, tok, registry, samples, targets, modes, repeats, res, lines, *, warmup=None, extra=None
):
    """Measure every (precision, mode) of one model interleaved and append a table row each.

    ``models``: precision -> a model already in that precision (shared by the modes; nothing is
    copied). ``extra``: more (label, precision, mode label, Octopus, decide mode, kind) runs to
    interleave with these (e.g. another connector).
    """
    runs, names = {}, {}
    for prec, model in models.items():
        for mode_label, mode, options, kind in modes:
            octopus = Octopus(
                model=model, tokenizer=tok, registry=registry, precision=prec, inplace=True, **options
            )
            runs[(label, prec, mode_label)] = (octopus, mode, kind)
    for other, prec, mode_label, octopus, mode, kind in extra or ():
        runs[(other, prec, mode_label)] = (octopus, mode, kind)
    names = list(runs)
    got = measure_interleaved(runs, samples, repeats, targets=targets, warmup=warmup)
    for key in names:
        res[key] = got[key]
        lines.append(fmt_row(key[0], key[1], key[2], got[key]))
    for prec in models:
        a, b = got.get((label, prec, "constrained+JF")), got.get((label, prec, "hf.generate"))
        if a and b:
            same = sum(x == y for x, y in zip(a["texts"], b["texts"], strict=True))
            note = " (oracle-steered: holds by construction, timing only)" if targets is not None else ""
            lines.append(
                f"{'':<16}{prec:<6}constrained+JF and hf.generate give the same call {same}/{len(a['texts'])}{note}"
            )
    return got


def tiny_section(args, registry) -> list[str]:
    lines: list[str] = []
    res: dict = {}
    rng = np.random.default_rng(0)
    examples = EXAMPLES[: args.samples] if args.samples else EXAMPLES
    frames = [rng.integers(0, 255, (96, 128, 3), dtype=np.uint8) for _ in examples]
    samples = list(zip(frames, [ex[0] for ex in examples], strict=True))
    if args.model:
        loaded = Octopus.load(args.model, registry=registry)
        models = {"bundled": (loaded.model, loaded.tokenizer)}
        modes = MODES[:3]
    else:
        tok = make_tokenizer(registry, 1024)
        models = {}
        configs = (
            (("octopus-tiny", "tiny MLP"),)
            if args.quick
            else (
                ("octopus-tiny", "tiny MLP"),
                ("octopus-tiny-perceiver", "tiny Perceiver"),
            )
        )
        for cfg_name, label in configs:
            cfg = attach_tokenizer(get_model_config(cfg_name), tok, registry.num_tokens)
            torch.manual_seed(0)
            models[label] = (build_model(cfg.replace(lm={**cfg.lm, "vocab_size": len(tok)})), tok)
        modes = MODES
    for label, (model, tok) in models.items():
        lines.append(
            f"{label}: {model.num_parameters() / 1e6:.2f}M params, {model.config.num_image_tokens} image tokens"
        )
        tg = None
        if not args.model:
            tg = targets_for(tok, model.config.eos_token_id, registry)
            tg = {k: v[: len(samples)] for k, v in tg.items()}
        by_prec = {"fp32": model, "int8": apply_precision(model, precision="int8")}
        run_rows(label, by_prec, tok, registry, samples, tg, modes, args.repeats, res, lines)
    lines.append("ratios:")
    for label in models:
        lines += ratio_lines(label, res, have_json=not args.model)
    if len(models) == 2 and not args.model:
        m, p = res[("tiny MLP", "fp32", "constrained+JF")], res[("tiny Perceiver", "fp32", "constrained+JF")]
        lines.append(
            f"  Perceiver / MLP fp32: encode {p['encode'] / m['encode']:.2f}x, image KV "
            f"{p['image_prefill'] / m['image_prefill']:.2f}x, total {p['total'] / m['total']:.2f}x"
        )
    if not args.quick:
        lines.append("image side:")
        lines += onnx_rows(next(iter(models.values()))[0], "tiny", args.repeats)
    return lines


def int8_memory_subprocess() -> dict | None:
    """RSS of the 0.5B shape built directly in int8 in a fresh process (bench_memory.py)."""
    from bench_memory import run_in_subprocess

    try:
        return {case: run_in_subprocess(case) for case in ("baseline", "0.5b-int8")}
    except RuntimeError as e:
        print(f"int8 memory subprocess failed: {e}", file=sys.stderr)
        return None


RSS_TARGET_MIB = 1e9 / 2**20  # issue 14: int8 RSS <= 1.0 GB at 0.5B shape
PEAK_TARGET = 1.2  # ... and no peak above 1.2x the final size


def load_memory_rows() -> list[str]:
    """Memory of loading a saved checkpoint in int8, fp32-then-quantized (before issue 14) vs
    directly in int8 (``Octopus.load(..., precision="int8")`` now), each in a fresh process with
    1 thread (bench_memory.py): the bundled model, and a 0.5B-shaped random checkpoint written to
    a temporary directory first (~2.3 GB; skipped with a note when the disk has no room)."""
    from bench_memory import run_in_subprocess

    def row(label: str, r: dict) -> str:
        final, peak = r["rss_mib"], r["peak_mib"]
        return (
            f"  {label:<30} load {r['load_seconds']:5.1f} s, RSS after load {r['load_rss_mib']:5} MiB "
            f"(peak {r['load_peak_mib']:5} MiB); after one decision RSS {final:5} MiB, peak {peak:5} MiB "
            f"= {peak / final:.2f}x the final RSS"
        )

    def verdict(r: dict) -> str:
        final, peak = r["rss_mib"], r["peak_mib"]
        rss_ok = "met" if final <= RSS_TARGET_MIB else "NOT met"
        peak_ok = "met" if peak <= PEAK_TARGET * final else "NOT met"
        return (
            f"  targets (direct int8): RSS {final} MiB vs <= 1.0 GB ({RSS_TARGET_MIB:.0f} MiB): {rss_ok}; "
            f"peak {peak / final:.2f}x vs <= {PEAK_TARGET}x the final RSS: {peak_ok}"
        )

    lines = ["int8 load of a saved checkpoint (fresh process per row, 1 thread; RSS after malloc_trim):"]
    try:
        base = run_in_subprocess("baseline")
        lines.append(f"  the same interpreter without a model: RSS {base['rss_mib']} MiB")
        for label in ("bundled", "0.5B-shaped"):
            with tempfile.TemporaryDirectory(prefix="octopus_ckpt_") as tmp:
                path = None
                if label == "0.5B-shaped":
                    free = shutil.disk_usage(tmp).free
                    if free < 3 * 2**30:
                        lines.append(f"  0.5B-shaped: skipped, {free / 2**30:.1f} GiB free in {tmp} (need 3)")
                        continue
                    path = Path(tmp) / "octopus_0.5b"
                    saved = run_in_subprocess("0.5b-save", path)
                    size = (path / "model.safetensors").stat().st_size / 2**20
                    lines.append(
                        f"  {label}: random checkpoint saved in {saved['seconds']:.0f} s ({size:.0f} MiB fp32 file)"
                    )
                via = run_in_subprocess("ckpt-int8-via-fp32", path)
                direct = run_in_subprocess("ckpt-int8", path)
                lines.append(row(f"{label} fp32, then quantized", via))
                lines.append(row(f"{label} directly in int8", direct))
                if label == "0.5B-shaped":
                    lines.append(verdict(direct))
    except RuntimeError as e:
        lines.append(f"  failed: {e}")
    return lines


def big_section(args, registry) -> list[str]:
    lines: list[str] = []
    res: dict = {}
    bw = memory_bandwidth_gbs()
    bandwidth = max(bw.values())
    lines.append("memory bandwidth: " + ", ".join(f"{k} {v:.1f} GB/s" for k, v in bw.items()))
    tok = make_tokenizer(registry, 2000)
    cfg = attach_tokenizer(get_model_config("octopus-0.5b-shape"), tok, registry.num_tokens)
    t = time.perf_counter()
    torch.manual_seed(0)
    model = build_model(cfg)
    lines.append(
        f"0.5B-shaped: fp32 built in {time.perf_counter() - t:.0f} s, {model.num_parameters() / 1e6:.0f}M params "
        f"(vision {model.num_parameters('vision') / 1e6:.0f}M, LM {model.num_parameters('lm') / 1e6:.0f}M), "
        f"{model.config.num_image_tokens} image tokens; RSS now/peak {rss_mb()[0]:.0f}/{rss_mb()[1]:.0f} MiB"
    )
    pcfg = resolve_config(model.config.replace(connector={"type": "perceiver"}, num_image_tokens=None))
    connector = build_connector(
        pcfg.connector,
        vision_width=model.vision.width,
        grid_size=model.vision.grid_size,
        lm_dim=pcfg.lm["hidden_size"],
    )
    perceiver = OctopusModel(config=pcfg, vision=model.vision, connector=connector, lm=model.lm).eval()
    rng = np.random.default_rng(1)
    picks = [0, 2, 9]  # a string, an enum and a Chinese call
    samples = [(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), EXAMPLES[i][0]) for i in picks]
    all_targets = targets_for(tok, model.config.eos_token_id, registry)
    targets = {k: [v[i] for i in picks] for k, v in all_targets.items()}
    onnx_lines = onnx_rows(model, "0.5B", 3) if args.big_onnx else []
    floors = []
    for prec in ("fp32", "int8"):
        if prec == "int8":
            del model, perceiver
            release_memory()
            t = time.perf_counter()
            torch.manual_seed(0)
            model = build_int8(cfg)  # directly in int8 (other random weights; the oracle steers)
            lines.append(f"0.5B-shaped int8: built directly in int8 in {time.perf_counter() - t:.0f} s")
        modes = MODES if prec == "fp32" else MODES[:3]
        extra = None
        if prec == "fp32":
            extra = [
                (
                    "0.5B Perceiver",
                    "fp32",
                    "constrained+JF",
                    Octopus(model=perceiver, tokenizer=tok, registry=registry),
                    "constrained",
                    "functional",
                )
            ]
        run_rows(
            "0.5B MLP",
            {prec: model},
            tok,
            registry,
            samples,
            targets,
            modes,
            args.big_repeats,
            res,
            lines,
            warmup=1,
            extra=extra,
        )
        weights = decode_weight_bytes(model.lm)
        floor = weights / (bandwidth * 1e9)
        for mode_label in ("constrained+JF", "constrained", "hf.generate"):
            got = res[("0.5B MLP", prec, mode_label)]["per_pass"]
            floors.append(
                f"  {prec:<5} {mode_label:<15} {ms(got):7.1f} ms/pass vs floor {ms(floor):5.1f} ms "
                f"({weights / 2**20:.0f} MiB read per pass at {bandwidth:.1f} GB/s) = {got / floor:.2f}x the floor"
            )
        lines.append(f"{'':<16}{prec:<6}RSS now/peak {rss_mb()[0]:.0f}/{rss_mb()[1]:.0f} MiB (this process)")
    lines.append("decode vs the memory-bandwidth floor:")
    lines += floors
    lines.append("ratios:")
    lines += ratio_lines("0.5B MLP", res, have_json=True)
    m, p = res[("0.5B MLP", "fp32", "constrained+JF")], res[("0.5B Perceiver", "fp32", "constrained+JF")]
    lines.append(
        f"  Perceiver / MLP fp32 ({pcfg.num_image_tokens} vs {cfg.num_image_tokens or 49} image tokens): encode "
        f"{p['encode'] / m['encode']:.2f}x, image KV {p['image_prefill'] / m['image_prefill']:.2f}x, "
        f"total {p['total'] / m['total']:.2f}x"
    )
    if onnx_lines:
        lines += ["image side:", *onnx_lines]
    del model
    release_memory()
    mem = int8_memory_subprocess()
    if mem:
        base, q = mem["baseline"], mem["0.5b-int8"]
        lines.append(
            f"int8 memory (fresh process, built directly in int8, one decision): RSS {q['rss_mib']} MiB, peak "
            f"{q['peak_mib']} MiB ({q['peak_mib'] / q['rss_mib']:.2f}x); the same interpreter without a model "
            f"{base['rss_mib']} MiB, so the model adds {q['rss_mib'] - base['rss_mib']} MiB"
        )
    if not args.no_load_memory:
        lines += load_memory_rows()
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="trained checkpoint directory (default: random weights + oracle)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over the tiny samples")
    parser.add_argument("--samples", type=int, default=0, help="tiny samples (default all 12)")
    parser.add_argument("--no-big", action="store_true", help="skip the 0.5B-shaped model")
    parser.add_argument("--big-repeats", type=int, default=3, help="timed rounds over the 3 0.5B samples")
    parser.add_argument(
        "--big-onnx", action="store_true", help="also export/time the ViT-B/32 image side (ONNX)"
    )
    parser.add_argument("--quick", action="store_true", help="tiny MLP only, 4 samples, 1 round (tests)")
    parser.add_argument(
        "--no-load-memory",
        action="store_true",
        help="skip the checkpoint-load memory rows (0.5B: ~2.3 GB on disk)",
    )
    parser.add_argument(
        "--load-memory-only",
        action="store_true",
        help="only the checkpoint-load memory rows (fp32-then-int8 vs direct int8)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.quick:
        args.no_big, args.repeats, args.samples = True, 1, args.samples or 4
    logging.basicConfig(level=logging.ERROR)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.load_memory_only:
        print("\n".join(load_memory_rows()))
        return
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    t0 = time.perf_counter()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; ms; medians; modes interleaved sample by sample"
    )
    print(
        "\n== tiny ("
        + ("checkpoint " + args.model if args.model else "random weights + oracle: timing only")
        + ")"
    )
    print(HEADER)
    for line in tiny_section(args, registry):
        print(line, flush=True)
    if not args.no_big:
        print(
            "\n== 0.5B-shaped (ViT-B/32 + Qwen2-0.5B shapes, random weights + oracle: timing only, 640x480 frames)"
        )
        print(HEADER)
        for line in big_section(args, registry):
            print(line, flush=True)
    print(f"\nwall time {time.perf_counter() - t0:.0f} s; peak RSS {rss_mb()[1]:.0f} MiB")


if __name__ == "__main__":
    main()
