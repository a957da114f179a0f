"""Real sentences as message bodies: the stage-4 variation that teaches the model to copy a
span of the utterance instead of recalling one of the templates' messages (issue 12 item 2).

One rule for the two places that train on call records: stage 4 of ``train_all``
(:class:`octopus_ros.training.stages.Trainer`) and the synthetic replay of ``octopus_finetune
--augment``; the span copier's training reads the same bodies. A body is a short sentence of the decline corpus
(:mod:`octopus_ros.data.decline_corpus`) that the call grammar can write (no ``<``/``>``, no
control characters). No torch, no rclpy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

MIN_CHARS, MAX_CHARS = 6, 48


def message_bodies(corpus: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Sentences of ``corpus`` (language -> sentences) usable as a message body: 6-48
    characters, printable, and nothing the call grammar refuses in a string (``<`` ``>``)."""
    return {
        lang: [
            t
            for t in sentences
            if MIN_CHARS <= len(t) <= MAX_CHARS and t.isprintable() and not set(t) & {"<", ">"}
        ]
        for lang, sentences in corpus.items()
    }


def with_body(
    instruction: str, answer: str, registry: Any, body: str, answer_format: str = "functional"
) -> tuple[str, str] | None:
    """``(instruction, answer)`` with the call's copied text (its ``source: utterance``
    argument) replaced by ``body`` in both, the answer written in ``answer_format``; None when
    the answer does not parse or its copied text is not in the instruction."""
    from octopus_ros.functions import ParseError, parse_call
    from octopus_ros.functions.answer_format import write_answer

    call = parse_call(answer, registry)
    if isinstance(call, ParseError):
        return None
    copied = {a.name for a in registry.by_name(call.function).args if a.source == "utterance"}
    old = next((a for a in call.args if a.name in copied), None)
    if old is None or old.value not in instruction:
        return None
    args = tuple(dataclasses.replace(a, value=body) if a is old else a for a in call.args)
    new_call = dataclasses.replace(call, args=args)
    return instruction.replace(old.value, body, 1), write_answer(new_call, answer_format)
