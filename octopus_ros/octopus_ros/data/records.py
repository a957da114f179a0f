"""Your own data: image-instruction-call records in a JSONL file (MIMIC-IT-like).

One JSON object per line (blank lines and lines starting with ``#`` are skipped)::

    {"image": "frames/0001.jpg", "instruction": "open the front door", "language": "en",
     "answer": "open_door('front')",
     "context": [{"image": "frames/0002.jpg", "instruction": "open the back door",
                  "answer": "open_door('back')"}],
     "id": "kitchen-0001"}

- ``image`` (required): a path to an image file (PNG/JPEG/...; relative paths are relative to
  the JSONL file's folder), or a bag reference ``{"bag": "run1", "topic": "/camera/image_raw",
  "stamp_ns": 1712345678901234567}``: a rosbag2 folder (relative like a path), an image topic
  (``sensor_msgs/Image`` or ``CompressedImage``) and the message's **bag timestamp** (the time the
  recorder received it, as ``ros2 bag`` and rosbags report it; not its header stamp, which may be
  unset or shared). ``octopus_label records`` writes such references (:mod:`octopus_ros.bags`).
  Any size: images are resized to the vision tower's own input size when they are used.
- ``instruction`` (required): the user's words, non-empty.
- ``answer`` (required): the call, as the model writes it (``<nexa_13>('front')<nexa_end>``) or
  by name (``open_door('front')``, ``open_door(door='front')``). It must be a valid call of the
  function registry given to the loader; it is stored in the canonical ``<nexa_i>`` form. A
  copied argument (``source: utterance``, e.g. a message) must be a span of the instruction as
  the model reads it (``lean/prompt.model_utterance``); ending marks it takes with it are cut.
- ``language`` (required): a language code, e.g. ``en`` or ``zh``.
- ``context`` (optional): in-context examples, a list of ``{image, instruction, answer}``
  objects checked the same way (Otter's in-context instruction tuning).
- ``id`` (optional): a string; defaults to ``<file>:<line>``.

:func:`read_records` checks every line and raises one :class:`RecordError` that lists every
problem as ``<file>:<line>: <message>``. No torch, no rclpy.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

RECORD_KEYS = ("image", "instruction", "answer", "language", "context", "id")
CONTEXT_KEYS = ("image", "instruction", "answer")
BAG_KEYS = ("bag", "topic", "stamp_ns")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)?")
MAX_ERRORS = 50


class RecordError(ValueError):
    """A records file has problems; ``problems`` lists them as ``file:line: message``."""

    def __init__(self, problems: list[str], more: int = 0):
        self.problems = problems
        tail = f"\n... and {more} more" if more else ""
        super().__init__("\n".join(problems) + tail)


@dataclass(frozen=True)
class BagImage:
    """A frame in a rosbag2 bag: the message on ``topic`` stamped ``stamp_ns``."""

    bag: Path
    topic: str
    stamp_ns: int


@dataclass
class Turn:
    """An image, an instruction and its call (a record's query or one of its context examples)."""

    image: Path | BagImage
    instruction: str
    answer: str  # canonical <nexa_i>(...)<nexa_end> text
    function: str


@dataclass
class Record:
    """One validated record; ``where`` is ``file:line``."""

    id: str
    where: str
    language: str
    query: Turn
    context: list[Turn] = field(default_factory=list)

    @property
    def instruction(self) -> str:
        return self.query.instruction

    @property
    def answer(self) -> str:
        return self.query.answer

    @property
    def function(self) -> str:
        return self.query.function


def _image(value: Any, base: Path, problems: list[str]) -> Path | BagImage | None:
    if isinstance(value, str) and value.strip():
        path = Path(value)
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            problems.append(f"image file not found: {path}")
            return None
        return path
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(BAG_KEYS))
        missing = [k for k in BAG_KEYS if k not in value]
        if unknown or missing:
            problems.append(
                f"a bag image needs exactly {list(BAG_KEYS)} (unknown {unknown}, missing {missing})"
            )
            return None
        stamp = value["stamp_ns"]
        if not isinstance(value["bag"], str) or not isinstance(value["topic"], str):
            problems.append("bag and topic must be strings")
            return None
        if not isinstance(stamp, int) or isinstance(stamp, bool) or stamp < 0:
            problems.append(f"stamp_ns must be a non-negative integer, got {stamp!r}")
            return None
        bag = Path(value["bag"])
        return BagImage(bag if bag.is_absolute() else base / bag, value["topic"], stamp)
    problems.append(f"image must be a file path or a bag reference {{bag, topic, stamp_ns}}, got {value!r}")
    return None


def _answer(value: Any, registry, problems: list[str]) -> Any | None:
    """The record's answer parsed as a call of ``registry`` (a ``Call``); None: a problem."""
    from octopus_ros.functions import ParseError, parse_plain

    if not isinstance(value, str) or not value.strip():
        problems.append(f"answer must be a call as text, got {value!r}")
        return None
    call = parse_plain(value.strip(), registry)
    if isinstance(call, ParseError):
        problems.append(f"answer {value!r} is not a valid call of {registry.source}: {call.message}")
        return None
    return call


