"""The natural test set: hand-written bilingual utterances kept apart from the training templates.

``natural_set.yaml`` (next to this module) holds ≥ 300 utterances per language, written as a robot
owner would speak them, with the scene in view, optional camera degradations, the expected call or
``decline``, and a kind tag (see the file's header for the schema). It is an evaluation set only:
nothing trains on it, and ``test_natural_set.py`` proves that no instruction template produces
any of its utterances. ``natural_check.yaml`` (:data:`CHECK_SET_PATH`), the check set, has the
same schema and rules; it was written apart from both the templates and the natural set.

    items = load_natural_set()                 # list[NaturalItem], validated
    frame = items[0].frame()                   # (240, 320, 3) uint8, degraded if the item says so
    items[0].expected_text(registry)           # canonical call text, or None for a decline

No rclpy, no torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ..camera import FRAME_SIZE, degrade
from ..render import Size, render
from ..world import Scene, check_combo, sample_scene

NATURAL_SET_PATH = Path(__file__).with_name("natural_set.yaml")
# The check set: the same schema, written by an author who saw only the function registry without
# its phrasings and the world's vocabulary (never the templates, never the natural set). Evaluated
# for decisions already taken on the natural set; no rule is written from its cases.
CHECK_SET_PATH = Path(__file__).with_name("natural_check.yaml")
# The third set (stop 30): written the same way as the check set by another author, after the
# check set had been used to compare the novelty limits; figures only, like the check set.
THIRD_SET_PATH = Path(__file__).with_name("natural_third.yaml")
# The message set (stop 33): 60 + 60 requests to send a message, written apart from everything
# else for the copy figures (send_message's relay phrasings were added while it was written).
MESSAGES_SET_PATH = Path(__file__).with_name("natural_messages.yaml")
# The chatty set (stop 44): long, chatty requests of every kind, written apart like the check set;
# read in stop 44 (the copier's filler rule was found on it), so not figures only.
CHATTY_SET_PATH = Path(__file__).with_name("natural_chatty.yaml")
# The ASR set (stop 46): speech as a recogniser delivers it (lower case, no punctuation, hesitations,
# self-corrections, negated requests), written apart like the check set; read in stop 46.
ASR_SET_PATH = Path(__file__).with_name("natural_asr.yaml")
# The fresh set (stop 46): requests as different people say them, written apart; measured before it
# was read, then read in stop 46.
FRESH_SET_PATH = Path(__file__).with_name("natural_fresh.yaml")
# The voices set and the situations set (stop 47): written apart like the fresh set, each measured
# once before it was read (the voices set with stop 46's code, the situations set with the rules
# written on the voices set), then read in stop 47.
VOICES_SET_PATH = Path(__file__).with_name("natural_voices.yaml")
SITUATIONS_SET_PATH = Path(__file__).with_name("natural_situations.yaml")
# The week set (stop 47): written apart like them, measured once before it was read with the rules
# written on the two sets above, then read in stop 47.
WEEK_SET_PATH = Path(__file__).with_name("natural_week.yaml")
# The holiday set (stop 48): written apart like them, measured once before it was read with stop 47's
# rules, then read in stop 48.
HOLIDAY_SET_PATH = Path(__file__).with_name("natural_holiday.yaml")
# The workday set (stop 49): written apart like them, measured once before it was read with stop 48's
# rules, then read in stop 49.
WORKDAY_SET_PATH = Path(__file__).with_name("natural_workday.yaml")
# The rainy set (stop 50): written apart like them, measured once before it was read with stop 49's
# rules, then read in stop 50.
RAINY_SET_PATH = Path(__file__).with_name("natural_rainy.yaml")
# The flat set (stop 51): written apart like them, measured once before it was read with stop 50's
# rules, then read in stop 51. Some of its Chinese is written in Traditional characters on purpose.
FLAT_SET_PATH = Path(__file__).with_name("natural_flat.yaml")
# The care set (stop 52): written apart like them, measured once before it was read with stop 52's
# rules. Ten of its requests per language are hostile or odd inputs (prompt injections, gibberish).
CARE_SET_PATH = Path(__file__).with_name("natural_care.yaml")
KINDS: tuple[str, ...] = (
    "actionable",
    "colourless",
    "free_text",
    "absent_object",
    "out_of_scope",
    "unsafe",
    "camera",
)
DECLINE = "decline"
_ITEM_KEYS = {"id", "lang", "kind", "text", "scene", "camera", "expect"}
_CAMERA_KEYS = {"jpeg", "noise", "dim"}


class NaturalSetError(ValueError):
    """The natural set file is malformed; the message names the file and the item's line."""


