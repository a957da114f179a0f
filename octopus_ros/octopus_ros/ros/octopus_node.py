"""octopus_node: camera + speech in, typed function calls out (a managed lifecycle node).

Lifecycle:
  configure  read and check parameters, load the function registry, the model and the
             routing table (a bad model path or a corrupt file fails the transition with
             the reason in the log; the node stays alive and can be configured again);
             create publishers, the ~/ask service and the diagnostics timer; publish the
             registry on ~/function_registry (latched).
  activate   subscribe to the camera; start the request engine.
  deactivate unsubscribe from the camera; pending requests end with NOT_ACTIVE.
  cleanup    free the model and everything configure created (~/function_registry: "").

The e-stop, the speech input and ~/outcomes belong to the node, not to a configuration: they
exist in every lifecycle state, so that an e-stop is always heard and every utterance gets exactly
one outcome (NOT_ACTIVE with the state while the node is not active). Configure re-subscribes them
when their parameters changed.

All request policy lives in :class:`octopus_ros.runtime.engine.ActionEngine`; this node
only converts messages and publishes results.
"""

from __future__ import annotations

import collections
import functools
import gc
import inspect
import itertools
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from octopus_msgs.msg import Argument, FunctionCall, Outcome
from octopus_msgs.srv import Ask
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.duration import Duration
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.lifecycle import LifecycleNode, State, TransitionCallbackReturn
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, String

from octopus_ros.lean.grounding import colour_check_rule
from octopus_ros.paths import config_path, default_model_dir
from octopus_ros.ros import params as P
from octopus_ros.ros.image_convert import CvBridgeAdapter, ImageConversionError
from octopus_ros.ros.ingest import IngestNode
from octopus_ros.runtime.context import parse_context_examples
from octopus_ros.runtime.engine import ActionEngine, EngineConfig
from octopus_ros.runtime.guards import check_stamp, stamp_parts
from octopus_ros.runtime.outcomes import Frame, OutcomeCode, Request, Result, Source, echo_text
from octopus_ros.runtime.second_opinion import same_functions, second_opinion_dir

_ARG_TYPES = {
    "string": Argument.TYPE_STRING,
    "int": Argument.TYPE_INT,
    "float": Argument.TYPE_FLOAT,
    "bool": Argument.TYPE_BOOL,
    "enum": Argument.TYPE_ENUM,
}


def _duration(seconds: float) -> Any:
    return Duration(seconds=max(0.0, float(seconds))).to_msg()


def _stamp_msg(seconds: float) -> Any:
    """builtin_interfaces/Time of a time in seconds, clamped so that it can never overflow."""
    from builtin_interfaces.msg import Time as TimeMsg

    sec, nanosec = stamp_parts(seconds)
    return TimeMsg(sec=sec, nanosec=nanosec)


def _guarded(what: str, fallback: Callable[..., Any] | None = None) -> Callable:
    """Wrap a ROS callback so that no input can end the process.

    An exception is logged with the traceback, counted in the diagnostics
    (``callback_errors_<what>``) and, where given, ``fallback(self, *args, error)`` answers
    for it (an Outcome for an utterance, an unsuccessful result for a parameter change).
    """

    def wrap(method: Callable) -> Callable:
        def failed(self, args: tuple, e: Exception) -> Any:
            self._callback_errors[what] += 1
            self.get_logger().error(f"{what} callback failed on an input ({type(e).__name__}: {e})")
            self.get_logger().debug(traceback.format_exc())
            if fallback is not None:
                return fallback(self, *args, e)
            return None

        if inspect.iscoroutinefunction(method):  # rclpy awaits it: it stays a coroutine function

            @functools.wraps(method)
            async def guarded_async(self, *args: Any) -> Any:
                try:
                    return await method(self, *args)
                except Exception as e:
                    return failed(self, args, e)

            return guarded_async

        @functools.wraps(method)
        def guarded(self, *args: Any) -> Any:
            try:
                return method(self, *args)
            except Exception as e:
                return failed(self, args, e)

        return guarded

    return wrap


def argument_msg(arg: Any) -> Argument:
    """Typed Argument message from a call argument (name, type, value)."""
    msg = Argument(name=arg.name, type=_ARG_TYPES[arg.type])
    value = arg.value
    if arg.type in ("string", "enum"):
        msg.string_value = str(value)
        msg.value = str(value)
    elif arg.type == "int":
        msg.int_value = int(value)
        msg.float_value = float(value)
        msg.value = str(int(value))
    elif arg.type == "float":
        msg.float_value = float(value)
        msg.value = repr(float(value))
    else:
        msg.bool_value = bool(value)
        msg.value = "true" if value else "false"
    return msg


def _unreadable() -> Any:
    raise ValueError("the image message could not be read")


# ~/estop_state and ~/function_registry: reliable and latched (a subscriber that starts later gets
# the current value)
LATCHED_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)

# The node's executor threads (lifecycle, parameters, ~/ask; an ~/ask call waiting for its answer
# holds none; the e-stop and the inputs have threads of their own: ros/ingest.py)
EXECUTOR_THREADS = 4


