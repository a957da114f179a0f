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
import re
from collections.abc import Mapping, Sequence
from typing import Any

MIN_CHARS, MAX_CHARS = 6, 48


def message_bodies(corpus: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Sentences of ``corpus`` (language -> sentences) usable as a message body, without the full
    stops / exclamation marks that end them (a body often ends the request, and the model never
    reads a request's ending marks: lean/prompt.py ``model_utterance``): 6-48 characters,
    printable, and nothing the call grammar refuses in a string (``<`` ``>``)."""
    from octopus_ros.lean.prompt import model_utterance

    return {
        lang: [
            t
            for t in map(model_utterance, sentences)
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


# what a fragment may not begin or end with: spaces and punctuation (ASCII and CJK)
_EDGE = " \t\"'()[]{}.,;:!?-\u2014\u2013\u2026\u3002\uff0c\u3001\uff1b\uff1a\uff01\uff1f\u201c\u201d\u2018\u2019\u300a\u300b\uff08\uff09"
# the marks that end a clause (ASCII and CJK): a fragment starts at a sentence's start or after
# one; the span copier's training also strips them around a message (training/span_copier.py)
CLAUSE_PUNCT = ".,;:!?\u3002\uff0c\u3001\uff1b\uff1a\uff01\uff1f"
_CLAUSE_END = re.compile(rf"[{re.escape(CLAUSE_PUNCT)}]\s*")


def body_fragment(
    sentence: str, language: str, rng: Any, max_words: int = 6, max_chars: int = 8
) -> str | None:
    """A short piece of ``sentence`` as a message body ("晚饭七点", "call me", "猫没事" are real
    messages; the corpus's 6-48 character sentences are never that short): the first
    1-``max_words`` words of one of its clauses in English, the first 2-``max_chars`` characters of
    one in Chinese, with no space or punctuation at either end. A clause's start is where a
    message starts too, so a copier trained on fragments learns that a message may be short and
    may begin with any word, not that it may begin anywhere. None when no such piece is left.
    ``rng``: a ``random.Random``."""
    clauses = [c.strip(_EDGE) for c in _CLAUSE_END.split(sentence)]
    clauses = [c for c in clauses if len(c) >= 2]
    if not clauses:
        return None
    clause = rng.choice(clauses)
    if language == "zh":
        piece = clause[: rng.randint(2, max(2, min(max_chars, len(clause))))].strip(_EDGE)
    else:
        words = clause.split()
        piece = " ".join(words[: rng.randint(1, min(max_words, len(words)))]).strip(_EDGE)
    return piece if len(piece) >= 2 and not set(piece) & {"<", ">"} else None
