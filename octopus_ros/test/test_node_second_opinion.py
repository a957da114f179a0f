"""The node's second_opinion over DDS: a call is published only when the second model makes it too.

Tiny checkpoints taught to give one answer (tiny_models.py) stand in for the two models, so the
outcome of each request is known: a second model that agrees lets the call through, one that
decides otherwise turns it into NO_ACTION "second opinion: ...", and a second model trained on
other functions fails configure with the reason.
"""

from __future__ import annotations

import shutil

import pytest
from node_harness import RobotSide, start_node, stop_node, wait_for_log
from octopus_msgs.msg import Outcome
from tiny_models import train_always

from octopus_ros.runtime.second_opinion import SECOND_OPINION_DIR

pytestmark = pytest.mark.slow

STOP = "<nexa_3>()<nexa_end>"
NAVIGATE = "<nexa_2>('kitchen')<nexa_end>"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("second")
    stop = train_always(root / "stop", STOP)
    with_agreeing = root / "with_agreeing"
    shutil.copytree(stop, with_agreeing)
    train_always(with_agreeing / SECOND_OPINION_DIR, STOP, seed=1)
    navigate = train_always(root / "navigate", NAVIGATE)
    return {"stop": stop, "with_agreeing": with_agreeing, "navigate": navigate}


def test_second_opinion_over_dds(ros_env, rclpy_context, models):
    # the bundled layout: the checkpoint's own second_opinion/ folder, found by the default "auto"
    proc = start_node(
        ros_env, f"model_path:={models['with_agreeing']}", "rate_limit:=0.0", "max_image_age:=60.0"
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        robot.send_frame()
        agreed = robot.say("please stop")
        assert agreed.code == Outcome.OK, agreed.reason
        robot.settle(0.3)
        assert [c.function_name for c in robot.calls] == ["stop"]
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert f"second opinion {models['with_agreeing'] / SECOND_OPINION_DIR}" in log, log[-3000:]

    # a second model given by path that decides otherwise: nothing is published, one outcome says why
    proc = start_node(
        ros_env,
        f"model_path:={models['stop']}",
        f"second_opinion:={models['navigate']}",
        "confidence_threshold:=0.0",  # the tiny models' confidence is not the point here
        "rate_limit:=0.0",
        "max_image_age:=60.0",
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        robot.send_frame()
        # the kitchen said: navigate_to's place is named, so an unsaid one would be declined before;
        # no "stop" (stop claims it: the second model's navigate_to would be declined as asking for stop)
        disagreed = robot.say("please wait in the kitchen")
        assert disagreed.code == Outcome.NO_ACTION, disagreed.reason
        assert disagreed.reason.startswith("second opinion: the second model decides navigate_to('kitchen')")
        assert "instead of stop()" in disagreed.reason
        robot.settle(0.3)
        assert robot.calls == [] and len(robot.outcomes) == 1
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "Traceback" not in log, log[-3000:]

    # "none": the first model alone ("off" would reach the node as YAML's false, not a string)
    proc = start_node(
        ros_env, f"model_path:={models['with_agreeing']}", "second_opinion:=none", "rate_limit:=0.0"
    )
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "no second opinion" in log, log[-3000:]


def test_a_second_model_with_other_functions_fails_configure(ros_env, tmp_path, models):
    other = tmp_path / "other"
    shutil.copytree(models["navigate"], other)
    text = (other / "functions.yaml").read_text(encoding="utf-8")
    (other / "functions.yaml").write_text(
        text.replace("name: take_photo", "name: take_picture"), encoding="utf-8"
    )
    proc = start_node(ros_env, f"model_path:={models['stop']}", f"second_opinion:={other}")
    try:
        wait_for_log(proc, "stays unconfigured")
    finally:
        log = stop_node(proc)
    assert "configure failed: SecondOpinionError" in log and "same functions" in log, log[-3000:]
    assert "stays unconfigured" in log
    assert "Traceback" not in log, log[-3000:]
