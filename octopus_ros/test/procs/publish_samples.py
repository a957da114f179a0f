"""Publisher process of the cross-process test: sends one FunctionCall and one Outcome.

It waits for the subscriber to be discovered (no sleeps), publishes, then waits for
the subscriber to leave (it exits after receiving both) before shutting down.
usage: python publish_samples.py TIMEOUT_S
"""

import sys
import time
from pathlib import Path

import rclpy
from octopus_msgs.msg import FunctionCall, Outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sample_messages import sample_function_call, sample_outcome


def spin_until(node, predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        rclpy.spin_once(node, timeout_sec=0.05)
    return predicate()


def main() -> int:
    timeout_s = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0
    rclpy.init()
    node = rclpy.create_node("octopus_sample_publisher")
    calls = node.create_publisher(FunctionCall, "function_calls", 10)
    outcomes = node.create_publisher(Outcome, "outcomes", 10)
    if not spin_until(
        node, lambda: calls.get_subscription_count() > 0 and outcomes.get_subscription_count() > 0, timeout_s
    ):
        print("publisher: no subscriber discovered", file=sys.stderr)
        return 1
    calls.publish(sample_function_call())
    outcomes.publish(sample_outcome())
    print("publisher: sent", flush=True)
    # Stay until the subscriber has what it needs (it leaves), so reliable delivery can complete.
    spin_until(
        node,
        lambda: calls.get_subscription_count() == 0 and outcomes.get_subscription_count() == 0,
        timeout_s,
    )
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
