"""World phrasings in the function registry: how the synthetic world's instructions say a function.

The optional ``phrasings:`` key of a function in ``functions.yaml`` holds the instruction
templates that :mod:`octopus_ros.data` turns into training and evaluation examples for the
bundled model (a rendered scene, an instruction, the call). Validated when the registry loads;
errors name the file and the line of the offending phrasing::

    - name: place
      ...
      phrasings:
        mode: named                     # default mode of this function's phrasings
        slots: {obj: object, loc: location}   # slot -> the argument it says (null: none)
        en:
          - put the {obj} {loc}                             # id place.en.00
          - {say: set the {obj} down {loc}, heldout: true}  # never trained on (unseen_phrasing)
          - {say: put it {loc}, mode: deictic}              # "it": the object is the one in view
        zh:
          - 把{obj}放到{loc}

A phrasing's id is ``<function>.<language>.<index>`` (``place.en.02``): its position in its
language's list, so lists are append-only (a new phrasing goes at the end, and no id moves).

``mode`` says where the object argument comes from: ``named`` (the words name it), ``deictic``
(the words point at it, "that": it is the most salient object in the image) or ``text`` (the
call does not depend on the image). ``heldout: true`` keeps a phrasing out of training; it is
what the ``unseen_phrasing`` split is made of. ``args`` fix arguments the wording itself gives
(``{say: full speed ahead, args: {value: 1.0}}``).

Slots are filled by the synthetic world (:mod:`octopus_ros.data.instructions`) with its own
vocabularies: object names as rendered, location phrases, spoken speeds..., so slot names are
the world's (``obj``, ``loc``...), each declared in ``slots`` with the argument it says.
These differ from ``examples:`` (:mod:`.examples`), whose ``{arg}`` slots are argument names
filled from the registry alone (``octopus_finetune --data registry``).

Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .registry import NAME_RE, ArgSpec, RegistryError

MODES: tuple[str, ...] = ("named", "deictic", "text")
_SET_KEYS = ("mode", "slots")
_ENTRY_KEYS = ("say", "mode", "heldout", "args")
LANGUAGE_RE = re.compile(r"[a-z]{2,3}(-[A-Za-z0-9]+)?")


class PhrasingError(RegistryError):
    """A ``phrasings:`` problem; ``line`` is the YAML line of the offending entry (None: unknown)."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class WorldPhrasing:
    """One phrasing: ``say`` with ``{slot}`` fields, its mode, held-out mark and fixed arguments."""

    say: str
    mode: str
    heldout: bool = False
    fixed: tuple[tuple[str, Any], ...] = ()  # sorted by argument name

    @property
    def slots(self) -> frozenset[str]:
        """Slot names used by ``say``."""
        return frozenset(f for _, f, _, _ in string.Formatter().parse(self.say) if f)


@dataclass(frozen=True)
class PhrasingSet:
    """A function's world phrasings: default mode, declared slots and phrasings per language."""

    mode: str
    slots: tuple[tuple[str, str | None], ...]  # (slot, argument or None), sorted by slot
    languages: tuple[tuple[str, tuple[WorldPhrasing, ...]], ...]  # sorted by language code
    line: int | None = field(default=None, compare=False)  # YAML line of the mapping (its first key)
    slots_line: int | None = field(default=None, compare=False)  # YAML line of 'slots:'

    def by_language(self) -> dict[str, tuple[WorldPhrasing, ...]]:
        return dict(self.languages)

    def to_yaml(self) -> dict[str, Any]:
        """The YAML-shaped mapping (``parse_phrasings(to_yaml())`` gives an equal set)."""
        out: dict[str, Any] = {"mode": self.mode, "slots": dict(self.slots)}
        for lang, items in self.languages:
            rows: list[Any] = []
            for p in items:
                extra: dict[str, Any] = {}
                if p.mode != self.mode:
                    extra["mode"] = p.mode
                if p.heldout:
                    extra["heldout"] = True
                if p.fixed:
                    extra["args"] = dict(p.fixed)
                rows.append({"say": p.say, **extra} if extra else p.say)
            out[lang] = rows
        return out


def _line(obj: Any) -> int | None:
    return getattr(obj, "line", None)


def _item_line(seq: Any, k: int, fallback: int | None) -> int | None:
    lines = getattr(seq, "item_lines", None)
    return lines[k] if lines is not None and k < len(lines) else fallback


def _check_mode(value: Any, where: str, line: int | None) -> str:
    if value not in MODES:
        raise PhrasingError(f"{where}: mode {value!r} must be one of {', '.join(MODES)}", line)
    return value


def _check_fixed(arg: ArgSpec, value: Any, where: str, line: int | None) -> Any:
    from .calls import check_value  # calls imports registry: import here

    if arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = check_value(arg, value)
    if problem is not None:
        raise PhrasingError(f"{where}: args: {problem[1]}", line)
    return value


def _slot_fields(say: str, where: str, line: int | None) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(say))
    except ValueError as e:  # unbalanced braces
        raise PhrasingError(
            f"{where}: {say!r} is not a valid template ({e}); write {{{{ }}}} for braces", line
        ) from None
    names = []
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if not NAME_RE.fullmatch(name) or spec or conversion:
            raise PhrasingError(f"{where}: {{{name}}} in {say!r} must be a plain {{slot}} name", line)
        names.append(name)
    return names


