"""octopus_node runs a native VLM checkpoint (model/vlm.py) over real DDS (issue 14 item 1)."""

from __future__ import annotations

import pytest
from node_harness import RobotSide, start_node, stop_node
from octopus_msgs.msg import Outcome

from octopus_ros.paths import config_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from octopus_ros.model.vlm_testing import make_tiny_vlm

    return make_tiny_vlm(
        tmp_path_factory.mktemp("vlm") / "qwen2_vl", "qwen2_vl", functions=config_path("functions.yaml")
    )


def test_node_decides_with_a_tiny_vlm_over_dds(ros_env, rclpy_context, tiny_qwen):
    proc = start_node(
        ros_env,
        f"model_path:={tiny_qwen}",
        "confidence_threshold:=0.0",
        "allowed_functions:=[stop]",  # the grammar must then emit stop() whatever the random model prefers
        "rate_limit:=0.0",
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        # Random weights: under the allowlist the grammar leaves the model stop() or the decline
        # function (always allowed); either way the VLM decided, and nothing else can come out.
        outcomes = []
        for text in ("stop right there", "停下", "pick up the red cup"):
            robot.send_frame()
            outcomes.append(robot.say(text))
        robot.settle()
        for o in outcomes:
            assert (o.code, o.function_name) in ((Outcome.OK, "stop"), (Outcome.NO_ACTION, "no_action")), (
                o.reason
            )
            assert 0.0 < o.confidence <= 1.0
        ok = [o.request_id for o in outcomes if o.code == Outcome.OK]
        assert [c.request_id for c in robot.calls] == ok
        assert all(c.function_name == "stop" and c.raw_output.endswith("<nexa_end>") for c in robot.calls)
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "qwen2_vl" in log, log[-2000:]  # the node says which backend it loaded
