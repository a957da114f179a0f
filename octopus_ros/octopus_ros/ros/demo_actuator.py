"""demo_actuator: subscribes to the calls and the routed topics and logs what a robot would do.

It is the downstream side of the demo and a template for real actuator nodes: it reads
only octopus_msgs and standard messages, plus ``octopus_ros.ros.spin`` (rclpy only; no torch is
loaded; copy ``spin_node``'s few lines to depend on octopus_msgs alone), and switches on the
typed call, never on free text. It listens to ``~/function_calls`` and to the routed topics to
show both; a real actuator takes one of them (a routed message carries no request id: README,
"Subscribing to the calls"), and should also honour the e-stop and ``~/outcomes``.
"""

from __future__ import annotations

import math
from typing import Any

from geometry_msgs.msg import PoseStamped, Twist
from octopus_msgs.msg import Argument, FunctionCall
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from std_msgs.msg import Float32, String

from octopus_ros.ros.spin import spin_node


def argument_value(arg: Argument) -> Any:
    """The typed value of an Argument message."""
    if arg.type in (Argument.TYPE_STRING, Argument.TYPE_ENUM):
        return arg.string_value
    if arg.type == Argument.TYPE_INT:
        return arg.int_value
    if arg.type == Argument.TYPE_FLOAT:
        return arg.float_value
    if arg.type == Argument.TYPE_BOOL:
        return arg.bool_value
    return arg.value


def describe_action(call: FunctionCall) -> str:
    """One line saying what the robot would do for a call."""
    args = {a.name: argument_value(a) for a in call.arguments}
    phrases = {
        "pick_up": "reach for and grasp the {object}",
        "place": "put the {object} on the {location}",
        "navigate_to": "drive to the {place}",
        "stop": "stop all motion",
        "take_photo": "save the current camera frame",
        "recycle": "carry the {item} to the {bin} bin",
        "water_plant": "water the plant",
        "feed_pet": "fill the {pet}'s bowl",
        "find_item": "search the room for the {item}",
        "describe_scene": "describe what the camera sees",
        "send_message": "message {contact}: {text}",
        "set_speed": "limit speed to {value:.0%}",
    }
    template = phrases.get(call.function_name)
    try:
        action = template.format(**args) if template else f"{call.function_name}({args})"
    except (KeyError, ValueError):
        action = f"{call.function_name}({args})"
    return f"would {action}  [conf {call.confidence:.2f}, {call.language or '?'}]"


class DemoActuator(Node):
    """Logs every call and routed command; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("demo_actuator", **kwargs)
        self.declare_parameter("calls_topic", "/octopus_node/function_calls")
        reliable = QoSProfile(depth=20, reliability=ReliabilityPolicy.RELIABLE)
        topic = self.get_parameter("calls_topic").value
        self.create_subscription(FunctionCall, topic, self._on_call, reliable)
        self.create_subscription(Twist, "/cmd_vel", self._on_twist, reliable)
        self.create_subscription(PoseStamped, "/goal_pose", self._on_goal, reliable)
        self.create_subscription(String, "/octopus/messages", self._on_message, reliable)
        self.create_subscription(Float32, "/octopus/speed_limit", self._on_speed, reliable)
        self.handled = 0

    def _on_call(self, call: FunctionCall) -> None:
        self.handled += 1
        self.get_logger().info(f"[{call.request_id}] {describe_action(call)}")

    def _on_twist(self, msg: Twist) -> None:
        still = all(v == 0.0 for v in (msg.linear.x, msg.linear.y, msg.angular.z))
        self.get_logger().info(
            "/cmd_vel: " + ("zero twist -> motors stopped" if still else f"{msg.linear.x:.2f} m/s")
        )

    def _on_goal(self, msg: PoseStamped) -> None:
        q = msg.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        p = msg.pose.position
        self.get_logger().info(
            f"/goal_pose: navigate to ({p.x:.2f}, {p.y:.2f}) yaw {math.degrees(yaw):.0f} deg"
        )

    def _on_message(self, msg: String) -> None:
        self.get_logger().info(f"/octopus/messages: {msg.data}")

    def _on_speed(self, msg: Float32) -> None:
        self.get_logger().info(f"/octopus/speed_limit: {msg.data:.2f}")


def main(args: list[str] | None = None) -> None:
    spin_node(DemoActuator, args)


if __name__ == "__main__":
    main()
