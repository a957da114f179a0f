"""Test helpers: a small registry using every argument type, and hypothesis strategies for calls.

``hypothesis`` is imported only when a strategy is built, so this module is importable without it.
"""

from __future__ import annotations

import math
from typing import Any

from .calls import STRING_FORBIDDEN, ArgValue, Call, canonical_float
from .registry import ArgSpec, FunctionRegistry


def all_types_registry_dict() -> dict[str, Any]:
    """A YAML-shaped registry with every argument type, a disabled function and a token gap."""
    d = {"en": "test function"}
    return {
        "version": 1,
        "functions": [
            {
                "name": "grab",
                "token": 0,
                "description": d,
                "args": [{"name": "object", "type": "string", "max_length": 8}],
            },
            {
                "name": "move",
                "token": 1,
                "description": d,
                "args": [
                    {"name": "steps", "type": "int", "min": -5, "max": 120},
                    {"name": "speed", "type": "float", "min": -1.5, "max": 2.25},
                    {"name": "fast", "type": "bool"},
                    {"name": "mode", "type": "enum", "values": ["a", "ab", "b c", "中文"]},
                ],
            },
            {
                "name": "count",
                "token": 2,
                "description": d,
                "args": [{"name": "n", "type": "int", "min": 10, "max": 20}],
            },
            {"name": "quiet", "token": 3, "enabled": False, "description": d},
            {
                "name": "tune",
                "token": 4,
                "description": d,
                "args": [{"name": "gain", "type": "float", "min": 0.1, "max": 0.3}],
            },
            {"name": "nothing", "token": 5, "decline": True, "description": d},
            {"name": "wave", "token": 7, "description": d},
        ],
    }


def all_types_registry() -> FunctionRegistry:
    """:func:`all_types_registry_dict` as a registry."""
    return FunctionRegistry.from_dict(all_types_registry_dict(), source="<all-types>")


def value_strategy(arg: ArgSpec):
    """Hypothesis strategy of canonical valid values for ``arg`` (floats at 2 decimals)."""
    from hypothesis import strategies as st

    if arg.type == "string":
        chars = st.one_of(
            st.sampled_from("'\\ ab"),
            st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="<>\u2028\u2029"),
        )
        return st.text(alphabet=chars, min_size=1, max_size=arg.max_length).filter(
            lambda s: STRING_FORBIDDEN.search(s) is None
        )
    if arg.type == "enum":
        return st.sampled_from(arg.values)
    if arg.type == "int":
        return st.integers(arg.min, arg.max)
    if arg.type == "bool":
        return st.booleans()
    lo, hi = math.ceil(arg.min * 100) - 1, math.floor(arg.max * 100) + 1
    return (
        st.integers(lo, hi).map(lambda k: canonical_float(k / 100)).filter(lambda v: arg.min <= v <= arg.max)
    )


def calls(registry: FunctionRegistry, *, allowlist=None):
    """Hypothesis strategy of valid :class:`Call` objects of the allowed functions."""
    from hypothesis import strategies as st

    allowed = registry.allowed_names(allowlist)
    specs = [s for s in registry.functions if s.name in allowed]

    def build(spec):
        values = st.tuples(*(value_strategy(a) for a in spec.args))
        return values.map(
            lambda vs: Call(
                spec.name,
                spec.token,
                tuple(ArgValue(a.name, a.type, v) for a, v in zip(spec.args, vs, strict=True)),
            )
        )

    return st.sampled_from(specs).flatmap(build)
