"""Captions and visual question answering for alignment pretraining (scene -> text).

- :func:`caption`: ``"a photo of a red cup and a black shoe"`` / ``"一张红色杯子和黑色鞋子的照片"``,
  objects from most to least salient (target first); ``target_only=True`` gives the CLIP-style
  ``"a photo of a red cup"``.
- :func:`vqa_pair`: one question about the scene and its short answer, in the asked language
  (colour of an object, the main object, presence, count, which object has a colour).

Answers are plain text (no functional token). Questions are worded so that none of them is a
phrasing of a robot function (describe_scene in particular); a test checks this.
"""

from __future__ import annotations

import numpy as np

from .world import CATEGORIES, COLOURS, Scene, SceneObject

CAPTION_PROMPTS: dict[str, tuple[str, ...]] = {
    "en": ("Write a caption for this photo.",),
    "zh": ("给这张照片写一句说明。",),
}


def with_article(name: str) -> str:
    """``'red cup' -> 'a red cup'``, ``'orange ball' -> 'an orange ball'``, ``'keys' -> 'some keys'``."""
    if name.endswith("keys"):
        return "some " + name
    return ("an " if name[:1] in "aeiou" else "a ") + name


def _join_en(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + " and " + items[-1]


def _join_zh(items: list[str]) -> str:
    if len(items) == 1:
        return items[0]
    return "、".join(items[:-1]) + "和" + items[-1]


def caption(scene: Scene, language: str = "en", *, target_only: bool = False) -> str:
    """Canonical caption of ``scene`` (see the module docstring)."""
    objects = [scene.target] if target_only else scene.by_saliency()
    if language == "en":
        return "a photo of " + _join_en([with_article(o.name("en")) for o in objects])
    if language == "zh":
        return "一张" + _join_zh([o.name("zh") for o in objects]) + "的照片"
    raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")


def _cat_word(category: str, language: str) -> str:
    return CATEGORIES[category].en if language == "en" else CATEGORIES[category].zh


_Q = {
    "colour": {
        "en": ("what colour is the {c}?", "what color is the {c}?", "which colour is the {c}?"),
        "zh": ("{c}是什么颜色的？", "{c}是什么颜色？"),
    },
    "main": {
        "en": ("what is the biggest object in view?", "what is the main object in front of you?"),
        "zh": ("画面中最显眼的东西是什么？", "你正前方最大的物体是什么？"),
    },
    "exists": {
        "en": ("is there a {c} in the picture?", "can you see a {c}?"),
        "zh": ("图里有{c}吗？", "你能看到{c}吗？"),
    },
    "count": {
        "en": ("how many objects can you see?", "how many things are in the picture?"),
        "zh": ("你能看到几个物体？", "图里有几样东西？"),
    },
    "which": {
        "en": ("what is the {c} thing?", "which object is {c}?"),
        "zh": ("{c}的东西是什么？", "哪个东西是{c}的？"),
    },
}
VQA_KINDS: tuple[str, ...] = tuple(_Q)


def vqa_questions() -> list[str]:
    """Every question format string (for checks against instruction templates)."""
    return [q for by_lang in _Q.values() for qs in by_lang.values() for q in qs]


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list) -> object:
    return items[int(rng.integers(0, len(items)))]


def _count_answer(n: int, language: str) -> str:
    return str(n) if language == "en" else f"{n}个"


def vqa_pair(scene: Scene, language: str, rng: np.random.Generator) -> tuple[str, str, str]:
    """One ``(question, answer, kind)`` about ``scene`` in ``language``, drawn with ``rng``.

    Kinds whose answer would be ill-defined are skipped: "main" needs the salient layout,
    "which" needs a colour that exactly one object has.
    """
    if language not in ("en", "zh"):
        raise ValueError(f"unknown language {language!r}; expected 'en' or 'zh'")
    colourful = [o for o in scene.objects if CATEGORIES[o.category].colour_in_name]
    colour_counts: dict[str, int] = {}
    for o in scene.objects:
        colour_counts[o.colour] = colour_counts.get(o.colour, 0) + 1
    unique_colour = [o for o in scene.objects if colour_counts[o.colour] == 1]
    kinds = ["exists", "count"]
    if colourful:
        kinds.append("colour")
    if scene.layout == "salient":
        kinds.append("main")
    if unique_colour:
        kinds.append("which")
    kind = str(_pick(rng, kinds))
    q = str(_pick(rng, _Q[kind][language]))
    yes, no = ("yes", "no") if language == "en" else ("有", "没有")
    if kind == "colour":
        obj: SceneObject = _pick(rng, colourful)  # type: ignore[assignment]
        col = COLOURS[obj.colour]
        return q.format(c=_cat_word(obj.category, language)), (col.en if language == "en" else col.zh), kind
    if kind == "main":
        name = scene.target.name(language)
        return q, (with_article(name) if language == "en" else name), kind
    if kind == "exists":
        present = [o.category for o in scene.objects]
        if rng.random() < 0.5:
            cat, ans = str(_pick(rng, present)), yes
        else:
            absent = [c for c in CATEGORIES if c not in present]
            cat, ans = str(_pick(rng, absent)), no
        return q.format(c=_cat_word(cat, language)), ans, kind
    if kind == "count":
        return q, _count_answer(len(scene.objects), language), kind
    obj = _pick(rng, unique_colour)  # type: ignore[assignment]
    col = COLOURS[obj.colour]
    word = col.en if language == "en" else col.zh
    answer = with_article(CATEGORIES[obj.category].en) if language == "en" else CATEGORIES[obj.category].zh
    return q.format(c=word), answer, kind


__all__ = ["CAPTION_PROMPTS", "VQA_KINDS", "caption", "vqa_pair", "vqa_questions", "with_article"]
