"""Labelling a recorded run: bag -> labels file (you confirm or correct each line) -> records.

``octopus_label extract run1 --out run1.labels.jsonl`` writes one JSON line per utterance of the
bag, in the order it was heard::

    {"n": 3, "utterance": "pick up the red cup", "language": "en", "received_ns": 1712...,
     "node": {"outcome": "OK", "call": "pick_up('red cup')", "confidence": 0.93, "reason": "..."},
     "answer": "pick_up('red cup')", "status": "todo",
     "image": {"bag": "run1", "topic": "/camera/image_raw", "stamp_ns": 1712...}, "image_from": "call"}

You edit two fields per line: ``answer`` (the right call by name, as in functions.yaml:
``pick_up('red cup')``, ``no_action()`` when the robot should do nothing; start from the node's
own call) and ``status``: ``ok`` (confirmed), ``skip`` (leave it out) or ``todo`` (not yet
looked at). ``--auto-confirm`` marks every line that has an answer ``ok`` (the node's decisions
taken as right: useful to replay a run, or to start from). ``extract`` never overwrites a labels
file (it may hold your work) unless ``--force``; a bag with no utterance is an error. Then
``octopus_label records run1.labels.jsonl --out run1.records.jsonl`` writes the confirmed lines
as records (:mod:`octopus_ros.data.records`) whose images are bag references; ``octopus_finetune
--data records:run1.records.jsonl`` trains on them.

**Which frame an utterance gets** (``image_from``):

- ``call``: the node published a call: the frame whose header stamp equals the FunctionCall's
  header stamp — exactly the image the node decided on (with the node's default
  ``image_age_source:=stamp``, the call carries the image's own stamp);
- ``receipt``: otherwise (declines, rejections, no call): the newest frame the recorder had
  received when it received the utterance — what the node pairs an utterance with;
- ``none``: no frame had arrived yet (such a line cannot become a record).

The node's own answer: the published call for ``OK``; ``no_action()`` (the registry's decline)
for ``NO_ACTION``; none for the other outcomes (they publish no call to copy).
Paths in the labels file are relative to its folder, as in records. Every field a tool reads is
checked when the labels file is read (errors name its ``file:line``); a records file is written
whole or not at all. UTF-8, with or without a BOM. No torch, no rclpy.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from octopus_ros.bags.io import Run, read_run, stamp_ns
from octopus_ros.runtime.outcomes import echo_matches

log = logging.getLogger(__name__)

STATUSES = ("todo", "ok", "skip")
IMAGE_FROM = ("call", "receipt", "none")
LABEL_KEYS = ("n", "utterance", "language", "received_ns", "node", "answer", "status", "image", "image_from")


class LabelError(ValueError):
    """A labels file with problems; the message lists them as ``file:line: problem``."""


@dataclass
class Label:
    """One utterance of a run, with the node's decision and (after labelling) the right call."""

    n: int
    utterance: str
    language: str
    received_ns: int
    node: dict[str, Any]
    answer: str | None
    status: str
    image: dict[str, Any] | None  # {"bag": path (absolute here), "topic", "stamp_ns"}
    image_from: str
    where: str = ""

    def to_json(self, folder: Path) -> dict[str, Any]:
        image = None
        if self.image is not None:
            image = {**self.image, "bag": os.path.relpath(self.image["bag"], folder)}
        return {
            "n": self.n,
            "utterance": self.utterance,
            "language": self.language,
            "received_ns": self.received_ns,
            "node": self.node,
            "answer": self.answer,
            "status": self.status,
            "image": image,
            "image_from": self.image_from,
        }


def _node_answer(outcome: Any, call: Any, registry: Any) -> str | None:
    from octopus_ros.functions import ParseError, parse_call

    if outcome is None:
        return None
    if outcome.code_name == "OK" and call is not None:
        parsed = parse_call(call.raw_output, registry)
        if isinstance(parsed, ParseError):
            log.warning(
                "call %r does not parse with %s: %s", call.raw_output, registry.source, parsed.message
            )
            return None
        return parsed.to_plain()
    if outcome.code_name == "NO_ACTION":
        return f"{registry.decline_function.name}()"
    return None


