"""Fixed in-context examples for the node (``context_examples``): "utterance => call" entries.

Each entry is one example the model sees before every request (see octopus_ros/model/prompt.py),
written as the user would say it, ``=>``, then the call by name or in the model's form::

    pick up the red cup => pick_up('red cup')
    去厨房 => navigate_to(place='kitchen')
    stop => <nexa_3>()<nexa_end>

The first ``=>`` separates the two; the utterance follows the rules of a spoken one
(:func:`octopus_ros.runtime.guards.clean_utterance`: no control characters, no token text). :func:`parse_context_examples` checks the form (without a
registry, what a parameter callback can check at any time) and, given a registry, that each call
is a valid call of an enabled function; every error names the entry by index and text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

SEPARATOR = "=>"
MAX_EXAMPLES = 8  # each example lengthens every prompt (~15-30 tokens)
MAX_ENTRY_LENGTH = 300  # characters


class ContextExampleError(ValueError):
    """A context example entry is not acceptable; the message names it."""


def parse_context_examples(
    entries: Iterable[str], registry: Any = None, allowlist: Iterable[str] | None = None
) -> tuple[tuple[str, str], ...]:
    """``("utterance => call", ...)`` -> ``((utterance, canonical call text), ...)``.

    Empty entries are skipped (a ROS string array cannot be empty, so ``['']`` means none).
    Without ``registry`` the call text is returned as written; with one (a FunctionRegistry) it
    must be a valid call of an enabled function and is returned as ``<nexa_i>(...)<nexa_end>``;
    with an ``allowlist`` too (the node's ``allowed_functions``; None or empty = every enabled
    function), a function it does not allow: an example would show the model a call the node
    then refuses. Raises :class:`ContextExampleError` naming the first bad entry.
    """
    from octopus_ros.functions import ParseError, parse_plain
    from octopus_ros.runtime.guards import InvalidUtteranceError, clean_utterance

    allowed = registry.allowed_names(allowlist) if registry is not None and allowlist else None
    kept = [(i, e) for i, e in enumerate(entries) if not (isinstance(e, str) and not e.strip())]
    if len(kept) > MAX_EXAMPLES:
        raise ContextExampleError(f"context_examples has {len(kept)} entries; at most {MAX_EXAMPLES}")
    out = []
    for i, entry in kept:
        where = f"context_examples[{i}] {entry!r}"
        if not isinstance(entry, str):
            raise ContextExampleError(f"{where}: must be text 'utterance => call'")
        if len(entry) > MAX_ENTRY_LENGTH:
            raise ContextExampleError(f"{where}: longer than {MAX_ENTRY_LENGTH} characters")
        if SEPARATOR not in entry:
            raise ContextExampleError(f"{where}: has no '{SEPARATOR}' (write 'utterance {SEPARATOR} call')")
        utterance, call_text = (part.strip() for part in entry.split(SEPARATOR, 1))
        if not utterance:
            raise ContextExampleError(f"{where}: the utterance before '{SEPARATOR}' is empty")
        try:  # the same rules as a spoken utterance: no control characters, no token text
            utterance = clean_utterance(utterance, max_length=MAX_ENTRY_LENGTH)
        except InvalidUtteranceError as e:
            raise ContextExampleError(f"{where}: the utterance is not acceptable: {e}") from e
        if not call_text:
            raise ContextExampleError(f"{where}: the call after '{SEPARATOR}' is empty")
        if registry is not None:
            call = parse_plain(call_text, registry)
            if isinstance(call, ParseError):
                raise ContextExampleError(f"{where}: {call_text!r} is not a valid call: {call.message}")
            if allowed is not None and call.function not in allowed:
                raise ContextExampleError(
                    f"{where}: calls {call.function!r}, which allowed_functions {sorted(allowlist)} does not"
                    " allow (the example would show the model a call the node refuses)"
                )
            call_text = call.to_text()
        out.append((utterance, call_text))
    return tuple(out)
