"""Input subscriptions served on threads of their own, apart from the node's MultiThreadedExecutor.

rclpy's MultiThreadedExecutor rebuilds its wait set over every entity of the node it spins at
each wake, and octopus_node has about 25 (parameter and lifecycle services, ~/ask, two e-stop
subscriptions, timers). Two inputs pay for that:

- **The camera** wakes an executor 30 times a second. Measured on a loaded 2-core x86 VM at
  1080p 30 Hz (prefetch off, the callback a no-op or not): the node took 21 % of a core where a
  bare subscriber process (plain node, SingleThreadedExecutor) took 11-13 %, and a bare
  subscriber with 20 idle subscriptions under a MultiThreadedExecutor 30 %. The callback itself
  (header checks, a zero-copy view, :meth:`ActionEngine.on_frame`) is not measurable beside that.
- **Speech** is on the latency path of every request. A String echoed by a node with ~20 such
  entities took 2.1-2.3 ms p50 per round trip with the subscription on its MultiThreadedExecutor,
  1.6-1.8 ms with it on a side node spun by a SingleThreadedExecutor (``benchmarks/bench_node.py``
  has the node-level figures). rclpy's EventsExecutor (``rclpy.experimental``, Kilted) took
  1.0-1.1 ms, but it fails on a callback that takes the MessageInfo (Kilted wheels: "SystemError:
  null argument to internal routine", and the message is lost), which the speech callback needs to
  count utterances lost in transport; it is not used.

:class:`IngestNode` is a small plain node (``<node name>_<role>``, same namespace, no parameter
services, no /rosout) spun on a thread of its own, so that the node's executor (lifecycle,
parameters, ~/ask) never wakes for these inputs and they never wait behind it. **The e-stop** has
one too (``<node name>_estop``, both of its subscriptions, for the node's whole life): an ~/ask call
holds an executor thread while it waits for its answer, and four of them would have left the e-stop
callback without a thread. The callbacks stay the owner's
methods, guarded as before. Topic names are expanded by the owner (``~/image`` is the owner's
private topic), and command-line remaps apply as to any node.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from octopus_ros.runtime.engine import name_native_thread


class IngestNode:
    """A side node for one kind of input, its executor and its thread; see the module docstring.
    The camera's lives while the owner is active, the speech's and the e-stop's as long as the
    owner; :meth:`close` it when its input goes."""

    def __init__(self, owner: Node, role: str) -> None:
        self._owner = owner
        self.role = role
        self.name = f"{owner.get_name()}_{role}"
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
        self.thread_name = f"octopus-{role}"
        self._thread = threading.Thread(target=self._spin, name=self.thread_name, daemon=True)
        self._thread.start()

    def subscribe(self, msg_type: Any, topic: str, callback: Callable[..., None], qos: Any) -> Any:
        """Subscribe ``callback`` (the owner's method) to ``topic`` as the owner would name it."""
        name = self._owner.resolve_topic_name(topic, only_expand=True)
        return self.node.create_subscription(msg_type, name, callback, qos)

    def _spin(self) -> None:
        name_native_thread(self.thread_name)
        while not self._stop.is_set() and self._owner.context.ok():
            try:
                self._executor.spin_once(timeout_sec=0.1)
            except ExternalShutdownException:
                return
            except Exception as e:  # e.g. a message rclpy cannot deserialise: keep taking messages
                if self._stop.is_set() or not self._owner.context.ok():
                    return
                self._owner.get_logger().error(
                    f"{self.role} executor: {type(e).__name__}: {e}; it keeps spinning"
                )

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
