"""The project's DDS environment keeps traffic on this machine, and its Fast DDS profile is in effect.

Each test lists what real processes opened (``/proc/<pid>/net/udp{,6}``, ``tcp{,6}`` and the
socket inodes of ``/proc/<pid>/fd``; ``/proc/<pid>/maps`` for shared memory) while they talk
over DDS, under the ``ros_env`` fixture (the same settings as ``scripts/env.sh``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
from node_harness import RobotSide, start_node, stop_node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from octopus_ros.ros.dds_env import (
    environment_problem,
    non_loopback,
    process_sockets,
    shm_data_segments,
    shm_segment_size,
)

from conftest import TEST_DIR

sys.path.insert(0, str(TEST_DIR / "procs"))
from frame_publisher import frame_pixels

TIMEOUT_S = 60.0


def _start_publisher(env: dict[str, str], width: int, height: int, count: int, rate: float):
    return subprocess.Popen(
        [
            sys.executable,
            str(TEST_DIR / "procs" / "frame_publisher.py"),
            str(width),
            str(height),
            str(count),
            str(rate),
            str(TIMEOUT_S),
        ],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc: subprocess.Popen) -> str:
    try:
        out, err = proc.communicate(input="", timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return out + err


class _Receiver:
    """A subscription in the test process that checks every frame's pixels as it arrives."""

    def __init__(self, context, width: int, height: int) -> None:
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node

        self.node = Node("octopus_frame_receiver", context=context)
        self.width, self.height = width, height
        self.intact: list[int] = []
        self.torn: list[int] = []
        self.node.create_subscription(Image, "/dds_probe/image", self._on_image, qos_profile_sensor_data)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)

    def _on_image(self, msg: Image) -> None:
        k = int(msg.header.frame_id)
        got = np.frombuffer(bytes(msg.data), np.uint8)
        expected = frame_pixels(k, self.width, self.height).reshape(-1)
        ok = msg.width == self.width and msg.height == self.height and np.array_equal(got, expected)
        (self.intact if ok else self.torn).append(k)

    def spin_until(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.executor.spin_once(timeout_sec=0.02)
        return True

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def _assert_loopback_only(pid: int, who: str) -> None:
    sockets = process_sockets(pid)
    udp = [s for s in sockets if s.proto.startswith("udp")]
    # A listing that finds nothing proves nothing: a DDS participant always holds UDP sockets.
    assert udp, f"{who}: no UDP socket found in /proc/{pid} (is the listing broken?)"
    leaks = non_loopback(sockets)
    assert not leaks, f"{who} (pid {pid}) holds non-loopback sockets: " + ", ".join(map(str, leaks))


def test_environment_is_the_localhost_profile(ros_env):
    assert environment_problem(ros_env) is None, environment_problem(ros_env)
    # LOCALHOST keeps discovery on the machine too (what a shell set up for that exports); SUBNET does not
    assert environment_problem({**ros_env, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}) is None
    assert environment_problem({**ros_env, "ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"}) is not None
    assert environment_problem({**ros_env, "FASTDDS_DEFAULT_PROFILES_FILE": ""}) is not None


def test_dds_processes_bind_only_loopback(ros_env, rclpy_context):
    """A plain rclpy publisher process and this test's subscriber, after discovery and data."""
    proc = _start_publisher(ros_env, 64, 48, 5, 20.0)
    receiver = _Receiver(rclpy_context, 64, 48)
    try:
        got = receiver.spin_until(lambda: receiver.intact or proc.poll() is not None, TIMEOUT_S)
        assert got and receiver.intact, f"no frame arrived:\n{_finish(proc)}"
        _assert_loopback_only(proc.pid, "rclpy publisher process")
        _assert_loopback_only(os.getpid(), "test process (subscriber)")
    finally:
        receiver.close()
        log = _finish(proc)
    assert proc.returncode == 0, log


def test_big_frames_cross_over_the_profiles_shared_memory(ros_env, rclpy_context):
    """1920x1080 rgb8 frames, best effort: they arrive intact, through the profile's 64 MB segment.

    With Fast DDS's default transports a 6 MB best-effort frame travels as UDP fragments and is
    almost always lost; with the profile it is one shared-memory buffer.
    """
    width, height, count = 1920, 1080, 10
    proc = _start_publisher(ros_env, width, height, count, 5.0)
    receiver = _Receiver(rclpy_context, width, height)
    try:
        receiver.spin_until(lambda: len(receiver.intact) >= count // 2 or proc.poll() is not None, TIMEOUT_S)
        segment = shm_segment_size()
        segments = {os.getpid(): shm_data_segments(os.getpid()), proc.pid: shm_data_segments(proc.pid)}
    finally:
        receiver.close()
        log = _finish(proc)
    assert proc.returncode == 0, log
    assert not receiver.torn, f"frames arrived with wrong pixels: {receiver.torn}"
    assert len(receiver.intact) >= count // 2, (
        f"only {len(receiver.intact)} of {count} 1080p best-effort frames arrived: {receiver.intact}"
    )
    for pid, found in segments.items():
        # One data segment per participant, of the profile's size: the default SHM transport
        # (about 0.5 MB) is not there beside it, and the profile's transport is.
        assert found, f"pid {pid} maps no Fast DDS shared-memory segment"
        small = {path: size for path, size in found.items() if size < segment}
        assert not small, (
            f"pid {pid} maps shared-memory segments smaller than the profile's {segment} B: {small}"
        )


def test_octopus_node_binds_only_loopback(ros_env, rclpy_context):
    """The real node (bundled model) after it has served an utterance over DDS."""
    proc = start_node(ros_env)
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        robot.send_frame()
        robot.say("stop")
        _assert_loopback_only(proc.pid, "octopus_node")
        _assert_loopback_only(os.getpid(), "test process (robot side)")
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "XMLPARSER" not in log, log
