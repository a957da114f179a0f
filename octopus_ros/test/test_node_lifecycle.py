"""octopus_node lifecycle over DDS: a bad or corrupt model fails configure and the node stays alive."""

from __future__ import annotations

import shutil

import pytest
import yaml
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from node_harness import NODE, RobotSide, start_node, stop_node
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import SetParameters
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String

from octopus_ros.functions import FunctionRegistry

pytestmark = pytest.mark.slow


def call(robot: RobotSide, client, request, timeout: float = 120.0):
    if not robot.spin_until(client.service_is_ready, timeout):
        raise TimeoutError(f"service {client.srv_name} not available")
    future = client.call_async(request)
    if not robot.spin_until(future.done, timeout):
        raise TimeoutError(f"no answer from {client.srv_name}")
    return future.result()


def string_param(name: str, value: str) -> Parameter:
    return Parameter(name=name, value=ParameterValue(type=ParameterType.PARAMETER_STRING, string_value=value))


def test_lifecycle_with_bad_then_good_model(ros_env, rclpy_context, tmp_path):
    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path

    good = make_tiny_checkpoint(tmp_path / "good", config_path("functions.yaml"))
    corrupt = tmp_path / "corrupt"
    shutil.copytree(good, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # truncated file

    proc = start_node(ros_env, f"model_path:={tmp_path / 'does_not_exist'}", autostart=False)
    robot = RobotSide(rclpy_context)
    change = robot.create_client(ChangeState, f"{NODE}/change_state")
    get = robot.create_client(GetState, f"{NODE}/get_state")
    set_params = robot.create_client(SetParameters, f"{NODE}/set_parameters")

    def transition(tid: int) -> bool:
        return call(robot, change, ChangeState.Request(transition=Transition(id=tid))).success

    def state() -> int:
        return call(robot, get, GetState.Request()).current_state.id

    registries: list[str] = []
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    robot.create_subscription(
        String, f"{NODE}/function_registry", lambda m: registries.append(m.data), latched
    )
    try:
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        # ~/function_registry is latched and empty while no model is loaded
        assert robot.spin_until(lambda: registries, 30) and registries[-1] == ""
        assert not transition(Transition.TRANSITION_CONFIGURE)  # missing model directory
        assert state() == State.PRIMARY_STATE_UNCONFIGURED and proc.poll() is None

        result = call(
            robot, set_params, SetParameters.Request(parameters=[string_param("model_path", str(corrupt))])
        )
        assert result.results[0].successful
        assert not transition(Transition.TRANSITION_CONFIGURE)  # truncated weights
        assert state() == State.PRIMARY_STATE_UNCONFIGURED and proc.poll() is None

        # A static parameter cannot change while active, a bad value never.
        bad = call(robot, set_params, SetParameters.Request(parameters=[string_param("precision", "int3")]))
        assert not bad.results[0].successful

        call(robot, set_params, SetParameters.Request(parameters=[string_param("model_path", str(good))]))
        assert transition(Transition.TRANSITION_CONFIGURE)
        assert state() == State.PRIMARY_STATE_INACTIVE
        # configured: the model's functions, loadable as a registry, without training phrasings
        assert robot.spin_until(lambda: registries[-1] != "", 30)
        published = FunctionRegistry.from_dict(yaml.safe_load(registries[-1]))
        loaded = FunctionRegistry.from_yaml(good / "functions.yaml")
        assert [(f.name, f.token, [a.to_dict() for a in f.args]) for f in published] == [
            (f.name, f.token, [a.to_dict() for a in f.args]) for f in loaded
        ]
        assert all(f.phrasings is None and not f.examples for f in published)
        late: list[str] = []  # a subscriber that joins later gets it too
        robot.create_subscription(String, f"{NODE}/function_registry", lambda m: late.append(m.data), latched)
        assert robot.spin_until(lambda: late, 30) and late[-1] == registries[-1]
        assert robot.image_pub.get_subscription_count() == 0  # the camera only when active
        assert robot.speech_pub.get_subscription_count() > 0  # speech in every state (NOT_ACTIVE)
        assert transition(Transition.TRANSITION_ACTIVATE)
        robot.wait_active(proc)
        robot.send_frame()
        assert robot.say("stop").code_name in {"OK", "NO_ACTION", "REJECTED_LOW_CONFIDENCE"}

        refused = call(
            robot, set_params, SetParameters.Request(parameters=[string_param("model_path", "/x")])
        )
        assert not refused.results[0].successful and "configure" in refused.results[0].reason

        assert transition(Transition.TRANSITION_DEACTIVATE)
        assert robot.spin_until(lambda: robot.image_pub.get_subscription_count() == 0, 30)
        assert transition(Transition.TRANSITION_CLEANUP)
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        assert robot.spin_until(lambda: registries[-1] == "", 30)  # the model is released
        assert transition(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        assert state() == State.PRIMARY_STATE_FINALIZED
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert "does_not_exist" in log  # the configure failure names the bad path
    assert "model.safetensors" in log  # and the corrupt file
    assert "Traceback" not in log, log[-3000:]
