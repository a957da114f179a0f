"""spin_until_shutdown: a shutdown that races the executor's wait is a normal end, not a crash
(octopus_record once exited 1 on Ctrl-C with "failed to initialize wait set: the given context
is not valid")."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

rclpy = pytest.importorskip("rclpy")
from rclpy._rclpy_pybind11 import RCLError  # noqa: E402
from rclpy.context import Context  # noqa: E402

from octopus_ros.ros import spin as spin_mod  # noqa: E402


@pytest.fixture
def node():
    context = Context()
    rclpy.init(context=context, domain_id=77)
    n = rclpy.create_node("spin_test", context=context)
    yield n
    n.destroy_node()
    rclpy.try_shutdown(context=context)


def test_an_rcl_error_after_shutdown_ends_the_spin(node, monkeypatch):
    def shut_down_then_fail(*_args, **_kw):
        rclpy.try_shutdown(context=node.context)
        raise RCLError("failed to initialize wait set: the given context is not valid")

    monkeypatch.setattr(spin_mod.SingleThreadedExecutor, "spin_once", shut_down_then_fail)
    spin_mod.spin_until_shutdown(node)  # returns: the context was shut down


def test_an_rcl_error_on_a_live_context_is_raised(node, monkeypatch):
    def fail(*_args, **_kw):
        raise RCLError("failed to initialize wait set: something else")

    monkeypatch.setattr(spin_mod.SingleThreadedExecutor, "spin_once", fail)
    with pytest.raises(RCLError):
        spin_mod.spin_until_shutdown(node)


def test_a_shutdown_ends_the_spin_even_without_a_wake(node, monkeypatch):
    """Each wait lasts at most WAKE_S, so a shutdown whose wake is lost still ends the spin."""
    import threading
    import time

    monkeypatch.setattr(spin_mod.SingleThreadedExecutor, "wake", lambda self: None)
    spinner = threading.Thread(target=spin_mod.spin_until_shutdown, args=(node,), daemon=True)
    spinner.start()
    time.sleep(0.3)
    start = time.monotonic()
    node.context.shutdown()  # no signal, and the executor's wake does nothing
    spinner.join(timeout=5 * spin_mod.WAKE_S + 2)
    assert not spinner.is_alive() and time.monotonic() - start < 5 * spin_mod.WAKE_S + 2
