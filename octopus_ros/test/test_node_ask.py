"""~/ask when the model is slow: a waiting call holds no executor thread, and its deadline
(ask_timeout) ends it in one TIMEOUT that publishes nothing later.

The node runs in this process on a two-thread MultiThreadedExecutor, and a client node talks to
it over DDS. The model is the tiny one that always answers stop(), behind a gate the test
holds shut: a model that stalls (a GPU hiccup, a swap storm) is what these guarantees are for.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from lifecycle_msgs.msg import State
from node_harness import RobotSide
from octopus_msgs.srv import Ask
from rclpy.executors import MultiThreadedExecutor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from tiny_models import train_always

from octopus_ros.ros.image_convert import rgb_to_compressed_msg

pytestmark = pytest.mark.slow

ASK_TIMEOUT_S = 4.0


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    """A tiny checkpoint that answers every request with stop() (see tiny_models.py)."""
    return train_always(tmp_path_factory.mktemp("ckpt") / "tiny_stop", "<nexa_3>()<nexa_end>")


class GatedModel:
    """The node's model, whose decide() waits until the test opens the gate."""

    def __init__(self, model, gate: threading.Event) -> None:
        self._model = model
        self.gate = gate
        self.decided = 0

    def decide(self, *args, **kwargs):
        self.gate.wait(60)
        self.decided += 1
        return self._model.decide(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


def ask_request(rid: str, text: str = "stop") -> Ask.Request:
    request = Ask.Request(text=text, request_id=rid, publish=True)
    request.compressed_image = rgb_to_compressed_msg(np.full((48, 64, 3), 90, np.uint8), fmt="png")
    return request


def test_waiting_asks_hold_no_thread_and_time_out_cleanly(ros_env, rclpy_context, tiny_ckpt):
    from octopus_ros.ros.octopus_node import OctopusNode

    node = OctopusNode(
        context=rclpy_context,
        parameter_overrides=[
            Parameter("autostart", value=False),
            Parameter("model_path", value=str(tiny_ckpt)),
            Parameter("image_topic", value=""),
            Parameter("compressed_image_topic", value=""),
            Parameter("routing_file", value="none"),
            Parameter("prefetch_rate", value=0.0),
            Parameter("confidence_threshold", value=0.0),
            Parameter("max_request_novelty", value=0.0),
            Parameter("max_text_novelty", value=0.0),
            Parameter("ask_timeout", value=ASK_TIMEOUT_S),
        ],
    )
    assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    gate = threading.Event()
    model = GatedModel(node._engine.model, gate)
    node._engine.model = model
    executor = MultiThreadedExecutor(num_threads=2, context=rclpy_context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    robot = RobotSide(rclpy_context)
    try:
        ask = robot.service(Ask, "ask")
        assert robot.spin_until(ask.service_is_ready, 30)
        assert robot.get_state() == State.PRIMARY_STATE_ACTIVE  # the lifecycle service is found
        assert robot.spin_until(lambda: robot.outcome_sub.get_publisher_count() > 0, 30)

        # Three asks, more than the executor's two threads, all waiting on the stalled model ...
        sent = time.monotonic()
        futures = [ask.call_async(ask_request(f"ask-{i}")) for i in range(3)]
        assert robot.spin_until(lambda: node._engine.snapshot()["queued"] >= 2, 10)
        # ... and the node still answers its other services at once: no thread is held by them.
        assert robot.get_state(timeout=2.0) == State.PRIMARY_STATE_ACTIVE
        assert time.monotonic() - sent < ASK_TIMEOUT_S and not any(f.done() for f in futures)

        # The deadline passes: every caller is told TIMEOUT ...
        assert robot.spin_until(lambda: all(f.done() for f in futures), ASK_TIMEOUT_S + 20)
        for f in futures:
            outcome = f.result().outcome
            assert outcome.code_name == "TIMEOUT", outcome.reason
            assert outcome.reason.startswith(
                f"no answer within {ASK_TIMEOUT_S:g} s (ask_timeout {ASK_TIMEOUT_S:g})"
            )
            assert f.result().call.function_name == ""
        # ... the two still queued never reach the model, and the one being decided, once the
        # model answers, ends in one TIMEOUT outcome that names the call it did not publish.
        gate.set()
        ids = {f"ask-{i}" for i in range(3)}
        assert robot.spin_until(lambda: ids <= {o.request_id for o in robot.outcomes}, 30)
        robot.settle(1.0)
        outcomes = [o for o in robot.outcomes if o.request_id in ids]
        assert sorted(o.request_id for o in outcomes) == sorted(ids)  # one each
        assert all(o.code_name == "TIMEOUT" for o in outcomes)
        late = [o for o in outcomes if "not published" in o.reason]
        assert len(late) == 1 and "stop()" in late[0].reason, [o.reason for o in outcomes]
        assert model.decided == 1
        assert robot.calls == []

        # With the model answering again, an ask is answered and its call published as before.
        future = ask.call_async(ask_request("ask-ok"))
        assert robot.spin_until(future.done, 30)
        assert future.result().outcome.code_name == "OK", future.result().outcome.reason
        assert robot.spin_until(lambda: any(c.request_id == "ask-ok" for c in robot.calls), 10)
        assert [c.function_name for c in robot.calls] == ["stop"]
    finally:
        gate.set()
        executor.shutdown()
        node._deactivate("test over")
        node._release()
        robot.destroy_node()
        node.destroy_node()
