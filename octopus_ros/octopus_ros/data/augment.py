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


def slot_words() -> list[tuple[str, str, str]]:
    """Every word the world puts into an instruction slot, as ``(language, surface form,
    canonical English)``: colour words (and their one-character Chinese forms), categories,
    and the pet / place / bin / location / contact phrases of both languages.

    One list for the two things that must agree on it: what word dropout keeps
    (:func:`protected_vocabulary`) and the bilingual glossary of stage 2
    (:func:`octopus_ros.data.tasks.lexicon_corpus`).
    """
    words: list[tuple[str, str, str]] = []
    for col in COLOURS.values():
        words += [("en", col.en, col.en), ("zh", col.zh, col.en), ("zh", col.zh_short, col.en)]
    for cat in CATEGORIES.values():
        words += [("en", cat.en, cat.en), ("zh", cat.zh, cat.en)]
    for vocab in (PET_WORDS, PLACES, BIN_WORDS, LOCATIONS, CONTACTS):
        for key, forms in vocab.items():
            canonical = key.replace("_", " ")
            words += [("zh", w, canonical) for w in forms["zh"]] + [("en", w, canonical) for w in forms["en"]]
    return words


@cache
def protected_vocabulary() -> tuple[frozenset[str], frozenset[str]]:
    """(English words, Chinese characters) that word dropout must keep: those of :func:`slot_words`."""
    en: set[str] = set()
    zh: set[str] = set()
    for language, surface, _ in slot_words():
        if language == "en":
            en.update(_EN_WORD.findall(surface.lower()))
        else:
            zh.update(surface)
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
