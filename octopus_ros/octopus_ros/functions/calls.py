"""Typed function calls, their canonical text, and checks against the registry.

Canonical call text (the model is trained on exactly this, and the grammar accepts it)::

    <nexa_1>('red cup', 'shelf')<nexa_end>
    <nexa_11>(0.5)<nexa_end>
    <nexa_3>()<nexa_end>

Arguments are positional, in declared order, separated by ``", "``. Strings and enum values are
single-quoted with ``\\\\`` and ``\\'`` escapes; ints are plain decimals (``-3``); floats come from
:func:`format_float` (``0.5``, ``1.0``, ``0.25``); bools are ``True``/``False``.
Strings are non-empty and may not contain control characters or ``<``/``>`` (so no special-token
text can hide inside an argument).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from .registry import ArgSpec, FunctionRegistry, FunctionSpec

log = logging.getLogger(__name__)

NEXA_END = "<nexa_end>"
# Characters a string argument may not contain (besides quote and backslash, which are escaped).
STRING_FORBIDDEN = re.compile(r"[<>\x00-\x1f\x7f-\x9f\u2028\u2029]")


class ErrorKind(StrEnum):
    """Why text or a call was rejected (values compare equal to their names as plain strings)."""

    EMPTY = "EMPTY"  # no text at all
    NO_FUNCTION_TOKEN = "NO_FUNCTION_TOKEN"  # no <nexa_i> (or, in plain mode, no name(...)) found
    UNKNOWN_TOKEN = "UNKNOWN_TOKEN"  # <nexa_i> with no function in the registry
    UNKNOWN_FUNCTION = "UNKNOWN_FUNCTION"  # plain/JSON mode: a name not in the registry
    DISABLED = "DISABLED"  # the function exists but is disabled
    NOT_ALLOWED = "NOT_ALLOWED"  # enabled, but not on the allowlist
    BAD_SYNTAX = "BAD_SYNTAX"  # not the call syntax (unterminated string, bad separator, ...)
    ARG_COUNT = "ARG_COUNT"  # too few or too many arguments
    ARG_NAME = "ARG_NAME"  # plain/JSON mode: unknown or repeated keyword argument
    ARG_TYPE = "ARG_TYPE"  # e.g. a number where a string is declared
    ARG_RANGE = "ARG_RANGE"  # number outside [min, max], or not finite
    ENUM_VALUE = "ENUM_VALUE"  # enum value not in the declared list
    STRING_TOO_LONG = "STRING_TOO_LONG"  # longer than max_length
    BAD_STRING = "BAD_STRING"  # empty string, or a forbidden character
    NO_END = "NO_END"  # the call is not closed by <nexa_end>
    INTERNAL = "INTERNAL"  # a parser bug (logged); never expected


@dataclass(eq=False)
class ParseError(ValueError):
    """A rejected model output or call: ``kind`` (an :class:`ErrorKind` name), ``message``, ``text``.

    Parsers *return* it (they never raise); it is still an exception so that callers may raise it.
    ``position`` is the character offset in ``text`` where the problem was found, when known.
    """

    kind: str
    message: str
    text: str = ""
    position: int | None = None

    def __post_init__(self) -> None:
        super().__init__(f"{self.kind}: {self.message}")

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"

    def __reduce__(self):
        # Exceptions pickle as cls(*args); rebuild from the fields instead.
        return (type(self), (self.kind, self.message, self.text, self.position))


@dataclass(frozen=True)
class ArgValue:
    """One argument of a call: declared ``name`` and ``type``, and the Python ``value``."""

    name: str
    type: str
    value: str | int | float | bool

    def to_text(self) -> str:
        """The canonical text of the value, e.g. ``'red cup'`` or ``0.5``."""
        return format_value(self.type, self.value)


@dataclass(frozen=True)
class Call:
    """A decoded function call: function name, functional token index and typed arguments."""

    function: str
    token: int
    args: tuple[ArgValue, ...] = ()

    def to_text(self) -> str:
        """Canonical model text, e.g. ``<nexa_3>('red cup')<nexa_end>`` or ``<nexa_4>()<nexa_end>``."""
        inner = ", ".join(a.to_text() for a in self.args)
        return f"<nexa_{self.token}>({inner}){NEXA_END}"

    def to_plain(self) -> str:
        """The same call without functional tokens, e.g. ``pick_up('red cup')`` (plain-text mode)."""
        return f"{self.function}(" + ", ".join(a.to_text() for a in self.args) + ")"

    def kwargs(self) -> dict[str, str | int | float | bool]:
        """Argument values by name."""
        return {a.name: a.value for a in self.args}

    def __str__(self) -> str:
        return self.to_plain()


# ----------------------------------------------------------------------------- formatting
def quote_string(value: str) -> str:
    """Single-quote ``value`` with ``\\\\`` and ``\\'`` escapes."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def format_float(value: float) -> str:
    """Canonical float text: ``%.2f`` without trailing zeros but with at least one decimal.

    ``0.5 -> '0.5'``, ``1 -> '1.0'``, ``0.25 -> '0.25'``, ``0.125 -> '0.12'``, ``-0.001 -> '0.0'``.
    Raises :class:`ValueError` for NaN and infinities.
    """
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"cannot format non-finite float {value!r}")
    text = f"{value:.2f}".rstrip("0")
    if text.endswith("."):
        text += "0"
    return "0.0" if text == "-0.0" else text


