"""octopus_record: record a robot's run for labelling and replay.

Records, into a rosbag2 MCAP bag (``octopus_ros.bags.io``; ``ros2 bag info/play`` and rosbags
read it): the camera (``sensor_msgs/Image`` and/or ``CompressedImage``), the speech topic
(``std_msgs/String``) and octopus_node's ``~/function_calls`` and ``~/outcomes``. Messages are
written as they arrive on the wire (serialized CDR, never converted), stamped with the time this
recorder received them. Stop it with Ctrl-C (SIGINT) or SIGTERM: the bag is closed properly.
(rclpy's own handlers take both signals: they shut the context down and wake the executor's wait;
a Python ``signal.signal`` handler would only run once that wait returned, i.e. never on a quiet
topic.)

Flags are checked before anything is created (topic names as rcl checks them, the depth, the
output folder); a start that still fails removes the folder it created, so the same name can be
given again.

    octopus_record my_run                               # camera, speech, /octopus_node's outputs
    octopus_record my_run --compressed-image-topic /camera/image_raw/compressed --image-topic ''

QoS: the camera is read best-effort (it matches best-effort and reliable cameras alike), keep-last
``--image-depth``; speech and the node's outputs reliable, keep-last 1000 (as the node's own
speech reader and outcome writer).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import rclpy
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from octopus_ros.bags import io as bag_io
from octopus_ros.cli import number
from octopus_ros.ros.spin import spin_until_shutdown


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="octopus_record",
        description="Record camera, speech and octopus_node's calls and outcomes into a rosbag2 MCAP bag.",
    )
    p.add_argument("bag", help="output bag folder (must not exist)")
    p.add_argument("--image-topic", default="/camera/image_raw", help="sensor_msgs/Image topic; '' = none")
    p.add_argument(
        "--compressed-image-topic", default="", help="sensor_msgs/CompressedImage topic; '' (default) = none"
    )
    p.add_argument("--speech-topic", default="/speech/text", help="std_msgs/String utterances of the ASR")
    p.add_argument(
        "--node",
        default="/octopus_node",
        help="octopus_node's full name: records <node>/function_calls, /outcomes",
    )
    p.add_argument(
        "--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)"
    )
    p.add_argument(
        "--image-depth",
        type=number(int, low=1),
        default=10,
        help="camera subscription keep-last depth, >= 1 (default 10)",
    )
    return p


def _topics(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(flag, topic) of every topic recorded."""
    node = "/" + args.node.strip("/")
    topics = [
        ("--image-topic", args.image_topic),
        ("--compressed-image-topic", args.compressed_image_topic),
        ("--speech-topic", args.speech_topic),
        ("--node", f"{node}/function_calls"),
        ("--node", f"{node}/outcomes"),
    ]
    return [(flag, topic) for flag, topic in topics if topic]


def check_args(args: argparse.Namespace) -> str:
    """'' when the flags can be recorded, else the first problem naming its flag (checked before
    the bag folder is created: a bad name must not leave a half-made bag behind)."""
    from pathlib import Path

    from octopus_ros.ros.params import topic_name_problem

    for flag, topic in _topics(args):
        problem = topic_name_problem(topic)
        if problem:
            value = args.node if flag == "--node" else topic
            return f"{flag} {value!r}: {problem}" + (f" (in {topic})" if flag == "--node" else "")
    if Path(args.bag).exists():
        return f"{args.bag}: already exists (a bag is never overwritten): give another name"
    return ""


class Recorder(Node):
    """Subscribes to the run's topics with raw (serialized) callbacks and writes them to the bag."""

    def __init__(self, args: argparse.Namespace, **kwargs: Any) -> None:
        super().__init__("octopus_record", **kwargs)
        self.writer = bag_io.BagWriter(args.bag, storage=args.storage)
        try:
            self._subscribe(args)
        except BaseException:
            self.writer.discard()
            raise

    def _subscribe(self, args: argparse.Namespace) -> None:
        camera = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=args.image_depth, reliability=ReliabilityPolicy.BEST_EFFORT
        )
        reliable = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE
        )
        node = "/" + args.node.strip("/")
        topics = [
            (args.image_topic, Image, bag_io.IMAGE, camera),
            (args.compressed_image_topic, CompressedImage, bag_io.COMPRESSED, camera),
            (args.speech_topic, String, bag_io.STRING, reliable),
            (f"{node}/function_calls", FunctionCall, bag_io.FUNCTION_CALL, reliable),
            (f"{node}/outcomes", Outcome, bag_io.OUTCOME, reliable),
        ]
        self._subs = []
        for topic, msg_type, msgtype, qos in topics:
            if not topic:
                continue
            self.writer.add_topic(topic, msgtype)
            self._subs.append(
                self.create_subscription(msg_type, topic, self._writer_for(topic), qos, raw=True)
            )
        self.get_logger().info(
            f"recording {', '.join(t for t, *_ in topics if t)} into {self.writer.path} ({args.storage})"
        )

    def _writer_for(self, topic: str):
        def write(data: bytes) -> None:
            self.writer.write(topic, self.get_clock().now().nanoseconds, data)

        return write

    def close(self) -> None:
        self.writer.close()
        counts = ", ".join(f"{t}: {n}" for t, n in self.writer.counts.items())
        self.get_logger().info(f"closed {self.writer.path}: {counts}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(rclpy.utilities.remove_ros_args(argv)[1:])
    problem = check_args(args)
    if problem:
        parser.error(problem)
    # rclpy.init installs rclpy's SIGINT and SIGTERM handlers: SIGTERM (e.g. from a process
    # manager) ends the recording as Ctrl-C does. No signal.signal() here: it would replace them.
    rclpy.init(args=argv)
    try:
        recorder = Recorder(args)
    except Exception as e:  # a start that fails is reported, never a traceback
        # BagError, rcl's RCLError / InvalidTopicNameException for what check_args cannot know
        print(f"octopus_record: error: cannot start recording into {args.bag}: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        spin_until_shutdown(recorder)  # Ctrl-C / SIGTERM mid-wait is the normal end, not an error
    finally:
        recorder.close()
        recorder.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
