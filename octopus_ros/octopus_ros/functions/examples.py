"""Example phrasings in the function registry: how users say a function and its argument values.

Optional keys of ``functions.yaml`` (validated when the registry loads; errors name the file and
the function's line)::

    - name: open_door
      ...
      args:
        - name: door
          type: enum
          values: [front, back, garage]
          examples:                  # language -> how values are said
            en: {front: [front, main], back: [back, rear], garage: garage}
            zh: {front: 前, back: 后, garage: 车库}
      examples:                      # language -> phrasings of the whole call
        en:
          - open the {door} door                    # a template: {arg} slots take the arg's values
          - {say: let me in, args: {door: front}}   # fixed argument values
        zh:
          - 打开{door}门

Argument ``examples`` per language are either a list of values (each said as written) or a
mapping ``value -> spoken form(s)``. Every value must be valid for the argument (enum member,
number in range, string within ``max_length``). An enum value that a language's examples leave
out is said as the value, ``_`` read as a space; an int/float argument without examples takes
values from its range; a string or bool argument needs examples for every language whose
phrasings use it as a slot.

A phrasing is a string (every argument is a ``{slot}``) or a mapping ``{say, args}`` whose
``args`` fix the arguments that are not slots. ``{{`` and ``}}`` are literal braces.

These are the training phrasings of ``octopus_finetune --data registry``
(:mod:`octopus_ros.data.registry_data`). Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .registry import ArgSpec, RegistryError


@dataclass(frozen=True)
class Phrasing:
    """One example phrasing of a function: ``say`` with ``{arg}`` slots, ``fixed`` argument values."""

    say: str
    fixed: tuple[tuple[str, Any], ...] = ()

    @property
    def slots(self) -> tuple[str, ...]:
        """Slot names in the order they appear (each once)."""
        names: list[str] = []
        for _, field, _, _ in string.Formatter().parse(self.say):
            if field is not None and field not in names:
                names.append(field)
        return tuple(names)

    def fill(self, values: Mapping[str, str]) -> str:
        """The phrasing with every slot replaced by ``values[slot]`` (spoken forms)."""
        return self.say.format(**values)

    def to_yaml(self) -> str | dict[str, Any]:
        if not self.fixed:
            return self.say
        return {"say": self.say, "args": dict(self.fixed)}


def _check_languages(raw: Any, what: str) -> Mapping:
    if not isinstance(raw, Mapping) or not raw:
        raise RegistryError(f"{what} must be a mapping of language to its entries, got {raw!r}")
    for lang in raw:
        if not isinstance(lang, str) or not lang:
            raise RegistryError(f"{what}: language {lang!r} must be a non-empty string")
    return raw


def _check_value(arg: ArgSpec, value: Any, what: str) -> Any:
    from .calls import check_value  # calls imports registry: import here

    if arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    problem = check_value(arg, value)
    if problem is not None:
        raise RegistryError(f"{what}: {problem[1]}")
    return value


def _spoken_forms(raw: Any, what: str) -> tuple[str, ...]:
    forms = [raw] if isinstance(raw, str) else list(raw) if isinstance(raw, tuple) else raw
    if not isinstance(forms, list) or not forms:
        raise RegistryError(f"{what}: spoken forms must be a string or a non-empty list, got {raw!r}")
    for form in forms:
        if not isinstance(form, str) or not form.strip():
            raise RegistryError(f"{what}: a spoken form must be non-empty text, got {form!r}")
    return tuple(forms)


def parse_arg_examples(
    arg: ArgSpec, raw: Any, key: str = "examples"
) -> dict[str, dict[Any, tuple[str, ...]]]:
    """``raw`` (YAML) -> ``{language: {value: (spoken forms)}}``; RegistryError if invalid.
    ``key``: the argument's key it came from (``examples``, or ``said``, which takes only the
    mapping form: a value is never its own extra word)."""
    what = f"argument {arg.name!r} {key}"
    out: dict[str, dict[Any, tuple[str, ...]]] = {}
    for lang, entries in _check_languages(raw, what).items():
        where = f"{what}[{lang}]"
        forms: dict[Any, tuple[str, ...]] = {}
        if key == "said" and not (isinstance(entries, Mapping) and entries):
            raise RegistryError(f"{where} must be a non-empty mapping value -> words")
        if isinstance(entries, list) and entries:
            for value in entries:
                value = _check_value(arg, value, where)
                forms[value] = (str(value),)
        elif isinstance(entries, Mapping) and entries:
            for value, spoken in entries.items():
                value = _check_value(arg, value, where)
                forms[value] = _spoken_forms(spoken, f"{where}[{value!r}]")
        else:
            raise RegistryError(f"{where} must be a non-empty list of values or a mapping value -> forms")
        out[lang] = forms
    return out


def parse_function_examples(
    name: str, args: tuple[ArgSpec, ...], raw: Any
) -> dict[str, tuple[Phrasing, ...]]:
    """``raw`` (YAML) -> ``{language: (Phrasing, ...)}``; RegistryError if invalid."""
    by_name = {a.name: a for a in args}
    out: dict[str, tuple[Phrasing, ...]] = {}
    for lang, entries in _check_languages(raw, "examples").items():
        where = f"examples[{lang}]"
        if not isinstance(entries, list) or not entries:
            raise RegistryError(f"{where} must be a non-empty list of phrasings")
        phrasings = []
        for k, entry in enumerate(entries):
            at = f"{where}[{k}]"
            if isinstance(entry, str):
                say, fixed_raw = entry, {}
            elif isinstance(entry, Mapping) and set(entry) <= {"say", "args"} and "say" in entry:
                say, fixed_raw = entry["say"], entry.get("args") or {}
            else:
                raise RegistryError(
                    f"{at} must be a string or a mapping with 'say' (and 'args'), got {entry!r}"
                )
            if not isinstance(say, str) or not say.strip():
                raise RegistryError(f"{at}: 'say' must be non-empty text, got {say!r}")
            if not isinstance(fixed_raw, Mapping):
                raise RegistryError(f"{at}: 'args' must be a mapping of argument name to value")
            try:
                phrasing = Phrasing(say.strip(), ())
                slots = phrasing.slots
            except ValueError as e:  # unbalanced braces
                raise RegistryError(
                    f"{at}: {say!r} is not a valid template ({e}); write {{{{ }}}} for braces"
                ) from None
            unknown = [s for s in (*slots, *fixed_raw) if s not in by_name]
            if unknown:
                raise RegistryError(f"{at}: {unknown[0]!r} is not an argument of {name} ({sorted(by_name)})")
            both = [s for s in slots if s in fixed_raw]
            if both:
                raise RegistryError(f"{at}: argument {both[0]!r} is both a slot and fixed")
            missing = [a.name for a in args if a.name not in slots and a.name not in fixed_raw]
            if missing:
                raise RegistryError(f"{at}: argument(s) {missing} are neither a {{slot}} nor fixed in 'args'")
            for slot in slots:
                _check_slot_fillable(by_name[slot], lang, at)
            fixed = tuple(
                (a.name, _check_value(a, fixed_raw[a.name], f"{at} args"))
                for a in args
                if a.name in fixed_raw
            )
            phrasings.append(Phrasing(say.strip(), fixed))
        out[lang] = tuple(phrasings)
    return out


def _check_slot_fillable(arg: ArgSpec, lang: str, at: str) -> None:
    if arg.type in ("string", "bool") and not (arg.examples and lang in arg.examples):
        raise RegistryError(
            f"{at}: slot {{{arg.name}}} needs examples of the {arg.type} argument {arg.name!r} in {lang!r}"
        )


def slot_values(arg: ArgSpec, lang: str) -> dict[Any, tuple[str, ...]]:
    """Values a ``{slot}`` of ``arg`` takes in ``lang`` and how each is said.

    An enum takes every value: said the ways its examples in ``lang`` give, else as the value
    (``_`` said as a space). Other types take the values of their examples in ``lang``; numbers
    without examples a few values across the range; string/bool arguments without examples none.
    """
    examples = dict(arg.examples[lang]) if arg.examples and lang in arg.examples else {}
    if arg.type == "enum":
        return {v: examples.get(v, (v.replace("_", " "),)) for v in arg.values}
    if examples:
        return examples
    if arg.type == "int":
        lo, hi = int(arg.min), int(arg.max)
        step = max(1, (hi - lo) // 8)
        return {v: (str(v),) for v in sorted({*range(lo, hi + 1, step), hi})}
    if arg.type == "float":
        from .calls import canonical_float

        values = {canonical_float(arg.min + (arg.max - arg.min) * i / 8) for i in range(9)}
        return {v: (f"{v:g}",) for v in sorted(values)}
    return {}
