"""Native VLM backend benchmark (model/vlm.py): real shapes, random weights, fp32 and int8, one run.

    python benchmarks/bench_vlm.py                 # SmolVLM-256M, SmolVLM-500M, Qwen2-VL-2B; fp32 + int8
    python benchmarks/bench_vlm.py --quick         # SmolVLM-256M only, 1 sample: a smoke test (~1 min)
    python benchmarks/bench_vlm.py --shapes smolvlm-256m --precisions int8

The shapes are the configs in octopus_ros/model/configs/vlm/ (nothing is downloaded): the real
layer sizes and vocabulary, random weights, a small BPE tokenizer (the vocabulary rows beyond it
are never produced but still computed by the LM head), the functional tokens of
config/functions.yaml. Each (shape, precision) row runs in its own process, so its RSS is its own:
``load`` is the RSS once the model is ready (built in fp32, then quantised for int8) and ``peak``
the process's maximum. int8 is torch's dynamic quantisation of every nn.Linear (the vision tower's
too; embeddings and convolutions stay fp32).

Per row, medians over the samples: ``encode`` (processor + vision tower + projector on a 640x480
frame), ``imgKV`` (prefill of system prompt + image segment, done at encode time), ``prefill`` (the
utterance's words on the pre-encoded frame), ``ms/pass`` (one decode pass: a chosen token plus any
jump-forward tokens), ``passes`` per decision, and ``floor``: ms/pass over the time to read the LM's
weights once at the copy bandwidth measured in the same process. Random weights would answer
anything, so an oracle steers the LM along each sample's call (a hook adds +1000 to the next target
token's logit): these rows time the machinery, they say nothing about accuracy. Qwen2-VL-2B in fp32
needs about 9 GB: run it alone on a shared machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "octopus_ros"))

from bench_model import Oracle  # noqa: E402  (the same steering as the Octopus rows)

from octopus_ros.paths import config_path  # noqa: E402

SHAPES_DIR = ROOT / "octopus_ros" / "octopus_ros" / "model" / "configs" / "vlm"
SHAPES = ("smolvlm-256m", "smolvlm-500m", "qwen2-vl-2b")
PRECISIONS = ("fp32", "int8")
SAMPLES = [
    ("pick up the red cup", "<nexa_0>('red cup')<nexa_end>"),
    ("go to the kitchen", "<nexa_2>('kitchen')<nexa_end>"),
    ("stop right now", "<nexa_3>()<nexa_end>"),
    ("put the blue box on the shelf", "<nexa_1>('blue box', 'shelf')<nexa_end>"),
    ("sing me a song", "<nexa_12>()<nexa_end>"),
]


def rss_mb() -> tuple[float, float]:
    """(current, peak) resident set size of this process in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    with open("/proc/self/status") as f:
        current = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024.0
    return current, peak


def copy_bandwidth_gbs(mbytes: int = 256, repeats: int = 5) -> float:
    """(read + write) bytes per second of a torch tensor copy."""
    src, dst = torch.ones(mbytes * 2**18), torch.empty(mbytes * 2**18)
    best = min(_timed(dst.copy_, src) for _ in range(repeats))
    return 2 * src.numel() * 4 / best / 1e9


def _timed(fn, *args) -> float:
    t = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t


