"""Parse model output into a :class:`~octopus_ros.functions.calls.Call`, or say precisely why not.

Two entry points, both *total* (they return a :class:`ParseError` for every bad input and never
raise for any text):

- :func:`parse_call` reads the functional-token form the model is trained on,
  ``<nexa_1>('red cup', 'shelf')<nexa_end>``. It is strict about the canonical syntax (the
  separator is exactly ``", "``, strings use single quotes) with one leniency: a float argument
  may be written as an int or with more decimals. Everything the grammar accepts parses.
  Text after ``<nexa_end>`` is ignored; text before the functional token is an error.
- :func:`parse_plain` reads the plain-text baseline: ``pick_up('red cup')`` (single or double
  quotes, keyword arguments, free whitespace, text around the call) or JSON
  ``{"function": "pick_up", "args": {"object": "red cup"}}``.

Truncated text (the output ended before the call was complete) gives ``NO_END``; a wrong
character gives ``BAD_SYNTAX``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .calls import (
    NEXA_END,
    ArgValue,
    Call,
    ErrorKind,
    ParseError,
    check_function,
    check_value,
    validate_call,
)
from .registry import ArgSpec, FunctionRegistry, FunctionSpec

__all__ = ["parse_call", "parse_plain", "validate_call"]

log = logging.getLogger(__name__)

_TOKEN_RE = re.compile(r"<nexa_([0-9]+)>")
_BARE_RE = re.compile(r"[^,()'\"\s]+")
_KEYWORD_RE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=(?!=)\s*")
_CALL_RE = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)\s*\(")
_INT_STRICT_RE = re.compile(r"-?(?:0|[1-9][0-9]*)")
_INT_LENIENT_RE = re.compile(r"-?[0-9]+")
_FLOAT_RE = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)\s*```", re.DOTALL)
_MAX_NUMBER_CHARS = 400  # longer number text is out of range for any sane schema; never converted
_STOP = {"'": re.compile(r"['\\]"), '"': re.compile(r"[\"\\]")}


class _RejectError(Exception):
    """Internal: a parse failure with its kind and position; turned into a ParseError."""

    def __init__(self, kind: ErrorKind, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.position = kind, message, position


@dataclass(frozen=True)
class _Raw:
    """One scanned argument: quoted string content or bare text, optional keyword, position."""

    quoted: bool
    text: str
    position: int
    keyword: str | None = None


# ----------------------------------------------------------------------------- public API
def parse_call(
    text: str, registry: FunctionRegistry, *, allowlist: Iterable[str] | None = None
) -> Call | ParseError:
    """Parse functional-token text such as ``<nexa_3>()<nexa_end>``; never raises for any text.

    ``allowlist``: function names (None/empty = every enabled function; the decline function is
    always allowed; unknown names raise ValueError, a configuration error).
    """
    allowed = registry.allowed_names(allowlist)
    return _guarded(_parse_tokens, text, registry, allowed)


def parse_plain(
    text: str, registry: FunctionRegistry, allowlist: Iterable[str] | None = None
) -> Call | ParseError:
    """Parse plain-text ``name(args)`` or JSON ``{"function": ..., "args": {...}}``; never raises.

    Text that starts with a functional token is handed to :func:`parse_call`.
    """
    allowed = registry.allowed_names(allowlist)
    return _guarded(_parse_plain, text, registry, allowed)


def _guarded(parse, text: Any, registry: FunctionRegistry, allowed: frozenset[str]) -> Call | ParseError:
    if not isinstance(text, str):
        return ParseError(ErrorKind.BAD_SYNTAX, f"expected text, got {type(text).__name__}", repr(text))
    try:
        return parse(text, registry, allowed)
    except _RejectError as e:
        log.debug("rejected %r: %s %s", text[:200], e.kind, e.message)
        return ParseError(e.kind, e.message, text, e.position)
    except Exception as e:  # a parser bug must never escape to the node
        log.exception("parser bug on %r", text[:200])
        return ParseError(ErrorKind.INTERNAL, f"parser error: {type(e).__name__}: {e}", text)


# ----------------------------------------------------------------------------- functional tokens
def _parse_tokens(text: str, registry: FunctionRegistry, allowed: frozenset[str]) -> Call:
    n = len(text)
    i = n - len(text.lstrip())
    if i == n:
        raise _RejectError(ErrorKind.EMPTY, "no output")
    m = _TOKEN_RE.match(text, i)
    if m is None:
        if _TOKEN_RE.search(text, i):
            raise _RejectError(ErrorKind.BAD_SYNTAX, "text before the functional token", i)
        raise _RejectError(ErrorKind.NO_FUNCTION_TOKEN, "no functional token <nexa_i> at the start", i)
    digits = m.group(1)
    spec = (
        None if (len(digits) > 1 and digits[0] == "0") or len(digits) > 9 else registry.by_token(int(digits))
    )
    if spec is None:
        raise _RejectError(ErrorKind.UNKNOWN_TOKEN, f"{m.group(0)} is not a function of the registry", i)
    _raise_function_problem(spec, allowed)
    i = m.end()
    if i >= n:
        raise _RejectError(ErrorKind.NO_END, f"text ends after {m.group(0)}", i)
    if text[i] != "(":
        raise _RejectError(ErrorKind.BAD_SYNTAX, f"expected '(' after {m.group(0)}, got {text[i]!r}", i)
    items, i = _scan_strict(text, i + 1)
    args = _bind(spec, items, lenient=False)
    if not text.startswith(NEXA_END, i):
        rest = text[i:]
        if NEXA_END.startswith(rest):
            raise _RejectError(ErrorKind.NO_END, "the call is not closed by <nexa_end>", i)
        raise _RejectError(ErrorKind.BAD_SYNTAX, f"expected <nexa_end> after ')', got {rest[:12]!r}", i)
    if text[i + len(NEXA_END) :].strip():
        log.debug("ignoring text after <nexa_end>: %r", text[i + len(NEXA_END) : i + 60])
    return Call(spec.name, spec.token, args)


def _raise_function_problem(spec: FunctionSpec | None, allowed: frozenset[str], what: str = "") -> None:
    problem = check_function(spec, allowed, what)
    if problem is not None:
        raise _RejectError(*problem)


def _scan_strict(text: str, i: int) -> tuple[list[_Raw], int]:
    """Canonical argument list after '(': values separated by exactly ', ', then ')'."""
    n = len(text)
    if i >= n:
        raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)
    if text[i] == ")":
        return [], i + 1
    items = []
    while True:
        item, i = _scan_value(text, i, lenient=False)
        items.append(item)
        if i >= n:
            raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)
        c = text[i]
        if c == ")":
            return items, i + 1
        if c != ",":
            raise _RejectError(ErrorKind.BAD_SYNTAX, f"expected ', ' or ')' after an argument, got {c!r}", i)
        if i + 1 < n and text[i + 1] != " ":
            raise _RejectError(
                ErrorKind.BAD_SYNTAX, "arguments are separated by ', ' (comma and one space)", i
            )
        i += 2
        if i >= n:
            raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)


def _scan_value(text: str, i: int, *, lenient: bool) -> tuple[_Raw, int]:
    """One value at ``text[i]``: a quoted string (escapes resolved) or a bare token."""
    n = len(text)
    c = text[i]
    if c == "'" or (lenient and c == '"'):
        stop = _STOP[c]
        parts = []
        j = i + 1
        while True:
            m = stop.search(text, j)
            if m is None:
                raise _RejectError(ErrorKind.NO_END, "text ends inside a string", n)
            k = m.start()
            parts.append(text[j:k])
            if text[k] == c:
                return _Raw(True, "".join(parts), i), k + 1
            if k + 1 >= n:
                raise _RejectError(ErrorKind.NO_END, "text ends inside a string escape", n)
            escaped = text[k + 1]
            if not lenient and escaped not in "\\'":
                raise _RejectError(ErrorKind.BAD_SYNTAX, f"invalid escape \\{escaped} (only \\\\ and \\')", k)
            parts.append(escaped)
            j = k + 2
    m = _BARE_RE.match(text, i)
    if m is None:
        raise _RejectError(ErrorKind.BAD_SYNTAX, f"expected an argument value, got {c!r}", i)
    return _Raw(False, m.group(0), i), m.end()


def _bind(spec: FunctionSpec, items: list[_Raw], *, lenient: bool) -> tuple[ArgValue, ...]:
    """Match scanned values to the declared arguments and convert them."""
    declared = spec.args
    by_arg: dict[str, _Raw] = {}
    positional = [r for r in items if r.keyword is None]
    if len(positional) > len(declared):
        raise _RejectError(
            ErrorKind.ARG_COUNT, f"{spec.name} takes {len(declared)} argument(s), got {len(items)}"
        )
    seen_keyword = False
    for raw in items:
        if raw.keyword is None:
            if seen_keyword:
                raise _RejectError(
                    ErrorKind.BAD_SYNTAX, "positional argument after a keyword argument", raw.position
                )
            by_arg[declared[len(by_arg)].name] = raw
            continue
        seen_keyword = True
        if raw.keyword in by_arg or all(a.name != raw.keyword for a in declared):
            raise _RejectError(
                ErrorKind.ARG_NAME,
                f"{spec.name}: unexpected or repeated argument {raw.keyword!r}",
                raw.position,
            )
        by_arg[raw.keyword] = raw
    if len(by_arg) != len(declared):
        missing = [a.name for a in declared if a.name not in by_arg]
        raise _RejectError(
            ErrorKind.ARG_COUNT,
            f"{spec.name} takes {len(declared)} argument(s), got {len(items)} (missing {missing})",
        )
    out = []
    for arg in declared:
        raw = by_arg[arg.name]
        value = _convert(arg, raw, lenient=lenient)
        problem = check_value(arg, value)
        if problem is not None:
            raise _RejectError(problem[0], problem[1], raw.position)
        out.append(ArgValue(arg.name, arg.type, value))
    return tuple(out)


def _convert(arg: ArgSpec, raw: _Raw, *, lenient: bool) -> str | int | float | bool:
    """The Python value of one scanned argument of declared type ``arg.type``."""
    t, s = arg.type, raw.text
    if t in ("string", "enum"):
        if not raw.quoted:
            raise _RejectError(
                ErrorKind.ARG_TYPE, f"{arg.name}: expected a quoted {t}, got {s[:20]!r}", raw.position
            )
        return s
    if raw.quoted:
        raise _RejectError(ErrorKind.ARG_TYPE, f"{arg.name}: expected {t}, got a quoted string", raw.position)
    if t == "bool":
        if s in ("True", "False") or (lenient and s in ("true", "false")):
            return s in ("True", "true")
        raise _RejectError(
            ErrorKind.ARG_TYPE, f"{arg.name}: expected True or False, got {s[:20]!r}", raw.position
        )
    number_re = _FLOAT_RE if t == "float" else _INT_LENIENT_RE if lenient else _INT_STRICT_RE
    if number_re.fullmatch(s) is None:
        raise _RejectError(ErrorKind.ARG_TYPE, f"{arg.name}: expected {t}, got {s[:20]!r}", raw.position)
    if len(s) > _MAX_NUMBER_CHARS:
        raise _RejectError(ErrorKind.ARG_RANGE, f"{arg.name}: number with {len(s)} characters", raw.position)
    return float(s) if t == "float" else int(s)


# ----------------------------------------------------------------------------- plain text / JSON
def _parse_plain(text: str, registry: FunctionRegistry, allowed: frozenset[str]) -> Call:
    s = text.strip()
    if not s:
        raise _RejectError(ErrorKind.EMPTY, "no output")
    if s.startswith("<nexa_"):
        return _parse_tokens(text, registry, allowed)
    fence = _FENCE_RE.search(s)
    if s.startswith("{") or (fence is not None and fence.group(1).startswith("{")):
        return _parse_json(
            fence.group(1) if fence is not None and not s.startswith("{") else s, registry, allowed
        )
    first_unknown = None
    for m in _CALL_RE.finditer(text):
        spec = registry.by_name(m.group(1))
        if spec is None:
            first_unknown = first_unknown or m.group(1)
            continue
        _raise_function_problem(spec, allowed)
        items, _ = _scan_lenient(text, m.end())
        return Call(spec.name, spec.token, _bind(spec, items, lenient=True))
    if first_unknown is not None:
        raise _RejectError(ErrorKind.UNKNOWN_FUNCTION, f"unknown function {first_unknown!r}")
    raise _RejectError(ErrorKind.NO_FUNCTION_TOKEN, "no function call name(...) found")


def _skip_space(text: str, i: int) -> int:
    n = len(text)
    while i < n and text[i].isspace():
        i += 1
    return i


def _scan_lenient(text: str, i: int) -> tuple[list[_Raw], int]:
    """Python-like argument list after '(': whitespace, keywords, either quote, trailing comma."""
    n = len(text)
    items: list[_Raw] = []
    while True:
        i = _skip_space(text, i)
        if i >= n:
            raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)
        if text[i] == ")":
            return items, i + 1
        keyword = None
        m = _KEYWORD_RE.match(text, i)
        if m is not None:
            keyword, i = m.group(1), m.end()
            if i >= n:
                raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)
        raw, i = _scan_value(text, i, lenient=True)
        items.append(_Raw(raw.quoted, raw.text, raw.position, keyword))
        i = _skip_space(text, i)
        if i >= n:
            raise _RejectError(ErrorKind.NO_END, "text ends inside the argument list", i)
        if text[i] == ")":
            return items, i + 1
        if text[i] != ",":
            raise _RejectError(
                ErrorKind.BAD_SYNTAX, f"expected ',' or ')' after an argument, got {text[i]!r}", i
            )
        i += 1


def _parse_json(payload: str, registry: FunctionRegistry, allowed: frozenset[str]) -> Call:
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as e:
        raise _RejectError(ErrorKind.BAD_SYNTAX, f"invalid JSON: {e}"[:200]) from None
    if not isinstance(obj, dict):
        raise _RejectError(ErrorKind.BAD_SYNTAX, "JSON call must be an object")
    name = obj.get("function", obj.get("name"))
    if not isinstance(name, str):
        raise _RejectError(ErrorKind.BAD_SYNTAX, "JSON call needs a string 'function'")
    spec = registry.by_name(name)
    _raise_function_problem(spec, allowed, repr(name[:40]))
    raw_args = obj.get("args", obj.get("arguments"))
    if raw_args is None:
        raw_args = {}
    if isinstance(raw_args, list):
        if len(raw_args) != len(spec.args):
            raise _RejectError(
                ErrorKind.ARG_COUNT, f"{spec.name} takes {len(spec.args)} argument(s), got {len(raw_args)}"
            )
        raw_args = {a.name: v for a, v in zip(spec.args, raw_args, strict=True)}
    if not isinstance(raw_args, dict):
        raise _RejectError(ErrorKind.BAD_SYNTAX, "JSON 'args' must be an object or a list")
    unknown = [k for k in raw_args if all(a.name != k for a in spec.args)]
    if unknown:
        raise _RejectError(ErrorKind.ARG_NAME, f"{spec.name}: unexpected argument(s) {unknown}"[:200])
    missing = [a.name for a in spec.args if a.name not in raw_args]
    if missing:
        raise _RejectError(ErrorKind.ARG_COUNT, f"{spec.name}: missing argument(s) {missing}")
    out = []
    for arg in spec.args:
        value = raw_args[arg.name]
        if arg.type == "float" and isinstance(value, int) and not isinstance(value, bool):
            try:
                value = float(value)
            except OverflowError:
                raise _RejectError(ErrorKind.ARG_RANGE, f"{arg.name}: number too large") from None
        problem = check_value(arg, value)
        if problem is not None:
            raise _RejectError(problem[0], problem[1][:300])
        out.append(ArgValue(arg.name, arg.type, value))
    return Call(spec.name, spec.token, tuple(out))
