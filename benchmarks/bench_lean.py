"""The lean runtime (onnxruntime, no torch) against the torch runtime, bundled model, one run.

    python benchmarks/bench_lean.py            # ~2-4 min on 2 loaded cores
    python benchmarks/bench_lean.py --quick    # a few items, one round (for a smoke test)

Prints, side by side:

1. **Identity**: decisions of LeanOctopus (fp32 graphs) vs the torch Octopus (fp32) on the
   natural set and the held-out eval examples (``training.evaluate``'s splits): the call text
   and the node's action (published / declined / held back, ``evaluate.node_action`` at the
   engine's default threshold) must both match. The int8 graphs are compared with torch int8
   the same way (two different quantisations: not expected to be identical).
2. **Memory and cold start**: each backend in a fresh process that imports what octopus_node
   imports (the ROS node module included), loads the model as the node does and decides once;
   RSS after that (VmRSS), peak (VmHWM), and seconds from the process start to ready (interpreter
   start, imports, load, first decision).
3. **Latency**: decide p50 on a pre-encoded frame (LM only) and encode p50 in the same fresh
   processes, lean fp32 / lean int8 / torch fp32 / torch int8, each with 1 thread, rounds
   interleaved backend by backend (ranges over rounds).

The export is written once into a temporary copy of the checkpoint
(``python -m octopus_ros.model.onnx_export_all CKPT --int8``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, time
t_start = float(sys.argv[4])
backend, precision, ckpt = sys.argv[1], sys.argv[2], sys.argv[3]
import numpy as np
import octopus_ros.ros.octopus_node  # what the node process imports before its model
options = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
threads = int(sys.argv[7]) if len(sys.argv) > 7 else 1
if backend == "onnx":
    from octopus_ros.lean.runtime import LeanOctopus
    model = LeanOctopus.load(ckpt, precision=precision, threads=threads, **options)
else:
    import torch
    torch.set_num_threads(threads)
    from octopus_ros.model.runtime import Octopus
    model = Octopus.load(ckpt, precision=precision, **options)
rgb = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
model.decide("pick up the red cup", rgb)
ready = time.time() - t_start
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024.0
rss, peak = status("VmRSS"), status("VmHWM")
texts = ["pick up the red cup", "stop", "text Bob that lunch is ready", "把杯子拿起来", "go to the kitchen"]
enc = model.encode(rgb)
dec, encs, passes = [], [], []
for i in range(int(sys.argv[5])):
    t0 = time.perf_counter(); e = model.encode(rgb); encs.append(time.perf_counter() - t0)
    t0 = time.perf_counter(); d = model.decide(texts[i % len(texts)], enc); dec.append(time.perf_counter() - t0)
    if d.timings.get("forward_passes"):  # decode seconds per LM pass after the prefill
        passes.append(d.timings["decode"] / d.timings["forward_passes"])
heavy = [m for m in ("torch", "transformers", "open_clip") if m in sys.modules]
decode_bytes = None
if backend == "torch":  # what one decode pass reads (the input embedding table excepted)
    from octopus_ros.model.precision import decode_weight_bytes
    decode_bytes = decode_weight_bytes(model.model.lm)
print("RESULT " + json.dumps({"ready_s": ready, "rss": rss, "peak": peak, "decide": dec, "encode": encs,
                              "per_pass": passes, "decode_bytes": decode_bytes, "heavy": heavy}))
"""


def checkpoint_copy(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file():
            os.symlink(f.resolve(), dst / f.name)
    return dst


def child(
    backend: str, precision: str, ckpt: Path, n: int, options: dict | None = None, threads: int = 1
) -> dict:
    """One fresh node-like process: load, decide, measure (``threads``: the backend's intra-op threads)."""
    t = time.time()
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            CHILD,
            backend,
            precision,
            str(ckpt),
            repr(t),
            str(n),
            json.dumps(options or {}),
            str(threads),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": str(threads)},
    )
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise RuntimeError(f"{backend} {precision} failed:\n{out.stderr[-3000:]}")
    return json.loads(line[len("RESULT ") :])