def fresh_estop(seen: collections.OrderedDict, info: dict) -> bool:
    """Whether an e-stop message (its rclpy MessageInfo ``info``) is new to the node, updating
    ``seen``. The node reads the e-stop through two subscriptions (latched and volatile), so one
    message can arrive twice: with the publisher's gid, a sequence number at most the last one seen
    from that publisher is the same message or an older one. An rclpy without the gid in
    MessageInfo (before 2025; Jazzy may lack it) would put every publisher under one key, and a
    restarted publisher's e-stop (sequence 1) would be dropped as stale: there only the same
    message twice (same source timestamp and sequence number) is dropped. No sequence number:
    always new. ``seen`` keeps the last 256 keys."""
    seq = info.get("publication_sequence_number")
    if seq is None:
        return True
    if info.get("publisher_gid") is not None:
        key: Any = repr(info["publisher_gid"])
        last = seen.get(key)
        if last is not None and seq <= last:
            return False
    else:
        key = ("sent", info.get("source_timestamp"), seq)
        if key in seen:
            return False
    seen[key] = seq
    seen.move_to_end(key)
    while len(seen) > 256:
        seen.popitem(last=False)
    return True


class OctopusNode(LifecycleNode):
    """See the module docstring. Topics are relative to the node (``~/...``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("octopus_node", **kwargs)
        P.declare_parameters(self)
        P.answer_malformed_parameter_requests(self)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._ids = itertools.count(1)
        # request ids: start time and a random part, so that two nodes started in the same second
        # (one launch file, several robots logging to one place) do not give the same ids
        self._id_prefix = f"{int(time.time()) % 100000:05d}{secrets.token_hex(2)}"
        self._params: P.NodeParams | None = None
        self._model = None
        self._second = None  # the second_opinion model (None: off)
        self._registry = None
        self._routing = None
        self._engine: ActionEngine | None = None
        self._frame_seq = itertools.count(1)
        # camera (while active) and speech (always) subscriptions, each on a side node and thread of its own
        self._camera: IngestNode | None = None
        self._speech: IngestNode | None = None
        self._speech_key: tuple[str, int] | None = None
        self._outcomes_pub = None  # ~/outcomes: a plain publisher, in every state (see the module docstring)
        self._outcomes_depth = 0
        self._timers: list = []
        self._pubs: dict[str, Any] = {}
        self._routed_pubs: dict[tuple[str, type], Any] = {}
        self._ask = None
        self._diag_pub = None
        self._active = False
        self._lock = threading.Lock()
        self._service_group = ReentrantCallbackGroup()
        self._callback_errors: collections.Counter[str] = collections.Counter()
        self._speech_seen: dict[bytes, int] = {}  # publisher gid -> last publication sequence number
        self._speech_gaps = 0  # utterances a publisher sent that never reached this reader
        self._last_novelty = (float("nan"),) * 3  # (text, image, request) of the latest decision
        # The e-stop belongs to the node, not to a configuration: it survives cleanup/configure
        # and is listened to in every lifecycle state.
        self._estop = bool(self.get_parameter("estop_on_start").value)
        self._estop_reason = "estop_on_start: engaged at start until false arrives" if self._estop else ""
        self._estop_seen: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        # the e-stop's subscriptions, on a side node with a thread of its own (ros/ingest.py): an
        # executor whose threads all wait on ~/ask calls still hears it
        self._estop_ingest: IngestNode | None = None
        self._estop_topic = ""
        # ~/estop_state: the e-stop as this node holds it, latched, in every lifecycle state, for
        # actuators that must stop with it (published at start and at every change)
        self._estop_state_pub = self.create_publisher(Bool, "~/estop_state", LATCHED_QOS)
        self._estop_state_pub.publish(Bool(data=self._estop))
        # ~/function_registry: the loaded model's functions as registry YAML (without training
        # phrasings), latched, as robot_description carries a URDF; "" while no model is loaded
        self._registry_pub = self.create_publisher(String, "~/function_registry", LATCHED_QOS)
        self._registry_pub.publish(String(data=""))
        for start in (self._start_estop, self._start_speech):
            try:
                start()
            except P.ParameterValueError as e:  # configure refuses the same value, with the reason
                self.get_logger().error(f"{e}; configure will fail until it is set right")
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)
        else:
            self.get_logger().info("octopus_node created; waiting for configure")

    def _start_estop(self) -> None:
        self._subscribe_estop(P.check_value("estop_topic", self.get_parameter("estop_topic").value))

    def _start_speech(self) -> None:
        depth = P.check_value("speech_qos_depth", self.get_parameter("speech_qos_depth").value)
        self._listen_speech(P.check_value("speech_topic", self.get_parameter("speech_topic").value), depth)

    @_guarded("autostart")
    def _autostart(self) -> None:
        self.destroy_timer(self._autostart_timer)
        if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().error("autostart: configure failed; the node stays unconfigured")
            return
        self.trigger_activate()

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        log = self.get_logger()
        try:
            params = P.read_parameters(self)
        except P.ParameterValueError as e:
            log.error(f"configure failed: bad parameter: {e}")
            return TransitionCallbackReturn.FAILURE
        try:
            self._load(params)
        except Exception as e:  # every load error is a clear configure failure, never a crash
            log.error(f"configure failed: {type(e).__name__}: {e}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._params = params
        try:
            self._subscribe_estop(params.estop_topic)
            self._listen_speech(params.speech_topic, params.speech_qos_depth)
            depth = params.output_qos_depth
            self._pubs["calls"] = self.create_lifecycle_publisher(FunctionCall, "~/function_calls", depth)
            if self._routing is not None:
                for topic, msg_type in self._routing.topics():
                    self._routed_pubs[(topic, msg_type)] = self.create_lifecycle_publisher(
                        msg_type, topic, depth
                    )
            self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self._timers.append(self.create_timer(1.0 / params.diagnostics_rate, self._publish_diagnostics))
            self._ask = self.create_service(Ask, "~/ask", self._on_ask, callback_group=self._service_group)
        except Exception as e:  # a name rcl refuses, an entity it cannot create: a reason, not on_error
            log.error(f"configure failed: {type(e).__name__}: {e}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._publish_registry()
        log.info(
            f"configured: model {self._model_desc}, device {params.device}, precision {params.precision}, "
            f"allowlist {list(params.allowed_functions) or 'all enabled'}, image conversion {self._bridge.backend}"
        )
        return TransitionCallbackReturn.SUCCESS

    def _load(self, params: P.NodeParams) -> None:
        from octopus_ros.functions import validate_call
        from octopus_ros.functions.answer_format import check_decode_mode, checkpoint_answer_format

        path = params.model_path or str(default_model_dir())
        t0 = time.perf_counter()
        # a JSON-answer checkpoint (the trained baseline) runs only in decode_mode plain (torch backend)
        check_decode_mode(checkpoint_answer_format(path), params.decode_mode, where=str(path))
        self._model = self._load_model(path, params, params.functions_file or None)
        self._registry = self._model.registry
        self._model_desc = f"{path} ({params.backend} backend, {time.perf_counter() - t0:.2f} s to load)"
        self._second = None
        second_path = second_opinion_dir(path, params.second_opinion)
        if second_path is not None:
            t1 = time.perf_counter()
            same_functions(path, second_path)
            self._second = self._load_model(str(second_path), params, self._registry)
            self._model_desc += f"; second opinion {second_path} ({time.perf_counter() - t1:.2f} s to load)"
        else:
            self._model_desc += "; no second opinion"
        for model in (self._model, self._second):
            rules = getattr(model, "grounding", None)
            if rules is not None:
                rules.colour_mismatch = colour_check_rule(params.colour_check, rules.colour_mismatch)
        head = getattr(self._model, "grounding", None)
        if head is None:
            self._grounding_desc = "no grounding head (no grounding.json): NOT_IN_VIEW is never decided"
        elif params.vision_backend != "torch":
            self._grounding_desc = (
                f"grounding head unused: the {params.vision_backend} vision backend gives it no maps"
            )
        else:
            self._grounding_desc = (
                f"grounding head (its validation threshold {head.threshold:.2f}; colour check "
                f"{params.colour_check or 'head'}: {head.colour_mismatch})"
            )
        self.get_logger().info(
            f"grounding: {self._grounding_desc}; grounding_threshold {params.grounding_threshold:.2f}"
            + (" (0 = off)" if params.grounding_threshold == 0 else "")
            + (" (-1 = the head's own)" if params.grounding_threshold < 0 else "")
        )
        unknown = [n for n in params.allowed_functions if self._registry.by_name(n) is None]
        if unknown:
            raise P.ParameterValueError(f"allowed_functions names unknown functions {unknown}")
        self._routing = self._load_routing(params)
        self._bridge = CvBridgeAdapter(max_side=params.max_image_side)
        registry = self._registry

        self._engine = ActionEngine(
            model=self._model,
            second_opinion=self._second,
            registry=registry,
            config=self._engine_config(params),
            validate=functools.partial(validate_call, registry=registry),
            on_result=self._on_result,
            now=self._now,
            estop=self._estop,
        )

    @staticmethod
    def _load_model(path: str, params: P.NodeParams, registry: Any) -> Any:
        """One model as the parameters say: the onnx backend (no torch in the process) or torch."""
        if params.backend == "onnx":  # no torch in this process (octopus_ros/lean/)
            from octopus_ros.lean.runtime import LeanOctopus

            cuda = ["CUDAExecutionProvider", "CPUExecutionProvider"] if params.device == "cuda" else None
            return LeanOctopus.load(
                path, precision=params.precision, registry=registry, providers=cuda, threads=params.threads
            )
        from octopus_ros.model.runtime import Octopus

        if params.threads:
            import torch

            torch.set_num_threads(params.threads)
        return Octopus.load(
            path,
            device=params.device,
            precision=params.precision,
            vision_backend=params.vision_backend,
            registry=registry,
        )

    def _load_routing(self, params: P.NodeParams) -> Any:
        if params.routing_file.strip().lower() == "none":
            return None
        from octopus_ros.ros.routing import RoutingTable

        return RoutingTable.from_file(params.routing_file or config_path("routing.yaml"), self._registry)

    @staticmethod
    def _engine_config(params: P.NodeParams) -> EngineConfig:
        return EngineConfig(
            allowlist=params.allowed_functions,
            confidence_threshold=params.confidence_threshold,
            max_text_novelty=params.max_text_novelty,
            max_image_novelty=params.max_image_novelty,
            max_request_novelty=params.max_request_novelty,
            grounding_threshold=params.grounding_threshold,
            safety_screen=params.safety_screen,
            context_examples=params.context_examples,
            max_image_age=params.max_image_age,
            queue_depth=params.queue_depth,
            request_timeout=params.request_timeout,
            rate_limit=params.rate_limit,
            rate_burst=params.rate_burst,
            max_utterance_length=params.max_utterance_length,
            prefetch_rate=params.prefetch_rate,
            prefetch_max_lag=params.prefetch_max_lag,
            prefetch_max_change=params.prefetch_max_change,
            decode_mode=params.decode_mode,
            standing_cooldown=params.standing_cooldown,
            standing_scene_change=params.standing_scene_change,
        )

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        p = self._params
        if p.image_qos == "sensor_data":
            image_qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=p.image_qos_depth,
                reliability=qos_profile_sensor_data.reliability,
                durability=qos_profile_sensor_data.durability,
            )
        else:
            image_qos = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=p.image_qos_depth,
                reliability=ReliabilityPolicy.RELIABLE,
            )
        try:
            if p.image_topic or p.compressed_image_topic:
                # Not on this node's executor: frames would wake it 30 times a second (ros/ingest.py).
                self._camera = IngestNode(self, "camera")
            if p.image_topic:
                self._camera.subscribe(Image, p.image_topic, self._on_image, image_qos)
            if p.compressed_image_topic:
                self._camera.subscribe(
                    CompressedImage, p.compressed_image_topic, self._on_compressed, image_qos
                )
        except Exception as e:  # a name rcl refuses: a reason in the log, the node stays inactive
            self.get_logger().error(f"activate failed: {type(e).__name__}: {e}")
            if self._camera is not None:
                self._camera.close()
                self._camera = None
            return TransitionCallbackReturn.FAILURE
        if p.standing_instruction:
            self._standing_timer = self.create_timer(1.0 / p.standing_rate, self._on_standing_tick)
        else:
            self._standing_timer = None
        self._engine.start()
        self._active = True
        self.get_logger().info(
            f"active: image '{p.image_topic}' ({p.image_qos}), speech '{p.speech_topic}', e-stop '{p.estop_topic}'"
        )
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self._deactivate("node deactivated")
        return super().on_deactivate(state)

    def _deactivate(self, reason: str) -> None:
        self._active = False
        if self._camera is not None:
            self._camera.close()
        self._camera = None
        if getattr(self, "_standing_timer", None) is not None:
            self.destroy_timer(self._standing_timer)
            self._standing_timer = None
        if self._engine is not None:
            self._engine.stop(reason)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model and publishers released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self._deactivate("node shutting down")
        self._release()
        self.close_inputs()
        return TransitionCallbackReturn.SUCCESS

    def close_inputs(self) -> None:
        """Stop listening to speech (the node is finalized or its process ends). Idempotent."""
        speech = getattr(self, "_speech", None)  # None too for a node whose __init__ failed
        if speech is not None:
            speech.close()
        self._speech, self._speech_key = None, None

    def destroy_node(self) -> None:
        self.close_inputs()  # the speech side node and its thread go with this node
        estop = getattr(self, "_estop_ingest", None)
        if estop is not None:
            estop.close()
            self._estop_ingest = None
        super().destroy_node()

    def on_error(self, state: State) -> TransitionCallbackReturn:
        self.get_logger().error("error during a transition; releasing resources")
        self._deactivate("node error")
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        if self._engine is not None:
            self._engine.stop("node cleaned up")
        self._engine = None
        for timer in self._timers:
            self.destroy_timer(timer)
        self._timers.clear()
        for pub in [*self._pubs.values(), *self._routed_pubs.values()]:
            self.destroy_lifecycle_publisher(pub)
        self._pubs.clear()
        self._routed_pubs.clear()
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        if self._ask is not None:
            self.destroy_service(self._ask)
            self._ask = None
        self._model = None
        self._second = None
        had_registry = self._registry is not None
        self._registry = None
        self._routing = None
        if had_registry:
            self._publish_registry()
        gc.collect()
        torch = sys.modules.get("torch")  # never imported here: the onnx backend runs without it
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
        # Hand the freed model back to the OS (env.sh's 1 GB trim threshold would keep it).
        from octopus_ros.heap import release_free_memory

        release_free_memory()

    def _publish_registry(self) -> None:
        """~/function_registry: the registry YAML of the loaded model ("" when none is loaded)."""
        text = ""
        if self._registry is not None:
            import yaml

            text = yaml.safe_dump(self._registry.interface_dict(), allow_unicode=True, sort_keys=False)
        if self.context.ok():
            self._registry_pub.publish(String(data=text))

    def _parameters_failed(self, parameters: list, error: Exception) -> Any:
        from rcl_interfaces.msg import SetParametersResult

        return SetParametersResult(successful=False, reason=f"{type(error).__name__}: {error}")

    @_guarded("parameters", _parameters_failed)
    def _on_set_parameters(self, parameters: list) -> Any:
        result = P.validate_update(parameters, active=self._active)
        if result.successful and self._engine is not None:
            for p in parameters:
                if p.name == "allowed_functions":
                    names = P.check_value(p.name, p.value)
                    unknown = [n for n in names if self._registry.by_name(n) is None]
                    if unknown:
                        result.successful = False
                        result.reason = f"allowed_functions names unknown functions {unknown}"
                        return result
                    try:  # the fixed examples must stay calls the node allows
                        parse_context_examples(self._engine.config.context_examples, self._registry, names)
                    except ValueError as e:
                        result.successful = False
                        result.reason = str(e)
                        return result
                    self._engine.config.allowlist = names
                elif p.name == "context_examples":  # static: checked now, applied at the next configure
                    try:
                        parse_context_examples(
                            P.check_value(p.name, p.value), self._registry, self._engine.config.allowlist
                        )
                    except ValueError as e:
                        result.successful = False
                        result.reason = str(e)
                        return result
                elif p.name in (
                    "confidence_threshold",
                    "max_image_age",
                    "max_text_novelty",
                    "max_image_novelty",
                    "max_request_novelty",
                    "grounding_threshold",
                ):
                    setattr(self._engine.config, p.name, float(p.value))
        return result

    # ------------------------------------------------------------------ inputs
    def _now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _frame(self, msg: Any, decode: Any, *, shrink: Any = None, problem: str | None = None) -> Frame:
        """Metadata of an image message; a bad stamp or header makes it a malformed frame.

        ``problem``: what a check of the pixels' header already found ("" = valid); None = check now.
        """
        now = self._now()
        stamp = msg.header.stamp
        stamp_problem = check_stamp(
            stamp.sec, stamp.nanosec, now=now, future_tolerance=self._params.max_future_stamp
        )
        seconds = stamp.sec + stamp.nanosec * 1e-9
        if stamp_problem or self._params.image_age_source == "receipt":
            seconds = 0.0  # Frame.time is then the receipt time
        if problem is None:
            problem = self._bridge.check(msg)  # header/size checks only: microseconds, no decoding
        return Frame(
            seq=next(self._frame_seq),
            stamp=seconds,
            received=now,
            frame_id=msg.header.frame_id,
            decode=decode,
            problem=stamp_problem or problem,
            shrink=shrink,
        )

    def _frame_failed(self, msg: Any, error: Exception) -> None:
        # The newest frame is unreadable: mark it so, rather than let an older frame answer for it.
        if self._engine is not None:
            self._engine.on_frame(
                Frame(
                    next(self._frame_seq), 0.0, self._now(), "", _unreadable, f"unreadable message: {error}"
                )
            )

    def _camera_frame(self, msg: Any) -> Frame:
        """The header and a zero-copy view of the pixels (RawImage / CompressedImageData): nothing
        is converted on the callback thread. The engine converts the frame it uses, once, at the
        model's input scale (Frame.shrink)."""
        try:
            pixels = self._bridge.view(msg)
        except ImageConversionError as e:
            error = e

            def refuse(*_: Any) -> Any:
                raise error

            return self._frame(msg, refuse, problem=str(e))
        return self._frame(msg, pixels.rgb, shrink=pixels.rgb, problem="")

    @_guarded("image", _frame_failed)
    def _on_image(self, msg: Image) -> None:
        self._engine.on_frame(self._camera_frame(msg))

    @_guarded("compressed_image", _frame_failed)
    def _on_compressed(self, msg: CompressedImage) -> None:
        self._engine.on_frame(self._camera_frame(msg))

    def _speech_failed(self, msg: String, info: Any, error: Exception) -> None:
        # Exactly one outcome per utterance, even when handling it failed.
        request = Request(
            id=self._new_id("utt"), text=str(msg.data), source=Source.UTTERANCE, arrived=self._now()
        )
        code = OutcomeCode.INVALID_INPUT if self._engine is not None else OutcomeCode.NOT_ACTIVE
        result = Result(request, code, f"could not handle the utterance: {type(error).__name__}: {error}")
        result.finished = self._now()
        self._on_result(result)

    @_guarded("speech", _speech_failed)
    def _on_speech(self, msg: String, info: Any) -> None:
        self._count_speech_gaps(info)
        request = Request(id=self._new_id("utt"), text=msg.data, source=Source.UTTERANCE, arrived=self._now())
        self.get_logger().info(f"[{request.id}] utterance: {echo_text(msg.data, self._echo_limit())!r}")
        engine = self._engine
        if engine is None or not self._active:
            state = "unconfigured (configure and activate it)" if engine is None else "inactive (activate it)"
            result = Result(request, OutcomeCode.NOT_ACTIVE, f"node is not active: it is {state}")
            result.finished = self._now()
            self._on_result(result)
            return
        engine.submit(request)

    def _echo_limit(self) -> int:
        """How much of an utterance logs and messages repeat: the length the node accepts."""
        if self._params is not None:
            return self._params.max_utterance_length
        return int(P.PARAMETERS["max_utterance_length"].default)

    def _listen_speech(self, topic: str, depth: int) -> None:
        """Subscribe to speech and publish ~/outcomes (both as deep as ``depth``, so a burst's
        answers are not overwritten), unless already so; see the module docstring."""
        if self._outcomes_pub is None or self._outcomes_depth != depth:
            if self._outcomes_pub is not None:
                self.destroy_publisher(self._outcomes_pub)
            self._outcomes_pub = self.create_publisher(Outcome, "~/outcomes", depth)
            self._outcomes_depth = depth
        if self._speech_key == (topic, depth):
            return
        self.close_inputs()
        if not topic:
            return
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        # Not on this node's executor: an utterance would wait for it to walk ~25 entities.
        speech = IngestNode(self, "speech")
        try:
            speech.subscribe(String, topic, self._on_speech, qos)
        except Exception:
            speech.close()
            raise
        self._speech, self._speech_key = speech, (topic, depth)

    def _count_speech_gaps(self, info: Any) -> None:
        """Count utterances a publisher sent that this reader never got (publication sequence gaps)."""
        seq = (info or {}).get("publication_sequence_number")
        if seq is None or (info or {}).get("publisher_gid") is None:
            return  # without the publisher's gid (rclpy before 2025) two publishers cannot be told apart
        gid = repr(info["publisher_gid"])
        last = self._speech_seen.get(gid)
        if last is not None and seq > last + 1:
            self._speech_gaps += seq - last - 1
            self.get_logger().warning(
                f"speech: {seq - last - 1} utterance(s) lost in transport before this node"
            )
        if last is None or seq > last:
            self._speech_seen[gid] = seq

    # ------------------------------------------------------------------ e-stop
    def _subscribe_estop(self, topic: str) -> None:
        """Listen to the e-stop in every lifecycle state, with two QoS profiles.

        reliable + transient-local receives a latched e-stop published before this node
        started; best-effort + volatile matches every publisher (a transient-local reader
        alone would be incompatible with volatile publishers such as ``ros2 topic pub``).
        Duplicates (the same message through both) and stale messages are dropped by
        publisher and sequence number.
        """
        if topic == self._estop_topic:
            return
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        volatile = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=10,
            reliability=ReliabilityPolicy.BEST_EFFORT,
            durability=DurabilityPolicy.VOLATILE,
        )
        new = IngestNode(self, "estop") if topic else None
        try:  # the new subscriptions first: a name rcl refuses leaves the old ones listening
            for qos in (latched, volatile) if new is not None else ():
                new.subscribe(Bool, topic, self._on_estop, qos)
        except Exception:
            new.close()
            raise
        old, self._estop_ingest, self._estop_topic = self._estop_ingest, new, topic
        if old is not None:
            old.close()

    @_guarded("estop")
    def _on_estop(self, msg: Bool, info: Any) -> None:
        if not fresh_estop(self._estop_seen, info or {}):
            return  # the same message through the other subscription, or an older one
        self._set_estop(
            bool(msg.data), f"e-stop {'engaged' if msg.data else 'released'} on {self._estop_topic}"
        )

    def _set_estop(self, engaged: bool, reason: str) -> None:
        with self._lock:  # waits for a publication in flight: after this, nothing more is published
            changed = engaged != self._estop
            self._estop = engaged  # state first: nothing below may keep an e-stop from taking effect
            self._estop_reason = reason if engaged else ""
        engine = self._engine
        if engine is not None:
            engine.set_estop(engaged)
        if changed:
            self._estop_state_pub.publish(Bool(data=engaged))
        if changed and engaged:
            self.get_logger().warning(f"{reason}; publication blocked")
        elif changed:
            self.get_logger().info(reason)

    @_guarded("standing")
    def _on_standing_tick(self) -> None:
        if self._engine is None or self._engine.estop:
            return
        self._engine.submit(
            Request(
                id=self._new_id("standing"),
                text=self._params.standing_instruction,
                source=Source.STANDING_INSTRUCTION,
                arrived=self._now(),
            )
        )

    def _ask_failed(self, request: Ask.Request, response: Ask.Response, error: Exception) -> Ask.Response:
        response.outcome = Outcome(
            request_id=request.request_id,
            code=Outcome.INVALID_INPUT,
            code_name="INVALID_INPUT",
            reason=f"could not handle the request: {type(error).__name__}: {error}",
            utterance=echo_text(str(request.text), self._echo_limit()),
        )
        return response

    @_guarded("ask", _ask_failed)
    async def _on_ask(self, request: Ask.Request, response: Ask.Response) -> Ask.Response:
        rid = request.request_id or self._new_id("ask")
        engine = self._engine
        if not self._active or engine is None:
            response.outcome = Outcome(
                request_id=rid,
                code=Outcome.NOT_ACTIVE,
                code_name="NOT_ACTIVE",
                reason="node is not active",
                utterance=echo_text(request.text, self._echo_limit()),
            )
            return response
        image = None
        if len(request.image.data) > 0:
            image = self._service_frame(request.image, "image")
        elif len(request.compressed_image.data) > 0:
            image = self._service_frame(request.compressed_image, "compressed")
        executor = self.executor
        if executor is None:  # not spun by an executor (never in the node's own main)
            raise RuntimeError("~/ask needs the node to be spun by an executor")
        answer = executor.create_future()
        answer.add_done_callback(lambda _: None)  # its completion then wakes the executor
        settle_lock = threading.Lock()
        decided: list[Result] = []
        got = threading.Event()

        def settle(res: Result | None) -> None:  # the first answer stands (engine or deadline)
            with settle_lock:
                if answer.done():
                    return
                answer.set_result(res)
            # The done callback wakes the executor; a wake that lands while this coroutine is
            # being resumed for another reason is missed, so wake it once more a little later.
            later = threading.Timer(0.05, executor.wake)
            later.daemon = True
            later.start()

        def done(res: Result) -> None:
            decided.append(res)
            got.set()
            settle(res)

        req = Request(
            id=rid,
            text=request.text,
            source=Source.SERVICE,
            arrived=self._now(),
            image=image,
            publish=request.publish,
            done=done,
        )
        wait = self._params.ask_timeout or self._params.request_timeout + 30.0
        limit = f"{self._params.ask_timeout:g}" if self._params.ask_timeout else "0: request_timeout + 30 s"
        reason = f"no answer within {wait:g} s (ask_timeout {limit})"
        deadline = threading.Timer(wait, settle, args=(None,))
        deadline.daemon = True
        engine.submit(req)
        if not req.finished:
            try:
                deadline.start()
            except Exception:
                engine.abandon(req, reason)  # no deadline: the caller is answered TIMEOUT now
                raise
        # This coroutine yields here: no executor thread is held while the model decides.
        result = await answer
        deadline.cancel()
        # Past the deadline: abandoned, nothing of it is published later; unless it finished as the
        # deadline passed, and then its outcome stands (the engine is calling back).
        if result is None and (engine.abandon(req, reason) or not got.wait(timeout=5.0) or not decided):
            response.outcome = Outcome(
                request_id=rid,
                code=Outcome.TIMEOUT,
                code_name="TIMEOUT",
                reason=reason,
                utterance=echo_text(req.text, self._echo_limit()),
            )
            return response
        if result is None:
            result = decided[0]
        response.outcome = self._outcome_msg(result)
        if result.code == OutcomeCode.OK:
            response.call = self._call_msg(result)
        return response

    def _service_frame(self, msg: Any, kind: str) -> Frame:
        convert = self._bridge.image_to_rgb if kind == "image" else self._bridge.compressed_to_rgb
        frame = self._frame(msg, lambda: convert(msg))
        # A caller-provided image is used whatever its age: give it the request's time.
        return Frame(frame.seq, 0.0, frame.received, frame.frame_id, frame.decode, frame.problem)

    def _new_id(self, kind: str) -> str:
        return f"{kind}-{self._id_prefix}-{next(self._ids):05d}"

    # ------------------------------------------------------------------ outputs
    def _on_result(self, result: Result) -> None:
        """Publish one result: the call (+ routed messages) when OK, then its outcome."""
        request = result.request
        log = self.get_logger()
        if request.source == Source.STANDING_INSTRUCTION and result.code != OutcomeCode.OK:
            return  # standing evaluations that do not act are counted, not published
        published_call = False
        if result.raw_text:  # the model decided: its novelty scores go to the diagnostics
            self._last_novelty = (result.text_novelty, result.image_novelty, result.request_novelty)
        if result.code == OutcomeCode.OK and request.publish:
            with self._lock:  # the e-stop cannot engage between this check and the publication
                if self._estop:
                    result.code = OutcomeCode.ESTOP
                    result.reason = "e-stop engaged before publication"
                else:
                    self._publish("calls", self._call_msg(result))
                    self._publish_routes(result)
                    published_call = True
        self._publish("outcomes", self._outcome_msg(result))
        line = (
            f"[{request.id}] {result.code.name}: {result.reason} "
            f"(latency {result.latency * 1000:.1f} ms, model {result.inference_s * 1000:.1f} ms)"
        )
        if published_call:
            log.info(f"{line} -> {result.call.to_text()}")
        elif result.code in (OutcomeCode.OK, OutcomeCode.NO_ACTION):
            log.info(line)
        else:
            log.warning(line)

    def _publish(self, key: str, msg: Any) -> None:
        pub = self._outcomes_pub if key == "outcomes" else self._pubs.get(key)
        if pub is not None:
            self._send(pub, msg, key)

    def _send(self, pub: Any, msg: Any, what: str) -> None:
        """Publish, unless the ROS context is going away under a result still in flight.

        Ctrl-C (or ``ros2 launch`` stopping the node) shuts the context down from the signal
        handler while the engine thread may be finishing a request; that result can no longer
        reach anyone, so it is logged as dropped instead of raising from the worker thread.
        """
        if self.context.ok():
            try:
                pub.publish(msg)
                return
            except Exception:
                if self.context.ok():
                    raise
        self.get_logger().warning(f"shutting down: {what} message not published")

    def _publish_routes(self, result: Result) -> None:
        if self._routing is None:
            return
        try:
            routed = self._routing.route(result.call)
        except Exception as e:
            self.get_logger().error(f"[{result.request.id}] routing failed: {e}")
            return
        for topic, msg in routed:
            pub = self._routed_pubs.get((topic, type(msg)))
            if pub is not None:
                if hasattr(msg, "header"):
                    msg.header.stamp = self.get_clock().now().to_msg()
                self._send(pub, msg, topic)

    def _header(self, result: Result) -> Any:
        from std_msgs.msg import Header

        header = Header()
        frame = result.frame
        if frame is not None:
            header.stamp = _stamp_msg(frame.time)
            header.frame_id = frame.frame_id
        if self._params is not None and self._params.frame_id_override:
            header.frame_id = self._params.frame_id_override
        return header

    def _call_msg(self, result: Result) -> FunctionCall:
        call = result.call
        return FunctionCall(
            header=self._header(result),
            request_id=result.request.id,
            source=int(result.request.source),
            function_name=call.function,
            function_token=int(call.token),
            arguments=[argument_msg(a) for a in call.args],
            confidence=float(result.confidence),
            language=result.language,
            utterance=echo_text(result.request.text, self._echo_limit()),
            raw_output=result.raw_text,
            image_age=_duration(result.image_age),
            inference_latency=_duration(result.inference_s),
            text_novelty=float(result.text_novelty),
            image_novelty=float(result.image_novelty),
            request_novelty=float(result.request_novelty),
            grounding_score=float(result.grounding_score),
            copy_probability=float(result.copy_probability),
        )

    def _outcome_msg(self, result: Result) -> Outcome:
        header = self._header(result)
        header.stamp = _stamp_msg(result.finished)
        return Outcome(
            header=header,
            request_id=result.request.id,
            code=int(result.code),
            code_name=result.code.name,
            reason=result.reason,
            utterance=echo_text(result.request.text, self._echo_limit()),
            function_name=result.call.function if result.call is not None else "",
            confidence=float(result.confidence),
            latency=_duration(result.latency),
        )

    # ------------------------------------------------------------------ diagnostics
    @_guarded("diagnostics")
    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        engine = self._engine
        status = DiagnosticStatus(
            name=f"{self.get_fully_qualified_name()}: octopus", hardware_id="octopus_model"
        )
        values = {
            "model_loaded": str(self._model is not None),
            "model": getattr(self, "_model_desc", ""),
            "device": self._params.device if self._params else "",
            "precision": self._params.precision if self._params else "",
            "active": str(self._active),
            "estop": str(self._estop),
            "estop_reason": self._estop_reason,
            "speech_lost_in_transport": str(self._speech_gaps),
            "last_text_novelty": f"{self._last_novelty[0]:.3f}",
            "last_image_novelty": f"{self._last_novelty[1]:.3f}",
            "last_request_novelty": f"{self._last_novelty[2]:.4f}",
            "grounding": getattr(self, "_grounding_desc", ""),
        }
        for what, count in sorted(self._callback_errors.items()):
            values[f"callback_errors_{what}"] = str(count)
        if engine is not None:
            snap = engine.snapshot()
            values["queued"] = str(snap["queued"])
            for key, count in sorted(snap["counts"].items()):
                values[key] = str(count)
            for stage, pct in sorted(snap["latency"].items()):
                values[f"latency_{stage}_p50_ms"] = f"{pct[50] * 1000:.2f}"
                values[f"latency_{stage}_p95_ms"] = f"{pct[95] * 1000:.2f}"
            if self._estop:
                status.level, status.message = DiagnosticStatus.WARN, "e-stop engaged"
            elif not self._active:
                status.level, status.message = DiagnosticStatus.OK, "configured, inactive"
            else:
                status.level, status.message = DiagnosticStatus.OK, "active"
        else:
            status.level, status.message = DiagnosticStatus.WARN, "model not loaded"
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._send(self._diag_pub, array, "diagnostics")


