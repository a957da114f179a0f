"""Helpers for the octopus_node tests: run the node in its own process, talk to it over DDS.

The test process plays camera, ASR, e-stop button and downstream consumer with a plain
rclpy node; it waits on discovery and on the node's answers, never on fixed sleeps
(except where a test needs a frame to grow old).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String

from octopus_ros.ros.image_convert import rgb_to_image_msg

NODE = "/octopus_node"


def start_node(env: dict[str, str], *params: str, autostart: bool = True) -> subprocess.Popen:
    """octopus_node in a subprocess with ``-p`` overrides (``name:=value`` strings)."""
    args = [sys.executable, "-m", "octopus_ros.ros.octopus_node", "--ros-args"]
    for p in (f"autostart:={'true' if autostart else 'false'}", *params):
        args += ["-p", p]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def stop_node(proc: subprocess.Popen) -> str:
    """Stop the node (SIGINT, as Ctrl-C) and return its log."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    else:
        out, _ = proc.communicate()
    return out or ""


class RobotSide(Node):
    """Camera, microphone, e-stop and consumer in one test node."""

    def __init__(self, context: Any) -> None:
        super().__init__("octopus_test_client", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, "/camera/image_raw", reliable)
        self.compressed_pub = self.create_publisher(CompressedImage, "/camera/image_raw/compressed", reliable)
        self.speech_pub = self.create_publisher(String, "/speech/text", reliable)
        self.estop_pub = self.create_publisher(Bool, "/estop", reliable)
        self.outcomes: list[Outcome] = []
        self.calls: list[FunctionCall] = []
        self.twists: list[Twist] = []
        self.outcome_sub = self.create_subscription(
            Outcome, f"{NODE}/outcomes", self.outcomes.append, reliable
        )
        self.call_sub = self.create_subscription(
            FunctionCall, f"{NODE}/function_calls", self.calls.append, reliable
        )
        self.create_subscription(Twist, "/cmd_vel", self.twists.append, reliable)
        self.spinner = SingleThreadedExecutor(context=context)
        self.spinner.add_node(self)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.spinner.spin_once(timeout_sec=0.01)
        return True

    def wait_active(self, proc: subprocess.Popen, timeout: float = 120.0) -> None:
        """Wait until the node subscribes to speech (it does so on activate)."""

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"octopus_node exited early:\n{stop_node(proc)}")
            return (
                self.speech_pub.get_subscription_count() > 0
                and self.image_pub.get_subscription_count() > 0
                # matched (not just discovered): an outcome published now reaches us
                and self.outcome_sub.get_publisher_count() > 0
                and self.call_sub.get_publisher_count() > 0
            )

        if not self.spin_until(ready, timeout):
            raise TimeoutError(f"octopus_node did not become active:\n{stop_node(proc)}")

    def send_frame(
        self,
        rgb: np.ndarray | None = None,
        *,
        age: float = 0.0,
        msg: Image | None = None,
        settle: float = 0.15,
    ) -> None:
        if msg is None:
            rgb = rgb if rgb is not None else np.full((64, 64, 3), 128, np.uint8)
            msg = rgb_to_image_msg(rgb)
        stamp = self.get_clock().now().nanoseconds * 1e-9 - age
        msg.header.stamp.sec = int(stamp)
        msg.header.stamp.nanosec = int((stamp - int(stamp)) * 1e9)
        msg.header.frame_id = "test_camera"
        self.image_pub.publish(msg)
        # The image and speech topics are not ordered with respect to each other: give the frame
        # a head start, so that an utterance sent right after it is paired with it.
        self.spin_until(lambda: False, settle)

    def say(self, text: str, timeout: float = 60.0) -> Outcome:
        """Publish an utterance and return its outcome (waits for it)."""
        seen = len(self.outcomes)
        forms = {text, " ".join(text.split())}  # the node answers with the normalised text when valid
        self.speech_pub.publish(String(data=text))
        if not self.spin_until(lambda: any(o.utterance in forms for o in self.outcomes[seen:]), timeout):
            raise TimeoutError(f"no outcome for {text!r}")
        return next(o for o in self.outcomes[seen:] if o.utterance in forms)

    def settle(self, seconds: float = 0.3) -> None:
        """Spin a little so that late messages (which must not exist) would arrive."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spinner.spin_once(timeout_sec=0.01)
