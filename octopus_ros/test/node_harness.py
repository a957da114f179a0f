"""Helpers for the octopus_node tests: they live in ``octopus_ros.ros.testing`` (shared with
``benchmarks/reliability.py``); this module keeps the tests' imports short."""

from octopus_ros.ros.testing import NODE, NodeProcess, RobotSide, rss_kb, start_node, stop_node, wait_for_log

__all__ = ["NODE", "NodeProcess", "RobotSide", "rss_kb", "start_node", "stop_node", "wait_for_log"]
