"""How a model writes its answer: functional tokens (the project's format) or JSON text (a baseline).

- ``functional``: ``<nexa_3>('red cup')<nexa_end>`` (:meth:`Call.to_text`), decoded under the call
  grammar (``decode_mode`` constrained).
- ``json``: one compact JSON object with no functional token in it,
  ``{"function":"pick_up","arguments":{"object":"red cup"}}``. Canonical form: keys ``function``
  then ``arguments``; arguments in the registry's order; no spaces outside strings; strings as
  ``json.dumps`` writes them with ``ensure_ascii=False`` (Chinese stays characters); floats as
  :func:`format_float` writes them (``0.5``, at most two decimals, as in the functional form); ints
  as digits; bools ``true``/``false``. The decline is the decline function's call in the same
  form, ``{"function":"no_action","arguments":{}}``. A model trained on it generates freely
  (``transformers.generate`` to eos: ``decode_mode`` plain, no grammar) and
  :func:`~octopus_ros.functions.parse_plain` reads the text back into the same :class:`Call`, so
  both formats are scored by the same code.

Which format a checkpoint was trained on is recorded in its config (``answer_format``; absent =
functional). Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import json
from pathlib import Path

from .calls import Call, ParseError, format_float
from .parser import parse_call, parse_plain
from .registry import FunctionRegistry

ANSWER_FORMATS = ("functional", "json")
DEFAULT_FORMAT = "functional"
# the node's decode_mode that each format can run in (the ones it was trained to write)
DECODE_MODES = {"functional": ("constrained", "generate", "plain"), "json": ("plain",)}


class AnswerFormatError(ValueError):
    """An unknown answer format, or a decoding mode a checkpoint's format cannot run in."""


def check_format(answer_format: str) -> str:
    """``answer_format`` if known; AnswerFormatError otherwise."""
    if answer_format not in ANSWER_FORMATS:
        raise AnswerFormatError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")
    return answer_format


def _json_value(type_: str, value) -> str:
    if type_ == "float":
        return format_float(value)
    if type_ == "bool":
        return "true" if value else "false"
    if type_ == "int":
        return str(int(value))
    return json.dumps(str(value), ensure_ascii=False)


def call_to_json(call: Call) -> str:
    """The canonical JSON text of ``call`` (see the module docstring)."""
    args = ",".join(f"{json.dumps(a.name)}:{_json_value(a.type, a.value)}" for a in call.args)
    return f'{{"function":{json.dumps(call.function)},"arguments":{{{args}}}}}'


def write_answer(call: Call, answer_format: str) -> str:
    """``call`` as a model of ``answer_format`` writes it."""
    if check_format(answer_format) == "json":
        return call_to_json(call)
    return call.to_text()


def convert_answer(functional_text: str, answer_format: str, registry: FunctionRegistry) -> str:
    """A training answer in functional form (``<nexa_i>(...)<nexa_end>``) rewritten in
    ``answer_format``. ValueError naming the text when it is not a valid call of ``registry``."""
    if check_format(answer_format) == "functional":
        return functional_text
    call = parse_call(functional_text, registry)
    if isinstance(call, ParseError):
        raise ValueError(f"not a call of the registry: {functional_text!r} ({call.kind}: {call.message})")
    return call_to_json(call)


def parse_answer(
    text: str, answer_format: str, registry: FunctionRegistry, allowlist=None
) -> Call | ParseError:
    """Model text of ``answer_format`` back into a Call (or a ParseError); never raises for any text."""
    if check_format(answer_format) == "json":
        return parse_plain(text, registry, allowlist)
    return parse_call(text, registry, allowlist=allowlist)


def decode_mode_for(answer_format: str) -> str:
    """The decoding mode that evaluates a model of ``answer_format`` as the node runs it."""
    return "plain" if check_format(answer_format) == "json" else "constrained"


def check_decode_mode(answer_format: str, decode_mode: str, where: str = "the checkpoint") -> None:
    """AnswerFormatError when a model of ``answer_format`` cannot run in ``decode_mode``: a JSON
    model never learned functional tokens, so the call grammar (constrained) and the
    functional-token generate mode would force or wait for tokens it does not write."""
    if decode_mode not in DECODE_MODES[check_format(answer_format)]:
        raise AnswerFormatError(
            f"{where} was trained to answer in {answer_format} text, which decode_mode {decode_mode!r} "
            f"cannot decode; use decode_mode {' or '.join(DECODE_MODES[answer_format])} "
            "(free generation, parsed as JSON; backend torch only: the onnx backend is constrained only)"
        )


def checkpoint_answer_format(path: str | Path) -> str:
    """The answer format recorded in an Octopus checkpoint directory's ``config.json``
    (``model.answer_format``; absent = functional, as for every checkpoint made before it was
    recorded). A directory that is not a readable Octopus checkpoint also gives functional: its
    loader reports that problem with its own error. AnswerFormatError (naming the file) for an
    unknown recorded format."""
    config = Path(path) / "config.json"
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        model = data["model"]
    except (OSError, ValueError, KeyError, TypeError):
        return DEFAULT_FORMAT
    value = model.get("answer_format", DEFAULT_FORMAT) if isinstance(model, dict) else DEFAULT_FORMAT
    try:
        return check_format(value)
    except AnswerFormatError as e:
        raise AnswerFormatError(f"{config}: {e}") from None