def canonical_float(value: float) -> float:
    """``value`` rounded the way :func:`format_float` writes it (what parsing the text gives back)."""
    return float(format_float(value))


def format_value(type_: str, value: Any) -> str:
    """Canonical text of one argument value of declared type ``type_``."""
    if type_ in ("string", "enum"):
        return quote_string(str(value))
    if type_ == "int":
        return str(int(value))
    if type_ == "float":
        return format_float(value)
    if type_ == "bool":
        return "True" if value else "False"
    raise ValueError(f"unknown argument type {type_!r}")


# ----------------------------------------------------------------------------- checks
def check_value(arg: ArgSpec, value: Any) -> tuple[ErrorKind, str] | None:
    """Check one Python value against its :class:`ArgSpec`; ``(kind, message)`` or None if valid."""
    t = arg.type
    if t in ("string", "enum"):
        if not isinstance(value, str):
            return ErrorKind.ARG_TYPE, f"{arg.name}: expected a {t}, got {type(value).__name__}"
        if t == "enum":
            if value not in arg.values:
                return ErrorKind.ENUM_VALUE, f"{arg.name}: {value!r} is not one of {list(arg.values)}"
            return None
        if not value:
            return ErrorKind.BAD_STRING, f"{arg.name}: empty string"
        if len(value) > arg.max_length:
            return ErrorKind.STRING_TOO_LONG, f"{arg.name}: {len(value)} characters (max {arg.max_length})"
        bad = STRING_FORBIDDEN.search(value)
        if bad:
            return ErrorKind.BAD_STRING, f"{arg.name}: character {bad.group(0)!r} is not allowed in a string"
        return None
    if t == "bool":
        if not isinstance(value, bool):
            return ErrorKind.ARG_TYPE, f"{arg.name}: expected True or False, got {type(value).__name__}"
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (t == "int" and isinstance(value, float))
    ):
        return (
            ErrorKind.ARG_TYPE,
            f"{arg.name}: expected {'an int' if t == 'int' else 'a float'}, got {value!r}",
        )
    if isinstance(value, float) and not math.isfinite(value):
        return ErrorKind.ARG_RANGE, f"{arg.name}: {value!r} is not a finite number"
    if not arg.min <= value <= arg.max:
        return ErrorKind.ARG_RANGE, f"{arg.name}: {value!r} is outside [{arg.min}, {arg.max}]"
    return None


