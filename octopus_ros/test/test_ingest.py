"""IngestNode: camera and speech subscriptions on their own small node and thread (ros/ingest.py)."""

from __future__ import annotations

import threading
import time

import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import String

from octopus_ros.ros.image_convert import rgb_to_image_msg
from octopus_ros.ros.ingest import IngestNode


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

    ingest = IngestNode(owner, "camera")
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


def test_speech_callback_gets_message_info_on_its_own_thread(ros_env, rclpy_context):
    """The node's speech callback takes (msg, info) to count publication-sequence gaps: the side
    node's executor must hand it the MessageInfo, on the speech thread."""
    owner = Node("octopus_test_speech_owner", context=rclpy_context)
    talker = Node("octopus_test_talker", context=rclpy_context)
    pub_executor = SingleThreadedExecutor(context=rclpy_context)
    pub_executor.add_node(talker)
    heard: list[tuple[str, str, int]] = []

    def on_speech(msg, info):
        heard.append((threading.current_thread().name, msg.data, info["publication_sequence_number"]))

    ingest = IngestNode(owner, "speech")
    try:
        ingest.subscribe(String, "speech", on_speech, 10)
        assert ingest.node.get_fully_qualified_name() == "/octopus_test_speech_owner_speech"
        pub = talker.create_publisher(String, "speech", 10)
        assert wait_for(lambda: pub.get_subscription_count() > 0, spin=pub_executor)
        for text in ("pick up the red cup", "stop"):
            pub.publish(String(data=text))
        assert wait_for(lambda: len(heard) == 2, spin=pub_executor)
        assert [h[:2] for h in heard] == [
            ("octopus-speech", "pick up the red cup"),
            ("octopus-speech", "stop"),
        ]
        assert heard[1][2] == heard[0][2] + 1
    finally:
        ingest.close()
        pub_executor.shutdown()
        owner.destroy_node()
        talker.destroy_node()
