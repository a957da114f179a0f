"""Drive octopus_node from outside: run it in its own process and talk to it over DDS.

Used by the node tests (``octopus_ros/test``, through ``node_harness``) and by the reliability
suite (``benchmarks/reliability.py``). The client side plays camera, ASR, e-stop button,
downstream consumer and operator (lifecycle transitions, parameters, ``~/ask``) with a plain
rclpy node; it waits on discovery and on the node's answers, never on fixed sleeps (except
where a test needs a frame to grow old).
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from geometry_msgs.msg import Twist
from octopus_msgs.msg import FunctionCall, Outcome
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String

from octopus_ros.ros.dds_env import MATCH_SETTLE_S
from octopus_ros.ros.image_convert import rgb_to_image_msg
from octopus_ros.runtime.outcomes import echo_matches

NODE = "/octopus_node"


def node_command(*params: str, autostart: bool = True, log_level: str | None = None) -> list[str]:
    """The command line of octopus_node with ``-p`` overrides (``name:=value`` strings);
    ``log_level`` ("warn", ...) sets ``--log-level`` (None: the node's default, info)."""
    args = [sys.executable, "-m", "octopus_ros.ros.octopus_node", "--ros-args"]
    if log_level is not None:
        args += ["--log-level", log_level]
    for p in (f"autostart:={'true' if autostart else 'false'}", *params):
        args += ["-p", p]
    return args


def start_node(
    env: dict[str, str], *params: str, autostart: bool = True, log_level: str | None = None
) -> subprocess.Popen:
    """octopus_node in a subprocess with ``-p`` overrides (``name:=value`` strings) and
    ``log_level`` (:func:`node_command`).

    Its output goes to a temporary file, not a pipe: a pipe nobody reads fills after about
    64 kB of log and then blocks the node's logging, and with it the whole node (a burst of a
    few hundred utterances then looks like lost messages). :func:`node_log` reads it.
    """
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace")  # noqa: SIM115 - closed by stop_node
    proc = subprocess.Popen(
        node_command(*params, autostart=autostart, log_level=log_level),
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    proc.log_file = log
    return proc


def node_log(proc: subprocess.Popen) -> str:
    """Everything the node started by :func:`start_node` has logged so far."""
    log = proc.log_file
    log.flush()
    log.seek(0)
    text = log.read()
    log.seek(0, 2)
    return text


def wait_for_log(proc: subprocess.Popen, text: str, timeout: float = 60.0) -> bool:
    """Wait until the node started by :func:`start_node` logs ``text`` (True) or ``timeout`` s pass."""
    deadline = time.monotonic() + timeout
    while text not in node_log(proc):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def stop_node(proc: subprocess.Popen) -> str:
    """Stop the node (SIGINT, as Ctrl-C) and return its log."""
    if proc.poll() is None:
        proc.send_signal(2)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = node_log(proc)
    proc.log_file.close()
    return text


def rss_kb(pid: int) -> int:
    """Resident set size of a process (kB), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for pid {pid}")


class NodeProcess:
    """octopus_node started by :func:`start_node`, with its log as lines and its RSS (for long runs).

    ``log_since(mark)`` returns the lines written after ``mark = len(self.lines)``, so a caller
    can check what one transition or one input made the node say.
    """

    def __init__(self, env: dict[str, str], *params: str, autostart: bool = True) -> None:
        self.proc = start_node(env, *params, autostart=autostart)
        self._log = ""

    @property
    def lines(self) -> list[str]:
        if not self.proc.log_file.closed:
            self._log = node_log(self.proc)
        return self._log.splitlines()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def rss_kb(self) -> int:
        return rss_kb(self.proc.pid)

    def log_since(self, mark: int) -> list[str]:
        return self.lines[mark:]

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def stop(self) -> str:
        """SIGINT (as Ctrl-C), SIGKILL if it does not exit; returns the whole log."""
        if not self.proc.log_file.closed:
            self._log = stop_node(self.proc)
        return self._log


class RobotSide(Node):
    """Camera, microphone, e-stop, consumer and operator in one client node."""

    def __init__(self, context: Any, name: str = "octopus_test_client") -> None:
        super().__init__(name, context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.create_publisher(Image, "/camera/image_raw", reliable)
        self.compressed_pub = self.create_publisher(CompressedImage, "/camera/image_raw/compressed", reliable)
        self.speech_pub = self.create_publisher(String, "/speech/text", reliable)
        # Latched, as an e-stop button should be: a node that starts later still sees its state.
        latched = QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        self.estop_pub = self.create_publisher(Bool, "/estop", latched)
        self.outcomes: list[Outcome] = []
        self.calls: list[FunctionCall] = []
        self.twists: list[Twist] = []
        self.outcome_sub = self.create_subscription(
            Outcome, f"{NODE}/outcomes", self.outcomes.append, reliable
        )
        self.call_sub = self.create_subscription(
            FunctionCall, f"{NODE}/function_calls", self.calls.append, reliable
        )
        self.create_subscription(Twist, "/cmd_vel", self.twists.append, reliable)
        self._service_clients: dict[str, Any] = {}
        self.spinner = SingleThreadedExecutor(context=context)
        self.spinner.add_node(self)

    def spin_until(self, predicate: Callable[[], bool], timeout: float = 60.0) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            self.spinner.spin_once(timeout_sec=0.01)
        return True

    def wait_active(self, proc: subprocess.Popen, timeout: float = 120.0) -> None:
        """Wait until the node is active: its camera subscription (made on activate; speech and
        ~/outcomes exist from its start) and its call publisher matched with ours."""

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"octopus_node exited early:\n{stop_node(proc)}")
            return (
                self.speech_pub.get_subscription_count() > 0
                and self.image_pub.get_subscription_count() > 0
                # matched (not just discovered): an outcome published now reaches us
                and self.outcome_sub.get_publisher_count() > 0
                and self.call_sub.get_publisher_count() > 0
            )

        if not self.spin_until(ready, timeout):
            raise TimeoutError(f"octopus_node did not become active:\n{stop_node(proc)}")
        # Our side has matched the node's; give the node's readers time to match our writers, or the
        # first frame can be dropped (dds_env.MATCH_SETTLE_S; octopus_replay waits likewise).
        self.settle(MATCH_SETTLE_S)

    def send_frame(
        self,
        rgb: np.ndarray | None = None,
        *,
        age: float = 0.0,
        msg: Image | None = None,
        settle: float = 0.15,
    ) -> None:
        if msg is None:
            rgb = rgb if rgb is not None else np.full((64, 64, 3), 128, np.uint8)
            msg = rgb_to_image_msg(rgb)
        stamp = self.get_clock().now().nanoseconds * 1e-9 - age
        msg.header.stamp.sec = int(stamp)
        msg.header.stamp.nanosec = int((stamp - int(stamp)) * 1e9)
        msg.header.frame_id = "test_camera"
        self.image_pub.publish(msg)
        # The image and speech topics are not ordered with respect to each other: give the frame
        # a head start, so that an utterance sent right after it is paired with it.
        self.spin_until(lambda: False, settle)

    def say(self, text: str, timeout: float = 60.0) -> Outcome:
        """Publish an utterance and return its outcome (waits for it)."""
        seen = len(self.outcomes)
        self.speech_pub.publish(String(data=text))
        if not self.spin_until(
            lambda: any(echo_matches(o.utterance, text) for o in self.outcomes[seen:]), timeout
        ):
            raise TimeoutError(f"no outcome for {text!r}")
        return next(o for o in self.outcomes[seen:] if echo_matches(o.utterance, text))

    def settle(self, seconds: float = 0.3) -> None:
        """Spin a little so that late messages (which must not exist) would arrive."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spinner.spin_once(timeout_sec=0.01)

    # ------------------------------------------------------------------ services
    def service(self, srv_type: type, name: str) -> Any:
        """A client of the node's service ``name`` (relative to the node), created once."""
        if name not in self._service_clients:
            self._service_clients[name] = self.create_client(srv_type, f"{NODE}/{name}")
        return self._service_clients[name]

    def call(self, srv_type: type, name: str, request: Any, timeout: float = 120.0) -> Any:
        """Call one of the node's services and wait for the answer (TimeoutError if none)."""
        client = self.service(srv_type, name)
        if not self.spin_until(client.service_is_ready, timeout):
            raise TimeoutError(f"service {client.srv_name} not available")
        future = client.call_async(request)
        if not self.spin_until(future.done, timeout):
            raise TimeoutError(f"no answer from {client.srv_name}")
        return future.result()

    def change_state(self, transition_id: int, timeout: float = 120.0) -> bool:
        """Request a lifecycle transition (lifecycle_msgs/Transition id); True when it succeeded."""
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        request = ChangeState.Request(transition=Transition(id=transition_id))
        return self.call(ChangeState, "change_state", request, timeout).success

    def get_state(self, timeout: float = 60.0) -> int:
        """The node's lifecycle state id (lifecycle_msgs/State)."""
        from lifecycle_msgs.srv import GetState

        return self.call(GetState, "get_state", GetState.Request(), timeout).current_state.id

    def set_parameters(self, parameters: list[Any], timeout: float = 60.0) -> list[Any]:
        """Set rcl_interfaces/Parameter messages; returns one SetParametersResult per parameter."""
        from rcl_interfaces.srv import SetParameters

        return self.call(
            SetParameters, "set_parameters", SetParameters.Request(parameters=parameters), timeout
        ).results