def _copied(instruction: str, call, registry, problems: list[str]) -> Any | None:
    """``call`` (the parsed answer) with each copied argument (``source: utterance``) checked
    against the instruction as the model reads it (lean/prompt.py ``model_utterance``): a value
    that is a span of it is kept; one that is a span only with the marks the model does not read
    ("I'm home." ending "text mom: I'm home.") loses them, as the grammar would write it; any
    other value is a problem (no decision can copy it, so training on it teaches the model to
    invent). None: a problem."""
    import dataclasses

    from octopus_ros.lean.prompt import model_utterance

    copied = {a.name for a in registry.by_name(call.function).args if a.source == "utterance"}
    read = model_utterance(instruction)
    args, changed = [], False
    for arg in call.args:
        value = arg.value
        if arg.name in copied and isinstance(value, str) and value not in read:
            cut = model_utterance(value)
            if cut and cut in read:
                arg, changed = dataclasses.replace(arg, value=cut), True
            else:
                problems.append(
                    f"{call.function}'s {arg.name} {value!r} is not a span of the instruction as the "
                    f"model reads it ({read!r}): it is copied from the utterance"
                )
                return None
        args.append(arg)
    return dataclasses.replace(call, args=tuple(args)) if changed else call


def _turn(obj: dict, base: Path, registry, problems: list[str], what: str) -> Turn | None:
    start = len(problems)
    image = _image(obj.get("image"), base, problems)
    instruction = obj.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        problems.append(f"instruction must be non-empty text, got {instruction!r}")
    call = _answer(obj.get("answer"), registry, problems)
    if call is not None and isinstance(instruction, str) and instruction.strip():
        call = _copied(instruction, call, registry, problems)
    for k in range(start, len(problems)):
        problems[k] = f"{what}{problems[k]}"
    if len(problems) > start:
        return None
    return Turn(image=image, instruction=instruction.strip(), answer=call.to_text(), function=call.function)


def _record(data: Any, where: str, base: Path, registry, problems: list[str]) -> Record | None:
    if not isinstance(data, dict):
        problems.append(f"a record must be a JSON object, got {type(data).__name__}")
        return None
    start = len(problems)
    unknown = sorted(set(data) - set(RECORD_KEYS))
    if unknown:
        problems.append(f"unknown key(s) {unknown} (allowed: {', '.join(RECORD_KEYS)})")
    for key in ("image", "instruction", "answer", "language"):
        if key not in data:
            problems.append(f"missing required key {key!r}")
    if len(problems) > start:
        return None
    language = data["language"]
    if not isinstance(language, str) or not LANGUAGE_RE.fullmatch(language):
        problems.append(f"language must be a code such as 'en' or 'zh', got {language!r}")
    query = _turn(data, base, registry, problems, "")
    context: list[Turn] = []
    raw_context = data.get("context", [])
    if not isinstance(raw_context, list):
        problems.append(f"context must be a list of {{image, instruction, answer}}, got {raw_context!r}")
        raw_context = []
    for j, item in enumerate(raw_context):
        if not isinstance(item, dict) or set(item) - set(CONTEXT_KEYS):
            problems.append(f"context[{j}] must be an object with keys {list(CONTEXT_KEYS)}, got {item!r}")
            continue
        turn = _turn(item, base, registry, problems, f"context[{j}]: ")
        if turn is not None:
            context.append(turn)
    rid = data.get("id", where)
    if not isinstance(rid, str) or not rid:
        problems.append(f"id must be a non-empty string, got {rid!r}")
    if len(problems) > start:
        return None
    return Record(id=rid, where=where, language=language, query=query, context=context)


def read_records(path: str | Path, registry) -> list[Record]:
    """Read and validate a records JSONL file against ``registry`` (a FunctionRegistry).

    Raises :class:`RecordError` listing every problem (``file:line: message``), or when the
    file has no record. Image files must exist; they are decoded later (:func:`load_image`).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (editors on Windows) is not a record
    except (OSError, UnicodeDecodeError) as e:
        raise RecordError([f"{path}: cannot read: {e}"]) from e
    records: list[Record] = []
    problems: list[str] = []
    ids: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        where = f"{path}:{n}"
        found: list[str] = []
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            found.append(f"not valid JSON ({e.msg} at column {e.colno})")
            data = None
        record = None if found else _record(data, where, path.parent, registry, found)
        if record is not None and record.id in ids:
            found.append(f"duplicate id {record.id!r} (first at {ids[record.id]})")
            record = None
        problems += [f"{where}: {p}" for p in found]
        if record is not None:
            ids[record.id] = where
            records.append(record)
    if not records and not problems:
        problems.append(f"{path}: no records")
    if problems:
        raise RecordError(problems[:MAX_ERRORS], max(0, len(problems) - MAX_ERRORS))
    log.info("%s: %d records (%d with context)", path, len(records), sum(1 for r in records if r.context))
    return records


def load_image(image: Path | BagImage, where: str = "") -> np.ndarray:
    """Decode a record's image to (H, W, 3) uint8 RGB; ``RecordError`` naming ``where`` if impossible."""
    prefix = f"{where}: " if where else ""
    if isinstance(image, BagImage):
        from octopus_ros.bags.io import BagError, load_frame

        try:
            return load_frame(image.bag, image.topic, image.stamp_ns)
        except (BagError, ValueError) as e:  # ValueError: ImageConversionError of a corrupt frame
            raise RecordError([f"{prefix}{e}"]) from e
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(image) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as e:
        raise RecordError([f"{prefix}cannot decode image {image}: {e}"]) from e
