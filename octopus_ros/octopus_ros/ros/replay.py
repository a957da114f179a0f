"""octopus_replay: replay a run recorded by octopus_record, offline or into a live node, and score it.

    octopus_replay run1 --labels run1.labels.jsonl --offline           # the model reads the bag, no DDS
    octopus_replay run1 --labels run1.labels.jsonl --online            # into a running octopus_node

**Offline** (``octopus_ros.bags.replay``): the node's request policy and model on the bag's clock.

**Online**: the bag's camera and speech messages are published again, at their recorded pace
(``--rate``), to the topics they were recorded on, and the node's ``~/outcomes`` and
``~/function_calls`` are collected. The recorded calls and outcomes are never republished. Each
utterance waits until the previous ones have their outcomes (a slow machine does not turn a replay
into a burst); the wait shifts the rest of the schedule, never the frames' ages.

Time (``--time``):

- ``rebase`` (default): each image's header stamp is moved to the replay's clock, keeping its
  recorded age — stamp = now - (recorded receipt time - recorded stamp) — so a node with the
  default ``image_age_source:=stamp`` sees frames as fresh as they were. Unset stamps stay unset.
- ``keep``: stamps are published as recorded. The node must then run with
  ``-p image_age_source:=receipt`` (it ages frames by their arrival); the replay asks the node for
  that parameter and warns when it is ``stamp``.

Either way a run in which every utterance ends ``NO_FRESH_IMAGE`` is reported as an error (exit
code 3), never as a result.

The bag replayed is the one on the command line; ``--labels`` must be that bag's labels (each
line's utterance is the bag's utterance of the same number), whatever folder the labels file was
moved to. What can be checked in seconds is checked before the model is loaded or the node is
called (flags, --json writable, the bag and its topics, the labels): a mistake costs no replay.
Exit codes: 0 done, 2 bad input (flags, model, bag, labels, or nothing to score: no utterance in
the bag, no line labelled ``ok``), 3 all NO_FRESH_IMAGE, 4 no node.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from octopus_ros.bags import io as bag_io
from octopus_ros.bags import replay as offline
from octopus_ros.cli import number
from octopus_ros.ros.dds_env import MATCH_SETTLE_S
from octopus_ros.runtime.outcomes import echo_matches

log = logging.getLogger("octopus_replay")


PRECISIONS = ("fp32", "int8", "fp16", "bf16")  # what Octopus.load takes (model/precision.py)


def _device(text: str) -> str:
    """cpu, cuda or cuda:N (as the node's device parameter): checked before any model is loaded."""
    if text in ("cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="octopus_replay", description=__doc__.split("\n\n")[0])
    p.add_argument("bag", help="rosbag2 folder written by octopus_record: the bag replayed")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--offline", action="store_true", help="the model reads the bag in this process (no DDS)"
    )
    mode.add_argument("--online", action="store_true", help="republish the bag into a running octopus_node")
    p.add_argument(
        "--labels",
        default="",
        help="labels JSONL of this bag (octopus_label; a file of another bag is an error); default: score "
        "against the node's recorded decisions. Nothing to score (no line ok yet) is an error",
    )
    p.add_argument(
        "--functions", default="", help="function registry YAML (default: the model's / the bundled one)"
    )
    p.add_argument(
        "--json",
        default="",
        help="write metrics and per-utterance rows to this JSON file (checked writable before the replay)",
    )
    p.add_argument(
        "--image-topic", default=None, help="camera topic of the bag, if it has several (must be in the bag)"
    )
    p.add_argument(
        "--speech-topic", default=None, help="speech topic of the bag, if it has several (must be in the bag)"
    )
    off = p.add_argument_group("offline")
    off.add_argument("--model", default="", help="checkpoint directory (default: the bundled model)")
    off.add_argument("--device", type=_device, default="cpu", help="cpu, cuda or cuda:N (offline)")
    off.add_argument("--precision", choices=PRECISIONS, default="fp32", help="model precision (offline)")
    off.add_argument(
        "--second-opinion",
        default="auto",
        help="the second model consulted before a call counts as published, as the node's "
        "second_opinion parameter: auto (the checkpoint's second_opinion/ folder, when it has one: "
        "what the node does by default), off, or a checkpoint directory (offline)",
    )
    off.add_argument(
        "--allowed-functions",
        nargs="*",
        default=[],
        help="allowlist as the node's allowed_functions: names of the registry's functions (offline)",
    )
    off.add_argument(
        "--confidence-threshold",
        type=number(float, low=0.0, high=1.0),
        default=0.5,
        help="0..1, as the node's parameter (offline)",
    )
    off.add_argument(
        "--max-image-age",
        type=number(float, low=0.0, high=3600.0),
        default=1.0,
        help="seconds, 0..3600, as the node's parameter, on bag time (offline)",
    )
    on = p.add_argument_group("online")
    on.add_argument("--node", default="/octopus_node", help="the live node's full name (online)")
    on.add_argument(
        "--time",
        choices=("rebase", "keep"),
        default="rebase",
        help="image stamps: rebase to now, or keep (online)",
    )
    on.add_argument(
        "--rate",
        type=number(float, low=0.0, low_open=True),
        default=1.0,
        help="playback speed factor, > 0 (online, default 1.0; 2 = twice as fast). There is no 'as fast as "
        "possible': each utterance waits for the previous outcomes anyway, and frames sent in a burst "
        "would no longer pair with their utterances",
    )
    on.add_argument(
        "--timeout",
        type=number(float, low=0.0, low_open=True),
        default=60.0,
        help="seconds (> 0) to wait for the node and each outcome (online)",
    )
    return p


# ------------------------------------------------------------------------------------------ online
def replay_online(args: argparse.Namespace, labels: list[Any], registry: Any) -> list[offline.Decided]:
    """Publish the bag's camera and speech into the live node; one :class:`Decided` per utterance."""
    import rclpy
    from octopus_msgs.msg import FunctionCall, Outcome
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rclpy.serialization import deserialize_message, serialize_message
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import String

    run = bag_io.read_run(args.bag, image_topic=args.image_topic, speech_topic=args.speech_topic)
    image_type = CompressedImage if run.frames and run.frames[0].msgtype == bag_io.COMPRESSED else Image
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("octopus_replay", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    reliable = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
    camera_pub = node.create_publisher(
        image_type, run.image_topic, QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    )
    speech_pub = node.create_publisher(String, run.speech_topic, reliable)
    target = "/" + args.node.strip("/")
    outcomes: list[Any] = []
    calls: dict[str, Any] = {}
    out_sub = node.create_subscription(Outcome, f"{target}/outcomes", outcomes.append, reliable)
    call_sub = node.create_subscription(
        FunctionCall, f"{target}/function_calls", lambda c: calls.__setitem__(c.request_id, c), reliable
    )

    def spin_until(predicate: Any, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            executor.spin_once(timeout_sec=0.005)
        return True

    def ready() -> bool:
        return (
            camera_pub.get_subscription_count() > 0
            and speech_pub.get_subscription_count() > 0
            and out_sub.get_publisher_count() > 0
            and call_sub.get_publisher_count() > 0
        )

    try:
        if not spin_until(ready, args.timeout):
            raise ConnectionError(
                f"no active {target} listening on {run.image_topic} and {run.speech_topic} within "
                f"{args.timeout:.0f} s (is octopus_node running and active, with these topics?)"
            )
        # Our writers see the node's readers; the node's readers may not see our writers yet, and a
        # message sent before they do is dropped (seen: the first frame lost, so the first utterance
        # was judged on the previous run's stale frame and ended NO_FRESH_IMAGE).
        spin_until(lambda: False, MATCH_SETTLE_S)
        if args.time == "keep":
            source = _node_parameter(node, executor, target, "image_age_source", args.timeout)
            if source == "stamp":
                log.warning(
                    "--time keep with a node whose image_age_source is 'stamp': recorded stamps are old on "
                    "its clock, expect NO_FRESH_IMAGE (use --time rebase, or -p image_age_source:=receipt)"
                )
        by_text = {lab.n: lab for lab in labels}
        utterance_index = 0
        sent: list[tuple[int, set[str]]] = []  # (label n, accepted texts) per published utterance
        messages = list(bag_io.iter_messages(args.bag, [run.image_topic, run.speech_topic]))
        if not messages:
            raise bag_io.BagError(f"{args.bag}: nothing to replay on {run.image_topic} / {run.speech_topic}")
        start_bag = messages[0][2]
        start_wall = time.monotonic()
        answered = _answer_matcher(outcomes)
        for topic, _msgtype, log_ns, raw in messages:
            due = start_wall + (log_ns - start_bag) * 1e-9 / args.rate
            spin_until(lambda due=due: time.monotonic() >= due, max(0.0, due - time.monotonic()) + 1.0)
            if topic == run.image_topic:
                if args.time == "rebase":
                    msg = deserialize_message(raw, image_type)
                    recorded = bag_io.stamp_ns(msg.header)
                    if recorded > 0:
                        now = node.get_clock().now().nanoseconds
                        fresh = now - max(0, log_ns - recorded)
                        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(fresh, 1_000_000_000)
                    raw = serialize_message(msg)
                camera_pub.publish(raw)
                continue
            # An utterance: first the earlier ones must be answered (keeps the replay from bursting).
            waited = time.monotonic()
            if not spin_until(lambda: answered(sent) == len(sent), args.timeout):
                raise TimeoutError(
                    f"no outcome for {len(sent) - answered(sent)} utterance(s) within {args.timeout:.0f} s"
                )
            start_wall += time.monotonic() - waited
            utterance_index += 1
            text = deserialize_message(raw, String).data
            lab = by_text.get(utterance_index)
            sent.append((utterance_index, text))
            if lab is not None and lab.utterance != text:
                log.warning("label %d is %r but the bag says %r", utterance_index, lab.utterance, text)
            speech_pub.publish(raw)
        if not spin_until(lambda: answered(sent) == len(sent), args.timeout):
            raise TimeoutError(
                f"no outcome for {len(sent) - answered(sent)} utterance(s) within {args.timeout:.0f} s"
            )
        spin_until(lambda: False, 0.2)  # a call is published just before its outcome; let late ones land
        decided = []
        for (n, _text), outcome in zip(sent, answered.matched, strict=True):
            call = calls.get(outcome.request_id) if outcome.code_name == "OK" else None
            decided.append(
                offline.Decided(
                    n=n,
                    utterance=outcome.utterance,
                    outcome=outcome.code_name,
                    call=offline._plain(_call_plain(call, registry), registry) if call is not None else None,
                    raw_output=call.raw_output if call is not None else "",
                    confidence=round(float(outcome.confidence), 4),
                    latency_s=outcome.latency.sec + outcome.latency.nanosec * 1e-9,
                    reason=outcome.reason,
                )
            )
        return decided
    finally:
        node.destroy_node()
        rclpy.try_shutdown(context=context)


def _call_plain(call: Any, registry: Any) -> str:
    from octopus_ros.functions import ParseError, parse_call

    parsed = parse_call(call.raw_output, registry)
    return call.raw_output if isinstance(parsed, ParseError) else parsed.to_plain()


class _answer_matcher:  # noqa: N801 - used as a function
    """Counts the sent utterances that have their outcome (matched in order, by text)."""

    def __init__(self, outcomes: list[Any]) -> None:
        self.outcomes = outcomes
        self.matched: list[Any] = []
        self._seen = 0

    def __call__(self, sent: list[tuple[int, str]]) -> int:
        while len(self.matched) < len(sent):
            text = sent[len(self.matched)][1]
            hit = None
            for k in range(self._seen, len(self.outcomes)):
                o = self.outcomes[k]
                if o.request_id.startswith("utt-") and echo_matches(o.utterance, text):
                    hit = k
                    break
            if hit is None:
                break
            self.matched.append(self.outcomes[hit])
            self._seen = hit + 1
        return len(self.matched)


def _node_parameter(node: Any, executor: Any, target: str, name: str, timeout: float) -> str | None:
    from rcl_interfaces.srv import GetParameters

    client = node.create_client(GetParameters, f"{target}/get_parameters")
    deadline = time.monotonic() + timeout
    while not client.service_is_ready() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    if not client.service_is_ready():
        return None
    future = client.call_async(GetParameters.Request(names=[name]))
    while not future.done() and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.01)
    if not future.done() or not future.result().values:
        return None
    return future.result().values[0].string_value


# ------------------------------------------------------------------------------------------ main
def _writable(path: str) -> str:
    """'' when ``path`` can be written (it is created and removed again to know), else why not.

    Checked before the replay, which may take minutes: an unwritable --json found only at the end
    loses the results."""
    target = Path(path)
    if target.is_dir():
        return "is a folder"
    if not target.parent.is_dir():
        return f"its folder {target.parent} does not exist"
    existed = target.exists()
    try:
        with open(target, "a", encoding="utf-8"):
            pass
    except OSError as e:
        return f"cannot be written ({e.strerror or e})"
    if not existed:
        target.unlink(missing_ok=True)
    return ""


class ModelLoadError(ValueError):
    """The offline model cannot be loaded as asked; the message names the checkpoint and why."""


def _load_model(args: argparse.Namespace) -> Any:
    """The offline model; a checkpoint, registry or device problem -> ModelLoadError with the reason.

    ``Octopus.load`` raises CheckpointError naming the file (config.json missing, weights
    truncated or of other shapes, an invalid --functions registry: its cause is that registry's
    own message), ValueError (device cuda without CUDA) or OSError."""
    from octopus_ros.lean.errors import CheckpointError

    try:
        return offline.load_model(args.model, args.functions, device=args.device, precision=args.precision)
    except (CheckpointError, OSError, ValueError, RuntimeError) as e:
        what = f"--model {args.model}" if args.model else "the bundled model"
        raise ModelLoadError(f"cannot load {what}: {e}") from e


def _load_second(args: argparse.Namespace, model: Any) -> Any:
    """The offline second opinion as the node loads it (``second_opinion`` parameter: its folder,
    the same functions checked, the first model's registry); None when off or the checkpoint has
    none. A missing folder, other functions or a broken checkpoint -> ModelLoadError."""
    from octopus_ros.lean.errors import CheckpointError
    from octopus_ros.paths import default_model_dir
    from octopus_ros.runtime.second_opinion import (
        SecondOpinionError,
        missing_folder,
        same_functions,
        second_opinion_dir,
    )

    first = args.model or str(default_model_dir())
    path = second_opinion_dir(first, args.second_opinion)
    print(f"second opinion: {path or 'off'}")
    if path is None:
        return None
    if (problem := missing_folder(path)) is not None:
        raise ModelLoadError(f"--second-opinion {problem}")
    try:
        same_functions(first, path)
        return offline.load_model(
            str(path), args.functions or model.registry, device=args.device, precision=args.precision
        )
    except SecondOpinionError as e:
        raise ModelLoadError(f"--second-opinion: {e}") from e
    except (CheckpointError, OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"--second-opinion {path}: cannot load the model: {e}") from e


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.bags.labels import LabelError
    from octopus_ros.data.records import RecordError
    from octopus_ros.functions import FunctionRegistry, RegistryError, load_default_registry

    argv = sys.argv[1:] if argv is None else argv
    if "--ros-args" in argv:
        argv = argv[: argv.index("--ros-args")]
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.json and (problem := _writable(args.json)):
        parser.error(f"--json {args.json}: {problem}")

    def fail(message: Any, code: int = 2) -> int:
        print(f"octopus_replay: error: {message}", file=sys.stderr)
        return code

    try:
        # The bag, its topics and the labels first (seconds), the model after (the slow part).
        run = bag_io.read_run(args.bag, image_topic=args.image_topic, speech_topic=args.speech_topic)
        labels = offline.labels_for(run, args.labels) if args.labels else None
        if labels is not None and (problem := offline.nothing_to_score(labels, args.labels)):
            return fail(problem)
        if args.offline:
            model = _load_model(args)
            registry = model.registry
            second = _load_second(args, model)
        else:
            registry = (
                FunctionRegistry.from_yaml(args.functions) if args.functions else load_default_registry()
            )
        try:
            registry.allowed_names(args.allowed_functions)  # the node's own check of allowed_functions
        except ValueError as e:
            return fail(f"--allowed-functions: {e} in {registry.source}")
        if labels is None:
            labels = offline.labels_for(run, "", registry)
            if problem := offline.nothing_to_score(labels, ""):
                return fail(f"{args.bag}: {problem}")
        if args.offline:
            decided = offline.replay_offline(
                labels,
                model,
                allowlist=tuple(args.allowed_functions),
                confidence_threshold=args.confidence_threshold,
                max_image_age=args.max_image_age,
                second_opinion=second,
            )
        else:
            decided = replay_online(args, labels, registry)
    except ConnectionError as e:
        return fail(e, 4)
    except (bag_io.BagError, LabelError, RecordError, RegistryError, FileNotFoundError, TimeoutError) as e:
        return fail(e)
    except ModelLoadError as e:
        return fail(e)
    metrics = offline.score(labels, decided, registry)
    mode = "offline" if args.offline else f"online (--time {args.time})"
    print(offline.format_report(f"replay {mode} of {args.bag}", metrics))
    problem = offline.freshness_problem(decided)
    if args.json:
        report = {"mode": "offline" if args.offline else "online", "bag": str(args.bag), "metrics": metrics}
        report["error"] = problem
        report["decided"] = [d.to_json() for d in decided]
        try:
            Path(args.json).write_text(
                json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as e:
            return fail(f"--json {args.json}: cannot write the report (printed above): {e}")
    if problem:
        return fail(problem, 3)
    return 0


if __name__ == "__main__":
    sys.exit(main())