def build(shape: dict, registry):
    """(model, processor) of a shape: real sizes, random weights, small tokenizer + functional tokens."""
    from transformers import AutoConfig, AutoModelForImageTextToText

    from octopus_ros.model import vlm_testing as vt
    from octopus_ros.model.vlm import add_functional_tokens

    cfg = dict(shape["model"])
    family = "idefics3" if cfg["model_type"] == "idefics3" else "qwen2_vl"
    tok = vt.tiny_vlm_tokenizer(family, vocab_size=2000)
    ids = tok.convert_tokens_to_ids
    text = dict(cfg.pop("text_config"))
    text.update(
        bos_token_id=ids("<|im_start|>"), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id
    )
    if family == "idefics3":
        cfg["image_token_id"] = ids("<image>")
    else:
        cfg.update(
            image_token_id=ids("<|image_pad|>"),
            video_token_id=ids("<|video_pad|>"),
            vision_start_token_id=ids("<|vision_start|>"),
            vision_end_token_id=ids("<|vision_end|>"),
        )
    config = AutoConfig.for_model(cfg.pop("model_type"), text_config=text, **cfg)
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32).eval()
    p = shape["processor"]
    if family == "idefics3":
        from transformers import Idefics3ImageProcessor, Idefics3Processor

        image_processor = Idefics3ImageProcessor(
            size=p["size"], max_image_size=p["max_image_size"], do_image_splitting=p["do_image_splitting"]
        )
        processor = Idefics3Processor(
            image_processor=image_processor,
            tokenizer=tok,
            image_seq_len=p["image_seq_len"],
            chat_template=vt.SMOLVLM_CHAT_TEMPLATE,
        )
    else:
        from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

        grid = {k: p[k] for k in ("patch_size", "merge_size", "temporal_patch_size")}
        processor = Qwen2VLProcessor(
            image_processor=Qwen2VLImageProcessor(size=p["size"], **grid),
            tokenizer=tok,
            video_processor=Qwen2VLVideoProcessor(**grid),
            chat_template=vt.QWEN_CHAT_TEMPLATE,
        )
    texts = {s.token: s.name.replace("_", " ") for s in registry}
    add_functional_tokens(model, tok, registry.num_tokens, texts=texts)  # spare vocabulary rows: no resize
    return model, processor


def lm_pass_bytes(model) -> int:
    """Bytes one decode pass reads: the LM's weights without its input embedding table."""
    from octopus_ros.model.precision import module_weight_bytes

    lm = model.model.language_model if hasattr(model.model, "language_model") else model.model.text_model
    return module_weight_bytes(lm, skip=(model.get_input_embeddings(),)) + module_weight_bytes(model.lm_head)


def run_row(name: str, precision: str, samples: int, repeats: int) -> dict:
    from octopus_ros.functions import FunctionRegistry
    from octopus_ros.model.precision import apply_precision
    from octopus_ros.model.vlm import VLMOctopus

    shape = json.loads((SHAPES_DIR / f"{name}.json").read_text())
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    t0 = time.perf_counter()
    model, processor = build(shape, registry)
    params = sum(p.numel() for p in model.parameters())
    if precision == "int8":
        model = apply_precision(model, precision="int8", inplace=True)
    gc.collect()
    octopus = VLMOctopus(model=model, processor=processor, registry=registry, precision=precision)
    build_s = time.perf_counter() - t0
    load_rss, _ = rss_mb()
    oracle = Oracle(octopus.model)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (480, 640, 3), dtype=np.uint8) for _ in range(samples)]
    rows: dict[str, list[float]] = {}
    for r in range(repeats + 1):  # round 0 warms up
        for i, image in enumerate(frames):
            instruction, answer = SAMPLES[i % len(SAMPLES)]
            enc = octopus.encode(image)
            oracle.start(octopus.tokenizer.encode(answer, add_special_tokens=False))
            d = octopus.decide(instruction, enc)
            oracle.start(None)
            if not d.ok or d.raw_text != answer:
                raise RuntimeError(f"{name} {precision}: steered decision {d.raw_text!r} != {answer!r}")
            if r == 0:
                continue
            passes = d.timings["forward_passes"]
            for k, v in (
                ("preprocess", enc.timings["preprocess"]),
                ("encode", enc.timings["encode"]),
                ("image_prefill", enc.timings["image_prefill"]),
                ("prefill", d.timings["prefill"]),
                ("decode", d.timings["decode"]),
                ("per_pass", d.timings["decode"] / max(passes, 1.0)),
                ("passes", passes),
                ("tokens", d.timings["tokens"]),
            ):
                rows.setdefault(k, []).append(v)
    out = {k: statistics.median(v) for k, v in rows.items()}
    out["passes"] = statistics.mean(rows["passes"])
    out["tokens"] = statistics.mean(rows["tokens"])
    gbs = copy_bandwidth_gbs()
    pass_bytes = lm_pass_bytes(octopus.model)
    floor_s = (
        2 * pass_bytes / (gbs * 1e9)
    )  # a copy moves 2x the bytes it reads: read time = bytes / (gbs / 2)
    current, peak = rss_mb()
    out.update(
        shape=name,
        precision=precision,
        params_m=params / 1e6,
        image_tokens=int(enc.embeds.shape[1]),
        build_s=build_s,
        load_rss_mb=load_rss,
        rss_mb=current,
        peak_mb=peak,
        bandwidth_gbs=gbs,
        pass_mb=pass_bytes / 2**20,
        floor_ms=1000 * floor_s,
        floor_ratio=out["per_pass"] / floor_s,
        threads=torch.get_num_threads(),
    )
    return out