def identity(ckpt: Path, precision: str, n_heldout: int, n_natural: int | None) -> dict:
    from octopus_ros.data import generate
    from octopus_ros.data.natural import load_natural_set
    from octopus_ros.lean.runtime import LeanOctopus
    from octopus_ros.model.runtime import Octopus
    from octopus_ros.runtime.engine import EngineConfig
    from octopus_ros.training.evaluate import EVAL_SPLITS, _got, node_action, node_grounding

    torch_model = Octopus.load(
        ckpt, precision="fp32" if precision == "int4" else precision
    )  # torch has no int4
    lean = LeanOctopus.load(ckpt, precision=precision)
    threshold = EngineConfig().confidence_threshold
    g_t, g_l = node_grounding(torch_model), node_grounding(lean)
    items = load_natural_set()[:n_natural]
    cases = {"natural": [(it.text, it.frame()) for it in items]}
    cases["held-out"] = [
        (ex.instruction, ex.image) for s in EVAL_SPLITS for ex in generate(s, n_heldout, 1234)
    ]
    out = {}
    for name, rows in cases.items():
        same = 0
        diffs = []
        for text, rgb in rows:
            a, b = torch_model.decide(text, rgb), lean.decide(text, rgb)
            ka = (_got(a), node_action(a, torch_model.registry, threshold, g_t, text))
            kb = (_got(b), node_action(b, lean.registry, threshold, g_l, text))
            same += ka == kb
            if ka != kb:
                diffs.append((text, ka, kb))
        out[name] = (same, len(rows), diffs[:3])
    return out


def big_shape(rounds: int, n_identity: int, n_lat: int) -> None:
    """Section 4: the 0.5B shape (ViT-B/32 + Qwen2-0.5B shapes, random weights): the whole-model
    export, decisions lean fp32 vs torch fp32, and lean int8 vs torch int8 in fresh processes: RSS,
    peak, start to ready, and decode per LM pass against the memory-bandwidth floor."""
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_model import memory_bandwidth_gbs

    print("\n4. 0.5B shape (ViT-B/32 + Qwen2-0.5B shapes, random weights; timing and memory only)")
    with tempfile.TemporaryDirectory(prefix="bench_lean_big_") as tmp:
        ckpt = Path(tmp) / "ckpt"
        subprocess.run(
            [sys.executable, str(Path(__file__).parent / "bench_memory.py"), "--case", "0.5b-save",
             "--checkpoint", str(ckpt)],
            check=True, capture_output=True,
        )  # fmt: skip
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "octopus_ros.model.onnx_export_all", str(ckpt), "--int8", "--int4"],
            check=True,
            capture_output=True,
        )
        manifest = json.loads((ckpt / "onnx" / "manifest.json").read_text())
        files = manifest["files"]

        def graph_bytes(graph: str) -> int:  # the graph and its weights' side files
            return sum(files[n]["bytes"] for n in (graph, *manifest["external_data"].get(graph, ())))

        lm_bytes = {prec: graph_bytes(v["lm"]) for prec, v in manifest["variants"].items()}
        print(
            f"  export (fp32 + int8 + int4 graphs): {time.perf_counter() - t0:.0f} s; LM graph fp32 "
            f"{lm_bytes['fp32'] / 2**20:.0f} MiB (weights in a side file), int8 {lm_bytes['int8'] / 2**20:.0f} MiB, "
            f"int4 {lm_bytes['int4'] / 2**20:.0f} MiB"
        )
        res = identity_big(ckpt, n_identity)
        print(f"  decisions lean fp32 vs torch fp32 (call text, random weights): {res[0]}/{res[1]} identical")
        # (backend, precision, threads): one thread each, and lean int8 with every core, as the
        # floor's bandwidth is the best of a one-thread and an all-thread copy
        cores = os.cpu_count() or 1
        backends = [("onnx", "int8", 1), ("onnx", "int4", 1), ("torch", "int8", 1), ("onnx", "int8", cores)]
        runs: dict[tuple, list[dict]] = {b: [] for b in backends}
        bws = []
        for r in range(rounds):
            bws.append(max(memory_bandwidth_gbs(256, 3).values()))
            for b in backends[r % len(backends) :] + backends[: r % len(backends)]:
                runs[b].append(child(b[0], b[1], ckpt, n_lat, {"jump_forward": False}, threads=b[2]))
    bandwidth = statistics.median(bws)
    print(f"  memory bandwidth {', '.join(f'{b:.1f}' for b in bws)} GB/s (copy, per round; median used)")
    print(
        f"  {'backend':16s} {'RSS MiB':>10s} {'peak MiB':>10s} {'ready s':>9s} {'ms/pass':>10s} {'floor ms':>9s} {'x floor':>9s}"
    )
    per = {}
    for b, rs in runs.items():
        weights = lm_bytes[b[1]] if b[0] == "onnx" else rs[0]["decode_bytes"]
        floor = weights / (bandwidth * 1e9)
        passes = [1000 * statistics.median(x["per_pass"]) for x in rs]
        per[b] = (statistics.median(passes), statistics.median(x["rss"] for x in rs))
        label = f"{b[0]} {b[1]} x{b[2]}"
        print(
            f"  {label:16s} {_range([x['rss'] for x in rs], '{:.0f}'):>10s} "
            f"{_range([x['peak'] for x in rs], '{:.0f}'):>10s} {_range([x['ready_s'] for x in rs], '{:.1f}'):>9s} "
            f"{_range(passes, '{:.1f}'):>10s} {1000 * floor:>9.1f} {_range([p / 1000 / floor for p in passes], '{:.2f}'):>9s}"
            f"   ({weights / 2**20:.0f} MiB read per pass)"
        )
    (lp, lr), (qp, qr), (tp, tr) = (
        per[("onnx", "int8", 1)],
        per[("onnx", "int4", 1)],
        per[("torch", "int8", 1)],
    )
    ap = per[("onnx", "int8", cores)][0]
    int8_floor_ms = 1000 * lm_bytes["int8"] / (bandwidth * 1e9)
    print(
        f"  lean int8 / torch int8: per pass {lp / tp:.2f}x, RSS {lr / tr:.2f}x; lean int4 / torch int8: per pass "
        f"{qp / tp:.2f}x, RSS {qr / tr:.2f}x; lean int4 per pass / the int8 floor "
        f"{qp / 1000 / (lm_bytes['int8'] / (bandwidth * 1e9)):.2f}x"
    )
    print(
        f"  targets at 0.5B: int8 RSS <= 1.0 GB {'met' if lr <= 1024 else 'MISSED'} by lean int8, "
        f"{'met' if tr <= 1024 else 'MISSED'} by torch int8; int8 decode <= 2.0x the floor: lean int8 one "
        f"thread {lp / int8_floor_ms:.2f}x ({'met' if lp / int8_floor_ms <= 2 else 'MISSED'}), {cores} threads "
        f"{ap / int8_floor_ms:.2f}x ({'met' if ap / int8_floor_ms <= 2 else 'MISSED'}); {cores} threads / one: "
        f"{ap / lp:.2f}x per pass"
    )


