"""Shared pytest fixtures: per-test DDS isolation and subprocess helpers.

Every ROS test gets its own ROS_DOMAIN_ID and the loopback-only Fast DDS profile
(octopus_ros/ros/dds_env.py), so tests never see each other's traffic and nothing
leaves the machine.
"""

from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path

import pytest

TEST_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = TEST_DIR.parent
REPO_ROOT = PACKAGE_DIR.parent
FASTDDS_PROFILE = PACKAGE_DIR / "config" / "fastdds_localhost.xml"

# Domain ids 1..100 (all safe on Linux). Start at a pid-dependent offset so that two
# pytest runs on the same machine are unlikely to share a domain.
_domain_counter = itertools.count(os.getpid() % 97)

if str(TEST_DIR) not in sys.path:
    sys.path.insert(0, str(TEST_DIR))


def next_domain_id() -> int:
    return 1 + next(_domain_counter) % 100


@pytest.fixture
def ros_env(monkeypatch) -> dict[str, str]:
    """Isolated DDS environment for this test; returns it as a dict for subprocesses.

    The test process itself also gets it (rclpy reads it at ``rclpy.init``).
    """
    from octopus_ros.ros.dds_env import localhost_env

    env = localhost_env(next_domain_id())  # the loopback-only profile, the range it needs
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return {**os.environ, **env}


@pytest.fixture
def rclpy_context(ros_env):
    """An initialised rclpy context on the test's own domain, shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    yield context
    rclpy.shutdown(context=context)


@pytest.fixture
def harness():
    """Factory of started ActionEngine harnesses (test_runtime_engine.Harness), stopped afterwards."""
    from test_runtime_engine import Harness

    made = []

    def make(**kw):
        h = Harness(**kw)
        h.engine.start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.engine.stop()
