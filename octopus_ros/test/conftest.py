"""Shared pytest fixtures: per-test DDS isolation and subprocess helpers.

Every ROS test gets its own ROS_DOMAIN_ID and the loopback-only Fast DDS profile
(octopus_ros/ros/dds_env.py), so tests never see each other's traffic and nothing
leaves the machine.
"""

from __future__ import annotations

import fcntl
import itertools
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

TEST_DIR = Path(__file__).resolve().parent
PACKAGE_DIR = TEST_DIR.parent
REPO_ROOT = PACKAGE_DIR.parent
FASTDDS_PROFILE = PACKAGE_DIR / "config" / "fastdds_localhost.xml"

# Domain ids 1..100 (all safe on Linux). Each test leases one: an exclusive lock on a file per
# id in the machine's temp folder, held until the test ends, so that two pytest runs on the same
# machine (a second run beside CI, colcon test beside pytest) never share a domain at the same
# time: with more ROS tests than ids, a run walks through every id, and a shared one lets one
# test's nodes and recorders hear the other's. The walk starts at a pid-dependent offset.
_domain_counter = itertools.count(os.getpid() % 97)
_DOMAIN_LOCKS = Path(tempfile.gettempdir()) / "octopus_ros_test_domains"

if str(TEST_DIR) not in sys.path:
    sys.path.insert(0, str(TEST_DIR))


def next_domain_id() -> int:
    return 1 + next(_domain_counter) % 100


def lease_domain_id() -> tuple[int, int]:
    """``(domain id, fd)``: the next id no other process on this machine holds, locked until
    ``os.close(fd)``. Raises when all 100 are held."""
    _DOMAIN_LOCKS.mkdir(exist_ok=True)
    for _ in range(100):
        domain = next_domain_id()
        fd = os.open(_DOMAIN_LOCKS / f"{domain}.lock", os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        return domain, fd
    raise RuntimeError(f"all ROS domain ids 1..100 are leased by other test runs ({_DOMAIN_LOCKS})")


@pytest.fixture
def ros_env(monkeypatch) -> Iterator[dict[str, str]]:
    """Isolated DDS environment for this test (its own leased domain id); yields it as a dict
    for subprocesses.

    The test process itself also gets it (rclpy reads it at ``rclpy.init``).
    """
    from octopus_ros.ros.dds_env import localhost_env

    domain, fd = lease_domain_id()
    try:
        env = localhost_env(domain)  # the loopback-only profile, the range it needs
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield {**os.environ, **env}
    finally:
        os.close(fd)


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


@pytest.fixture(scope="session")
def tok():
    """model/testing.py's tiny tokenizer with the bundled registry's 13 functional tokens: the
    fake LM of the grammar tests' adversarial decodes (model/testing.adversarial_decode) reads it."""
    from octopus_ros.model.testing import tiny_tokenizer

    return tiny_tokenizer(num_functions=13)
