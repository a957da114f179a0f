"""sim_camera: a simulated camera that renders the project's synthetic scenes.

It plays the role of image_tools' cam2image in its synthetic (burger) mode: frames
come from the scene renderer the bundled model was trained on, so the whole loop runs
without a camera or a simulator. Scenes follow a scripted scenario
(``config/demo_scenario.yaml``):

* commanded: the scene index on ``/sim_camera/scene`` (std_msgs/Int32, latched);
  ``-1`` pauses the camera (no frames: downstream sees a stale camera);
* otherwise it cycles through the scenario's scenes every ``cycle_period`` seconds.

After each frame it publishes the index shown on ``/sim_camera/current_scene``, so a
script can wait until the camera really shows a scene (no sleeping).

A ``rate`` that is not a number > 0 or a scenario file it cannot read ends the process at once with
``sim_camera: error: <reason>`` and exit status 2: a camera that publishes nothing would leave the
demo waiting out its timeout for frames that never come.
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Int32

from octopus_ros.demo.scenario import Scenario, ScenarioError
from octopus_ros.paths import config_path
from octopus_ros.ros.image_convert import rgb_to_compressed_msg, rgb_to_image_msg
from octopus_ros.ros.spin import spin_node


class SimCameraError(ValueError):
    """A parameter the camera cannot run with; the message names it and the value."""


def frame_period(rate: Any) -> float:
    """Seconds between frames for the ``rate`` parameter (frames per second); SimCameraError unless
    it is a finite number > 0."""
    try:
        if isinstance(rate, bool):  # rate:=true would be 1 frame per second
            raise TypeError
        value = float(rate)
    except (TypeError, ValueError):
        raise SimCameraError(f"parameter rate must be a number of frames per second, got {rate!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise SimCameraError(f"parameter rate must be > 0 frames per second, got {rate!r}")
    return 1.0 / value


class SimCamera(Node):
    """See the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("sim_camera", **kwargs)
        self.declare_parameter("scenario_file", str(config_path("demo_scenario.yaml")))
        # any type: rate:=5 (an integer to ROS) is as good as 5.0, and a wrong one gets frame_period's reason
        self.declare_parameter("rate", 15.0, ParameterDescriptor(dynamic_typing=True))
        self.declare_parameter("image_topic", "/camera/image_raw")
        self.declare_parameter("publish_compressed", False)
        self.declare_parameter("frame_id", "camera_optical_frame")
        self.declare_parameter("encoding", "rgb8")
        self.declare_parameter("cycle_period", 0.0)  # s per scene when not commanded; 0 = hold
        period = frame_period(self.get_parameter("rate").value)  # refused before anything is made
        self.scenario = Scenario.from_yaml(self.get_parameter("scenario_file").value)
        self.frame_id = self.get_parameter("frame_id").value
        self.encoding = self.get_parameter("encoding").value
        self.cycle_period = float(self.get_parameter("cycle_period").value)
        topic = self.get_parameter("image_topic").value
        reliable = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.image_pub = self.create_publisher(Image, topic, reliable)
        self.compressed_pub = (
            self.create_publisher(CompressedImage, f"{topic}/compressed", reliable)
            if self.get_parameter("publish_compressed").value
            else None
        )
        self.current_pub = self.create_publisher(Int32, "/sim_camera/current_scene", reliable)
        self.create_subscription(Int32, "/sim_camera/scene", self._on_command, latched)
        self.commanded: int | None = None
        self.started = time.monotonic()
        self._cache: dict[int, np.ndarray] = {}
        self.create_timer(period, self._tick)
        self.get_logger().info(
            f"publishing {self.scenario.image_size[0]}x{self.scenario.image_size[1]} {self.encoding} on {topic} "
            f"from {len(self.scenario.steps)} scripted scenes"
        )

    def _on_command(self, msg: Int32) -> None:
        if msg.data != -1 and not 0 <= msg.data < len(self.scenario.steps):
            self.get_logger().warning(f"scene {msg.data} is not in the scenario; ignored")
            return
        self.commanded = msg.data

    def _scene_index(self) -> int:
        if self.commanded is not None:
            return self.commanded
        if self.cycle_period <= 0:
            return 0
        return int((time.monotonic() - self.started) / self.cycle_period) % len(self.scenario.steps)

    def frame(self, index: int) -> np.ndarray | None:
        """The RGB frame of scene ``index`` (rendered once), or None for a paused step."""
        if index not in self._cache:
            from octopus_ros.data import render, scene_from_spec

            step = self.scenario.steps[index]
            if step.scene is None:
                return None
            scene = scene_from_spec(step.scene)
            seed = int(step.scene.get("seed", 0))
            self._cache[index] = render(scene, self.scenario.image_size, np.random.default_rng(seed))
        return self._cache[index]

    def _tick(self) -> None:
        index = self._scene_index()
        rgb = None if index < 0 else self.frame(index)
        if rgb is not None:
            stamp = self.get_clock().now().to_msg()
            msg = rgb_to_image_msg(rgb, encoding=self.encoding)
            msg.header.stamp = stamp
            msg.header.frame_id = self.frame_id
            self.image_pub.publish(msg)
            if self.compressed_pub is not None:
                cmsg = rgb_to_compressed_msg(rgb)
                cmsg.header = msg.header
                self.compressed_pub.publish(cmsg)
        self.current_pub.publish(Int32(data=index if rgb is not None else -1))


def main(args: list[str] | None = None) -> None:
    try:
        spin_node(SimCamera, args)
    except (SimCameraError, ScenarioError) as e:  # the user's setting: the reason, not a traceback
        rclpy.try_shutdown()
        print(f"sim_camera: error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