@dataclass(frozen=True)
class NaturalItem:
    """One hand-written request with its scene and expected answer."""

    id: str
    language: str  # 'en' | 'zh'
    kind: str  # one of KINDS
    text: str
    expect: str  # plain call text "pick_up('red cup')" or 'decline'
    objects: tuple[tuple[str, str], ...] = ()  # (category, colour), most salient first; () = random
    camera: Mapping[str, float] = field(default_factory=dict)  # jpeg / noise / dim
    line: int = 0

    @property
    def declines(self) -> bool:
        """Whether the right answer is that no action is published."""
        return self.expect == DECLINE

    @property
    def seed(self) -> int:
        """A stable seed for this item's scene and noise (from its id)."""
        return zlib.crc32(self.id.encode("utf-8"))

    def expected_call(self, registry: Any):
        """The expected :class:`~octopus_ros.functions.Call`, or None for a decline."""
        if self.declines:
            return None
        from octopus_ros.functions import ParseError, parse_plain

        call = parse_plain(self.expect, registry)
        if isinstance(call, ParseError):
            raise NaturalSetError(f"{self.id}: expect {self.expect!r} is not a valid call: {call}")
        return call

    def expected_text(self, registry: Any) -> str | None:
        """Canonical call text (``<nexa_0>('red cup')<nexa_end>``), or None for a decline."""
        call = self.expected_call(registry)
        return None if call is None else call.to_text()

    def scene(self) -> Scene:
        """The scene in view: the listed objects (first = most salient), or a random one."""
        if not self.objects:
            return sample_scene(np.random.default_rng(self.seed))
        (category, colour), rest = self.objects[0], self.objects[1:]
        # The explicit placement may not fit for one draw: the next seeds are tried in order.
        last: Exception | None = None
        for k in range(20):
            try:
                return sample_scene(
                    np.random.default_rng([self.seed, k]),
                    target=(category, colour),
                    distractors=rest,
                    layout="salient",
                )
            except ValueError as e:
                last = e
        raise NaturalSetError(f"{self.id} (line {self.line}): the scene cannot be placed: {last}")

    def frame(self, size: Size = FRAME_SIZE) -> np.ndarray:
        """The rendered (H, W, 3) uint8 RGB frame, with this item's camera degradations."""
        image = render(self.scene(), size)
        if self.camera:
            image = degrade(image, rng=np.random.default_rng([self.seed, 7]), **self.camera)
        return image