def identity_big(ckpt: Path, n: int) -> tuple[int, int]:
    import numpy as np

    from octopus_ros.lean.runtime import LeanOctopus
    from octopus_ros.model.runtime import Octopus
    from octopus_ros.training.evaluate import _got

    texts = [
        "pick up the red cup",
        "text Bob that lunch is ready",
        "把杯子拿起来",
        "go to the kitchen",
        "stop",
    ]
    rng = np.random.default_rng(0)
    torch_model = Octopus.load(ckpt, jump_forward=False)
    lean = LeanOctopus.load(ckpt, jump_forward=False)
    same = 0
    for i in range(n):
        rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
        same += _got(torch_model.decide(texts[i % len(texts)], rgb)) == _got(
            lean.decide(texts[i % len(texts)], rgb)
        )
    return same, n


def _range(values: list[float], fmt: str = "{:.1f}") -> str:
    lo, hi = min(values), max(values)
    return fmt.format(lo) if len(values) == 1 or abs(hi - lo) < 1e-9 else f"{fmt.format(lo)}-{fmt.format(hi)}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="few items, one round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=40, help="held-out examples per split")
    parser.add_argument("--no-big", action="store_true", help="skip section 4, the 0.5B shape (~10 min)")
    parser.add_argument("--big-only", action="store_true", help="only section 4")
    args = parser.parse_args(argv)
    if args.big_only:
        big_shape(1 if args.quick else 2, 3 if args.quick else 10, 3 if args.quick else 8)
        return 0
    from octopus_ros.paths import default_model_dir

    rounds, n_heldout, n_natural, n_lat = (1, 2, 6, 10) if args.quick else (args.rounds, args.n, None, 60)
    with tempfile.TemporaryDirectory(prefix="bench_lean_") as tmp:
        ckpt = checkpoint_copy(default_model_dir(), Path(tmp) / "ckpt")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "octopus_ros.model.onnx_export_all", str(ckpt), "--int8", "--int4"],
            check=True,
            capture_output=True,
        )
        print(f"export (fp32 + int8 + int4 graphs): {time.perf_counter() - t0:.1f} s")
        size = {p.name: p.stat().st_size for p in (ckpt / "onnx").iterdir()}
        graphs = {k: v for k, v in size.items() if k.endswith((".onnx", ".onnx.data"))}  # with weights
        fp32 = sum(v for k, v in graphs.items() if ".int8." not in k and ".int4." not in k)
        int8 = sum(v for k, v in graphs.items() if ".int8." in k)
        int4 = sum(v for k, v in graphs.items() if ".int4." in k)
        print(
            f"  graphs on disk: fp32 {fp32 / 2**20:.1f} MiB, int8 {int8 / 2**20:.1f} MiB, int4 LM "
            f"{int4 / 2**20:.1f} MiB (+ embeddings table)"
        )

        print("\n1. decisions lean vs torch (call text and node action)")
        for precision in ("fp32", "int8", "int4"):
            res = identity(ckpt, precision, n_heldout, n_natural)
            for name, (same, total, diffs) in res.items():
                versus = "torch fp32" if precision == "int4" else f"torch {precision}"
                print(
                    f"  {precision} {name:9s} {same}/{total} identical to {versus} ({100.0 * same / max(total, 1):.1f} %)"
                )
                for d in diffs:
                    print(f"      differs: {d}")

        backends = [
            ("onnx", "fp32"),
            ("onnx", "int8"),
            ("onnx", "int4"),
            ("torch", "fp32"),
            ("torch", "int8"),
        ]
        runs: dict[tuple, list[dict]] = {b: [] for b in backends}
        for r in range(rounds):
            order = backends[r % len(backends) :] + backends[: r % len(backends)]
            for b in order:
                runs[b].append(child(*b, ckpt, n_lat))

    rng = _range
    print("\n2./3. fresh node-like process per backend (1 thread), ranges over rounds")
    print(
        f"  {'backend':12s} {'RSS MiB':>10s} {'peak MiB':>10s} {'ready s':>9s} {'decide p50 ms':>14s} {'encode p50 ms':>14s}  heavy imports"
    )
    p50 = {}
    for b, rs in runs.items():
        dec = [1000 * statistics.median(x["decide"]) for x in rs]
        enc = [1000 * statistics.median(x["encode"]) for x in rs]
        p50[b] = statistics.median(dec)
        print(
            f"  {b[0] + ' ' + b[1]:12s} {rng([x['rss'] for x in rs]):>10s} {rng([x['peak'] for x in rs]):>10s} "
            f"{rng([x['ready_s'] for x in rs], '{:.2f}'):>9s} {rng(dec, '{:.2f}'):>14s} {rng(enc, '{:.2f}'):>14s}  {rs[0]['heavy']}"
        )
    rss = {b: statistics.median(x["rss"] for x in rs) for b, rs in runs.items()}
    ready = {b: statistics.median(x["ready_s"] for x in rs) for b, rs in runs.items()}
    print("\n  targets (issue 14 item 3)")
    for prec in ("fp32", "int8"):
        lean = ("onnx", prec)
        print(
            f"  lean {prec}: RSS {rss[lean]:.0f} MiB (<= 300: {'met' if rss[lean] <= 300 else 'MISSED'}; torch "
            f"{prec} {rss[('torch', prec)]:.0f}, ratio {rss[lean] / rss[('torch', prec)]:.2f}x), ready {ready[lean]:.2f} s "
            f"(<= 3: {'met' if ready[lean] <= 3 else 'MISSED'}; torch {ready[('torch', prec)]:.2f} s), decide p50 "
            f"{p50[lean]:.2f} ms vs torch int8 {p50[('torch', 'int8')]:.2f} ms "
            f"({p50[lean] / p50[('torch', 'int8')]:.2f}x; <= 1: {'met' if p50[lean] <= p50[('torch', 'int8')] else 'MISSED'})"
        )
    if not args.no_big:
        big_shape(1 if args.quick else 2, 3 if args.quick else 10, 3 if args.quick else 8)
    return 0


if __name__ == "__main__":
    sys.exit(main())
