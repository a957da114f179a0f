"""octopus_node over real DDS: camera ingestion at 640x480 and 1080p, utterance latency, prefetch.

Every configuration starts a fresh octopus_node process (bundled model unless --model). This
process plays the camera (the project's renderer, rgb8, --camera-hz, the same scene in every
frame) and an ASR node that speaks every --interval seconds. It prints, in one run:

1. Ingestion. With the camera on and no utterance, the node's CPU over --window seconds
   (/proc, all its threads; the engine worker apart), and the frames it saw (its own
   ``frames_received`` count from /diagnostics) against the frames sent in the same interval.
   "prefetch off" is ingestion alone; "prefetch on" adds the idle-time pre-encoding. The
   floor: a bare rclpy subscriber process (SingleThreadedExecutor, empty callback) on the
   same camera, the cost of rclpy taking the messages at all.
2. Utterance latency per camera size, and the 1080p / 640x480 ratio. Utterances come every
   --interval seconds +-50 % (uniform): speech is not periodic, and a fixed period locks
   onto the prefetch period.
3. Prefetch: utterance published -> FunctionCall received (this process), against the
   language model alone in this process (``Octopus.decide`` on an encoding made beforehand,
   same model, same utterances, on a worker thread as in the node), measured while the
   camera streams to the node ("live", the ratio's denominator), the same paced as the
   utterances are (each decision after an idle gap, as the node's are: "paced", a second
   ratio) and, for reference, in a block just before the node starts ("quiet"): the ratio the
   node's prefetch has to bring near 1. Where the node's time goes is read from its
   /diagnostics latency stages and counts. (Items 2 and 3 print as section 2.)
4. Cold start (section 3 of the output; ``--cold-rounds``, ``--cold-only``): fresh node processes
   with the torch and the onnx backend (an export made first in a temporary directory),
   interleaved: process start -> active (its speech subscription seen over DDS), RSS once active,
   and whether a torch library is mapped.

Per utterance:

  to call      utterance published -> FunctionCall received (this process)
  node         Outcome.latency: utterance received -> outcome decided (inside the node)
  model        FunctionCall.inference_latency: vision encode (0 if pre-encoded) + LM
  node - model queueing, frame choice, validation, message building
  transport    to outcome - node: DDS both ways + executor callbacks

The machine is shared and noisy: compare the ratios printed in one run, not absolute figures
across runs. ``--baseline DIR`` also runs every node configuration with the octopus_ros code
under DIR (e.g. ``git archive <commit> octopus_ros/octopus_ros octopus_ros/config
octopus_ros/package.xml | tar -x -C DIR``: the node finds its config beside the package), interleaved
with the current code, and prints both. Run with ``make bench-node``.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from octopus_ros.data import render, scene_from_spec
from octopus_ros.paths import default_model_dir
from octopus_ros.ros.dds_env import environment_problem
from octopus_ros.ros.image_convert import rgb_to_image_msg
from octopus_ros.ros.testing import node_log, rss_kb, start_node, stop_node
from octopus_ros.runtime.second_opinion import SECOND_OPINION_DIR

UTTERANCES = [
    "pick up the red cup",
    "grab the thing in front of you",
    "回收这个",
    "snap a photo",
    "把这个捡起来",
]
SIZES = {"640x480": (640, 480), "1080p": (1920, 1080)}
SCENE = {"target": ["cup", "red"], "distractors": 2, "seed": 3}
ROWS = ("to_call", "node", "model", "node_minus_model", "transport")
ROW_LABELS = {
    "to_call": "to call",
    "node": "node",
    "model": "model",
    "node_minus_model": "node - model",
    "transport": "transport",
}
# /diagnostics stages and counts printed for each configuration (engine.LatencyStats, engine.counts).
STAGES = ("request_wait", "frame_pick", "image_decode", "vision_encode", "lm_total", "request_total")
COUNTS = ("prefetch_hits", "prefetch_misses", "prefetch_scene_changed", "prefetch_lag_exceeded")


# --------------------------------------------------------------------------- node process
def cpu_seconds(pid: int) -> tuple[float, dict[str, float]]:
    """CPU seconds (user + system) of a process and of each of its threads by name (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK")
    threads: dict[str, float] = {}
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # the thread ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        threads[name] = threads.get(name, 0.0) + seconds
        total += seconds
    return total, threads


def node_pid(proc: subprocess.Popen) -> int:
    """The Python process running the node: the ROS wheels' bootstrapper may re-run Python as a child."""
    pid = proc.pid
    for _ in range(3):
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            break
        if not children:
            break
        pid = int(children[0])
    return pid


# --------------------------------------------------------------------------- client
class Client(Node):
    """Camera + ASR + listener of the node's calls, outcomes and diagnostics."""

    def __init__(self, context: Context, frame: np.ndarray, camera_hz: float) -> None:
        super().__init__("octopus_bench_client", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        # The node's camera subscription is sensor_data (best effort, keep last 1): a frame it is
        # too slow to take is replaced by the next one, exactly as with a real camera driver.
        self.image_pub = self.create_publisher(Image, "/camera/image_raw", qos_profile_sensor_data)
        self.speech_pub = self.create_publisher(String, "/speech/text", reliable)
        self.outcomes: list[tuple[float, Outcome]] = []
        self.calls: dict[str, tuple[float, FunctionCall]] = {}
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.sent: list[float] = []  # publication times of the frames (node clock)
        self.create_subscription(Outcome, "/octopus_node/outcomes", self._on_outcome, reliable)
        self.create_subscription(FunctionCall, "/octopus_node/function_calls", self._on_call, reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        # Built once: a camera driver fills a message too, it does not convert a numpy array per frame.
        self.image = rgb_to_image_msg(frame)
        self.image.header.frame_id = "bench_camera"
        self.camera_on = True
        self.create_timer(1.0 / camera_hz, self._publish_frame)
        self.executor_ = SingleThreadedExecutor(context=context)
        self.executor_.add_node(self)

    def _on_outcome(self, msg: Outcome) -> None:
        self.outcomes.append((time.perf_counter(), msg))

    def _on_call(self, msg: FunctionCall) -> None:
        self.calls[msg.request_id] = (time.perf_counter(), msg)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.endswith(": octopus"):
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                self.diagnostics.append((stamp, {kv.key: kv.value for kv in status.values}))

    def _publish_frame(self) -> None:
        if not self.camera_on:
            return
        now = self.get_clock().now()
        self.image.header.stamp = now.to_msg()
        self.image_pub.publish(self.image)
        self.sent.append(now.nanoseconds * 1e-9)

    def spin_for(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until():
                return True
            self.executor_.spin_once(timeout_sec=0.005)
        return until() if until is not None else True


def ms(duration) -> float:
    return duration.sec * 1000.0 + duration.nanosec / 1e6


@dataclass
class Run:
    """What one node configuration measured."""

    rows: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in ROWS})
    cpu: float = float("nan")  # % of one core, camera on, no utterance
    cpu_engine: float = float("nan")  # ... of it in the engine worker thread
    cpu_top: str = ""  # the busiest threads
    seen: float = float("nan")  # frames/s the node received (its own count)
    sent: float = float("nan")  # frames/s this process published in the same interval
    diag: dict[str, str] = field(default_factory=dict)  # the node's last /diagnostics values
    lm_live: list[float] = field(default_factory=list)  # LM-only ms in this process, camera live
    lm_paced: list[float] = field(default_factory=list)  # ... each decision after a gap, as utterances come


class LMOnly:
    """ms of Octopus.decide on an encoding made beforehand: the floor the node's prefetch aims at."""

    def __init__(self, args, frame: np.ndarray) -> None:
        from octopus_ros.model.runtime import Octopus

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        self.model = Octopus.load(args.model)
        self.encoding = self.model.encode(frame)
        self.args = args

    def block(
        self, meanwhile: Callable[[], object] | None = None, gap: Callable[[], float] | None = None
    ) -> list[float]:
        """One block of samples, decided on a worker thread as the node's engine does: on this
        loaded 2-core VM, 2-thread torch called from the main thread took 1250-1390 ms p50 per
        decision where the same calls from a worker thread took 39-48 ms (same process, same
        minutes). ``gap``: seconds to sleep before each decision (None: back to back)."""
        samples: list[float] = []

        def work() -> None:
            for i in range(self.args.warmup + self.args.n):
                if gap is not None:
                    time.sleep(gap())
                t0 = time.perf_counter()
                self.model.decide(
                    UTTERANCES[i % len(UTTERANCES)], self.encoding, allowlist=None, mode="constrained"
                )
                if i >= self.args.warmup:
                    samples.append((time.perf_counter() - t0) * 1000.0)

        worker = threading.Thread(target=work, name="lm-only")
        worker.start()
        while meanwhile is not None and worker.is_alive():
            meanwhile()  # e.g. keep the camera publishing
        worker.join()
        return samples


def bare_subscriber(seconds: float) -> None:
    """The rclpy floor: subscribe to the camera with an empty callback (run as a subprocess)."""
    rclpy.init()
    node = Node("octopus_bench_bare_subscriber")
    node.create_subscription(Image, "/camera/image_raw", lambda msg: None, qos_profile_sensor_data)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        executor.spin_once(timeout_sec=0.1)
    rclpy.shutdown()


def run_floor(args, context: Context, frame: np.ndarray) -> Run:
    """CPU of a bare rclpy subscriber process on the same camera, over the same window."""
    seconds = args.window + 6.0
    proc = subprocess.Popen(
        [sys.executable, __file__, "--bare-subscriber", str(seconds)], env=os.environ.copy()
    )
    client = Client(context, frame, args.camera_hz)
    run = Run()
    try:
        if not client.spin_for(60, lambda: client.image_pub.get_subscription_count() > 0):
            raise RuntimeError("the bare subscriber did not subscribe")
        client.spin_for(2.0)
        pid = node_pid(proc)
        cpu0, _ = cpu_seconds(pid)
        t0 = time.monotonic()
        client.spin_for(args.window)
        cpu1, _ = cpu_seconds(pid)
        run.cpu = 100.0 * (cpu1 - cpu0) / (time.monotonic() - t0)
    finally:
        proc.wait(timeout=30)
        client.destroy_node()
    return run


def run_config(
    args, params: list[str], context: Context, frame: np.ndarray, pythonpath: str | None, lm_model: LMOnly
) -> Run:
    # Every decided call is published (threshold 0, no novelty or grounding decline), so that each
    # utterance yields a FunctionCall to time; the model still computes all of it.
    node_params = [
        f"model_path:={args.model}",
        "rate_limit:=0.0",
        "confidence_threshold:=0.0",
        "max_text_novelty:=0.0",
        "max_image_novelty:=0.0",
        "grounding_threshold:=0.0",
        "diagnostics_rate:=4.0",
        f"threads:={args.threads}",
        *params,
    ]
    env = os.environ.copy()
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    proc = start_node(env, *node_params, log_level="warn")
    client = Client(context, frame, args.camera_hz)
    run = Run()
    try:
        # the camera is subscribed on activate (speech from the node's start)
        if not client.spin_for(180, lambda: client.image_pub.get_subscription_count() > 0):
            raise RuntimeError(f"octopus_node did not become active:\n{node_log(proc)[-4000:]}")
        client.spin_for(2.0)  # frames flowing, prefetch warmed up
        # 1. ingestion: camera on, no utterance
        pid = node_pid(proc)
        n_diag = len(client.diagnostics)
        cpu0, threads0 = cpu_seconds(pid)
        t0 = time.monotonic()
        client.spin_for(args.window)
        cpu1, threads1 = cpu_seconds(pid)
        wall = time.monotonic() - t0
        run.cpu = 100.0 * (cpu1 - cpu0) / wall
        used = {name: threads1[name] - threads0.get(name, 0.0) for name in threads1}
        run.cpu_engine = 100.0 * used.get("octopus-engine", 0.0) / wall
        top = sorted(used.items(), key=lambda kv: -kv[1])[:3]
        run.cpu_top = ", ".join(f"{name} {100.0 * s / wall:.0f}" for name, s in top)
        window = client.diagnostics[n_diag:]
        if len(window) >= 2:
            (ta, a), (tb, b) = window[0], window[-1]
            received = int(b.get("frames_received", 0)) - int(a.get("frames_received", 0))
            sent = sum(1 for t in client.sent if ta < t <= tb)
            run.seen, run.sent = received / (tb - ta), sent / (tb - ta)
        # LM alone in this process while the camera streams to the node (and its prefetch runs)
        run.lm_live = lm_model.block(meanwhile=lambda: client.spin_for(0.02))
        # ... and paced as the utterances below are: the node decides after an idle gap, not back to back
        run.lm_paced = lm_model.block(
            meanwhile=lambda: client.spin_for(0.02), gap=lambda: args.interval * random.uniform(0.5, 1.5)
        )
        # 2. utterances, camera still on
        for i in range(args.warmup + args.n):
            text = UTTERANCES[i % len(UTTERANCES)]
            seen = len(client.outcomes)
            t0 = time.perf_counter()
            client.speech_pub.publish(String(data=text))
            if not client.spin_for(30, lambda seen=seen: len(client.outcomes) > seen):
                raise RuntimeError(f"no outcome for {text!r}")
            t1, outcome = client.outcomes[seen]
            if outcome.code == Outcome.OK:
                client.spin_for(2, lambda rid=outcome.request_id: rid in client.calls)
            t_call, call = client.calls.get(outcome.request_id, (None, None))
            if i >= args.warmup and call is not None:
                node, model = ms(outcome.latency), ms(call.inference_latency)
                run.rows["to_call"].append((t_call - t0) * 1000.0)
                run.rows["node"].append(node)
                run.rows["model"].append(model)
                run.rows["node_minus_model"].append(node - model)
                run.rows["transport"].append((t1 - t0) * 1000.0 - node)
            client.spin_for(args.interval * random.uniform(0.5, 1.5))
        client.spin_for(0.6)  # one more diagnostics message with the last utterance counted
        if client.diagnostics:
            run.diag = client.diagnostics[-1][1]
    finally:
        stop_node(proc)
        client.destroy_node()
    return run


def _link_checkpoint(src: Path, dst: Path) -> None:
    """``dst``: a folder of symlinks to ``src``'s files (the export writes beside them, not into src)."""
    dst.mkdir()
    for f in src.iterdir():
        if f.is_file():
            os.symlink(f.resolve(), dst / f.name)


def cold_start(args, context: Context, frame: np.ndarray) -> dict[str, dict[str, list]]:
    """Process start -> active over DDS (the node's speech subscription seen by this process), and
    the node's RSS once active, per backend: fresh node processes, torch and onnx interleaved,
    ``--cold-rounds`` rounds. The onnx backend runs an export of ``--model`` made first in a temporary
    directory (``onnx_export_all``, fp32), its ``second_opinion/`` model included: the node loads
    both by default (``second_opinion:=auto``), so both are in the start time and the RSS. The page cache is warm after the first round: this is the
    start of a node whose files were read before, as on a robot that restarts it."""
    import tempfile

    from octopus_ros.model.onnx_export_all import export_all

    out: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory(prefix="octopus_bench_cold_") as tmp:
        ckpt = Path(tmp) / "ckpt"
        _link_checkpoint(Path(args.model), ckpt)
        if (Path(args.model) / SECOND_OPINION_DIR).is_dir():  # the node's default loads it too
            _link_checkpoint(Path(args.model) / SECOND_OPINION_DIR, ckpt / SECOND_OPINION_DIR)
            export_all(ckpt / SECOND_OPINION_DIR)
        export_all(ckpt)
        client = Client(context, frame, args.camera_hz)
        client.camera_on = False
        try:
            for _ in range(args.cold_rounds):
                for backend in ("torch", "onnx"):
                    t0 = time.perf_counter()
                    proc = start_node(
                        os.environ.copy(), f"model_path:={ckpt}", f"backend:={backend}", log_level="warn"
                    )
                    try:
                        if not client.spin_for(120, lambda: client.image_pub.get_subscription_count() > 0):
                            raise RuntimeError(f"octopus_node ({backend}) did not become active")
                        seconds = time.perf_counter() - t0
                        client.spin_for(1.0)
                        pid = node_pid(proc)
                        maps = Path(f"/proc/{pid}/maps").read_text()
                        row = out.setdefault(backend, {"seconds": [], "rss": [], "torch": []})
                        row["seconds"].append(seconds)
                        row["rss"].append(rss_kb(pid) / 1024.0)
                        row["torch"].append("libtorch" in maps)
                    finally:
                        stop_node(proc)
                    client.spin_for(1.0, lambda: client.image_pub.get_subscription_count() == 0)
        finally:
            client.destroy_node()
    return out


# --------------------------------------------------------------------------- report
def p50(values) -> float:
    return float(np.percentile(values, 50)) if len(values) else float("nan")


def p95(values) -> float:
    return float(np.percentile(values, 95)) if len(values) else float("nan")


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def print_latency(runs: dict[str, Run], labels: list[str]) -> None:
    width = 15
    print(f"{'ms (p50 / p95)':14s}" + "".join(f"{label:>{width * 2 + 1}s}" for label in labels))
    for key in ROWS:
        cells = []
        for label in labels:
            values = runs[label].rows[key]
            cells.append(f"{p50(values):{width}.2f} {p95(values):{width - 1}.2f} ")
        print(f"{ROW_LABELS[key]:14s}" + "".join(cells))
    print(
        f"{'calls timed':14s}"
        + "".join(f"{len(runs[label].rows['to_call']):>{width * 2 + 1}d}" for label in labels)
    )


def print_where(runs: dict[str, Run], labels: list[str]) -> None:
    """The node's own stages (its /diagnostics, p50 ms over its whole run) and prefetch counts."""
    width = 16
    print(f"{'node stages p50 ms':22s}" + "".join(f"{label:>{width}s}" for label in labels))
    for stage in STAGES:
        key = f"latency_{stage}_p50_ms"
        print(f"{stage:22s}" + "".join(f"{runs[label].diag.get(key, '-'):>{width}s}" for label in labels))
    for count in COUNTS:
        print(f"{count:22s}" + "".join(f"{runs[label].diag.get(count, '0'):>{width}s}" for label in labels))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--n", type=int, default=25, help="measured utterances per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.4, help="seconds between utterances")
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=8.0, help="seconds of camera-only CPU measurement")
    parser.add_argument("--seed", type=int, default=0, help="of the utterance intervals")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads of the node (its 'threads' parameter) and of the LM-only blocks; 0 = torch's default",
    )
    parser.add_argument(
        "--cold-rounds",
        type=int,
        default=3,
        help="rounds of the cold-start section (node start -> active and RSS, torch vs onnx backend); 0: skip",
    )
    parser.add_argument(
        "--cold-only", action="store_true", help="only the cold-start section (see --cold-rounds)"
    )
    parser.add_argument("--bare-subscriber", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--baseline",
        default="",
        help="a directory holding another octopus_ros/octopus_ros tree: its node runs every configuration too",
    )
    args = parser.parse_args()
    if args.bare_subscriber:
        bare_subscriber(args.bare_subscriber)
        return 0
    random.seed(args.seed)
    problem = environment_problem()
    if problem is not None:
        raise SystemExit(f"run through `make bench-node`: {problem}")
    scene = scene_from_spec(SCENE)
    frames = {name: render(scene, size) for name, size in SIZES.items()}
    configs = {
        "640x480 on": ("640x480", ["prefetch_rate:=5.0"]),
        "640x480 off": ("640x480", ["prefetch_rate:=0.0"]),
        "1080p on": ("1080p", ["prefetch_rate:=5.0"]),
        "1080p off": ("1080p", ["prefetch_rate:=0.0"]),
    }
    trees = {"": None}
    if args.baseline:
        base = Path(args.baseline).resolve()
        for need in ("octopus_ros/__init__.py", "config", "package.xml"):
            if not (base / "octopus_ros" / need).exists():  # paths.share_dir needs all three
                raise SystemExit(f"--baseline {base}: no octopus_ros/{need} under it")
        trees = {"": None, "base ": str(base / "octopus_ros")}
    print(
        f"octopus_node benchmark: model {args.model}, camera {args.camera_hz:g} Hz rgb8 "
        f"({', '.join(SIZES)}), {args.n} utterances per configuration, {args.window:g} s CPU window"
        + (f", baseline code {args.baseline}" if args.baseline else "")
        + (f", torch threads {args.threads}" if args.threads else "")
    )
    context = Context()
    rclpy.init(context=context)
    if args.cold_only:
        try:
            cold = cold_start(args, context, frames["640x480"])
        finally:
            rclpy.shutdown(context=context)
        print_cold(cold)
        return 0
    lm_model = LMOnly(args, frames["640x480"])
    lm: dict[str, list[float]] = {}  # the block measured just before each configuration
    runs: dict[str, Run] = {}
    cold: dict[str, dict[str, list]] = {}
    try:
        floor = run_floor(args, context, frames["1080p"])
        print(f"  rclpy floor, 1080p: CPU {floor.cpu:.1f} % of a core", flush=True)
        for name, (size, params) in configs.items():
            for prefix, pythonpath in trees.items():  # interleaved: outside load hits both alike
                label = prefix + name
                lm[label] = lm_model.block()
                runs[label] = run_config(args, params, context, frames[size], pythonpath, lm_model)
                r = runs[label]
                print(
                    f"  {label}: CPU {r.cpu:.0f} % of a core (engine {r.cpu_engine:.0f} %), "
                    f"{len(r.rows['to_call'])} calls timed; LM only before it p50 {p50(lm[label]):.1f} ms",
                    flush=True,
                )
        if args.cold_rounds > 0:
            cold = cold_start(args, context, frames["640x480"])
    finally:
        rclpy.shutdown(context=context)
    labels = list(runs)
    lm_all = [v for block in lm.values() for v in block]

    print()
    print(f"1. Ingestion, camera {args.camera_hz:g} Hz, no utterance ({args.window:g} s window)")
    print(f"{'':14s}{'CPU % core':>11s}{'engine %':>10s}{'seen/s':>9s}{'sent/s':>9s}   busiest threads (%)")
    print(f"{'rclpy floor':14s}{floor.cpu:11.1f}   (bare subscriber process, 1080p)")
    for label in labels:
        r = runs[label]
        print(f"{label:14s}{r.cpu:11.1f}{r.cpu_engine:10.1f}{r.seen:9.1f}{r.sent:9.1f}   {r.cpu_top}")
    print()
    print("2. Utterance latency, camera live")
    print_latency(runs, labels)
    print(
        f"{'LM only, quiet':14s}"
        + "".join(f"{p50(lm[label]):15.2f} {p95(lm[label]):14.2f} " for label in labels)
    )
    print(
        f"{'LM only, live':14s}"
        + "".join(f"{p50(runs[label].lm_live):15.2f} {p95(runs[label].lm_live):14.2f} " for label in labels)
    )
    print(
        f"{'LM only, paced':14s}"
        + "".join(f"{p50(runs[label].lm_paced):15.2f} {p95(runs[label].lm_paced):14.2f} " for label in labels)
    )
    for name, key in (("to call / LM", "lm_live"), ("... / paced", "lm_paced")):
        print(
            f"{name:14s}"
            + "".join(
                f"{ratio(p50(runs[label].rows['to_call']), p50(getattr(runs[label], key))):15.2f}{'':16s}"
                for label in labels
            )
        )
    print(
        "  (LM only: Octopus.decide in this process on a worker thread, pre-encoded frame; quiet = before the "
        "node starts, live = while the camera streams to the node, back to back; paced = live, each decision "
        f"after a gap of {args.interval:g} s +-50 %, as the utterances come; to call / LM uses live)"
    )
    print()
    print_where(runs, labels)
    print()
    print(
        "Summary (targets: ingestion <= 15 % of a core, 30/30 frames, 1080p/640x480 <= 1.2, prefetch <= 1.2)"
    )
    for prefix in trees:
        on, big, big_off = runs[prefix + "640x480 on"], runs[prefix + "1080p on"], runs[prefix + "1080p off"]

        def vs_lm(label: str, prefix: str = prefix, key: str = "lm_live") -> float:
            return ratio(p50(runs[prefix + label].rows["to_call"]), p50(getattr(runs[prefix + label], key)))

        print(f"  {prefix.strip() or 'this code'}:")
        print(
            f"    1080p ingestion (prefetch off): {big_off.cpu:.1f} % of a core (rclpy floor {floor.cpu:.1f} %, "
            f"with prefetch {big.cpu:.1f} %); frames seen {big_off.seen:.1f} of {big_off.sent:.1f} per s"
        )
        print(
            f"    utterance -> call p50, 1080p / 640x480: {p50(big.rows['to_call']):.1f} / "
            f"{p50(on.rows['to_call']):.1f} ms = {ratio(p50(big.rows['to_call']), p50(on.rows['to_call'])):.2f}"
        )
        print(
            f"    utterance -> call / LM only, camera live (p50): prefetch on {vs_lm('640x480 on'):.2f}, "
            f"off {vs_lm('640x480 off'):.2f} (1080p: {vs_lm('1080p on'):.2f}, {vs_lm('1080p off'):.2f}); "
            f"LM only quiet p50 {p50(lm_all):.1f} ms over all blocks"
        )
        print(
            "    the same against the LM paced as the utterances: "
            f"prefetch on {vs_lm('640x480 on', key='lm_paced'):.2f}, off {vs_lm('640x480 off', key='lm_paced'):.2f} "
            f"(1080p: {vs_lm('1080p on', key='lm_paced'):.2f}, {vs_lm('1080p off', key='lm_paced'):.2f})"
        )
    if cold:
        print()
        print_cold(cold)
    return 0


def print_cold(cold: dict[str, dict[str, list]]) -> None:
    """The cold-start section: per backend, start -> active and RSS (median, range), torch mapped."""
    n = max((len(row["seconds"]) for row in cold.values()), default=0)
    print(f"3. Cold start over DDS ({n} rounds, fresh node processes, backends interleaved, bundled model)")
    print("   targets with backend onnx: start -> active <= 3 s, node RSS <= 300 MB")
    print(
        f"{'backend':10s}{'start -> active s (p50, range)':>34s}{'RSS active MiB (p50, range)':>32s}   torch mapped"
    )
    for backend, row in cold.items():
        secs, rss = row["seconds"], row["rss"]
        print(
            f"{backend:10s}{float(np.median(secs)):14.2f} ({min(secs):.2f}-{max(secs):.2f}){'':6s}"
            f"{float(np.median(rss)):14.0f} ({min(rss):.0f}-{max(rss):.0f}){'':8s}"
            f"{'yes' if any(row['torch']) else 'no'}"
        )


if __name__ == "__main__":
    sys.exit(main())
