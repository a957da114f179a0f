"""Memory of the node's model, per size and precision: what fits which board (README, "On your robot").

    python benchmarks/bench_memory.py            # bundled model and 0.5B-shaped, fp32 and int8 (~2-4 min)
    python benchmarks/bench_memory.py --no-big   # the bundled model only (~30 s)

Each case runs in a fresh Python process (so one case's freed heap does not count for the next):
load the model as octopus_node does (``Octopus.load`` for the bundled checkpoint; for the
0.5B-shaped model — ViT-B/32 + Qwen2-0.5B shapes, ``model/configs/octopus-0.5b-shape.json`` —
build it with random weights, which occupy exactly the memory real ones do; int8 is built
directly in int8 with ``precision.build_int8``, so its peak is not an fp32 build's), decide one
640x480 frame, and print the process's resident set size (RSS) then (after ``malloc_trim``), its
peak, and the RSS of
the same interpreter with torch and the package imported but no model (the baseline). fp16/bf16
(Jetson, CUDA) is not measured here (no GPU): its weights take half of fp32's bytes, printed as
a computed figure and marked so.

bench_model.py also runs the checkpoint cases here (``--checkpoint DIR``): write a random
0.5B-shaped checkpoint, and load a checkpoint in int8 fp32-then-quantized (what
``Octopus.load(..., precision="int8")`` did before issue 14) or directly in int8 (what it does
now), with RSS and peak read after the load and after one decision.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

CASES = ("baseline", "bundled-fp32", "bundled-int8", "0.5b-fp32", "0.5b-int8")
# with --checkpoint DIR (bench_model's 0.5B load rows): write a random 0.5B-shaped checkpoint there;
# load one in int8 the old way (fp32, then quantized in place) or directly in int8 (Octopus.load)
CHECKPOINT_CASES = ("0.5b-save", "ckpt-int8-via-fp32", "ckpt-int8")


def rss_mib(field: str = "VmRSS") -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process, MiB. VmHWM, not ru_maxrss: a process
    started by a bigger one inherits the parent's ru_maxrss through fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
    raise RuntimeError(f"no {field}")


def _trimmed_rss() -> tuple[int, int]:
    """(RSS, peak) in MiB after freed heap is given back to the OS (``malloc_trim``): int8
    quantizes a built fp32 model in place, and with the malloc thresholds scripts/env.sh sets
    (large blocks from the heap) the fp32 heap would stay mapped."""
    from octopus_ros.heap import release_free_memory

    release_free_memory()
    return round(rss_mib()), round(rss_mib("VmHWM"))


def _bench_tokenizer():
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_model import make_tokenizer

    from octopus_ros.functions import load_default_registry

    registry = load_default_registry()
    return registry, make_tokenizer(registry, 2000)


def run_case(case: str, checkpoint: str | None = None) -> dict:
    import numpy as np
    import torch

    from octopus_ros.model.runtime import Octopus
    from octopus_ros.paths import default_model_dir

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out: dict = {"case": case}
    if case == "baseline":
        pass
    elif case == "0.5b-save":
        from octopus_ros.model import attach_tokenizer, build_model, get_model_config, save_checkpoint

        registry, tok = _bench_tokenizer()
        cfg = attach_tokenizer(get_model_config("octopus-0.5b-shape"), tok, registry.num_tokens)
        torch.manual_seed(0)
        save_checkpoint(checkpoint, build_model(cfg), tok, functions=registry)
        out["seconds"] = round(time.perf_counter() - t0, 1)
        return out
    elif case.startswith("ckpt-"):
        path = checkpoint or default_model_dir()
        if case == "ckpt-int8":  # what Octopus.load(..., precision="int8") does now
            octopus = Octopus.load(path, precision="int8")
        else:  # what it did before: the fp32 model, quantized in place
            from octopus_ros.model import load_checkpoint

            ckpt = load_checkpoint(path)
            octopus = Octopus(
                model=ckpt.model,
                tokenizer=ckpt.tokenizer,
                registry=_registry_of(ckpt),
                precision="int8",
                inplace=True,
            )
            del ckpt
        out["load_seconds"] = round(time.perf_counter() - t0, 1)
        out["load_rss_mib"], out["load_peak_mib"] = _trimmed_rss()
    elif case.startswith("bundled"):
        octopus = Octopus.load(default_model_dir(), precision=case.split("-")[1])
    else:
        from octopus_ros.model import attach_tokenizer, build_model, get_model_config
        from octopus_ros.model.precision import build_int8

        registry, tok = _bench_tokenizer()
        cfg = attach_tokenizer(get_model_config("octopus-0.5b-shape"), tok, registry.num_tokens)
        torch.manual_seed(0)
        precision = case.split("-")[1]
        # int8 is built directly in int8 (precision.build_int8): no fp32 copy ever exists
        model = build_int8(cfg) if precision == "int8" else build_model(cfg).eval()
        octopus = Octopus(model=model, tokenizer=tok, registry=registry, precision=precision, inplace=True)
    if case != "baseline":
        params = sum(p.numel() for p in octopus.model.parameters())
        out["params_m"] = round(params / 1e6, 1)
        frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
        octopus.decide("pick up the red cup", frame)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["rss_mib"], out["peak_mib"] = _trimmed_rss()
    return out


def _registry_of(ckpt):
    from octopus_ros.functions import FunctionRegistry

    return FunctionRegistry.from_yaml(ckpt.functions_path)


def run_in_subprocess(case: str, checkpoint: str | None = None, timeout: float = 1200) -> dict:
    """``run_case(case)`` in a fresh interpreter (so no other case's heap or peak counts)."""
    cmd = [sys.executable, __file__, "--case", case]
    if checkpoint:
        cmd += ["--checkpoint", str(checkpoint)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"bench_memory case {case} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-big", action="store_true", help="skip the 0.5B-shaped model")
    parser.add_argument("--case", choices=CASES + CHECKPOINT_CASES, help=argparse.SUPPRESS)  # one case
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)  # for the checkpoint cases
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(args.case, args.checkpoint)))
        return 0
    cases = [c for c in CASES if not (args.no_big and c.startswith("0.5b"))]
    rows = []
    for case in cases:
        done = subprocess.run(
            [sys.executable, __file__, "--case", case], capture_output=True, text=True, timeout=900
        )
        if done.returncode != 0:
            print(f"{case}: failed\n{done.stderr[-2000:]}")
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["rss_mib"]
    print(f"\n{'case':<14}{'params':>9}{'RSS':>10}{'peak':>10}{'RSS - baseline':>16}{'load+1 call':>13}")
    for r in rows:
        params = f"{r['params_m']:.1f}M" if "params_m" in r else "-"
        print(
            f"{r['case']:<14}{params:>9}{r['rss_mib']:>7} MiB{r['peak_mib']:>7} MiB"
            f"{r['rss_mib'] - base:>12} MiB{r['seconds']:>11} s"
        )
    for r in rows:
        if r["case"] == "0.5b-fp32":
            print(
                f"0.5b fp16/bf16 weights (computed, not measured: no GPU here): "
                f"{r['params_m'] * 2 / 1.048576:.0f} MiB (fp32 {r['params_m'] * 4 / 1.048576:.0f} MiB)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