def extract(run: Run | str | Path, registry: Any, *, auto_confirm: bool = False) -> list[Label]:
    """One :class:`Label` per utterance of a recorded run (see the module docstring)."""
    from octopus_ros.functions.language import detect_language

    if not isinstance(run, Run):
        run = read_run(run)
    outcomes = [(t, o) for t, o in run.outcomes if o.request_id.startswith("utt-")]
    used = [False] * len(outcomes)
    calls = {c.request_id: c for _, c in run.calls}
    labels = []
    for n, utt in enumerate(run.utterances, start=1):
        outcome = None
        for k, (_, o) in enumerate(outcomes):
            if not used[k] and echo_matches(o.utterance, utt.text):
                used[k], outcome = True, o
                break
        call = calls.get(outcome.request_id) if outcome is not None else None
        frame, image_from = None, "none"
        if call is not None:
            frame = run.frame_with_stamp(stamp_ns(call.header))
            image_from = "call" if frame is not None else "none"
        if frame is None:
            frame = run.newest_frame(utt.log_ns)
            image_from = "receipt" if frame is not None else "none"
        node: dict[str, Any] = {"outcome": None}
        if outcome is not None:
            node = {
                "outcome": outcome.code_name,
                "call": call.raw_output if call is not None else None,
                "function": outcome.function_name or None,
                "confidence": round(float(outcome.confidence), 4),
                "reason": outcome.reason,
                "request_id": outcome.request_id,
            }
        answer = _node_answer(outcome, call, registry)
        if answer is not None and call is not None:
            node["call"] = answer
        labels.append(
            Label(
                n=n,
                utterance=utt.text,
                language=detect_language(utt.text),
                received_ns=utt.log_ns,
                node=node,
                answer=answer,
                status="ok" if auto_confirm and answer is not None and frame is not None else "todo",
                image=None
                if frame is None
                else {"bag": str(run.path.resolve()), "topic": frame.topic, "stamp_ns": frame.log_ns},
                image_from=image_from,
            )
        )
    unmatched = used.count(False)
    if unmatched:
        log.warning(
            "%s: %d outcome(s) match no recorded utterance (recorded after it started?)", run.path, unmatched
        )
    return labels


