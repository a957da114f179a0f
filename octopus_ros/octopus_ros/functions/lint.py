"""Registry checks that are not errors: training phrasings that will teach the model the wrong thing.

A function's own name word, taught only as a decline. In the bundled registry the English verb
"recycle" is in no training phrasing of ``recycle`` ("recycle the {obj}" and "recycle this" are
held out for the unseen-phrasing split) and in one decline phrasing, the unsafe "recycle the dog".
The model then learns the word as a reason to decline: every English request that says
"recycle" was declined at a confidence near 1.0 (5 of the 32 unseen-phrasing misses of the
bundled model, and 4 requests of the natural set). :func:`decline_only_names` finds such words
for any registry: a word of a function's name that the decline function's training phrasings
say and no other function's training phrasing (``phrasings:`` not held out, ``examples:``) says,
per language that writes words apart (Chinese has no name words to compare). ``octopus_finetune``
and ``train_all`` log each finding as a warning; the fix is a training phrasing of the function
that says the word, or the decline phrasing held out.

Pure Python: no torch, no rclpy.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from typing import Any

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class Finding:
    """``word`` of ``function``'s name is trained, in ``language``, only in ``declines``."""

    function: str
    word: str
    language: str
    declines: tuple[str, ...]

    def describe(self) -> str:
        shown = ", ".join(repr(d) for d in self.declines[:3])
        return (
            f"{self.function}: the word {self.word!r} of its name is in no {self.language} training phrasing of"
            f" any function and in the decline phrasing(s) {shown}: the model will learn it as a reason to"
            f" decline; give {self.function} a training phrasing that says it, or hold the decline phrasing out"
        )


def _text(say: str) -> str:
    """A phrasing without its ``{slot}`` fields."""
    return "".join(literal for literal, _, _, _ in string.Formatter().parse(say))


def _words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def decline_only_names(registry: Any) -> list[Finding]:
    """Name words taught only as declines (see the module docstring), in registry order."""
    specs = list(registry)
    declines: dict[str, list[str]] = {}
    acting: dict[str, set[str]] = {}
    for spec in specs:
        for lang, says in spec.training_says().items():
            texts = [_text(say) for say in says]
            if spec.decline:
                declines.setdefault(lang, []).extend(texts)
            else:
                for text in texts:
                    acting.setdefault(lang, set()).update(_words(text))
    findings = []
    for spec in specs:
        if spec.decline:
            continue
        for word in dict.fromkeys(w for w in spec.name.lower().split("_") if len(w) >= 3):
            for lang, texts in declines.items():
                said = tuple(t for t in texts if word in _words(t))
                if said and word not in acting.get(lang, set()):
                    findings.append(Finding(spec.name, word, lang, said))
    return findings