def usage() -> str:
    """``octopus_node --help``: how to start it and every parameter with its default."""
    lines = [
        "usage: octopus_node [--ros-args -p NAME:=VALUE ...]",
        "",
        "camera + speech in, typed function calls out (a managed lifecycle node; see the README).",
        "With autostart:=true it configures and activates itself; otherwise launch/octopus.launch.py",
        "or the lifecycle services drive it. Parameters (also in config/octopus.yaml):",
        "",
    ]
    for name, spec in P.PARAMETERS.items():
        lines.append(f"  {name} (default {spec.default!r}): {spec.description}")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    import os

    from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException

    from octopus_ros.heap import limit_malloc_arenas

    argv = sys.argv[1:] if args is None else list(args)
    own = argv[: argv.index("--ros-args")] if "--ros-args" in argv else argv
    if "-h" in own or "--help" in own:
        print(usage())
        return
    if "MALLOC_ARENA_MAX" not in os.environ:  # e.g. started by ros2 launch, not through scripts/env.sh
        limit_malloc_arenas()  # before any thread starts: keeps lifecycle cycles from growing RSS
    rclpy.init(args=args)
    try:
        node = OctopusNode()
    except (InvalidParameterTypeException, InvalidParameterValueException) as e:  # -p x:=<bad> at start
        print(f"octopus_node: error: {e}", file=sys.stderr)
        rclpy.try_shutdown()
        sys.exit(2)
    executor = MultiThreadedExecutor(num_threads=EXECUTOR_THREADS)
    executor.add_node(node)
    try:
        while rclpy.ok():
            try:
                executor.spin()
            except (KeyboardInterrupt, ExternalShutdownException):
                break
            except Exception as e:
                node.get_logger().error(f"executor: {type(e).__name__}: {e}; the node keeps spinning")
    finally:
        node._deactivate("node shutting down")
        node._release()
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
