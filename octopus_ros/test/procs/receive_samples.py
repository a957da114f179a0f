"""Subscriber process of the cross-process test: prints each received message as one JSON line.

Exits 0 after one FunctionCall and one Outcome, 1 on timeout.
usage: python receive_samples.py TIMEOUT_S
"""

import json
import sys
import time

import rclpy
from octopus_msgs.msg import FunctionCall, Outcome

from octopus_ros.ros.msg_dict import message_to_dict


def main() -> int:
    timeout_s = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rclpy.init()
    node = rclpy.create_node("octopus_sample_receiver")
    received: dict[str, dict] = {}

    def keep(kind):
        def callback(msg):
            received[kind] = message_to_dict(msg)
            print(json.dumps({"kind": kind, "msg": received[kind]}, ensure_ascii=False), flush=True)

        return callback

    node.create_subscription(FunctionCall, "function_calls", keep("function_call"), 10)
    node.create_subscription(Outcome, "outcomes", keep("outcome"), 10)
    deadline = time.monotonic() + timeout_s
    while len(received) < 2 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(received) == 2 else 1


if __name__ == "__main__":
    sys.exit(main())
