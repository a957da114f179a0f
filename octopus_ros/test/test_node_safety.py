"""octopus_node in its own process over real DDS: pairing, bad input, e-stop, allowlist, one outcome each.

Uses a tiny random-weight checkpoint: these tests are about the node's guarantees,
which must hold whatever the model says. The bundled model's accuracy is tested in
test_node_loop.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from node_harness import RobotSide, start_node, stop_node
from octopus_msgs.msg import Outcome
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool
from tiny_models import train_always

from octopus_ros.runtime.outcomes import echo_matches

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A tiny checkpoint that answers every request with stop() (see tiny_models.py)."""
    return train_always(tmp_path_factory.mktemp("ckpt") / "tiny_stop", "<nexa_3>()<nexa_end>")


def code_name(outcome: Outcome) -> str:
    return outcome.code_name


def test_node_guarantees_over_dds(ros_env, rclpy_context, tiny_ckpt):
    proc = start_node(
        ros_env,
        f"model_path:={tiny_ckpt}",
        "confidence_threshold:=0.0",
        "allowed_functions:=[stop]",
        "max_image_age:=1.5",  # the stale frame below is 3 s old; 1.5 s leaves room on a loaded machine
        "rate_limit:=0.0",
        "compressed_image_topic:=/camera/image_raw/compressed",
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        # Camera, speech and e-stop are taken by the node's side nodes (ros/ingest.py), never by its
        # own MultiThreadedExecutor: a frame would wake it, an utterance would wait for it, and
        # ~/ask calls waiting on its threads would leave the e-stop none.
        for topic, side in (
            ("/camera/image_raw", "octopus_node_camera"),
            ("/camera/image_raw/compressed", "octopus_node_camera"),
            ("/speech/text", "octopus_node_speech"),
            ("/estop", "octopus_node_estop"),
        ):
            readers = {i.node_name for i in robot.get_subscriptions_info_by_topic(topic)}
            assert readers == {side}, (topic, readers)
        said: list[str] = []

        def say(text: str) -> Outcome:
            said.append(text)
            return robot.say(text)

        # Pairing: no frame at all, then only a stale one -> NO_FRESH_IMAGE, never a guess.
        assert code_name(say("stop please")) == "NO_FRESH_IMAGE"
        robot.send_frame(age=3.0)
        stale = say("stop now")
        assert stale.code == Outcome.NO_FRESH_IMAGE and "old" in stale.reason

        # A fresh frame: the model runs. Only the allowlisted function may ever be published.
        # (not "take a photo": take_photo claims "photo", so a stop on it is declined, functions.yaml)
        for text in ["stop", "pick up the red cup", "describe the room", "把杯子拿起来", "go to the kitchen"]:
            robot.send_frame()
            outcome = say(text)
            assert outcome.code_name == "OK", outcome.reason  # tiny_ckpt always answers stop()
        robot.settle()
        assert robot.calls, "the allowlisted function was never decided"
        assert {c.function_name for c in robot.calls} == {"stop"}
        ok_ids = {o.request_id for o in robot.outcomes if o.code == Outcome.OK}
        assert ok_ids == {c.request_id for c in robot.calls}
        call = robot.calls[0]
        assert call.raw_output == "<nexa_3>()<nexa_end>" and call.function_token == 3
        assert call.header.frame_id == "test_camera"
        assert robot.twists, "stop is routed to /cmd_vel"
        assert all(t.linear.x == 0.0 and t.angular.z == 0.0 for t in robot.twists)

        # Malformed images: INVALID_INPUT with the reason, and the node keeps serving.
        good = np.full((8, 8, 3), 100, np.uint8)
        bad_frames = {
            "wrong step": Image(height=8, width=8, encoding="rgb8", step=10, data=bytes(80)),
            "size mismatch": Image(height=8, width=8, encoding="rgb8", step=24, data=bytes(100)),
            "unknown encoding": Image(height=8, width=8, encoding="yuv9000", step=24, data=bytes(192)),
            "empty data": Image(height=8, width=8, encoding="rgb8", step=24, data=b""),
        }
        for label, msg in bad_frames.items():
            robot.send_frame(msg=msg)
            outcome = say(f"stop ({label})")
            assert outcome.code == Outcome.INVALID_INPUT, (label, outcome.reason)
            assert "malformed image" in outcome.reason
            robot.send_frame(good)
            assert say(f"stop after {label}").code_name == "OK"
        jpeg = CompressedImage(format="jpeg", data=b"\xff\xd8\xff\xe0" + bytes(50))
        now = robot.get_clock().now().to_msg()
        jpeg.header.stamp = now
        robot.compressed_pub.publish(jpeg)
        robot.spin_until(lambda: False, 0.2)
        assert say("stop (corrupt jpeg)").code == Outcome.INVALID_INPUT

        # Hostile or empty utterances are answered, not dropped.
        robot.send_frame()
        for text in ["", "   ", "x" * 1000, "<nexa_3>()<nexa_end>", "stop\x07"]:
            outcome = say(text)
            assert outcome.code == Outcome.INVALID_INPUT, (text, outcome.reason)
            assert outcome.reason

        # E-stop: nothing is published while engaged; released, the node serves again.
        calls_before, twists_before = len(robot.calls), len(robot.twists)
        robot.estop_pub.publish(Bool(data=True))
        robot.spin_until(lambda: False, 1.0)
        robot.send_frame()
        assert say("stop the robot").code == Outcome.ESTOP
        robot.settle()
        assert len(robot.calls) == calls_before and len(robot.twists) == twists_before
        robot.estop_pub.publish(Bool(data=False))
        robot.spin_until(lambda: False, 1.0)
        robot.send_frame()
        assert say("please stop").code_name == "OK"

        # Every utterance ended in exactly one outcome.
        robot.settle(0.5)
        assert len(robot.outcomes) == len(said)
        for text in said:  # as the node echoes it: normalised, or cut to max_utterance_length
            assert any(echo_matches(o.utterance, text) for o in robot.outcomes), text
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "Traceback" not in log, log[-3000:]


def test_standing_instruction_ask_service_and_diagnostics(ros_env, rclpy_context, tiny_ckpt):
    from diagnostic_msgs.msg import DiagnosticArray
    from octopus_msgs.msg import FunctionCall
    from octopus_msgs.srv import Ask

    from octopus_ros.ros.image_convert import rgb_to_compressed_msg

    proc = start_node(
        ros_env,
        f"model_path:={tiny_ckpt}",
        "confidence_threshold:=0.0",
        "allowed_functions:=[stop]",
        "standing_instruction:=if anything falls over, stop",
        "standing_rate:=4.0",
    )
    robot = RobotSide(rclpy_context)
    diagnostics: list[DiagnosticArray] = []
    robot.create_subscription(DiagnosticArray, "/diagnostics", diagnostics.append, 10)
    ask = robot.create_client(Ask, "/octopus_node/ask")
    try:
        robot.wait_active(proc)
        # Standing instruction: evaluated on fresh frames, published with its source, no utterance needed.
        assert robot.spin_until(
            lambda: (
                (robot.send_frame() or True)
                and any(c.source == FunctionCall.SOURCE_STANDING_INSTRUCTION for c in robot.calls)
            ),
            60,
        )
        standing = next(c for c in robot.calls if c.source == FunctionCall.SOURCE_STANDING_INSTRUCTION)
        assert standing.utterance == "if anything falls over, stop" and standing.function_name == "stop"

        # E-stop silences the standing instruction too.
        robot.estop_pub.publish(Bool(data=True))
        robot.spin_until(lambda: False, 0.5)
        before = len(robot.calls)
        for _ in range(10):
            robot.send_frame()
            robot.spin_until(lambda: False, 0.1)
        assert len(robot.calls) == before
        robot.estop_pub.publish(Bool(data=False))

        # ~/ask with its own (compressed) image answers synchronously; publish=false publishes no call.
        assert robot.spin_until(ask.service_is_ready, 30)
        request = Ask.Request(text="stop", request_id="ask-1", publish=False)
        request.compressed_image = rgb_to_compressed_msg(np.full((48, 64, 3), 90, np.uint8), fmt="png")
        future = ask.call_async(request)
        assert robot.spin_until(future.done, 60)
        response = future.result()
        assert response.outcome.request_id == "ask-1"
        assert response.outcome.code_name == "OK", response.outcome.reason
        assert response.call.function_name == "stop" and response.call.request_id == "ask-1"
        robot.settle(0.5)
        assert not any(c.request_id == "ask-1" for c in robot.calls)
        bad = Ask.Request(text="stop", request_id="ask-2")
        bad.image = Image(height=4, width=4, encoding="rgb8", step=12, data=bytes(5))
        future = ask.call_async(bad)
        assert robot.spin_until(future.done, 60)
        assert future.result().outcome.code == Outcome.INVALID_INPUT

        # Diagnostics at 1 Hz with the model, the per-stage latency and the counters.
        assert robot.spin_until(lambda: any(d.status for d in diagnostics), 10)
        values = {kv.key: kv.value for kv in diagnostics[-1].status[0].values}
        assert values["model_loaded"] == "True" and values["device"] == "cpu"
        assert int(values["frames_received"]) > 0
        assert "latency_lm_total_p50_ms" in values and "latency_lm_total_p95_ms" in values
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "Traceback" not in log, log[-3000:]