HEADER = (
    f"{'shape':<14}{'prec':<6}{'params':>8}{'imgtok':>7}{'loadRSS':>9}{'peak':>8}{'encode':>9}{'imgKV':>8}"
    f"{'prefill':>9}{'ms/pass':>9}{'passes':>7}{'toks':>6}{'floor':>8}{'x floor':>8}"
)


def fmt(r: dict) -> str:
    return (
        f"{r['shape']:<14}{r['precision']:<6}{r['params_m']:>7.0f}M{r['image_tokens']:>7d}"
        f"{r['load_rss_mb']:>8.0f}M{r['peak_mb']:>7.0f}M{1000 * (r['preprocess'] + r['encode']):>9.1f}"
        f"{1000 * r['image_prefill']:>8.1f}{1000 * r['prefill']:>9.1f}{1000 * r['per_pass']:>9.1f}"
        f"{r['passes']:>7.1f}{r['tokens']:>6.1f}{r['floor_ms']:>8.1f}{r['floor_ratio']:>8.2f}"
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--samples", type=int, default=3, help="frames (each with its own utterance)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="SmolVLM-256M fp32 + int8, 1 sample, 1 repeat")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # SHAPE:PRECISION, run in a child process
    args = parser.parse_args(argv)
    if args.row:
        name, precision = args.row.split(":")
        print(json.dumps(run_row(name, precision, args.samples, args.repeats)))
        return 0
    if args.quick:
        args.shapes, args.samples, args.repeats = ["smolvlm-256m"], 1, 1
    print(
        f"== native VLM backend: real shapes, random weights + oracle, 640x480 frames, {torch.get_num_threads()} threads"
    )
    for name in args.shapes:
        print(f"  {name}: {json.loads((SHAPES_DIR / f'{name}.json').read_text())['note']}")
    print(HEADER)
    results, failed = [], 0
    for name in args.shapes:
        for precision in args.precisions:
            cmd = [sys.executable, __file__, "--row", f"{name}:{precision}", "--samples", str(args.samples)]
            cmd += ["--repeats", str(args.repeats)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                failed += 1
                print(f"{name:<14}{precision:<6}FAILED: {proc.stderr.strip().splitlines()[-1:]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(r)
            print(fmt(r), flush=True)
    print(
        "  encode: processor + vision tower + projector; imgKV: system prompt + image segment prefill (at "
        "encode time); prefill: the utterance on a pre-encoded frame; floor: one read of the LM's weights at "
        "the copy bandwidth measured in the row's process (ms)."
    )
    for name in args.shapes:
        by = {r["precision"]: r for r in results if r["shape"] == name}
        if "fp32" in by and "int8" in by:
            a, b = by["fp32"], by["int8"]
            print(
                f"  {name} int8/fp32: load RSS {b['load_rss_mb'] / a['load_rss_mb']:.2f}x, encode "
                f"{(b['encode'] + b['preprocess']) / (a['encode'] + a['preprocess']):.2f}x, prefill "
                f"{b['prefill'] / a['prefill']:.2f}x, ms/pass {b['per_pass'] / a['per_pass']:.2f}x"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
