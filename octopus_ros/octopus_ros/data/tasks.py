"""Training and evaluation data: held-out splits, instruction examples, captions, VQA, text corpus.

Splits
------
:func:`make_splits` fixes what is never trained on:

- ``unseen_phrasing``: about 25 % of the templates of every (function, language), stratified by
  mode (named / deictic / text) so training keeps both kinds. Templates that fix an argument by
  their wording ("full speed ahead") and gibberish generators always stay in training. The
  project's split (:func:`default_splits`) is the registry's ``heldout: true`` marks.
- ``unseen_combo``: about 15 % of the (category, colour) pairs of portable items whose names
  carry a colour; every category and every colour keeps at least two training partners.

Generation splits (:data:`SPLITS`):

- ``train``: training templates, no held-out combo anywhere in the image or text;
- ``iid``: the same distribution with different random draws (new scenes);
- ``unseen_phrasing``: held-out templates, training combos;
- ``unseen_combo``: training templates, the target is a held-out combo (distractors are not);
  only the functions whose argument names the object (pick_up, place, recycle, find_item).

The splits depend only on ``make_splits``'s seed (default 0, :func:`default_splits`), never on a
generation seed, so ``generate('train', n, seed=1)`` and ``generate('iid', n, seed=2)`` agree on
what is held out. Every example is a pure function of ``(split, seed, index)`` and the splits
(:func:`generate_one`), which also makes random access (a map-style dataset) cheap.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np

from .augment import slot_words
from .captions import CAPTION_PROMPTS, caption, vqa_pair
from .instructions import (
    BIN_WORDS,
    CONTACTS,
    FUNCTIONS,
    LANGUAGES,
    LOCATIONS,
    MESSAGES,
    OBJECT_FUNCTIONS,
    PET_WORDS,
    PLACES,
    SPEEDS,
    TEMPLATES,
    Template,
    call_text,
    decorate,
    gibberish,
    speed_phrase,
    templates_for,
)
from .render import Size, render
from .world import (
    ANIMALS,
    CATEGORIES,
    COLOURS,
    ITEMS,
    RECYCLE_BIN,
    Combo,
    Scene,
    all_combos,
    object_name,
    sample_scene,
)

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "iid", "unseen_phrasing", "unseen_combo")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
_STREAM = {"instruction": 0, "caption": 1, "vqa": 2, "corpus": 3, "decoy": 4}

DEFAULT_WEIGHTS: dict[str, float] = {
    "pick_up": 1.4,
    "place": 1.2,
    "navigate_to": 1.0,
    "stop": 0.6,
    "take_photo": 0.6,
    "recycle": 1.4,
    "water_plant": 0.7,
    "feed_pet": 1.0,
    "find_item": 1.0,
    "describe_scene": 0.6,
    "send_message": 1.0,
    "set_speed": 0.9,
    "no_action": 1.2,
}


@dataclass(eq=False)
class Example:
    """One MIMIC-IT/Otter-like record: image, instruction, answer (+ what generated it).

    ``function`` is a robot function name for instruction examples, ``'caption'`` or ``'vqa'``
    for alignment examples (their answers are plain text). ``context`` holds in-context
    examples (empty for now).
    """

    image: np.ndarray  # (H, W, 3) uint8 RGB
    instruction: str
    answer: str
    language: str  # 'en' | 'zh'
    function: str
    split: str
    scene: Scene
    context: list[Example] = field(default_factory=list)
    template: str = ""  # template id, or the VQA kind
    mode: str = ""  # 'named' | 'deictic' | 'text' (instructions only)
    decoy_kind: str = ""  # '' | 'absent' (named category not in view) | 'colour' (in view, other colour)

    @property
    def decoy(self) -> bool:
        """Whether a named instruction is shown with a decoy scene (see :func:`generate`)."""
        return bool(self.decoy_kind)


# ----------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Splits:
    """What is held out from training (see the module docstring)."""

    seed: int
    heldout_templates: frozenset[str]  # template ids
    heldout_combos: frozenset[Combo]

    def templates(self, function: str, language: str, *, heldout: bool) -> list[Template]:
        """Training (``heldout=False``) or held-out templates of one function and language."""
        return [t for t in templates_for(function, language) if (t.id in self.heldout_templates) == heldout]

    def train_combos(self) -> list[Combo]:
        """Every (category, colour) pair allowed in training images."""
        return [c for c in all_combos() if c not in self.heldout_combos]


def _never_held_out(t: Template) -> bool:
    return bool(t.fixed) or "gib" in t.slots


def _holdable_combos() -> list[Combo]:
    return [(c, col) for c, col in all_combos() if c in ITEMS and CATEGORIES[c].colour_in_name]


def make_splits(seed: int = 0, *, template_fraction: float = 0.25, combo_fraction: float = 0.15) -> Splits:
    """Choose held-out templates and combos with ``seed`` (see the module docstring)."""
    if not 0.0 <= template_fraction < 0.75 or not 0.0 <= combo_fraction < 0.5:
        raise ValueError(
            f"template_fraction must be in [0, 0.75) and combo_fraction in [0, 0.5), got {template_fraction}, {combo_fraction}"
        )
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0x5B11]))
    held: set[str] = set()
    for function in FUNCTIONS:
        for lang in LANGUAGES:
            for mode in ("named", "deictic", "text"):
                group = [
                    t for t in templates_for(function, lang) if t.mode == mode and not _never_held_out(t)
                ]
                g = len(group)
                if g < 3:
                    continue
                k = min(max(1 if g >= 4 else 0, int(round(g * template_fraction))), g - 2)
                for i in rng.permutation(g)[:k]:
                    held.add(group[int(i)].id)

    candidates = _holdable_combos()
    target = int(round(len(candidates) * combo_fraction))
    cat_left = {c: sum(1 for cc, _ in candidates if cc == c) for c, _ in candidates}
    col_left = {col: sum(1 for _, cc in candidates if cc == col) for _, col in candidates}
    combos: set[Combo] = set()
    for i in rng.permutation(len(candidates)):
        if len(combos) >= target:
            break
        cat, col = candidates[int(i)]
        if cat_left[cat] > 2 and col_left[col] > 2:
            combos.add((cat, col))
            cat_left[cat] -= 1
            col_left[col] -= 1
    if len(combos) < target:
        log.warning("held out only %d of %d requested combos", len(combos), target)
    return Splits(seed, frozenset(held), frozenset(combos))


# The held-out colour x object pairs of every bundled model: make_splits(0)'s draw over the 464
# phrasings the registry had until stop 30, written down. make_splits draws the pairs after the
# phrasings from the same random stream, and how many numbers a phrasing group takes depends on
# its size, so recomputing them moved all eleven pairs as soon as phrasings were added (stop 31).
HELDOUT_COMBOS: frozenset[Combo] = frozenset(
    {
        ("apple", "green"),
        ("bottle", "blue"),
        ("can", "black"),
        ("can", "orange"),
        ("can", "purple"),
        ("cup", "blue"),
        ("cup", "purple"),
        ("keys", "black"),
        ("keys", "blue"),
        ("keys", "green"),
        ("phone", "blue"),
    }
)


@cache
def default_splits() -> Splits:
    """The project's fixed held-out sets: the phrasings the registry marks ``heldout: true``
    (``config/functions.yaml``, ``make_splits(0)``'s draw written down) and the colour x object
    pairs of :data:`HELDOUT_COMBOS` (its draw written down too), so that adding a phrasing
    moves neither."""
    heldout = frozenset(t.id for t in TEMPLATES if t.heldout)
    return Splits(0, heldout, HELDOUT_COMBOS)


# ----------------------------------------------------------------------------- one example
def _rng(seed: int, split: str, stream: str, index: int) -> np.random.Generator:
    if split not in _SPLIT_IDS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.default_rng(
        np.random.SeedSequence([int(seed), _SPLIT_IDS[split], _STREAM[stream], int(index)])
    )


def _pick(rng: np.random.Generator, items: Sequence[Any]) -> Any:
    return items[int(rng.integers(0, len(items)))]


def _choose_function(rng: np.random.Generator, functions: Sequence[str], weights: dict[str, float]) -> str:
    w = np.array([weights.get(f, 1.0) for f in functions], dtype=np.float64)
    if not np.all(w >= 0) or w.sum() <= 0:
        raise ValueError(f"function weights must be non-negative with a positive sum, got {weights}")
    return functions[int(rng.choice(len(functions), p=w / w.sum()))]


def _target_combo(rng: np.random.Generator, split: str, splits: Splits, categories: Iterable[str]) -> Combo:
    cats = set(categories)
    if split == "unseen_combo":
        pool = sorted(c for c in splits.heldout_combos if c[0] in cats)
    else:
        pool = [c for c in all_combos() if c[0] in cats and c not in splits.heldout_combos]
    if not pool:
        raise ValueError(f"no target combo for categories {sorted(cats)} in split {split!r}")
    return _pick(rng, pool)


def _scene_for(
    rng: np.random.Generator, function: str, mode: str, split: str, splits: Splits, pet: str | None
) -> Scene:
    layout = "salient" if mode == "deictic" or rng.random() < 0.5 else "free"
    exclude: tuple[str, ...] = ()
    if function in OBJECT_FUNCTIONS:
        target = _target_combo(rng, split, splits, ITEMS)
    elif function == "feed_pet":
        target = _target_combo(rng, split, splits, [pet] if pet else ANIMALS)
        exclude = ANIMALS
    elif function == "water_plant":
        target = ("plant", "green")
    else:
        target = _target_combo(rng, "train", splits, CATEGORIES)  # the image is irrelevant
    return sample_scene(
        rng, target=target, layout=layout, exclude_categories=exclude, forbidden_combos=splits.heldout_combos
    )


def _instruction(
    rng: np.random.Generator,
    template: Template,
    function: str,
    language: str,
    scene: Scene | None,
    combo: Combo | None,
) -> tuple[str, tuple]:
    """Fill ``template``: returns (instruction text, call arguments)."""
    text, lower = decorate(template.text, language, rng)
    fixed = dict(template.fixed)
    slots: dict[str, str] = {}
    args: list[Any] = []
    target = scene.target.combo if scene is not None else combo
    obj_en = object_name(*target, "en") if target is not None else ""
    if "obj" in template.slots:
        slots["obj"] = object_name(*target, language, zh_style=int(rng.integers(0, 3))) if target else ""
    if function in ("pick_up", "find_item"):
        args = [obj_en]
    elif function == "place":
        loc = _pick(rng, list(LOCATIONS))
        slots["loc"] = _pick(rng, LOCATIONS[loc][language])
        args = [obj_en, loc]
    elif function == "recycle":
        bin_ = RECYCLE_BIN[target[0]]
        if "bin" in template.slots:
            slots["bin"] = _pick(rng, BIN_WORDS[bin_][language])
        args = [obj_en, bin_]
    elif function == "feed_pet":
        pet = target[0]
        if "pet" in template.slots:
            slots["pet"] = _pick(rng, PET_WORDS[pet][language])
        args = [pet]
    elif function == "navigate_to":
        place = fixed["place"] if "place" in fixed else _pick(rng, list(PLACES))
        if "place" in template.slots:
            slots["place"] = _pick(rng, PLACES[place][language])
        args = [place]
    elif function == "send_message":
        contact = _pick(rng, list(CONTACTS))
        slots["contact"] = _pick(rng, CONTACTS[contact][language])
        slots["msg"] = _pick(rng, MESSAGES[language])
        if lower:
            slots = {k: v.lower() for k, v in slots.items()}
        args = [contact, slots["msg"]]
    elif function == "set_speed":
        value = fixed["value"] if "value" in fixed else float(_pick(rng, SPEEDS))
        if "speed" in template.slots:
            slots["speed"] = speed_phrase(value, language, rng)
        args = [float(value)]
    if "gib" in template.slots:
        slots["gib"] = gibberish(language, rng)
    if lower:
        slots = {k: v.lower() for k, v in slots.items()}
    missing = template.slots - slots.keys()
    if missing:
        raise RuntimeError(f"template {template.id} has unfilled slots {sorted(missing)}")
    return text.format(**slots), tuple(args)


def _resolve(
    splits: Splits | None, functions: Sequence[str] | None, languages: Sequence[str], split: str
) -> tuple[Splits, list[str], list[str]]:
    splits = default_splits() if splits is None else splits
    fns = list(FUNCTIONS) if functions is None else list(functions)
    for f in fns:
        if f not in FUNCTIONS:
            raise ValueError(f"unknown function {f!r}; known: {sorted(FUNCTIONS)}")
    if split == "unseen_combo":
        fns = [f for f in fns if f in OBJECT_FUNCTIONS]
        if not fns:
            raise ValueError(f"split 'unseen_combo' needs one of {OBJECT_FUNCTIONS} among the functions")
    langs = list(languages)
    if not langs or any(lang not in LANGUAGES for lang in langs):
        raise ValueError(f"languages must be a non-empty subset of {LANGUAGES}, got {languages!r}")
    return splits, fns, langs


def generate_one(
    split: str,
    seed: int,
    index: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    functions: Sequence[str] | None = None,
    languages: Sequence[str] = LANGUAGES,
    weights: dict[str, float] | None = None,
    named_decoy: float = 0.0,
    colour_decoy: float = 0.0,
    decline_absent: bool = False,
    decline_recoloured: bool = False,
) -> Example:
    """Instruction example number ``index`` of ``(split, seed)``; see :func:`generate`."""
    splits, fns, langs = _resolve(splits, functions, languages, split)
    rng = _rng(seed, split, "instruction", index)
    language = _pick(rng, langs)
    function = _choose_function(rng, fns, DEFAULT_WEIGHTS if weights is None else weights)
    pool = splits.templates(function, language, heldout=split == "unseen_phrasing")
    if not pool:
        raise ValueError(
            f"no {'held-out' if split == 'unseen_phrasing' else 'training'} template for {function}/{language}"
        )
    template: Template = _pick(rng, pool)
    pet = None
    if function == "feed_pet" and "pet" in template.slots:
        pet = _pick(rng, ANIMALS)
    scene = _scene_for(rng, function, template.mode, split, splits, pet)
    instruction, args = _instruction(rng, template, function, language, scene, None)
    decoy = ""
    names_it = bool(template.slots & {"obj", "pet"})  # the words, not the image, give the argument
    if (
        (named_decoy > 0 or colour_decoy > 0)
        and template.mode == "named"
        and function in DECOY_FUNCTIONS
        and names_it
    ):
        # A separate stream, so the option never changes the instruction, answer or target.
        decoy_rng = _rng(seed, split, "decoy", index)
        u = decoy_rng.random()
        if u < named_decoy:
            scene, decoy = _decoy_scene(decoy_rng, scene, splits), "absent"
        elif u < named_decoy + colour_decoy and function in OBJECT_FUNCTIONS:
            recoloured = _colour_decoy_scene(decoy_rng, scene, splits)
            if recoloured is not None:
                scene, decoy = recoloured, "colour"
    answer = call_text(function, args)
    declines = decline_absent and (decoy == "absent" or (decoy == "colour" and decline_recoloured))
    if declines and function in _view_functions():
        # The named object (or the named colour of it) is not in view: a function that acts on a
        # visible object cannot act, so the answer is the decline (a case to learn, not a decoy).
        answer = call_text(_decline_function(), ())
    return Example(
        image=render(scene, image_size),
        instruction=instruction,
        answer=answer,
        language=language,
        function=function,
        split=split,
        scene=scene,
        template=template.id,
        mode=template.mode,
        decoy_kind=decoy,
    )


DECOY_FUNCTIONS = (*OBJECT_FUNCTIONS, "feed_pet")


@cache
def _view_functions() -> frozenset[str]:
    """Functions of the bundled registry that act on an object that must be in view
    (``requires_view``; the registry owns it)."""
    from octopus_ros.functions import load_default_registry

    return frozenset(spec.name for spec in load_default_registry().view_functions())


@cache
def _decline_function() -> str:
    from octopus_ros.functions import load_default_registry

    return load_default_registry().decline_function.name


def _decoy_scene(rng: np.random.Generator, scene: Scene, splits: Splits) -> Scene:
    """A random scene without the named object's category (held-out combos still excluded)."""
    named = scene.target.category
    others = [c for c in CATEGORIES if c != named]
    layout = "salient" if rng.random() < 0.5 else "free"
    return sample_scene(
        rng,
        target_categories=others,
        layout=layout,
        exclude_categories=(named,),
        forbidden_combos=splits.heldout_combos,
    )


def _colour_decoy_scene(rng: np.random.Generator, scene: Scene, splits: Splits) -> Scene | None:
    """A random scene whose salient or free target is the named category in another training
    colour (the named pair itself and held-out pairs excluded); None when the category has
    no other training colour."""
    category, colour = scene.target.category, scene.target.colour
    others = [
        c for c in CATEGORIES[category].colours if c != colour and (category, c) not in splits.heldout_combos
    ]
    if not others:
        return None
    layout = "salient" if rng.random() < 0.5 else "free"
    return sample_scene(
        rng,
        target=(category, _pick(rng, others)),
        layout=layout,
        forbidden_combos=splits.heldout_combos | {(category, colour)},
    )


def generate(
    split: str,
    n: int,
    seed: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    functions: Sequence[str] | None = None,
    languages: Sequence[str] = LANGUAGES,
    weights: dict[str, float] | None = None,
    named_decoy: float = 0.0,
    colour_decoy: float = 0.0,
    decline_absent: bool = False,
    decline_recoloured: bool = False,
) -> list[Example]:
    """``n`` instruction examples of ``split`` (one of :data:`SPLITS`), deterministic in ``seed``.

    ``functions`` restricts the functions (``unseen_combo`` keeps only object functions),
    ``weights`` overrides :data:`DEFAULT_WEIGHTS`, ``image_size`` is an int or ``(width, height)``.
    ``named_decoy``: probability that a named instruction of an object function or feed_pet
    ("pick up the red cup") is shown with a scene that lacks the named object's category, so
    a model trained on it must read the object from the words, not from the picture (training
    only; the evaluation splits keep the named object in view). ``colour_decoy``: probability
    that a named instruction of an object function is shown instead with the named category
    in another training colour (and not in the named one), so that reading the picture gives
    the wrong colour. Instructions, answers and all other examples are the same for every
    value of either. ``decline_absent``: the decoys of a function that acts on an object that must
    be in view (the registry's ``requires_view``: pick_up, place, recycle, feed_pet) answer with
    the decline instead (the named object, or the named colour of it, is not in view: a case to
    learn); ``find_item`` keeps its call (its point is to search). The colour decoys (the named
    category in view in another colour) only with ``decline_recoloured`` too.
    Example ``i`` equals ``generate_one(split, seed, i, ...)``.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [
        generate_one(
            split,
            seed,
            i,
            image_size=image_size,
            splits=splits,
            functions=functions,
            languages=languages,
            weights=weights,
            named_decoy=named_decoy,
            colour_decoy=colour_decoy,
            decline_absent=decline_absent,
            decline_recoloured=decline_recoloured,
        )
        for i in range(n)
    ]


# ----------------------------------------------------------------------------- alignment data
def _alignment_scene(rng: np.random.Generator, split: str, splits: Splits) -> Scene:
    categories = ITEMS if split == "unseen_combo" else CATEGORIES
    target = _target_combo(rng, split, splits, categories)
    layout = "salient" if rng.random() < 0.5 else "free"
    return sample_scene(rng, target=target, layout=layout, forbidden_combos=splits.heldout_combos)


def caption_one(
    split: str,
    seed: int,
    index: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    languages: Sequence[str] = LANGUAGES,
) -> Example:
    """Caption example ``index`` (``function='caption'``; answer: :func:`~.captions.caption`)."""
    splits, _, langs = _resolve(splits, None, languages, "train")
    rng = _rng(seed, split, "caption", index)
    language = _pick(rng, langs)
    scene = _alignment_scene(rng, split, splits)
    return Example(
        image=render(scene, image_size),
        instruction=_pick(rng, CAPTION_PROMPTS[language]),
        answer=caption(scene, language),
        language=language,
        function="caption",
        split=split,
        scene=scene,
    )


def generate_captions(
    split: str,
    n: int,
    seed: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    languages: Sequence[str] = LANGUAGES,
) -> list[Example]:
    """``n`` image-caption examples. For CLIP-style pairs use ``caption(ex.scene, lang, target_only=True)``."""
    return [
        caption_one(split, seed, i, image_size=image_size, splits=splits, languages=languages)
        for i in range(n)
    ]


def vqa_one(
    split: str,
    seed: int,
    index: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    languages: Sequence[str] = LANGUAGES,
) -> Example:
    """VQA example ``index`` (``function='vqa'``, ``template`` = the question kind)."""
    splits, _, langs = _resolve(splits, None, languages, "train")
    rng = _rng(seed, split, "vqa", index)
    language = _pick(rng, langs)
    scene = _alignment_scene(rng, split, splits)
    question, answer, kind = vqa_pair(scene, language, rng)
    return Example(
        image=render(scene, image_size),
        instruction=question,
        answer=answer,
        language=language,
        function="vqa",
        split=split,
        scene=scene,
        template=kind,
    )


def generate_vqa(
    split: str,
    n: int,
    seed: int,
    *,
    image_size: Size = 64,
    splits: Splits | None = None,
    languages: Sequence[str] = LANGUAGES,
) -> list[Example]:
    """``n`` visual question answering examples (plain-text answers)."""
    return [
        vqa_one(split, seed, i, image_size=image_size, splits=splits, languages=languages) for i in range(n)
    ]


def instruction_corpus(
    *,
    seed: int = 0,
    n_per_template: int = 8,
    split: str = "train",
    splits: Splits | None = None,
    languages: Sequence[str] = LANGUAGES,
) -> list[str]:
    """Instruction texts for language-model pretraining: every template of ``split`` (training
    templates unless ``split='unseen_phrasing'``) filled ``n_per_template`` times with random
    slots, fillers and styles; objects use training combos only (held-out ones for
    ``split='unseen_combo'``). No images; deterministic in ``seed``.
    """
    if n_per_template < 1:
        raise ValueError(f"n_per_template must be >= 1, got {n_per_template}")
    splits, fns, langs = _resolve(splits, None, languages, split)
    rng = _rng(seed, split, "corpus", 0)
    out = []
    for function in fns:
        for language in langs:
            for template in splits.templates(function, language, heldout=split == "unseen_phrasing"):
                for _ in range(n_per_template):
                    if function in OBJECT_FUNCTIONS:
                        combo = _target_combo(rng, split, splits, ITEMS)
                    elif function == "feed_pet":
                        combo = (_pick(rng, ANIMALS), "black")
                    else:
                        combo = ("plant", "green")
                    text, _ = _instruction(rng, template, function, language, None, combo)
                    out.append(text)
    return out


# ----------------------------------------------------------------------------- dataset wrapper
class ExampleDataset:
    """Map-style dataset (works with ``torch.utils.data.DataLoader``) generating examples lazily.

    ``kind``: ``'instruction'`` (:func:`generate_one`), ``'caption'`` or ``'vqa'``. Item ``i`` is
    always the same example; no torch import needed (supply a ``collate_fn`` for batching).
    """

    def __init__(
        self,
        split: str,
        n: int,
        seed: int,
        *,
        kind: str = "instruction",
        image_size: Size = 64,
        **kwargs: Any,
    ):
        makers = {"instruction": generate_one, "caption": caption_one, "vqa": vqa_one}
        if kind not in makers:
            raise ValueError(f"kind must be one of {sorted(makers)}, got {kind!r}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        _rng(seed, split, "instruction", 0)  # validates split and seed now, not in a worker
        self.split, self.n, self.seed, self.kind = split, n, seed, kind
        self._make = makers[kind]
        self._kwargs = {"image_size": image_size, **kwargs}

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> Example:
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for a dataset of {self.n}")
        return self._make(self.split, self.seed, index % self.n, **self._kwargs)


def split_summary(splits: Splits | None = None) -> dict[str, Any]:
    """Sizes of the held-out sets, for logs and reports."""
    splits = default_splits() if splits is None else splits
    n_templates = len(TEMPLATES)
    return {
        "templates": n_templates,
        "heldout_templates": len(splits.heldout_templates),
        "combos": len(all_combos()),
        "holdable_combos": len(_holdable_combos()),
        "heldout_combos": sorted(splits.heldout_combos),
        "colours": len(COLOURS),
        "categories": len(CATEGORIES),
    }


# ----------------------------------------------------------------------------- lexicon
def lexicon_corpus(splits: Splits | None = None) -> list[str]:
    """A bilingual glossary of the world's words for LM text pretraining (stage 2).

    One line per entry in both directions (``红色 = red``, ``red = 红色``): colour words (and
    their one-character forms), category words, pet words, places, bins, locations, contacts,
    and every *training* colour x object name in each Chinese surface form
    (``红色的杯子 = red cup``). Held-out combos never appear; templates are not used at all,
    so no phrasing (seen or held out) is in it. This stands in for the bilingual knowledge a
    pretrained LM would bring: the call arguments are English whatever the instruction's
    language, so the model must translate names. Deterministic (no seed).
    """
    splits = splits or default_splits()
    pairs = [(surface, canonical) for _, surface, canonical in slot_words()]
    for category, colour in splits.train_combos():
        en = object_name(category, colour, "en")
        pairs += [(object_name(category, colour, "zh", zh_style=s), en) for s in range(3)]
    lines: list[str] = []
    seen: set[str] = set()
    for a, b in pairs:
        for line in (f"{a} = {b}", f"{b} = {a}"):
            if a != b and line not in seen:
                seen.add(line)
                lines.append(line)
    return lines