def parse_phrasings(function: str, args: tuple[ArgSpec, ...], raw: Any) -> PhrasingSet:
    """``raw`` (YAML) -> :class:`PhrasingSet`; :class:`PhrasingError` (with the line) if invalid."""
    set_line = _line(raw)
    if not isinstance(raw, Mapping) or not raw:
        raise PhrasingError(
            f"phrasings must be a mapping with 'mode', 'slots' and language -> list of phrasings, got {raw!r}",
            set_line,
        )
    by_name = {a.name: a for a in args}
    default_mode = _check_mode(raw.get("mode", "text"), "phrasings", set_line)
    raw_slots = raw.get("slots") or {}
    slots_line = _line(raw_slots) or set_line
    if not isinstance(raw_slots, Mapping):
        raise PhrasingError(
            f"phrasings: slots must be a mapping slot -> argument (or null), got {raw_slots!r}", set_line
        )
    slots: dict[str, str | None] = {}
    for slot, arg in raw_slots.items():
        if not isinstance(slot, str) or not NAME_RE.fullmatch(slot):
            raise PhrasingError(f"phrasings: slot name {slot!r} must match [a-z][a-z0-9_]*", slots_line)
        if arg is not None and arg not in by_name:
            raise PhrasingError(
                f"phrasings: slot {{{slot}}} says {arg!r}, which is not an argument of {function} "
                f"({sorted(by_name)}; null for a slot that says no argument)",
                slots_line,
            )
        slots[slot] = arg
    languages = []
    for lang, entries in raw.items():
        if lang in _SET_KEYS:
            continue
        if not isinstance(lang, str) or not LANGUAGE_RE.fullmatch(lang):
            raise PhrasingError(
                f"phrasings: unknown key {lang!r} (allowed: {', '.join(_SET_KEYS)} and language codes such as en, zh)",
                set_line,
            )
        if not isinstance(entries, list) or not entries:
            raise PhrasingError(f"phrasings[{lang}] must be a non-empty list of phrasings", set_line)
        items = [
            _parse_entry(
                function,
                by_name,
                slots,
                default_mode,
                entry,
                f"phrasings[{lang}][{k}]",
                _item_line(entries, k, set_line),
            )
            for k, entry in enumerate(entries)
        ]
        if all(p.heldout for p in items):
            raise PhrasingError(
                f"phrasings[{lang}]: every phrasing is heldout; training needs at least one", set_line
            )
        languages.append((lang, tuple(items)))
    if not languages:
        raise PhrasingError("phrasings: no language (add e.g. en: [...])", set_line)
    return PhrasingSet(
        default_mode,
        tuple(sorted(slots.items())),
        tuple(sorted(languages, key=lambda item: item[0])),
        set_line,
        slots_line,
    )


def _parse_entry(
    function: str,
    by_name: dict[str, ArgSpec],
    slots: dict[str, str | None],
    default_mode: str,
    entry: Any,
    where: str,
    line: int | None,
) -> WorldPhrasing:
    line = _line(entry) or line
    if isinstance(entry, str):
        say, mode, heldout, fixed_raw = entry, default_mode, False, {}
    elif isinstance(entry, Mapping) and "say" in entry:
        unknown = [k for k in entry if k not in _ENTRY_KEYS]
        if unknown:
            raise PhrasingError(
                f"{where}: unknown key(s) {unknown} (allowed: {', '.join(_ENTRY_KEYS)})", line
            )
        say = entry["say"]
        mode = _check_mode(entry.get("mode", default_mode), where, line)
        heldout = entry.get("heldout", False)
        fixed_raw = entry.get("args") or {}
        if not isinstance(heldout, bool):
            raise PhrasingError(f"{where}: heldout must be true or false, got {heldout!r}", line)
        if not isinstance(fixed_raw, Mapping):
            raise PhrasingError(f"{where}: args must be a mapping of argument name to value", line)
    else:
        raise PhrasingError(f"{where} must be a string or a mapping with 'say', got {entry!r}", line)
    if not isinstance(say, str) or not say.strip() or say != say.strip():
        raise PhrasingError(
            f"{where}: 'say' must be non-empty text without surrounding spaces, got {say!r}", line
        )
    used = _slot_fields(say, where, line)
    unknown_slots = [s for s in used if s not in slots]
    if unknown_slots:
        raise PhrasingError(
            f"{where}: unknown slot {{{unknown_slots[0]}}} in {say!r}; {function}'s phrasings declare "
            f"{sorted(slots) or 'no slots'} (phrasings: slots)",
            line,
        )
    fixed = {}
    for name, value in fixed_raw.items():
        if name not in by_name:
            raise PhrasingError(
                f"{where}: args: {name!r} is not an argument of {function} ({sorted(by_name)})", line
            )
        if any(slots[s] == name for s in used):
            raise PhrasingError(f"{where}: argument {name!r} is both said by a slot and fixed in args", line)
        fixed[name] = _check_fixed(by_name[name], value, where, line)
    return WorldPhrasing(say, mode, heldout, tuple(sorted(fixed.items())))
