"""Camera subscriptions served on their own thread, apart from the node's MultiThreadedExecutor.

A camera at 30 Hz wakes an executor 30 times a second. rclpy's MultiThreadedExecutor rebuilds
its wait set over every entity of the node it spins at each wake, and octopus_node has about
25 (parameter and lifecycle services, ~/ask, speech, two e-stop subscriptions, timers). Measured
on a loaded 2-core x86 VM at 1080p 30 Hz (prefetch off, the callback a no-op or not): the node
took 21 % of a core where a bare subscriber process (plain node, SingleThreadedExecutor) took
11-13 %, and a bare subscriber with 20 idle subscriptions under a MultiThreadedExecutor 30 %.
The callback itself (header checks, a zero-copy view, :meth:`ActionEngine.on_frame`) is not
measurable beside that.

:class:`CameraIngest` puts the camera subscriptions on a small plain node
(``<node name>_camera``, same namespace, no parameter services, no /rosout) spun by a
SingleThreadedExecutor on a thread of its own, so that the camera costs what rclpy needs to take
the messages and the node's executor (speech, e-stop, ~/ask) never wakes for a frame. The
callbacks stay the owner's methods, guarded as before. Topic names are expanded by the owner
(``~/image`` is the owner's private topic), and command-line remaps apply as to any node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from octopus_ros.runtime.engine import name_native_thread


class CameraIngest:
    """The camera node, its executor and its thread; see the module docstring. Create it when the
    owner activates, :meth:`close` it when it deactivates."""

    def __init__(self, owner: Node) -> None:
        self._owner = owner
        self.name = f"{owner.get_name()}_camera"
        # A local node-name remap wins over a global one (``-r __node:=x`` renames the owner only).
        self.node = Node(
            self.name,
            context=owner.context,
            namespace=owner.get_namespace(),
            cli_args=["--ros-args", "-r", f"__node:={self.name}"],
            start_parameter_services=False,
            enable_rosout=False,
        )
        self._executor = SingleThreadedExecutor(context=owner.context)
        self._executor.add_node(self.node)
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._spin, name="octopus-camera", daemon=True)
        self._thread.start()

    def subscribe(self, msg_type: Any, topic: str, callback: Callable[[Any], None], qos: Any) -> Any:
        """Subscribe ``callback`` (the owner's method) to ``topic`` as the owner would name it."""
        name = self._owner.resolve_topic_name(topic, only_expand=True)
        return self.node.create_subscription(msg_type, name, callback, qos)

    def _spin(self) -> None:
        name_native_thread("octopus-camera")
        while not self._stop.is_set() and self._owner.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:
                return
            except Exception as e:  # e.g. a message rclpy cannot deserialise: keep taking frames
                if self._stop.is_set() or not self._owner.context.ok():
                    return
                self._owner.get_logger().error(f"camera executor: {type(e).__name__}: {e}; it keeps spinning")

    def close(self) -> None:
        """Stop the thread, then destroy the subscriptions and the node. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        self._executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
