"""NOT_IN_VIEW over DDS (issue 12 item 3): the bundled model and its grounding head in octopus_node.

The bundled model answers pick_up('red cup') whether or not a cup is in the frame; with
grounding_threshold set, the node publishes the call only when a cup is in view. A published
call carries the grounding score it passed with, and a message the body the copier's probability.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from node_harness import RobotSide, start_node, stop_node
from octopus_msgs.msg import Outcome

from octopus_ros.data.render import render
from octopus_ros.data.world import sample_scene

pytestmark = pytest.mark.slow


def test_not_in_view_over_dds(ros_env, rclpy_context):
    with_cup = render(sample_scene(np.random.default_rng(11), target=("cup", "red"), n_distractors=1), 64)
    without = render(sample_scene(np.random.default_rng(12), target=("book", "blue"), n_distractors=0), 64)
    # the request-novelty limit off: this test is about the view (with v9, "pick up the red cup
    # now" scored 0.9984, above stop 30's default 0.998: "now" ends few training requests)
    proc = start_node(
        ros_env,
        "grounding_threshold:=0.22",
        "max_image_age:=60.0",
        "rate_limit:=0.0",
        "max_request_novelty:=0.0",
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        robot.send_frame(without)
        absent = robot.say("pick up the red cup")
        assert absent.code == Outcome.NOT_IN_VIEW and absent.code_name == "NOT_IN_VIEW", absent.reason
        assert (
            absent.reason.startswith("'red cup' is not in view (score ")
            and "pick_up not published" in absent.reason
        )
        assert absent.function_name == "pick_up"
        robot.send_frame(with_cup)
        present = robot.say("pick up the red cup now")
        assert present.code == Outcome.OK, present.reason
        message = robot.say("text bob that the meeting is cancelled")
        assert message.code == Outcome.OK, message.reason
        robot.settle(0.3)
        # only the call whose cup was in view, then the message (no object, nothing to ground)
        assert [c.function_name for c in robot.calls] == ["pick_up", "send_message"]
        pick, sent = robot.calls
        # the request novelty rides on the FunctionCall (the bundled request profile), limit or not
        assert 0.0 <= pick.request_novelty <= 1.0  # not NaN: the node scored it
        # the grounding score the call passed on, and the copier's probability for the copied body
        assert 0.22 <= pick.grounding_score <= 1.0 and math.isnan(pick.copy_probability)
        assert [a.string_value for a in sent.arguments] == ["bob", "the meeting is cancelled"]
        assert math.isnan(sent.grounding_score) and 0.5 < sent.copy_probability <= 1.0
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    from octopus_ros.model.grounding import GroundingModel
    from octopus_ros.paths import default_model_dir

    head = GroundingModel.load(default_model_dir())
    expected = (  # the threshold it was validated at, and the colour check it runs (colour_check: head)
        f"grounding: grounding head (its validation threshold {head.threshold:.2f}; colour check head: "
        f"{head.colour_mismatch}); grounding_threshold 0.22"
    )
    assert expected in log, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