# ----------------------------------------------------------------------------- loading
class _LineLoader(yaml.SafeLoader):
    """A YAML loader that records the line of every mapping (``__line__``)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping["__line__"] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_objects(where: str, spec: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(spec, str) or not spec.split():
        raise NaturalSetError(f"{where}: scene must be 'category/colour ...', got {spec!r}")
    out = []
    for word in spec.split():
        category, _, colour = word.partition("/")
        try:
            check_combo(category, colour)
        except ValueError as e:
            raise NaturalSetError(f"{where}: scene object {word!r}: {e}") from None
        out.append((category, colour))
    if len({c for c, _ in out}) != len(out) or len(out) > 4:
        raise NaturalSetError(f"{where}: scene needs 1..4 objects of distinct categories, got {spec!r}")
    return tuple(out)


def _parse_camera(where: str, spec: Any) -> dict[str, float]:
    if not isinstance(spec, Mapping):
        raise NaturalSetError(f"{where}: camera must be a mapping of {sorted(_CAMERA_KEYS)}, got {spec!r}")
    spec = {k: v for k, v in spec.items() if k != "__line__"}
    unknown = set(spec) - _CAMERA_KEYS
    if unknown or not spec:
        raise NaturalSetError(
            f"{where}: camera keys must be some of {sorted(_CAMERA_KEYS)}, got {sorted(spec)}"
        )
    try:
        degrade(np.zeros((8, 8, 3), np.uint8), **spec)
    except (TypeError, ValueError) as e:
        raise NaturalSetError(f"{where}: camera {spec!r}: {e}") from None
    return dict(spec)


def load_natural_set(path: str | Path = NATURAL_SET_PATH, *, registry: Any = None) -> list[NaturalItem]:
    """Load and validate the natural set. ``registry`` (a FunctionRegistry; default: the package's
    functions.yaml) checks every expected call. Raises :class:`NaturalSetError` naming the file and line.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)
    except (OSError, yaml.YAMLError) as e:
        raise NaturalSetError(f"{path}: cannot read the natural set: {e}") from e
    if not isinstance(data, Mapping) or data.get("version") != 1 or not isinstance(data.get("items"), list):
        raise NaturalSetError(f"{path}: expected 'version: 1' and a list 'items'")
    if registry is None:
        from octopus_ros.functions import load_default_registry

        registry = load_default_registry()
    items: list[NaturalItem] = []
    seen: set[str] = set()
    for entry in data["items"]:
        line = entry.get("__line__", 0) if isinstance(entry, Mapping) else 0
        where = f"{path}:{line}"
        if not isinstance(entry, Mapping):
            raise NaturalSetError(f"{where}: each item must be a mapping")
        keys = set(entry) - {"__line__"}
        missing = {"id", "lang", "kind", "text", "expect"} - keys
        if missing or keys - _ITEM_KEYS:
            raise NaturalSetError(
                f"{where}: missing keys {sorted(missing)} / unknown keys {sorted(keys - _ITEM_KEYS)}"
            )
        item_id = entry["id"]
        if not isinstance(item_id, str) or item_id in seen:
            raise NaturalSetError(f"{where}: id {item_id!r} must be a unique string")
        seen.add(item_id)
        if entry["lang"] not in ("en", "zh") or entry["kind"] not in KINDS:
            raise NaturalSetError(f"{where}: lang must be en/zh and kind one of {KINDS}")
        text = entry["text"]
        if not isinstance(text, str) or not text.strip() or " ".join(text.split()) != text:
            raise NaturalSetError(f"{where}: text must be non-empty, normalised (single spaces) text")
        item = NaturalItem(
            id=item_id,
            language=entry["lang"],
            kind=entry["kind"],
            text=text,
            expect=str(entry["expect"]),
            objects=_parse_objects(where, entry["scene"]) if "scene" in entry else (),
            camera=_parse_camera(where, entry["camera"]) if "camera" in entry else {},
            line=line,
        )
        if item.kind in ("absent_object", "out_of_scope", "unsafe") and not item.declines:
            raise NaturalSetError(f"{where}: a {item.kind} item must expect 'decline'")
        if item.kind == "camera" and not item.camera:
            raise NaturalSetError(f"{where}: a camera item needs camera degradations")
        try:
            call = item.expected_call(registry)
        except NaturalSetError as e:
            raise NaturalSetError(f"{where}: {e}") from None
        if call is not None:
            _check_object_names(where, call, registry)
        items.append(item)
    return items


def _check_object_names(where: str, call: Any, registry: Any) -> None:
    """NaturalSetError when an expected object argument (``names_object``) names an object of the
    world otherwise than the world names it: a single-colour category without its colour
    ("banana", not "yellow banana"), as the model is taught to answer."""
    from ..world import CATEGORIES, COLOURS, object_name

    spec = registry.by_name(call.function)
    declared = {a.name: a for a in getattr(spec, "args", ())}
    for arg in call.args:
        if not getattr(declared.get(arg.name), "names_object", False) or not isinstance(arg.value, str):
            continue
        words = arg.value.split()
        if len(words) == 2 and words[0] in COLOURS and words[1] in CATEGORIES:
            category = CATEGORIES[words[1]]
            if words[0] in category.colours and not category.colour_in_name:
                raise NaturalSetError(
                    f"{where}: expect names {arg.value!r}; the world names it "
                    f"{object_name(words[1], words[0])!r} (a {words[1]} has one colour)"
                )
