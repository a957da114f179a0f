"""Every parameter of octopus_node, declared in one place with descriptors and checks.

The table below is the single source of truth: ``declare_parameters`` declares each
entry with its description and range, ``read_parameters`` returns a validated
:class:`NodeParams`, and ``config/octopus.yaml`` documents the same defaults (a test
keeps the YAML and this table in step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.parameter import Parameter

from octopus_ros.runtime.context import ContextExampleError, parse_context_examples

DEVICES = ("cpu", "cuda")
PRECISIONS = ("fp32", "int8", "fp16", "bf16", "int4")
DECODE_MODES = ("constrained", "generate", "plain")
VISION_BACKENDS = ("torch", "onnx", "onnx-int8")
BACKENDS = ("torch", "onnx")
IMAGE_QOS = ("sensor_data", "reliable")
AGE_SOURCES = ("stamp", "receipt")


@dataclass(frozen=True)
class Spec:
    default: Any
    description: str
    choices: tuple[str, ...] = ()
    min: float | None = None
    max: float | None = None
    dynamic: bool = False  # may change while active (applied at once); others apply at next configure


# name -> Spec. Order is the order of `ros2 param list` and of config/octopus.yaml.
PARAMETERS: dict[str, Spec] = {
    "autostart": Spec(
        False,
        "Configure and activate at start-up (for use without launch's lifecycle events or the ros2 CLI).",
    ),
    # --- model
    "model_path": Spec("", "Checkpoint directory of the Octopus model; empty = the bundled default model."),
    "second_opinion": Spec(
        "auto",
        "A second model that must make the same call before one is published (a model trained apart "
        "seldom makes the same mistake on what neither was taught; it decides only requests the first "
        "would publish: about twice the memory, and twice the model time on those): auto = the "
        "checkpoint's second_opinion/ folder when it has one (the bundled model does), '' or none = no second "
        "model, or a checkpoint directory with the same functions. Loaded like model_path (backend, device, "
        "precision).",
    ),
    "backend": Spec(
        "torch",
        "Model runtime: torch, or onnx = the whole model on onnxruntime with no torch in the process (the "
        "checkpoint's onnx/ export: python -m octopus_ros.model.onnx_export_all <model_path> --int8 [--int4]; "
        "precision fp32, int8 or int4 picks its graphs, device cuda uses onnxruntime-gpu).",
        BACKENDS,
    ),
    "device": Spec("cpu", "Inference device: cpu (Raspberry Pi, x86) or cuda (Jetson).", DEVICES),
    "precision": Spec(
        "fp32",
        "Weights precision: fp32, int8 (CPU dynamic quantization), fp16/bf16 (CUDA), int4 (backend onnx only: "
        "4-bit LM weights, onnxruntime MatMulNBits).",
        PRECISIONS,
    ),
    "vision_backend": Spec(
        "torch",
        "Image encoder runtime: torch, or onnxruntime (onnx, onnx-int8) from the checkpoint's vision.onnx.",
        VISION_BACKENDS,
    ),
    "functions_file": Spec(
        "", "Function registry YAML (e.g. to disable functions); empty = the checkpoint's functions.yaml."
    ),
    "decode_mode": Spec(
        "constrained",
        "constrained = grammar-constrained functional-token decoding (safe, fast); generate/plain = baselines.",
        DECODE_MODES,
    ),
    "threads": Spec(
        0,
        "CPU threads of the model: torch's, or onnxruntime's intra-op threads with backend onnx; 0 = the library's default.",
        min=0,
        max=64,
    ),
    "context_examples": Spec(
        [""],
        "Fixed in-context examples the model sees before every request, each 'utterance => call' "
        "(e.g. \"pick up the red cup => pick_up('red cup')\"; at most 8); every call must be a valid "
        "call of the registry, else configure fails naming the entry; [''] or [] = none. Measured on "
        "the bundled model, which was not trained with examples: see the README before using it.",
    ),
    # --- topics
    "image_topic": Spec("/camera/image_raw", "sensor_msgs/Image input; empty disables."),
    "compressed_image_topic": Spec("", "sensor_msgs/CompressedImage input (jpeg/png); empty disables."),
    "speech_topic": Spec("/speech/text", "std_msgs/String utterances from any ASR node."),
    "estop_topic": Spec(
        "/estop", "std_msgs/Bool e-stop: true blocks all publication and cancels pending work."
    ),
    "routing_file": Spec(
        "",
        "YAML routing of functions to standard typed topics; empty = config/routing.yaml; 'none' disables.",
    ),
    # --- QoS
    "image_qos": Spec(
        "sensor_data", "Camera QoS: sensor_data (best effort, keep last) or reliable (keep last).", IMAGE_QOS
    ),
    "image_qos_depth": Spec(1, "Camera subscription history depth (keep-last).", min=1, max=100),
    "output_qos_depth": Spec(10, "History depth of ~/function_calls and routed topics.", min=1, max=1000),
    "speech_qos_depth": Spec(
        1000,
        "Speech subscription history (reliable, keep-last) and ~/outcomes publisher depth: the largest "
        "burst of utterances that is answered (excess ones BUSY) instead of lost; see the README.",
        min=10,
        max=100000,
    ),
    # --- safety and policy
    "allowed_functions": Spec(
        [""],
        "Functions the node may decide and publish (names from functions.yaml); [''] or [] = every enabled one.",
        dynamic=True,
    ),
    "confidence_threshold": Spec(
        0.5,
        "Calls with model confidence below this are REJECTED_LOW_CONFIDENCE.",
        min=0.0,
        max=1.0,
        dynamic=True,
    ),
    "max_text_novelty": Spec(
        0.3,
        "Decline (NO_ACTION, 'not understood') a call when this share (0..1) of the utterance's words "
        "(characters in Chinese) never appeared in the model's training text; 0 = off. Needs the "
        "model's training_vocab.json.",
        min=0.0,
        max=1.0,
        dynamic=True,
    ),
    "max_image_novelty": Spec(
        1.5,
        "Decline (NO_ACTION, 'image unlike training') a call when the image's distance from the training "
        "scenes (Mahalanobis, in units of the training scenes' 99th percentile) is above this; 0 = off. "
        "Needs the model's image_profile.safetensors.",
        min=0.0,
        max=1000.0,
        dynamic=True,
    ),
    "max_request_novelty": Spec(
        0.99,
        "Decline (NO_ACTION, 'not understood') a call when the model's own reading of the request "
        "(its last hidden state) is more like the requests it was taught to decline than that of this "
        "share (0..1) of its training requests; 1 - this = the share of training-like requests "
        "declined. 0 or 1 = off. Needs the model's request_profile.safetensors.",
        min=0.0,
        max=1.0,
        dynamic=True,
    ),
    "grounding_threshold": Spec(
        -1.0,
        "Refuse (NOT_IN_VIEW) a call of a requires_view function (functions.yaml) when the model's "
        "grounding head scores its object below this (0..1); -1 = the threshold the head was "
        "validated at (its grounding.json), 0 = off. Without grounding.json, or for an object word "
        "the head does not know, nothing is blocked.",
        min=-1.0,
        max=1.0,
        dynamic=True,
    ),
    "colour_check": Spec(
        "head",
        "How sure the grounding head must be that a named colour is not there before a call is refused "
        "NOT_IN_VIEW ('the red cup is there, not the blue one'): head = the rule the head was validated "
        "with (its grounding.json), none = never refuse a colour, 'NAMED_BELOW,OTHER_AT_LEAST' (e.g. "
        "'0.2,0.3') = refuse when the named colour scores below the first and another colour of that "
        "object at least the second. Stricter acts on fewer absent colours and holds back more right "
        "calls (README, 'Absent objects, measured at scale'). Both models' heads. Applied at configure.",
    ),
    "safety_screen": Spec(
        "default",
        "Decline (NO_ACTION, 'unsafe request (...)') an utterance that names a hazard (fire, harm to a "
        "person or animal, strangers let in, ...) whatever the model decided: 'default' = the package's "
        "runtime/safety.yaml, a path = your own file (same schema), '' = no screen. Read at configure.",
    ),
    "max_image_age": Spec(
        1.0,
        "Seconds: an utterance needs a camera frame at most this old, else NO_FRESH_IMAGE.",
        min=0.0,
        max=3600.0,
        dynamic=True,
    ),
    "max_future_stamp": Spec(
        1.0,
        "Seconds: a frame stamped further than this after the node's clock is INVALID_INPUT "
        "(negative and malformed stamps always are).",
        min=0.0,
        max=3600.0,
    ),
    "image_age_source": Spec(
        "stamp",
        "Frame time for max_image_age: its header stamp (receipt time if unstamped) or receipt.",
        AGE_SOURCES,
    ),
    "rate_limit": Spec(
        5.0, "Utterances per second accepted (token bucket); 0 = unlimited.", min=0.0, max=1000.0
    ),
    "rate_burst": Spec(3, "Utterances accepted back to back before the rate limit applies.", min=1, max=1000),
    "queue_depth": Spec(4, "Pending utterances beyond this are answered BUSY.", min=1, max=1000),
    "request_timeout": Spec(
        5.0,
        "Seconds a request may wait in the queue before it is answered TIMEOUT (the time the model "
        "then takes to decide is not counted; its latency is in /diagnostics).",
        min=0.01,
        max=3600.0,
    ),
    "ask_timeout": Spec(
        0.0,
        "Seconds an ~/ask call waits for its answer before it is answered TIMEOUT; a request still "
        "queued then leaves the queue, and a decision that comes later is not published (its "
        "outcome on ~/outcomes is TIMEOUT). 0 = request_timeout + 30 s.",
        min=0.0,
        max=3600.0,
    ),
    "max_utterance_length": Spec(200, "Longer utterances are INVALID_INPUT.", min=1, max=10000),
    "max_image_side": Spec(4096, "Images with a larger side are INVALID_INPUT.", min=16, max=16384),
    "estop_on_start": Spec(
        False,
        "Start with the e-stop engaged: nothing is published until false arrives on estop_topic. "
        "A latched (transient-local) e-stop is honoured at start either way.",
    ),
    # --- vision prefetch and standing instruction
    "prefetch_rate": Spec(
        5.0, "Hz at which the idle node pre-encodes the newest frame; 0 disables.", min=0.0, max=100.0
    ),
    "prefetch_max_lag": Spec(
        0.25,
        "Seconds: an utterance uses the pre-encoded frame when it is at most this much older than the newest "
        "frame (skips the vision encoder); 0 = always encode the newest frame.",
        min=0.0,
        max=10.0,
    ),
    "prefetch_max_change": Spec(
        0.02,
        "The pre-encoded frame stands in for the newest only when the scene is the same: mean absolute "
        "difference of 16x16 grey thumbnails (0..1) at most this; a new scene is always encoded afresh.",
        min=0.0,
        max=1.0,
    ),
    "standing_instruction": Spec(
        "",
        "Instruction evaluated on frames at standing_rate (e.g. 'if you see a fallen cup, pick it up'); empty = off.",
    ),
    "standing_rate": Spec(0.5, "Hz of standing-instruction evaluations.", min=0.01, max=30.0),
    "standing_cooldown": Spec(
        10.0,
        "Seconds before a standing instruction may repeat the same call (and only if the scene changed); "
        "a different call acts at once.",
        min=0.0,
        max=86400.0,
    ),
    "standing_scene_change": Spec(
        0.08,
        "Scene change (mean absolute difference of 16x16 grey thumbnails, 0..1) needed before a standing "
        "instruction repeats the same call.",
        min=0.0,
        max=1.0,
    ),
    # --- output
    "frame_id_override": Spec("", "If set, frame_id of published calls instead of the image's frame_id."),
    "diagnostics_rate": Spec(1.0, "Hz of /diagnostics status.", min=0.1, max=50.0),
}


@dataclass(frozen=True)
class NodeParams:
    """Validated values of every parameter (attribute names = parameter names)."""

    autostart: bool
    model_path: str
    second_opinion: str
    backend: str
    device: str
    precision: str
    vision_backend: str
    functions_file: str
    decode_mode: str
    threads: int
    context_examples: tuple[str, ...]
    image_topic: str
    compressed_image_topic: str
    speech_topic: str
    estop_topic: str
    routing_file: str
    image_qos: str
    image_qos_depth: int
    output_qos_depth: int
    speech_qos_depth: int
    allowed_functions: tuple[str, ...]
    confidence_threshold: float
    max_text_novelty: float
    max_image_novelty: float
    max_request_novelty: float
    grounding_threshold: float
    colour_check: str
    safety_screen: str
    max_image_age: float
    max_future_stamp: float
    image_age_source: str
    rate_limit: float
    rate_burst: int
    queue_depth: int
    request_timeout: float
    ask_timeout: float
    max_utterance_length: int
    max_image_side: int
    prefetch_rate: float
    prefetch_max_lag: float
    prefetch_max_change: float
    standing_instruction: str
    estop_on_start: bool
    standing_rate: float
    standing_cooldown: float
    standing_scene_change: float
    frame_id_override: str
    diagnostics_rate: float


def _descriptor(name: str, spec: Spec) -> ParameterDescriptor:
    text = spec.description
    if spec.choices:
        text += f" One of: {', '.join(spec.choices)}."
    if not spec.dynamic:
        text += " (Applied at configure.)"
    d = ParameterDescriptor(name=name, description=text)
    if spec.min is not None:
        if isinstance(spec.default, int):
            d.integer_range = [IntegerRange(from_value=int(spec.min), to_value=int(spec.max), step=1)]
        elif isinstance(spec.default, float):
            d.floating_point_range = [
                FloatingPointRange(from_value=float(spec.min), to_value=float(spec.max))
            ]
    if spec.choices:
        d.additional_constraints = f"one of {list(spec.choices)}"
    return d


def declare_parameters(node) -> None:
    """Declare every parameter on ``node`` (call once, in the constructor)."""
    # allowed_functions defaults to [''] rather than [] so its type is a string array.
    for name, spec in PARAMETERS.items():
        node.declare_parameter(name, spec.default, _descriptor(name, spec))


class ParameterValueError(ValueError):
    """A parameter value is not acceptable; the message names the parameter."""


def check_value(name: str, value: Any) -> Any:
    """Validate one value against its spec; return it normalised or raise ParameterValueError."""
    spec = PARAMETERS.get(name)
    if spec is None:
        raise ParameterValueError(f"unknown parameter {name!r}")
    if spec.choices and value not in spec.choices:
        raise ParameterValueError(f"{name} must be one of {list(spec.choices)}, got {value!r}")
    if spec.min is not None and not (spec.min <= value <= spec.max):
        raise ParameterValueError(f"{name} must be in [{spec.min}, {spec.max}], got {value!r}")
    if name == "allowed_functions":
        return tuple(v.strip() for v in value if v and v.strip())
    if name == "context_examples":  # the form here; the calls against the registry at configure
        try:
            parse_context_examples(value)
        except ContextExampleError as e:
            raise ParameterValueError(str(e)) from e
        return tuple(v.strip() for v in value if v and v.strip())
    if name == "colour_check":
        from octopus_ros.lean.grounding import colour_check_rule

        try:
            colour_check_rule(value, None)
        except ValueError as e:
            raise ParameterValueError(str(e)) from e
        return value.strip()
    if name.endswith("_topic") and value:
        problem = topic_name_problem(value)
        if problem:
            raise ParameterValueError(f"{name} is not a valid topic name: {value!r} ({problem})")
    return value


def topic_name_problem(topic: str) -> str:
    """'' when ``topic`` is a ROS topic name a node can subscribe to, else why not: the rules
    rcl applies (repeated or trailing '/', a token starting with a digit, characters other than
    alphanumerics and '_', an unknown ``{substitution}``), checked here so that a bad name is
    refused when it is set, never halfway through a transition."""
    from rclpy.expand_topic_name import expand_topic_name
    from rclpy.validate_full_topic_name import validate_full_topic_name
    from rclpy.validate_topic_name import validate_topic_name

    try:
        validate_topic_name(topic)
        validate_full_topic_name(expand_topic_name(topic, "octopus_node", "/"))
    except Exception as e:  # InvalidTopicNameException, or ValueError for a substitution
        first = str(e).splitlines()[0].rstrip(":").split(", at /")[0]  # rcl's source location off
        return first.replace("Invalid topic name: ", "").replace(f"topic name {topic!r} is invalid: ", "")
    return ""


def read_parameters(node) -> NodeParams:
    """Read and validate every parameter; raises ParameterValueError naming the first bad one."""
    values = {name: check_value(name, node.get_parameter(name).value) for name in PARAMETERS}
    if values["precision"] in ("fp16", "bf16") and values["device"] == "cpu":
        node.get_logger().warning(
            f"precision {values['precision']} on cpu is slow; int8 or fp32 is the CPU path"
        )
    if values["backend"] == "onnx":
        if values["vision_backend"] != "torch":
            raise ParameterValueError(
                f"vision_backend {values['vision_backend']!r} applies to backend torch; backend onnx runs "
                "the whole model on onnxruntime (leave vision_backend at torch)"
            )
        if values["precision"] not in ("fp32", "int8", "int4"):
            raise ParameterValueError(
                f"backend onnx takes precision fp32, int8 or int4, got {values['precision']!r}"
            )
        if values["decode_mode"] != "constrained":
            raise ParameterValueError(
                f"backend onnx decodes in decode_mode constrained only, got {values['decode_mode']!r}"
            )
    elif values["precision"] == "int4":
        raise ParameterValueError(
            "precision int4 is the lean runtime's (backend onnx: a 4-bit LM exported with "
            "onnx_export_all --int4); backend torch takes fp32, int8, fp16 or bf16"
        )
    return NodeParams(**values)


def validate_update(parameters: list[Parameter], *, active: bool) -> SetParametersResult:
    """on-set-parameters callback body: reject bad values, and static ones while active."""
    for p in parameters:
        spec = PARAMETERS.get(p.name)
        if spec is None:
            if p.name == "use_sim_time" and active:
                # Switching clocks under live frames would make every stamp look fresh (or stale).
                return SetParametersResult(
                    successful=False,
                    reason="use_sim_time cannot change while the node is active; deactivate it first",
                )
            continue  # other rclpy parameters
        try:
            check_value(p.name, p.value)
        except ParameterValueError as e:
            return SetParametersResult(successful=False, reason=str(e))
        except TypeError as e:
            return SetParametersResult(successful=False, reason=f"{p.name}: {e}")
        if active and not spec.dynamic:
            return SetParametersResult(
                successful=False,
                reason=f"{p.name} applies at configure; deactivate and clean up the node first",
            )
    return SetParametersResult(successful=True)


def render_yaml() -> str:
    """config/octopus.yaml as generated from :data:`PARAMETERS` (descriptions as comments)."""
    import json

    lines = [
        "# Parameters of octopus_node (ros__parameters). Every parameter is declared with a",
        "# description and range in octopus_ros/ros/params.py; this file shows the defaults.",
        "# Generated by `python -m octopus_ros.ros.params > octopus_ros/config/octopus.yaml`.",
        "# Keyed /**/octopus_node so it applies to the node in any namespace.",
        "# Use: ros2 launch octopus_ros octopus.launch.py params_file:=<this file>",
        "#  or: octopus_node --ros-args --params-file <this file>",
        "/**/octopus_node:",
        "  ros__parameters:",
    ]
    for name, spec in PARAMETERS.items():
        choices = f" One of: {', '.join(spec.choices)}." if spec.choices else ""
        lines.append(f"    # {spec.description}{choices}")
        value = spec.default
        text = (
            ("true" if value else "false")
            if isinstance(value, bool)
            else json.dumps(value, ensure_ascii=False)
        )
        lines.append(f"    {name}: {text}")
    return "\n".join(lines) + "\n"


def answer_malformed_parameter_requests(node) -> None:
    """Make the node's set_parameters services answer a request rclpy cannot read.

    rclpy's parameter service turns each ParameterValue of a request into a Parameter first, and a
    value of an unknown type (``type=99``) raises there, before any on-set callback: the caller
    then waits for an answer that never comes. Such a parameter is answered unsuccessful here with
    the reason; the others of the request are set as rclpy sets them (set_parameters_atomically:
    none, as the service promises)."""
    from rcl_interfaces.srv import SetParameters, SetParametersAtomically

    def unreadable(msg) -> str:
        try:
            Parameter.from_parameter_msg(msg)
        except (ValueError, TypeError) as e:
            return f"malformed parameter {msg.name!r}: {e}"
        return ""

    for srv in list(node.services):
        if srv.srv_type not in (SetParameters, SetParametersAtomically):
            continue

        def answer(
            request, response, _callback=srv.callback, _atomic=srv.srv_type is SetParametersAtomically
        ):
            problems = [unreadable(msg) for msg in request.parameters]
            if not any(problems):
                return _callback(request, response)
            node.get_logger().warning("; ".join(p for p in problems if p))
            if _atomic:
                reason = next(p for p in problems if p)
                response.result = SetParametersResult(successful=False, reason=reason)
                return response
            for msg, problem in zip(request.parameters, problems, strict=True):
                if problem:
                    response.results.append(SetParametersResult(successful=False, reason=problem))
                else:
                    one = _callback(SetParameters.Request(parameters=[msg]), SetParameters.Response())
                    response.results.extend(one.results)
            return response

        srv.callback = answer


if __name__ == "__main__":
    print(render_yaml(), end="")
