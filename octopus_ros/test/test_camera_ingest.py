"""CameraIngest: camera subscriptions on their own small node and thread (ros/camera_ingest.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from octopus_ros.ros.camera_ingest import CameraIngest
from octopus_ros.ros.image_convert import rgb_to_image_msg


def wait_for(condition, timeout=15.0, spin=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        if spin is not None:
            spin.spin_once(timeout_sec=0.02)
        else:
            time.sleep(0.02)
    return condition()


def test_camera_frames_arrive_on_the_camera_thread_not_the_owner_executor(ros_env, rclpy_context):
    owner = Node("octopus_test_owner", namespace="/robot", context=rclpy_context)
    camera_side = Node("octopus_test_camera_pub", context=rclpy_context)
    owner_executor = SingleThreadedExecutor(context=rclpy_context)
    owner_executor.add_node(owner)  # never spun below: frames must arrive without it
    pub_executor = SingleThreadedExecutor(context=rclpy_context)
    pub_executor.add_node(camera_side)
    seen: list[tuple[str, int]] = []

    def on_image(msg):
        seen.append((threading.current_thread().name, msg.width))

    ingest = CameraIngest(owner)
    try:
        ingest.subscribe(Image, "~/image", on_image, qos_profile_sensor_data)
        assert ingest.node.get_fully_qualified_name() == "/robot/octopus_test_owner_camera"
        # "~/image" is the owner's private topic, expanded by the owner, not by the camera node.
        pub = camera_side.create_publisher(Image, "/robot/octopus_test_owner/image", qos_profile_sensor_data)
        assert wait_for(lambda: pub.get_subscription_count() > 0, spin=pub_executor)
        assert not owner.subscriptions or all(s.topic_name != pub.topic_name for s in owner.subscriptions)
        frame = rgb_to_image_msg(np.zeros((4, 6, 3), np.uint8))
        assert wait_for(lambda: pub.publish(frame) or bool(seen), spin=pub_executor)
        assert seen[0] == ("octopus-camera", 6)
        ingest.close()
        ingest.close()  # idempotent
        assert wait_for(lambda: pub.get_subscription_count() == 0, spin=pub_executor)
        n = len(seen)
        for _ in range(5):
            pub.publish(frame)
            pub_executor.spin_once(timeout_sec=0.02)
        assert len(seen) == n  # closed: no more frames
    finally:
        ingest.close()
        owner_executor.shutdown()
        pub_executor.shutdown()
        owner.destroy_node()
        camera_side.destroy_node()
