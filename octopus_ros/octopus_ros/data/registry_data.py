"""Instruction data generated from the function registry alone (``octopus_finetune --data registry``).

For every enabled function with ``examples`` (see :mod:`octopus_ros.functions.examples`), an
instruction is one of its phrasings in one language with every ``{slot}`` filled by a value
of the argument (its ``examples``, its enum values, or its number range) said one of the ways
the registry gives; the answer is the canonical call with those values. Nothing here is
specific to the 13 bundled functions.

:func:`split_phrasings` holds some phrasings out (they never appear in training), so a
fine-tune can measure unseen phrasings of the user's functions. :func:`doc_lines` are the
registry's descriptions as text, the way Octopus v2 teaches a functional token what its
function does. No torch, no rclpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from octopus_ros.functions import FunctionRegistry, FunctionSpec, make_call
from octopus_ros.functions.examples import Phrasing, slot_values


@dataclass(frozen=True)
class PhrasingRef:
    """Phrasing ``index`` of ``function`` in ``language`` (id ``open_door.en.3``)."""

    function: str
    language: str
    index: int
    phrasing: Phrasing

    @property
    def id(self) -> str:
        return f"{self.function}.{self.language}.{self.index}"


@dataclass(frozen=True)
class RegistryExample:
    instruction: str
    answer: str  # canonical <nexa_i>(...)<nexa_end>
    language: str
    function: str
    phrasing: str  # PhrasingRef.id


def phrasings(registry: FunctionRegistry) -> list[PhrasingRef]:
    """Every example phrasing of every enabled function, in registry order."""
    out = []
    for spec in registry.enabled():
        for lang, items in spec.examples.items():
            out += [PhrasingRef(spec.name, lang, k, p) for k, p in enumerate(items)]
    return out


def split_phrasings(
    refs: Sequence[PhrasingRef], fraction: float, seed: int = 0, *, min_left: int = 3
) -> tuple[list[PhrasingRef], list[PhrasingRef]]:
    """(train, held out): ``fraction`` of each function's phrasings per language held out, as
    long as at least ``min_left`` stay for training (functions with few phrasings keep them all)."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    groups: dict[tuple[str, str], list[PhrasingRef]] = {}
    for r in refs:
        groups.setdefault((r.function, r.language), []).append(r)
    train, held = [], []
    for (fn, lang), group in groups.items():
        rng = np.random.default_rng([seed, sum(map(ord, f"{fn}.{lang}"))])
        n_out = min(int(round(fraction * len(group))), max(0, len(group) - min_left))
        order = rng.permutation(len(group))
        out = {int(i) for i in order[:n_out]}
        for k, r in enumerate(group):
            (held if k in out else train).append(r)
    return train, held


def realise(registry: FunctionRegistry, ref: PhrasingRef, rng: np.random.Generator) -> RegistryExample:
    """One instruction from a phrasing: random values for its slots, said one of the given ways."""
    spec: FunctionSpec = registry.by_name(ref.function)
    by_name = {a.name: a for a in spec.args}
    values, spoken = dict(ref.phrasing.fixed), {}
    for slot in ref.phrasing.slots:
        choices = slot_values(by_name[slot], ref.language)
        keys = list(choices)
        value = keys[int(rng.integers(len(keys)))]
        forms = choices[value]
        values[slot], spoken[slot] = value, forms[int(rng.integers(len(forms)))]
    call = make_call(registry, spec.name, **values)
    return RegistryExample(
        instruction=ref.phrasing.fill(spoken),
        answer=call.to_text(),
        language=ref.language,
        function=spec.name,
        phrasing=ref.id,
    )


def generate(
    registry: FunctionRegistry, refs: Sequence[PhrasingRef], n: int, seed: int = 0
) -> list[RegistryExample]:
    """``n`` examples, functions drawn uniformly, then a language and a phrasing of it."""
    if not refs:
        raise ValueError(f"{registry.source}: no function has example phrasings (add 'examples:')")
    by_fn: dict[str, list[PhrasingRef]] = {}
    for r in refs:
        by_fn.setdefault(r.function, []).append(r)
    names = sorted(by_fn)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        group = by_fn[names[int(rng.integers(len(names)))]]
        langs = sorted({r.language for r in group})
        lang = langs[int(rng.integers(len(langs)))]
        pool = [r for r in group if r.language == lang]
        out.append(realise(registry, pool[int(rng.integers(len(pool)))], rng))
    return out


def doc_lines(registry: FunctionRegistry, functions: Sequence[str] | None = None) -> list[str]:
    """Each enabled function's token, name and description (every language) as text lines:
    ``<nexa_13> open door: Open a door of the house.``"""
    lines = []
    for spec in registry.enabled():
        if functions is not None and spec.name not in functions:
            continue
        words = spec.name.replace("_", " ")
        for lang, text in spec.description.items():
            lines.append(f"{spec.token_text} {words}: {text}")
            for arg in spec.args:
                if arg.description:
                    arg_text = arg.description.get(lang) or arg.description.get("en", "")
                    lines.append(f"{spec.token_text} {words} {arg.name.replace('_', ' ')}: {arg_text}")
    return lines


def warm_start_text(spec: FunctionSpec) -> str:
    """The text a new functional token's embedding row is averaged from: name words + English description."""
    return f"{spec.name.replace('_', ' ')}: {spec.describe('en')}"
