"""octopus_node over DDS: an answer in every lifecycle state, and inputs that must never stall it.

Every utterance gets exactly one outcome, also while the node is unconfigured or inactive
(NOT_ACTIVE with the state); topic names rcl would refuse are refused when set, with the reason;
a parameter request rclpy cannot read is answered; a configuration file that is a FIFO fails
configure instead of blocking the node; a huge utterance is not echoed back in full.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from lifecycle_msgs.msg import State, Transition
from node_harness import RobotSide, start_node, stop_node
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from std_msgs.msg import String

from octopus_ros.ros.testing import node_log, wait_for_log

pytestmark = pytest.mark.slow


def string_param(name: str, value: str) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def outcome_for(robot: RobotSide, text: str, timeout: float = 30.0):
    """Publish ``text`` and return the one outcome that answers it (a second one fails the test)."""
    seen = len(robot.outcomes)
    robot.speech_pub.publish(String(data=text))
    assert robot.spin_until(lambda: any(o.utterance == text for o in robot.outcomes[seen:]), timeout), text
    robot.settle(0.3)
    answers = [o for o in robot.outcomes[seen:] if o.utterance == text]
    assert len(answers) == 1, answers
    return answers[0]


def test_an_utterance_gets_one_outcome_in_every_lifecycle_state(ros_env, rclpy_context):
    proc = start_node(ros_env, "rate_limit:=0.0", autostart=False)
    robot = RobotSide(rclpy_context)
    try:
        assert robot.spin_until(lambda: robot.speech_pub.get_subscription_count() > 0, 60), node_log(proc)
        assert robot.spin_until(lambda: robot.outcome_sub.get_publisher_count() > 0, 60)
        robot.settle(0.5)
        first = outcome_for(robot, "pick up the red cup (unconfigured)")
        assert first.code_name == "NOT_ACTIVE" and "unconfigured" in first.reason, first

        assert robot.change_state(Transition.TRANSITION_CONFIGURE)
        second = outcome_for(robot, "stop (inactive)")
        assert second.code_name == "NOT_ACTIVE" and "inactive" in second.reason, second

        assert robot.change_state(Transition.TRANSITION_ACTIVATE)
        robot.wait_active(proc)
        robot.send_frame(np.full((64, 64, 3), 128, np.uint8))
        third = outcome_for(robot, "stop")
        assert third.code_name != "NOT_ACTIVE", third

        assert robot.change_state(Transition.TRANSITION_DEACTIVATE)
        fourth = outcome_for(robot, "stop (deactivated)")
        assert fourth.code_name == "NOT_ACTIVE" and "inactive" in fourth.reason, fourth
        assert robot.change_state(Transition.TRANSITION_CLEANUP)
        fifth = outcome_for(robot, "stop (cleaned up)")
        assert fifth.code_name == "NOT_ACTIVE" and "unconfigured" in fifth.reason, fifth

        # a huge utterance is refused and echoed only as long as the node accepts (200 by default)
        seen = len(robot.outcomes)
        assert robot.change_state(Transition.TRANSITION_CONFIGURE)
        assert robot.change_state(Transition.TRANSITION_ACTIVATE)
        robot.speech_pub.publish(String(data="x" * 100_000))
        assert robot.spin_until(lambda: len(robot.outcomes) > seen, 30)
        huge = robot.outcomes[seen]
        assert huge.code_name == "INVALID_INPUT" and huge.utterance.endswith("[100000 characters]"), (
            huge.reason
        )
        assert len(huge.utterance) < 250
        assert max(len(line) for line in node_log(proc).splitlines()) < 5000  # nor logged in full
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "Traceback" not in log, log[-3000:]


def test_bad_topic_names_malformed_requests_and_a_fifo_never_stall_the_node(ros_env, rclpy_context, tmp_path):
    fifo = tmp_path / "screen.fifo"
    os.mkfifo(fifo)
    proc = start_node(ros_env, "speech_topic:=/speech//text", f"safety_screen:={fifo}", autostart=False)
    robot = RobotSide(rclpy_context)
    try:
        assert wait_for_log(proc, "speech_topic is not a valid topic name: '/speech//text'", 60), node_log(
            proc
        )
        assert not robot.change_state(Transition.TRANSITION_CONFIGURE)
        assert "configure failed: bad parameter: speech_topic is not a valid topic name" in node_log(proc)

        # set while unconfigured: refused with rcl's reason, the old e-stop topic stays in use
        for name, value, why in (
            ("estop_topic", "/estop//x", "repeated '/'"),
            ("image_topic", "/9camera", "must not start with a number"),
            ("speech_topic", "/speech/{bad}", "unknown substitution"),
        ):
            (result,) = robot.set_parameters([string_param(name, value)])
            assert not result.successful and why in result.reason, (name, result.reason)
        assert robot.estop_pub.get_subscription_count() > 0

        # a value of a type rclpy does not know: answered, and the request's other parameter is set
        odd = Parameter(name="confidence_threshold", value=ParameterValue(type=99))
        good = Parameter(
            name="max_utterance_length",
            value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=300),
        )
        bad_result, good_result = robot.set_parameters([odd, good], timeout=20)
        assert not bad_result.successful and "malformed parameter 'confidence_threshold'" in bad_result.reason
        assert good_result.successful, good_result.reason
        # atomically: refused as a whole, and the readable parameter is not set either
        from rcl_interfaces.srv import GetParameters, SetParametersAtomically

        other = Parameter(
            name="max_utterance_length",
            value=ParameterValue(type=ParameterType.PARAMETER_INTEGER, integer_value=400),
        )
        atomic = robot.call(
            SetParametersAtomically,
            "set_parameters_atomically",
            SetParametersAtomically.Request(parameters=[odd, other]),
        ).result
        assert not atomic.successful and "malformed parameter 'confidence_threshold'" in atomic.reason
        got = robot.call(
            GetParameters, "get_parameters", GetParameters.Request(names=["max_utterance_length"])
        )
        assert got.values[0].integer_value == 300

        # the FIFO: configure fails at once with the reason, and the node still answers
        (result,) = robot.set_parameters([string_param("speech_topic", "/speech/text")])
        assert result.successful, result.reason
        t0 = time.monotonic()
        assert not robot.change_state(Transition.TRANSITION_CONFIGURE, timeout=30)
        assert time.monotonic() - t0 < 20
        assert "not a regular file" in node_log(proc), node_log(proc)[-2000:]
        assert robot.get_state() == State.PRIMARY_STATE_UNCONFIGURED

        (result,) = robot.set_parameters([string_param("safety_screen", "default")])
        assert result.successful, result.reason
        assert robot.change_state(Transition.TRANSITION_CONFIGURE)
        assert proc.poll() is None
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "Traceback" not in log, log[-3000:]


def test_help_prints_the_parameters_and_a_bad_start_value_is_one_clear_line(ros_env):
    import subprocess
    import sys

    node = [sys.executable, "-m", "octopus_ros.ros.octopus_node"]
    shown = subprocess.run([*node, "--help"], env=ros_env, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "usage: octopus_node" in shown.stdout
    assert "confidence_threshold (default 0.5)" in shown.stdout and "octopus_node created" not in shown.stdout
    for value, why in (("2.0", "out of range"), ("high", "expecting type 'DOUBLE'")):
        bad = subprocess.run(
            [*node, "--ros-args", "-p", f"confidence_threshold:={value}"],
            env=ros_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert bad.returncode == 2 and "octopus_node: error:" in bad.stderr and why in bad.stderr, bad.stderr
        assert "Traceback" not in bad.stderr, bad.stderr
