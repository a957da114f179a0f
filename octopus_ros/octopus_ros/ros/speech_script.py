"""speech_script: plays a demo scenario against octopus_node and scores the answers.

For each step it asks the simulated camera for the step's scene (``/sim_camera/scene``,
std_msgs/Int32; -1 pauses the camera), waits until the camera reports a frame of it
(``/sim_camera/current_scene``), publishes the utterance on the speech topic, and waits
for the one Outcome (and, when OK, the FunctionCall) with that utterance. At the end it
logs a summary (accuracy against the scenario's expected calls, p50/p95 latency) and
writes it as JSON when ``report_file`` is set. It exits 0 when every step got an outcome.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Int32, String

from octopus_ros.demo.scenario import Scenario
from octopus_ros.paths import config_path


@dataclass
class StepRecord:
    index: int
    utterance: str
    expected: str
    got: str  # the call text, or the outcome code name when no call was published
    outcome: str
    reason: str
    correct: bool
    round_trip_ms: float  # utterance published -> outcome received (this process)
    node_latency_ms: float  # Outcome.latency: utterance received -> outcome decided (node)
    model_ms: float  # FunctionCall.inference_latency (0 when no call)


def _ms(duration: Any) -> float:
    return duration.sec * 1000.0 + duration.nanosec / 1e6


def summarize(records: list[StepRecord]) -> dict[str, Any]:
    """Accuracy and latency percentiles of a run (pure; used by the runner and tests)."""
    ok = [r for r in records if r.outcome == "OK"]

    def pct(values: list[float]) -> dict[str, float]:
        if not values:
            return {"p50": 0.0, "p95": 0.0}
        return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}

    return {
        "steps": len(records),
        "correct": sum(r.correct for r in records),
        "accuracy": sum(r.correct for r in records) / max(1, len(records)),
        "calls": len(ok),
        "round_trip_ms": pct([r.round_trip_ms for r in ok]),
        "node_latency_ms": pct([r.node_latency_ms for r in ok]),
        "model_ms": pct([r.model_ms for r in ok]),
        "node_overhead_ms": pct([r.node_latency_ms - r.model_ms for r in ok]),
        "transport_ms": pct([r.round_trip_ms - r.node_latency_ms for r in ok]),
    }


class SpeechScript(Node):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("speech_script", **kwargs)
        self.declare_parameter("scenario_file", str(config_path("demo_scenario.yaml")))
        self.declare_parameter("speech_topic", "/speech/text")
        self.declare_parameter("node_name", "/octopus_node")
        self.declare_parameter("step_timeout", 20.0)
        self.declare_parameter("startup_timeout", 120.0)
        self.declare_parameter("stale_wait", 1.3)
        self.declare_parameter("report_file", "")
        # Pace like a speaker: at most one utterance per min_interval seconds (the node's
        # default rate limit is 5/s with a burst of 3; faster speech would be answered BUSY).
        self.declare_parameter("min_interval", 0.3)
        self.scenario = Scenario.from_yaml(self.get_parameter("scenario_file").value)
        node_name = self.get_parameter("node_name").value.rstrip("/")
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.speech = self.create_publisher(String, self.get_parameter("speech_topic").value, reliable)
        self.scene_cmd = self.create_publisher(Int32, "/sim_camera/scene", latched)
        self.create_subscription(Int32, "/sim_camera/current_scene", self._on_camera, reliable)
        self.create_subscription(Outcome, f"{node_name}/outcomes", self._on_outcome, reliable)
        self.create_subscription(FunctionCall, f"{node_name}/function_calls", self._on_call, reliable)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self.camera_scene: int | None = None
        self.camera_frames = 0  # frames published by the camera since its scene last changed
        self.node_frames = 0  # frames octopus_node reports having received
        self.outcomes: list[tuple[float, Outcome]] = []
        self.calls: dict[str, FunctionCall] = {}

    def _on_camera(self, msg: Int32) -> None:
        self.camera_frames = self.camera_frames + 1 if msg.data == self.camera_scene else 1
        self.camera_scene = msg.data

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            for kv in status.values:
                if kv.key == "frames_received":
                    self.node_frames = int(kv.value)

    def _on_outcome(self, msg: Outcome) -> None:
        self.outcomes.append((time.perf_counter(), msg))

    def _on_call(self, msg: FunctionCall) -> None:
        self.calls[msg.request_id] = msg

    def _spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            rclpy.spin_once(self, timeout_sec=0.01)
        return True

    def run(self) -> list[StepRecord]:
        log = self.get_logger()
        startup = self.get_parameter("startup_timeout").value
        # octopus_node subscribes to speech from its start (an utterance before it is active is
        # answered NOT_ACTIVE) and to the camera when active: frames it reports are the readiness signal.
        if not self._spin_until(lambda: self.speech.get_subscription_count() > 0, startup):
            raise RuntimeError("octopus_node did not start (no speech subscriber)")
        self.scene_cmd.publish(Int32(data=0))
        # The node reports received frames in its diagnostics: it is active, the camera -> node link is up.
        if not self._spin_until(lambda: self.node_frames > 0, startup):
            raise RuntimeError("octopus_node reports no camera frames")
        records = []
        timeout = self.get_parameter("step_timeout").value
        min_interval = self.get_parameter("min_interval").value
        last_said = 0.0
        for step in self.scenario.steps:
            target = -1 if step.camera_paused else step.index
            self.scene_cmd.publish(Int32(data=target))
            # Two frames of the new scene: the second was published after the switch was seen.
            if not self._spin_until(
                lambda t=target: self.camera_scene == t and self.camera_frames >= 2, timeout
            ):
                raise RuntimeError(f"camera did not switch to scene {target}")
            self._spin_until(lambda t0=last_said: time.monotonic() - t0 >= min_interval, min_interval)
            last_said = time.monotonic()
            if step.camera_paused:
                # Let the newest frame grow older than the node's max_image_age.
                self._spin_until(lambda: False, self.get_parameter("stale_wait").value)
            seen = len(self.outcomes)
            t0 = time.perf_counter()
            self.speech.publish(String(data=step.say))

            forms = {step.say, " ".join(step.say.split())}  # the node answers with normalised text

            def answered(seen=seen, forms=forms) -> bool:
                return any(o.utterance in forms for _, o in self.outcomes[seen:])

            if not self._spin_until(answered, timeout):
                raise RuntimeError(f"no outcome for step {step.index}: {step.say!r}")
            t1, outcome = next((t, o) for t, o in self.outcomes[seen:] if o.utterance in forms)
            call = None
            if outcome.code == Outcome.OK:
                self._spin_until(lambda rid=outcome.request_id: rid in self.calls, timeout)
                call = self.calls.get(outcome.request_id)
            got = call.raw_output if call is not None else outcome.code_name
            correct = outcome.code_name == step.expect_outcome and (step.expect is None or got == step.expect)
            record = StepRecord(
                index=step.index,
                utterance=step.say,
                expected=step.expect or step.expect_outcome,
                got=got,
                outcome=outcome.code_name,
                reason=outcome.reason,
                correct=bool(correct),
                round_trip_ms=(t1 - t0) * 1000.0,
                node_latency_ms=_ms(outcome.latency),
                model_ms=_ms(call.inference_latency) if call is not None else 0.0,
            )
            records.append(record)
            mark = "ok " if correct else "BAD"
            log.info(
                f"{mark} [{step.index:02d}] {step.say!r} -> {got} ({record.round_trip_ms:.1f} ms round trip, "
                f"node {record.node_latency_ms:.1f} ms, model {record.model_ms:.1f} ms)"
                + ("" if correct else f"; expected {record.expected}; reason: {outcome.reason}")
            )
        return records


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = SpeechScript()
    code = 1
    try:
        records = node.run()
        summary = summarize(records)
        node.get_logger().info(
            f"summary: {summary['correct']}/{summary['steps']} correct ({summary['accuracy']:.0%}); "
            f"round trip p50 {summary['round_trip_ms']['p50']:.1f} ms, p95 {summary['round_trip_ms']['p95']:.1f} ms"
        )
        report = node.get_parameter("report_file").value
        if report:
            with open(report, "w", encoding="utf-8") as f:
                json.dump(
                    {"summary": summary, "steps": [asdict(r) for r in records]},
                    f,
                    indent=2,
                    ensure_ascii=False,
                )
        code = 0
    except RuntimeError as e:
        node.get_logger().error(str(e))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    sys.exit(code)


if __name__ == "__main__":
    main()
