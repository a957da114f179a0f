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


def _raise_rcl_error(*_args, **_kw):
    raise RCLError("failed to initialize wait set: the given context is not valid")


def test_an_rcl_error_after_shutdown_ends_the_spin(node, monkeypatch):
    monkeypatch.setattr(spin_mod.rclpy, "spin", _raise_rcl_error)
    rclpy.try_shutdown(context=node.context)
    spin_mod.spin_until_shutdown(node)  # returns: the context was shut down


def test_an_rcl_error_on_a_live_context_is_raised(node, monkeypatch):
    monkeypatch.setattr(spin_mod.rclpy, "spin", _raise_rcl_error)
    with pytest.raises(RCLError):
        spin_mod.spin_until_shutdown(node)
