"""The ``main()`` of a simple node: init, spin until Ctrl-C or external shutdown, clean up."""

from __future__ import annotations

from collections.abc import Callable

import rclpy
from rclpy._rclpy_pybind11 import RCLError
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

# The longest one wait of the executor may last: the loop looks at the context at least this often
WAKE_S = 0.5


def spin_until_shutdown(node: Node) -> None:
    """Spin ``node`` until Ctrl-C or a shutdown (SIGINT, SIGTERM, ``try_shutdown``).

    rclpy's signal handler shuts the context down and wakes the executor's wait. A wait that
    misses that wake (once in a clean-clone CI run of stop 45, octopus_record did not end 30 s
    after SIGINT) would block ``rclpy.spin`` until the next message; here each wait lasts at most
    ``WAKE_S`` and the loop ends as soon as the context is shut down.
    A shutdown that lands between two waits of the executor surfaces as ``RCLError`` ("the given
    context is not valid") instead of ``ExternalShutdownException``: that is the same normal end.
    An ``RCLError`` while the context is still valid is a real failure and is raised."""
    executor = SingleThreadedExecutor(context=node.context)
    executor.add_node(node)
    try:
        while node.context.ok():
            executor.spin_once(timeout_sec=WAKE_S)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if node.context.ok():
            raise
    finally:
        executor.remove_node(node)
        executor.shutdown(timeout_sec=0)


def spin_node(make_node: Callable[[], Node], args: list[str] | None = None) -> None:
    """Create the node after ``rclpy.init(args)``, spin it, and always destroy it and shut down."""
    rclpy.init(args=args)
    node = make_node()
    try:
        spin_until_shutdown(node)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
