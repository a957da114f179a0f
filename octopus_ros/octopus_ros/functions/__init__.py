"""Function registry, typed calls, parser and call grammar (pure Python: no torch, no rclpy).

- :class:`FunctionRegistry` loads ``config/functions.yaml`` (:func:`load_default_registry`).
- :class:`Call` / :class:`ArgValue` are typed calls; ``Call.to_text()`` is the canonical model text.
- :func:`parse_call` / :func:`parse_plain` turn model output into a Call or a :class:`ParseError`.
- :func:`validate_call` re-checks a Call before it is published.
- :class:`CallGrammar` drives grammar-constrained decoding.
- :mod:`.examples` and :mod:`.phrasings`: how users say each function (training data only).
"""

from __future__ import annotations

from .calls import (
    NEXA_END,
    ArgValue,
    Call,
    ErrorKind,
    ParseError,
    canonical_float,
    format_float,
    format_value,
    make_call,
    quote_string,
    validate_call,
)
from .grammar import CallGrammar, GrammarState
from .parser import parse_call, parse_plain
from .registry import ARG_TYPES, ArgSpec, FunctionRegistry, FunctionSpec, RegistryError


def load_default_registry() -> FunctionRegistry:
    """The registry shipped in ``config/functions.yaml`` (source tree or ament share)."""
    from octopus_ros.paths import config_path

    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


__all__ = [
    "ARG_TYPES",
    "NEXA_END",
    "ArgSpec",
    "ArgValue",
    "Call",
    "CallGrammar",
    "ErrorKind",
    "FunctionRegistry",
    "FunctionSpec",
    "GrammarState",
    "ParseError",
    "RegistryError",
    "canonical_float",
    "format_float",
    "format_value",
    "load_default_registry",
    "make_call",
    "parse_call",
    "parse_plain",
    "quote_string",
    "validate_call",
]