def write_labels(labels: list[Label], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = path.parent.resolve()
    lines = [json.dumps(lab.to_json(folder), ensure_ascii=False) for lab in labels]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _wrong_types(data: dict[str, Any]) -> str:
    """'' when the fields the tools read have their types, else what is wrong (checked here, so a
    hand edit such as ``"stamp_ns": "abc"`` is reported against the labels file and its line, never
    later against a file made from it)."""
    wrong = []
    if not _is_int(data["n"]) or data["n"] < 1:
        wrong.append(f"n must be an utterance number (1, 2, ...), got {data['n']!r}")
    if not isinstance(data["utterance"], str):
        wrong.append(f"utterance must be text, got {data['utterance']!r}")
    if not isinstance(data["language"], str):
        wrong.append(f"language must be text, got {data['language']!r}")
    if not _is_int(data["received_ns"]) or data["received_ns"] < 0:
        wrong.append(f"received_ns must be a bag time in nanoseconds, got {data['received_ns']!r}")
    if not isinstance(data["node"], dict):
        wrong.append(f"node must be an object (the node's decision), got {data['node']!r}")
    if data["image_from"] not in IMAGE_FROM:
        wrong.append(f"image_from must be one of {list(IMAGE_FROM)}, got {data['image_from']!r}")
    image = data["image"]
    if image is not None:
        if not isinstance(image, dict) or set(image) != {"bag", "topic", "stamp_ns"}:
            wrong.append(f"image must be null or {{bag, topic, stamp_ns}}, got {image!r}")
        else:
            if not isinstance(image["bag"], str) or not image["bag"]:
                wrong.append(f"image.bag must be the bag folder's path, got {image['bag']!r}")
            if not isinstance(image["topic"], str) or not image["topic"].startswith("/"):
                wrong.append(f"image.topic must be a topic name, got {image['topic']!r}")
            if not _is_int(image["stamp_ns"]) or image["stamp_ns"] < 0:
                wrong.append(
                    f"image.stamp_ns must be the frame's bag time in nanoseconds (an integer), "
                    f"got {image['stamp_ns']!r}"
                )
    return "; ".join(wrong)


def read_labels(path: str | Path) -> list[Label]:
    """Read a labels file; :class:`LabelError` lists every malformed line as ``file:line``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (some Windows editors add one) is no error
    except (OSError, UnicodeDecodeError) as e:
        raise LabelError(f"{path}: cannot read: {e}") from e
    labels, problems = [], []
    for k, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{k}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
            continue
        if not isinstance(data, dict):
            problems.append(f"{where}: a label must be a JSON object")
            continue
        missing = [key for key in LABEL_KEYS if key not in data]
        unknown = sorted(set(data) - set(LABEL_KEYS))
        if missing or unknown:
            problems.append(f"{where}: missing key(s) {missing}, unknown key(s) {unknown}")
            continue
        if data["status"] not in STATUSES:
            problems.append(f"{where}: status must be one of {list(STATUSES)}, got {data['status']!r}")
            continue
        if data["answer"] is not None and not isinstance(data["answer"], str):
            problems.append(f"{where}: answer must be a call as text or null, got {data['answer']!r}")
            continue
        wrong = _wrong_types(data)
        if wrong:
            problems.append(f"{where}: {wrong}")
            continue
        image = data["image"]
        if image is not None:
            bag = Path(image["bag"])
            image = {**image, "bag": str(bag if bag.is_absolute() else (path.parent / bag).resolve())}
        labels.append(
            Label(
                n=data["n"],
                utterance=data["utterance"],
                language=data["language"],
                received_ns=data["received_ns"],
                node=data["node"],
                answer=data["answer"],
                status=data["status"],
                image=image,
                image_from=data["image_from"],
                where=where,
            )
        )
    if problems:
        raise LabelError("\n".join(problems))
    return labels


def to_records(labels_path: str | Path, out: str | Path, registry: Any, *, skip_todo: bool = False) -> Path:
    """Write the ``ok`` lines of a labels file as records JSONL; checked by ``read_records``.

    Lines still ``todo`` are an error (each is listed) unless ``skip_todo``; an ``ok`` line needs
    an answer that is a valid call of ``registry`` and a frame.
    """
    from octopus_ros.data.records import RecordError, read_records
    from octopus_ros.functions import ParseError, parse_plain

    labels_path, out = Path(labels_path), Path(out)
    labels = read_labels(labels_path)
    problems = []
    records = []
    wheres: list[str] = []  # the labels file's line of each record
    folder = out.parent.resolve()
    for lab in labels:
        if lab.status == "skip":
            continue
        if lab.status == "todo":
            if not skip_todo:
                problems.append(f"{lab.where}: still 'todo': confirm it (status ok), correct it or skip it")
            continue
        if lab.answer is None:
            problems.append(f"{lab.where}: status ok but no answer: write the right call")
            continue
        parsed = parse_plain(lab.answer, registry)
        if isinstance(parsed, ParseError):
            problems.append(
                f"{lab.where}: answer {lab.answer!r} is not a valid call of {registry.source}: {parsed.message}"
            )
            continue
        if lab.image is None:
            problems.append(f"{lab.where}: no camera frame for this utterance (none recorded before it)")
            continue
        image = {**lab.image, "bag": os.path.relpath(lab.image["bag"], folder)}
        rid = f"{Path(lab.image['bag']).name}-{lab.n:04d}"
        wheres.append(lab.where)
        records.append(
            {
                "image": image,
                "instruction": lab.utterance,
                "answer": lab.answer,
                "language": lab.language,
                "id": rid,
            }
        )
    if problems:
        raise LabelError("\n".join(problems))
    if not records:
        raise LabelError(f"{labels_path}: no line has status 'ok'")
    # Written to a temporary file next to OUT, checked, then renamed: a records file is either
    # whole and valid or not there (an earlier OUT stays as it was when this one fails).
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
        try:
            read_records(tmp, registry)  # the format's own validation, as octopus_finetune will read it
        except RecordError as e:
            # record k came from the k-th ok line: name that line, not a file that is not there
            line_of = {f"{tmp}:{k}:": f"{where}:" for k, where in enumerate(wheres, start=1)}
            message = re.sub(rf"{re.escape(str(tmp))}:\d+:", lambda m: line_of.get(m[0], m[0]), str(e))
            raise LabelError(f"{message.replace(str(tmp), str(out))}\n(nothing written to {out})") from e
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: %d records from %s", out, len(records), labels_path)
    return out


# ------------------------------------------------------------------------------------------ CLI
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="octopus_label",
        description="Label a run recorded by octopus_record: bag -> labels JSONL -> records JSONL.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("extract", help="write one label line per utterance of a bag")
    ex.add_argument("bag", help="rosbag2 folder written by octopus_record")
    ex.add_argument(
        "--out",
        required=True,
        help="labels JSONL to write; an existing file (maybe already labelled by hand) is refused "
        "unless --force",
    )
    ex.add_argument(
        "--force",
        action="store_true",
        help="overwrite an existing --out: its answers and statuses are lost (every line todo again)",
    )
    ex.add_argument(
        "--functions", default="", help="function registry YAML (default: the bundled functions.yaml)"
    )
    ex.add_argument("--image-topic", default=None, help="camera topic, if the bag has several")
    ex.add_argument("--speech-topic", default=None, help="speech topic, if the bag has several String topics")
    ex.add_argument("--auto-confirm", action="store_true", help="mark every line that has an answer as ok")
    rec = sub.add_parser("records", help="turn the confirmed (status ok) lines into records")
    rec.add_argument("labels", help="labels JSONL (from extract, then edited)")
    rec.add_argument(
        "--out", required=True, help="records JSONL to write (octopus_finetune --data records:OUT)"
    )
    rec.add_argument(
        "--functions", default="", help="function registry YAML (default: the bundled functions.yaml)"
    )
    rec.add_argument(
        "--skip-todo", action="store_true", help="leave out lines still 'todo' instead of failing"
    )
    return p


def _registry(path: str) -> Any:
    from octopus_ros.functions import FunctionRegistry, load_default_registry

    return FunctionRegistry.from_yaml(path) if path else load_default_registry()


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.bags.io import BagError
    from octopus_ros.data.records import RecordError
    from octopus_ros.functions import RegistryError

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        registry = _registry(args.functions)
        if args.command == "extract":
            if Path(args.out).exists() and not args.force:
                raise LabelError(
                    f"{args.out}: already exists (your labels?): extracting again would set every line "
                    "back to the node's answer and 'todo'. Give another --out, or --force to overwrite it"
                )
            run = read_run(args.bag, image_topic=args.image_topic, speech_topic=args.speech_topic)
            if not run.utterances:
                raise LabelError(
                    f"{args.bag}: no utterance in the bag (nothing on {run.speech_topic}): nothing to label "
                    "(was the ASR publishing there while octopus_record ran? --speech-topic picks another)"
                )
            labels = extract(run, registry, auto_confirm=args.auto_confirm)
            write_labels(labels, args.out)
            todo = sum(lab.status == "todo" for lab in labels)
            print(f"{args.out}: {len(labels)} utterances, {todo} to confirm or correct")
        else:
            out = to_records(args.labels, args.out, registry, skip_todo=args.skip_todo)
            print(f"{out}: records written")
    except (BagError, LabelError, RecordError, RegistryError) as e:
        print(f"octopus_label: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # an --out that cannot be written (read-only or missing folder, /proc...)
        print(f"octopus_label: error: cannot write {args.out}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
