"""Frame publisher process of the DDS profile tests: sends raw rgb8 frames best-effort.

It waits for a subscriber on ``/dds_probe/image`` (no sleeps), publishes COUNT frames of
WIDTHxHEIGHT at RATE Hz with sensor-data QoS (best effort, keep last 1), then stays up (so its
sockets and shared-memory segments can be inspected) until its stdin is closed or TIMEOUT_S.
Frame k carries ``frame_id = str(k)`` and the pixels of :func:`frame_pixels` ``(k, ...)``.
usage: python frame_publisher.py WIDTH HEIGHT COUNT RATE TIMEOUT_S
"""

import os
import sys
import threading
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def frame_pixels(k: int, width: int, height: int) -> np.ndarray:
    """A frame whose every byte depends on k and on its position (a dropped or torn copy shows)."""
    flat = (np.arange(width * height * 3, dtype=np.uint32) * 7 + k * 13) % 251
    return flat.astype(np.uint8).reshape(height, width, 3)


def main() -> int:
    width, height, count = (int(x) for x in sys.argv[1:4])
    rate, timeout_s = float(sys.argv[4]), float(sys.argv[5])
    stdin_closed = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stdin_closed.set()), daemon=True).start()
    rclpy.init()
    node = rclpy.create_node("octopus_frame_publisher")
    pub = node.create_publisher(Image, "/dds_probe/image", qos_profile_sensor_data)
    print(f"pid {os.getpid()}", flush=True)
    deadline = time.monotonic() + timeout_s
    while pub.get_subscription_count() == 0:
        if time.monotonic() > deadline or stdin_closed.is_set():
            print("no subscriber discovered", file=sys.stderr, flush=True)
            return 1
        rclpy.spin_once(node, timeout_sec=0.05)
    for k in range(count):
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
        msg.header.frame_id = str(k)
        msg.data = frame_pixels(k, width, height).tobytes()
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=1.0 / rate)
    print(f"sent {count}", flush=True)
    while not stdin_closed.is_set() and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
