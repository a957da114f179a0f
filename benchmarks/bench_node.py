"""octopus_node over real DDS: latency with and without vision prefetch, and where the time goes.

For each configuration a fresh octopus_node process (bundled model unless --model) is
started; this process plays a 15 Hz camera (the project's renderer, 320x240 rgb8) and an
ASR node that speaks every --interval seconds, and records for each utterance:

  round trip   utterance published -> Outcome received (this process)
  node         Outcome.latency: utterance received -> outcome decided (inside the node)
  model        FunctionCall.inference_latency: vision encode (0 if pre-encoded) + LM
  node - model queueing, pairing, validation, message building
  transport    round trip - node: DDS both ways + executor callbacks

Figures of both configurations are printed side by side with their ratio (the machine
is shared and noisy: compare ratios). Run with `make bench-node`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import rclpy
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import String

from octopus_ros.data import render, scene_from_spec
from octopus_ros.paths import default_model_dir
from octopus_ros.ros.dds_env import environment_problem
from octopus_ros.ros.image_convert import rgb_to_image_msg

UTTERANCES = [
    "pick up the red cup",
    "grab the thing in front of you",
    "回收这个",
    "snap a photo",
    "把这个捡起来",
]


class Client(Node):
    def __init__(self, context: Context, frame: np.ndarray, camera_hz: float) -> None:
        super().__init__("octopus_bench_client", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, "/camera/image_raw", reliable)
        self.speech_pub = self.create_publisher(String, "/speech/text", reliable)
        self.outcomes: list[tuple[float, Outcome]] = []
        self.calls: dict[str, FunctionCall] = {}
        self.create_subscription(Outcome, "/octopus_node/outcomes", self._on_outcome, reliable)
        self.create_subscription(FunctionCall, "/octopus_node/function_calls", self._on_call, reliable)
        self.frame = frame
        self.create_timer(1.0 / camera_hz, self._publish_frame)
        self.executor_ = SingleThreadedExecutor(context=context)
        self.executor_.add_node(self)

    def _on_outcome(self, msg: Outcome) -> None:
        self.outcomes.append((time.perf_counter(), msg))

    def _on_call(self, msg: FunctionCall) -> None:
        self.calls[msg.request_id] = msg

    def _publish_frame(self) -> None:
        msg = rgb_to_image_msg(self.frame)
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = "bench_camera"
        self.image_pub.publish(msg)

    def spin_for(self, seconds: float, until=None) -> bool:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if until is not None and until():
                return True
            self.executor_.spin_once(timeout_sec=0.005)
        return until() if until is not None else True


def ms(duration) -> float:
    return duration.sec * 1000.0 + duration.nanosec / 1e6


def run_config(
    args, label: str, params: list[str], context: Context, frame: np.ndarray
) -> dict[str, list[float]]:
    cmd = [sys.executable, "-m", "octopus_ros.ros.octopus_node", "--ros-args", "--log-level", "warn"]
    # Threshold 0: every decided call is published, so its model time is measured.
    for p in [
        "autostart:=true",
        f"model_path:={args.model}",
        "rate_limit:=0.0",
        "confidence_threshold:=0.0",
        *params,
    ]:
        cmd += ["-p", p]
    proc = subprocess.Popen(
        cmd, env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    client = Client(context, frame, args.camera_hz)
    rows: dict[str, list[float]] = {
        k: [] for k in ("round_trip", "node", "model", "node_minus_model", "transport")
    }
    try:
        if not client.spin_for(180, lambda: client.speech_pub.get_subscription_count() > 0):
            raise RuntimeError(
                f"octopus_node did not become active:\n{proc.stdout.read() if proc.poll() else ''}"
            )
        client.spin_for(1.5)  # camera frames flowing, prefetch warmed up
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
            call = client.calls.get(outcome.request_id)
            if i >= args.warmup and call is not None:
                rt, node, model = (t1 - t0) * 1000.0, ms(outcome.latency), ms(call.inference_latency)
                rows["round_trip"].append(rt)
                rows["node"].append(node)
                rows["model"].append(model)
                rows["node_minus_model"].append(node - model)
                rows["transport"].append(rt - node)
            client.spin_for(args.interval)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        client.destroy_node()
    print(f"  {label}: {len(rows['model'])} calls measured", flush=True)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(default_model_dir()))
    parser.add_argument("--n", type=int, default=30, help="measured utterances per configuration")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--interval", type=float, default=0.4, help="seconds between utterances")
    parser.add_argument("--camera-hz", type=float, default=15.0)
    args = parser.parse_args()
    problem = environment_problem()
    if problem is not None:
        raise SystemExit(f"run through `make bench-node`: {problem}")
    frame = render(scene_from_spec({"target": ["cup", "red"], "distractors": 2, "seed": 3}), (320, 240))
    context = Context()
    rclpy.init(context=context)
    configs = {
        "prefetch on": ["prefetch_rate:=5.0"],
        "prefetch off": ["prefetch_rate:=0.0"],
    }
    print(
        f"octopus_node benchmark: model {args.model}, camera {args.camera_hz:g} Hz 320x240, {args.n} utterances each"
    )
    results = {label: run_config(args, label, params, context, frame) for label, params in configs.items()}
    rclpy.shutdown(context=context)
    on, off = results["prefetch on"], results["prefetch off"]
    print()
    print(f"{'ms':18s} {'prefetch on':>22s} {'prefetch off':>22s} {'off/on (p50)':>13s}")
    print(f"{'':18s} {'p50':>10s} {'p95':>10s}  {'p50':>10s} {'p95':>10s}")
    for key, label in [
        ("round_trip", "round trip"),
        ("node", "node"),
        ("model", "model"),
        ("node_minus_model", "node - model"),
        ("transport", "transport"),
    ]:
        a, b = np.asarray(on[key]), np.asarray(off[key])
        if not len(a) or not len(b):
            continue
        ratio = np.percentile(b, 50) / max(1e-9, np.percentile(a, 50))
        print(
            f"{label:18s} {np.percentile(a, 50):10.2f} {np.percentile(a, 95):10.2f}  "
            f"{np.percentile(b, 50):10.2f} {np.percentile(b, 95):10.2f} {ratio:13.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
