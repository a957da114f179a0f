"""Instruction augmentation for training: word dropout that never touches slot words.

Dropping a few template words (``could you grab the red cup for me`` -> ``you grab red cup for
me``) keeps a small LM from memorising whole phrasings, so it leans on the words that carry
the intent; it is the usual remedy for a model that only knows its training templates. Slot
words (colours, categories, pets, places, bins, locations, contacts) are never dropped, so
the answer stays true. English drops whitespace words, Chinese drops characters.
No rclpy, no torch.
"""

from __future__ import annotations

import re
from functools import cache

import numpy as np

from .instructions import BIN_WORDS, CONTACTS, LOCATIONS, PET_WORDS, PLACES
from .world import CATEGORIES, COLOURS

# Functions whose instruction is copied into the answer or fixes a number: never augmented.
NOT_AUGMENTED: frozenset[str] = frozenset({"send_message", "set_speed", "no_action"})
_EN_WORD = re.compile(r"[a-z]+")


@cache
def protected_vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """(English words, Chinese characters) that word dropout must keep."""
    en: set[str] = set()
    zh: set[str] = set()
    for col in COLOURS.values():
        en.update(_EN_WORD.findall(col.en.lower()))
        zh.update(col.zh + col.zh_short)
    for cat in CATEGORIES.values():
        en.update(_EN_WORD.findall(cat.en.lower()))
        zh.update(cat.zh)
    for vocab in (PET_WORDS, PLACES, BIN_WORDS, LOCATIONS, CONTACTS):
        for words in vocab.values():
            for w in words["en"]:
                en.update(_EN_WORD.findall(w.lower()))
            for w in words["zh"]:
                zh.update(w)
    zh.discard(" ")
    return frozenset(en), frozenset(zh)


def word_dropout(text: str, language: str, rng: np.random.Generator, p: float = 0.12) -> str:
    """Drop each unprotected English word / Chinese character of ``text`` with probability ``p``.

    At least one unprotected unit is always kept; a text with nothing droppable is returned
    unchanged. ``language`` is ``'en'`` or ``'zh'``.
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p}")
    en_keep, zh_keep = protected_vocabulary()
    if language == "en":
        units = text.split(" ")
        droppable = [i for i, u in enumerate(units) if not (set(_EN_WORD.findall(u.lower())) & en_keep)]
        sep = " "
    elif language == "zh":
        units = list(text)
        droppable = [
            i for i, u in enumerate(units) if u not in zh_keep and not u.isspace() and not u.isascii()
        ]
        sep = ""
    else:
        raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")
    if len(droppable) < 2:
        return text
    drop = {i for i in droppable if rng.random() < p}
    if len(drop) >= len(droppable):
        drop.discard(droppable[int(rng.integers(0, len(droppable)))])
    out = sep.join(u for i, u in enumerate(units) if i not in drop)
    return out if out.strip() else text
