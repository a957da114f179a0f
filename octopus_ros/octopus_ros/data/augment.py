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

from .instructions import BIN_WORDS, CONTACTS, LOCATIONS, PET_WORDS, PLACES, gibberish
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


# Characters never inserted as Chinese noise: negation and numerals could change a meaning.
_ZH_NOT_NOISE = frozenset("不没别零一二三四五六七八九十百两半")


def insert_noise(text: str, language: str, rng: np.random.Generator, max_words: int = 2) -> str:
    """Insert 1..``max_words`` meaningless pseudo-words (en) or short runs of common Chinese
    characters (zh) at random places of ``text``, never inside a slot word.

    An instruction with words the model never saw (a new phrasing) should still be read by
    the words it knows; without this, the only unknown-word utterances in training are the
    gibberish ones that must be declined, which teaches "unknown words -> no_action".
    """
    if max_words < 1:
        raise ValueError(f"max_words must be >= 1, got {max_words}")
    k = int(rng.integers(1, max_words + 1))
    if language == "en":
        en_keep, _ = protected_vocabulary()
        units = text.split(" ")

        def slot(unit: str) -> bool:
            return bool(set(_EN_WORD.findall(unit.lower())) & en_keep)

        for _ in range(k):
            # never between two slot words (red|cup would become "red ba cup")
            cuts = [
                i
                for i in range(len(units) + 1)
                if not (0 < i < len(units) and slot(units[i - 1]) and slot(units[i]))
            ]
            units.insert(cuts[int(rng.integers(0, len(cuts)))], gibberish("en", rng).split(" ")[0])
        return " ".join(units)
    if language == "zh":
        _, zh_keep = protected_vocabulary()
        chars = list(text)
        for _ in range(k):
            run = [c for c in gibberish("zh", rng) if c not in _ZH_NOT_NOISE][:2]
            # never between two slot-word characters (红色|杯子 would become 红色是杯子)
            cuts = [
                i
                for i in range(len(chars) + 1)
                if not (0 < i < len(chars) and chars[i - 1] in zh_keep and chars[i] in zh_keep)
            ]
            i = cuts[int(rng.integers(0, len(cuts)))]
            chars[i:i] = run
        return "".join(chars)
    raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")


# ----------------------------------------------------------------------------- image side
# Two image augmentations that take one attribute away so a vision tower cannot answer the
# other with a colour x category conjunction (which does not carry over to held-out pairs):
# a greyscale image still shows the category but no colour; an image cut into tiles and
# shuffled still shows the colours but no shape. Neither draws anything new, so no held-out
# colour x object pair can appear.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def greyscale(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) uint8 RGB -> the same shape with R = G = B = luma (ITU-R 601)."""
    if images.dtype != np.uint8 or images.shape[-1] != 3:
        raise ValueError(f"expected uint8 RGB images (..., H, W, 3), got {images.dtype} {images.shape}")
    y = np.clip(np.rint(images.astype(np.float32) @ _LUMA), 0, 255).astype(np.uint8)
    return np.repeat(y[..., None], 3, axis=-1)


def shuffle_tiles(image: np.ndarray, tile: int, rng: np.random.Generator) -> np.ndarray:
    """Cut one (H, W, 3) image into ``tile`` x ``tile`` squares and put them back in random order.

    Colours (and how much of each) are kept; shapes are destroyed. H and W must be multiples
    of ``tile``.
    """
    h, w = image.shape[:2]
    if image.ndim != 3 or tile < 1 or h % tile or w % tile:
        raise ValueError(f"image {image.shape} does not split into {tile} px tiles")
    gh, gw = h // tile, w // tile
    tiles = image.reshape(gh, tile, gw, tile, -1).swapaxes(1, 2).reshape(gh * gw, tile, tile, -1)
    tiles = tiles[rng.permutation(gh * gw)]
    return tiles.reshape(gh, gw, tile, tile, -1).swapaxes(1, 2).reshape(image.shape)


def strip_colour_words(caption_text: str) -> str:
    """An English caption without its colour words (the caption of a greyscale image)."""
    words = {c.en for c in COLOURS.values()}
    return " ".join(w for w in caption_text.split(" ") if w.strip(",.") not in words)