def check_function(
    spec: FunctionSpec | None, allowed: frozenset[str], what: str
) -> tuple[ErrorKind, str] | None:
    """Whether function ``spec`` (None = unknown ``what``) may be called under ``allowed``."""
    if spec is None:
        return ErrorKind.UNKNOWN_FUNCTION, f"unknown function {what}"
    if not spec.enabled:
        return ErrorKind.DISABLED, f"{spec.name} is disabled"
    if spec.name not in allowed:
        return ErrorKind.NOT_ALLOWED, f"{spec.name} is not on the allowlist {sorted(allowed)}"
    return None


def _call_text(call: Any) -> str:
    try:
        return call.to_text()
    except Exception:  # a malformed Call: still report it
        return repr(call)


def validate_call(call: Call, registry: FunctionRegistry, allowlist=None) -> ParseError | None:
    """Re-check ``call`` against the registry and ``allowlist`` (None/empty = every enabled function).

    Returns None when the call may be published, else a :class:`ParseError`. Used again on the
    parser's output right before publishing (defence in depth). Never raises for a bad call.
    """
    allowed = registry.allowed_names(allowlist)
    spec = registry.by_name(getattr(call, "function", None)) if isinstance(call, Call) else None
    problem = check_function(spec, allowed, repr(getattr(call, "function", call)))
    if problem is None:
        problem = _check_call_args(call, spec)
    if problem is None:
        return None
    kind, message = problem
    return ParseError(kind, message, _call_text(call))


def _check_call_args(call: Call, spec: FunctionSpec) -> tuple[ErrorKind, str] | None:
    if call.token != spec.token:
        return ErrorKind.UNKNOWN_TOKEN, f"{spec.name} has token {spec.token}, the call says {call.token!r}"
    args = call.args
    if not isinstance(args, tuple) or len(args) != len(spec.args):
        n = len(args) if isinstance(args, tuple) else args
        return ErrorKind.ARG_COUNT, f"{spec.name} takes {len(spec.args)} argument(s), got {n!r}"
    for got, arg in zip(args, spec.args, strict=True):
        if not isinstance(got, ArgValue) or got.name != arg.name or got.type != arg.type:
            return ErrorKind.ARG_TYPE, f"{spec.name}: expected argument {arg.name}: {arg.type}, got {got!r}"
        problem = check_value(arg, got.value)
        if problem is not None:
            return problem
    return None


def make_call(registry: FunctionRegistry, function: str, *args: Any, **kwargs: Any) -> Call:
    """Build a schema-valid :class:`Call` from Python values, e.g. ``make_call(reg, 'place', 'cup', 'box')``.

    Arguments may be positional or by name. Ints are accepted for float arguments, and floats are
    rounded to canonical precision (:func:`canonical_float`) so ``Call.to_text()`` round-trips.
    Enabled state and allowlists are not checked (use :func:`validate_call`). Raises
    :class:`ParseError` (a ValueError) when the call does not fit the schema.
    """
    spec = registry.by_name(function)
    if spec is None:
        raise ParseError(ErrorKind.UNKNOWN_FUNCTION, f"unknown function {function!r}")
    if len(args) > len(spec.args):
        raise ParseError(
            ErrorKind.ARG_COUNT, f"{function} takes {len(spec.args)} argument(s), got {len(args)}"
        )
    values = dict(zip((a.name for a in spec.args), args, strict=False))
    for name, value in kwargs.items():
        if name in values or all(a.name != name for a in spec.args):
            raise ParseError(ErrorKind.ARG_NAME, f"{function}: unexpected or repeated argument {name!r}")
        values[name] = value
    out = []
    for arg in spec.args:
        if arg.name not in values:
            raise ParseError(ErrorKind.ARG_COUNT, f"{function}: missing argument {arg.name!r}")
        value = values[arg.name]
        if arg.type == "float" and isinstance(value, int | float) and not isinstance(value, bool):
            value = canonical_float(value) if math.isfinite(value) else float(value)
        problem = check_value(arg, value)
        if problem is not None:
            raise ParseError(problem[0], problem[1])
        out.append(ArgValue(arg.name, arg.type, value))
    return Call(spec.name, spec.token, tuple(out))
