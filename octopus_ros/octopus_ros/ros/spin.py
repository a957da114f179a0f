"""The ``main()`` of a simple node: init, spin until Ctrl-C or external shutdown, clean up."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def spin_until_shutdown(node: Node) -> None:
    """``rclpy.spin(node)`` until Ctrl-C or a shutdown (SIGINT, SIGTERM, ``try_shutdown``).

    A shutdown that lands between two waits of the executor surfaces as ``RCLError`` ("the given
    context is not valid") instead of ``ExternalShutdownException``: that is the same normal end.
    An ``RCLError`` while the context is still valid is a real failure and is raised."""
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if node.context.ok():
            raise


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Create the node after ``rclpy.init(args)``, spin it, and always destroy it and shut down."""
    rclpy.init(args=args)
    node = make_node()
    try:
        spin_until_shutdown(node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
