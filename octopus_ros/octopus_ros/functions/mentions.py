"""Is an argument's value said in the request? The ``named: true`` rule of the registry.

A ``named`` enum argument (send_message's contact) takes a value only when the utterance names it:
one of the value's spoken forms (:meth:`ArgSpec.spoken_forms`) occurs in the utterance. A call
that fills it with a value the user never said ("text Carol that dinner is at seven" decided as
``send_message('bob', …)``) is a guess about who should receive it, and the runtime declines it
(runtime/outcomes.py). Matching ignores case; a form that starts or ends with a latin letter or a
digit must not continue a latin word there ("bob" is not in "bobsleigh", but is in "跟Bob说").
Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .language import fold_input, negated


@lru_cache(maxsize=512)
def _pattern(form: str) -> re.Pattern[str]:
    body = r"\s+".join(re.escape(word) for word in form.split())
    head = r"(?<![A-Za-z0-9])" if form[:1].isascii() and form[:1].isalnum() else ""
    tail = r"(?![A-Za-z0-9])" if form[-1:].isascii() and form[-1:].isalnum() else ""
    return re.compile(head + body + tail, re.IGNORECASE)


def says(utterance: str, forms: tuple[str, ...], *, plainly: bool = False) -> bool:
    """Whether ``utterance`` contains one of ``forms`` (see the module doc for the rule).

    ``plainly``: an occurrence right after a negation (functions/language.negated: "别开着",
    "don't ... on") does not count, as the value is said as the one not wanted."""
    text = fold_input(utterance)  # full-width letters, Traditional characters: as the model reads them
    for form in forms:
        if form.strip():
            for found in _pattern(form.strip()).finditer(text):
                if not (plainly and negated(text, found.start())):
                    return True
    return False


def mention_spans(utterance: str, forms: tuple[str, ...]) -> list[tuple[int, int]]:
    """Character ranges of every occurrence of one of ``forms`` in ``utterance``, by the same rule
    as :func:`says` (the span copier keeps clear of them: lean/copier.py)."""
    text = fold_input(utterance)  # one character for one: the ranges are the utterance's
    return [m.span() for form in forms if form.strip() for m in _pattern(form.strip()).finditer(text)]


def unnamed_args(spec: Any, call: Any, utterance: str) -> list[tuple[str, Any]]:
    """``(argument, value)`` of each ``named`` argument of ``call`` whose value ``utterance``
    does not say; empty when every one is said (or the function has none)."""
    by_name = {a.name: a for a in getattr(spec, "args", ())}
    out = []
    for arg in call.args:
        declared = by_name.get(arg.name)
        if declared is not None and declared.named and not says(utterance, declared.spoken_forms(arg.value)):
            out.append((arg.name, arg.value))
    return out
