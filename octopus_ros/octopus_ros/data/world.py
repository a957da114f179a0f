"""The synthetic robot world: object categories, colours, their names, and random scenes.

Vocabulary
----------
14 categories (:data:`CATEGORIES`) and 10 colours (:data:`COLOURS`), each with English and
Chinese names. Which colours a category can have:

- cup, bottle, can, book, shoe, phone, ball, bowl: the 8 main colours (red, green, blue, yellow,
  white, black, orange, purple);
- keys: red, green, blue, yellow, black, purple (the colour is that of the key heads);
- apple: red, green, yellow;
- dog: brown, black, white, gray; cat: orange, black, white, gray;
- banana (yellow) and plant (green) have one colour each, and their names omit it:
  ``object_name('banana', 'yellow') == 'banana'``, but ``object_name('cup', 'red') == 'red cup'``
  and ``object_name('cat', 'gray') == 'gray cat'``.

Chinese names put the colour word before the noun without 的 (``红色杯子``).

Kinds: ``item`` (portable: can be picked up, placed, found and thrown away), ``animal`` (dog, cat:
the targets of ``feed_pet``) and ``plant`` (the target of ``water_plant``).

Waste bins (:data:`RECYCLE_BIN`): bottle and can go to ``recycling``; apple and banana to
``compost``; every other item (cup, book, shoe, phone, keys, ball, bowl) to ``trash``. Animals and
the plant are not waste: no scene asks to recycle them (a request to bin the cat is a decline).

Scenes
------
A :class:`Scene` is pure content: objects with category, colour, placement in normalised
coordinates of a square "stage", plus background and camera parameters. The renderer maps the
stage to the central square of any frame (e.g. 64x64, or the middle 240x240 of 320x240; the
background continues to the sides), so the same scene gives the same content at every size and a
centre crop of a wide frame shows exactly the stage.

Placement rules (what the model can rely on)
--------------------------------------------
- Every category appears at most once in a scene, so "the cup" or "the red cup" is unambiguous.
- Every object's bounding box is covered at most 30 % by the boxes of objects drawn in front of it.
- ``layout='salient'``: the target is the most salient object: its box area is at least twice
  any distractor's, and its centre is nearer the stage centre than any distractor's (by a margin).
  Deictic instructions ("pick that up") always use this layout: *that* means the biggest, most
  central object.
- ``layout='free'``: every object is placed and sized alike (the target may be small or off-centre);
  used only where the instruction names the target.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from .shapes import RGB, transformed_hull

log = logging.getLogger(__name__)

Combo = tuple[str, str]  # (category, colour)


@dataclass(frozen=True)
class Colour:
    """A colour word: ``name`` (key), English and Chinese words and the base RGB it is drawn with."""

    name: str
    en: str
    zh: str
    zh_short: str  # one-character form used as a prefix: 红杯子
    rgb: RGB


@dataclass(frozen=True)
class Category:
    """An object category and what the world knows about it."""

    name: str
    en: str
    zh: str
    colours: tuple[str, ...]
    kind: str  # 'item' | 'animal' | 'plant'
    bin: str | None  # waste bin for recycle(), None when it is not waste
    max_angle: float  # largest random rotation in degrees (upright things rotate little)

    @property
    def colour_in_name(self) -> bool:
        """Whether names include the colour (false for single-colour categories)."""
        return len(self.colours) > 1


_MAIN = ("red", "green", "blue", "yellow", "white", "black", "orange", "purple")

COLOURS: dict[str, Colour] = {
    c.name: c
    for c in (
        Colour("red", "red", "红色", "红", (205, 35, 35)),
        Colour("green", "green", "绿色", "绿", (45, 160, 60)),
        Colour("blue", "blue", "蓝色", "蓝", (35, 80, 215)),
        Colour("yellow", "yellow", "黄色", "黄", (245, 212, 30)),
        Colour("white", "white", "白色", "白", (244, 244, 240)),
        Colour("black", "black", "黑色", "黑", (28, 28, 30)),
        Colour("orange", "orange", "橙色", "橙", (245, 128, 20)),
        Colour("purple", "purple", "紫色", "紫", (128, 48, 172)),
        Colour("brown", "brown", "棕色", "棕", (122, 76, 40)),
        Colour("gray", "gray", "灰色", "灰", (132, 132, 136)),
    )
}

CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in (
        Category("cup", "cup", "杯子", _MAIN, "item", "trash", 15.0),
        Category("bottle", "bottle", "瓶子", _MAIN, "item", "recycling", 12.0),
        Category("can", "can", "易拉罐", _MAIN, "item", "recycling", 12.0),
        Category("book", "book", "书", _MAIN, "item", "trash", 35.0),
        Category("shoe", "shoe", "鞋子", _MAIN, "item", "trash", 15.0),
        Category("plant", "plant", "植物", ("green",), "plant", None, 6.0),
        Category("dog", "dog", "狗", ("brown", "black", "white", "gray"), "animal", None, 8.0),
        Category("cat", "cat", "猫", ("orange", "black", "white", "gray"), "animal", None, 8.0),
        Category("phone", "phone", "手机", _MAIN, "item", "trash", 35.0),
        Category(
            "keys",
            "keys",
            "钥匙",
            ("red", "green", "blue", "yellow", "black", "purple"),
            "item",
            "trash",
            40.0,
        ),
        Category("apple", "apple", "苹果", ("red", "green", "yellow"), "item", "compost", 20.0),
        Category("banana", "banana", "香蕉", ("yellow",), "item", "compost", 35.0),
        Category("ball", "ball", "球", _MAIN, "item", "trash", 40.0),
        Category("bowl", "bowl", "碗", _MAIN, "item", "trash", 8.0),
    )
}

RECYCLE_BIN: dict[str, str] = {c.name: c.bin for c in CATEGORIES.values() if c.bin is not None}
BINS: tuple[str, ...] = ("recycling", "compost", "trash")
ITEMS: tuple[str, ...] = tuple(c.name for c in CATEGORIES.values() if c.kind == "item")
ANIMALS: tuple[str, ...] = tuple(c.name for c in CATEGORIES.values() if c.kind == "animal")
LAYOUTS: tuple[str, ...] = ("salient", "free")

MAX_COVER = 0.30  # largest fraction of an object's box hidden by boxes in front of it
_MARGIN = 0.02  # objects stay this far inside the stage


CATEGORY_NAMES: tuple[str, ...] = tuple(CATEGORIES)  # stable class indices for auxiliary losses
COLOUR_NAMES: tuple[str, ...] = tuple(COLOURS)


def all_combos() -> list[Combo]:
    """Every valid (category, colour) pair, in vocabulary order."""
    return [(c.name, col) for c in CATEGORIES.values() for col in c.colours]


def check_combo(category: str, colour: str) -> None:
    """Raise ValueError unless ``(category, colour)`` is a valid pair of this world."""
    cat = CATEGORIES.get(category)
    if cat is None:
        raise ValueError(f"unknown object category {category!r}; known: {sorted(CATEGORIES)}")
    if colour not in COLOURS:
        raise ValueError(f"unknown colour {colour!r}; known: {sorted(COLOURS)}")
    if colour not in cat.colours:
        raise ValueError(f"a {category} cannot be {colour}; its colours are {list(cat.colours)}")


def object_name(category: str, colour: str, lang: str = "en", *, zh_style: int = 0) -> str:
    """Name of an object: ``'red cup'`` / ``'红色杯子'``; single-colour categories omit the colour.

    ``zh_style`` (Chinese only) picks a surface form: 0 ``红色杯子`` (canonical), 1 ``红色的杯子``,
    2 ``红杯子``.
    """
    check_combo(category, colour)
    cat, col = CATEGORIES[category], COLOURS[colour]
    if lang == "en":
        return f"{col.en} {cat.en}" if cat.colour_in_name else cat.en
    if lang == "zh":
        if not cat.colour_in_name:
            return cat.zh
        return (f"{col.zh}{cat.zh}", f"{col.zh}的{cat.zh}", f"{col.zh_short}{cat.zh}")[zh_style % 3]
    raise ValueError(f"unknown language {lang!r}; expected 'en' or 'zh'")


# ----------------------------------------------------------------------------- scene content
@dataclass(frozen=True)
class SceneObject:
    """One object on the stage (coordinates are fractions of the stage side, y down)."""

    category: str
    colour: str
    cx: float  # centre x in [0, 1]
    cy: float  # centre y in [0, 1]
    size: float  # side of the object's local box [-1, 1]^2 as a fraction of the stage side
    angle: float  # rotation in degrees
    flip: bool  # mirrored left-right
    rgb: RGB  # the drawn colour (base colour with a small jitter)
    variant: int  # picks secondary colours (pot, cap, stripes); geometry never changes

    @property
    def combo(self) -> Combo:
        """``(category, colour)``."""
        return (self.category, self.colour)

    @cached_property
    def bbox(self) -> tuple[float, float, float, float]:
        """Tight box ``(x0, y0, x1, y1)`` of the drawn shape, in stage fractions."""
        return _bbox(self.category, self.cx, self.cy, self.size, self.angle, self.flip)

    def name(self, lang: str = "en") -> str:
        """``'red cup'`` / ``'红色杯子'`` (see :func:`object_name`)."""
        return object_name(self.category, self.colour, lang)


@dataclass(frozen=True)
class Style:
    """Background and camera effects of a scene (all size-independent)."""

    wall: RGB
    floor: RGB
    horizon: float  # wall/floor boundary, fraction of stage height
    wall_texture: str  # 'plain' | 'stripes' | 'window'
    floor_texture: str  # 'plain' | 'tiles' | 'planks'
    texture_scale: float  # period of stripes/tiles in stage fractions
    gradient: float  # brightness change from top to bottom (-0.15..0.15)
    brightness: float  # global gain (0.75..1.2)
    cast: tuple[float, float, float]  # per-channel colour cast gains
    blur: float  # Gaussian blur sigma in pixels at 64 px (scaled with the frame)
    noise: float  # sensor noise sigma in grey levels
    noise_seed: int  # seeds the noise when render() is given no rng


@dataclass(frozen=True)
class Scene:
    """A target object, distractors, and style. ``objects`` are in drawing order (back to front)."""

    objects: tuple[SceneObject, ...]
    target_index: int
    style: Style
    layout: str = "salient"  # 'salient' or 'free' (see the module docstring)

    @property
    def target(self) -> SceneObject:
        """The object the instruction is about."""
        return self.objects[self.target_index]

    @property
    def distractors(self) -> tuple[SceneObject, ...]:
        """Every object but the target, back to front."""
        return tuple(o for i, o in enumerate(self.objects) if i != self.target_index)

    def by_saliency(self) -> list[SceneObject]:
        """Objects from most to least salient: the target first, then by box area."""
        rest = sorted(self.distractors, key=lambda o: -_area(o.bbox))
        return [self.target, *rest]

    def find(self, category: str) -> SceneObject | None:
        """The object of ``category``, or None (categories are unique within a scene)."""
        return next((o for o in self.objects if o.category == category), None)


def _bbox(
    category: str, cx: float, cy: float, size: float, angle: float, flip: bool
) -> tuple[float, float, float, float]:
    hull = transformed_hull(category, angle, flip)
    x0, y0 = hull.min(axis=0).tolist()
    x1, y1 = hull.max(axis=0).tolist()
    h = size / 2.0
    return (cx + x0 * h, cy + y0 * h, cx + x1 * h, cy + y1 * h)


def _area(b: tuple[float, float, float, float]) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


# ----------------------------------------------------------------------------- sampling
_GRID = 40  # resolution of the occlusion check


def _box_mask(b: tuple[float, float, float, float]) -> tuple[slice, slice]:
    g = _GRID
    return (
        slice(max(0, int(b[1] * g)), max(0, int(math.ceil(b[3] * g)))),
        slice(max(0, int(b[0] * g)), max(0, int(math.ceil(b[2] * g)))),
    )


def _max_cover(objects: list[SceneObject]) -> float:
    """Largest fraction of any object's box covered by the boxes of objects in front of it.

    Drawing order is by the bottom edge of the box (lower on the stage = nearer = drawn later).
    """
    order = sorted(objects, key=lambda o: o.bbox[3])
    worst = 0.0
    front = np.zeros((_GRID, _GRID), dtype=bool)
    for obj in reversed(order):  # nearest first: accumulate what is in front
        ys, xs = _box_mask(obj.bbox)
        cells = front[ys, xs]
        if cells.size:
            worst = max(worst, int(np.count_nonzero(cells)) / cells.size)
        front[ys, xs] = True
    return worst


def _sample_style(rng: np.random.Generator) -> Style:
    def muted() -> RGB:
        hue = rng.uniform(0, 1)
        sat = rng.uniform(0.05, 0.35)
        val = rng.uniform(0.35, 0.88)
        rgb = _hsv_to_rgb(hue, sat, val)
        return tuple(int(round(255 * c)) for c in rgb)  # type: ignore[return-value]

    wall = muted()
    floor = muted()
    return Style(
        wall=wall,
        floor=floor,
        horizon=float(rng.uniform(0.22, 0.62)),
        wall_texture=str(rng.choice(("plain", "plain", "stripes", "window"))),
        floor_texture=str(rng.choice(("plain", "tiles", "planks"))),
        texture_scale=float(rng.uniform(0.08, 0.22)),
        gradient=float(rng.uniform(-0.15, 0.15)),
        brightness=float(rng.uniform(0.78, 1.18)),
        cast=tuple(float(x) for x in rng.uniform(0.95, 1.05, size=3)),  # type: ignore[arg-type]
        blur=float(rng.choice((0.0, 0.0, rng.uniform(0.3, 0.9)))),
        noise=float(rng.uniform(0.0, 7.0)),
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    i = int(h * 6.0) % 6
    f = h * 6.0 - int(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    return ((v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q))[i]


def _jitter(rgb: RGB, rng: np.random.Generator) -> RGB:
    gain, d0, d1, d2 = rng.uniform((0.92, -10.0, -10.0, -10.0), (1.06, 10.0, 10.0, 10.0)).tolist()
    return (
        int(min(255.0, max(0.0, rgb[0] * gain + d0))),
        int(min(255.0, max(0.0, rgb[1] * gain + d1))),
        int(min(255.0, max(0.0, rgb[2] * gain + d2))),
    )


def _place(
    rng: np.random.Generator,
    category: str,
    colour: str,
    *,
    size_range: tuple[float, float],
    centre_box: tuple[float, float, float, float] | None,
) -> SceneObject | None:
    """One random placement inside the stage (``centre_box`` limits the centre), or None."""
    cat = CATEGORIES[category]
    size = float(rng.uniform(*size_range))
    angle = float(rng.uniform(-cat.max_angle, cat.max_angle))
    flip = bool(rng.integers(0, 2))
    x0, y0, x1, y1 = _bbox(category, 0.0, 0.0, size, angle, flip)
    lo_x, hi_x = _MARGIN - x0, 1.0 - _MARGIN - x1
    lo_y, hi_y = _MARGIN - y0, 1.0 - _MARGIN - y1
    if centre_box is not None:
        lo_x, lo_y = max(lo_x, centre_box[0]), max(lo_y, centre_box[1])
        hi_x, hi_y = min(hi_x, centre_box[2]), min(hi_y, centre_box[3])
    if lo_x > hi_x or lo_y > hi_y:
        return None
    cx, cy = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
    rgb = _jitter(COLOURS[colour].rgb, rng)
    obj = SceneObject(category, colour, cx, cy, size, angle, flip, rgb, int(rng.integers(0, 4)))
    obj.__dict__["bbox"] = (cx + x0, cy + y0, cx + x1, cy + y1)  # prime the cached property
    return obj


def _dist(o: SceneObject) -> float:
    return math.hypot(o.cx - 0.5, o.cy - 0.5)


def _size_for_area(category: str, area: float) -> float:
    """Object size whose (unrotated) box has ``area`` (stage fractions squared)."""
    x0, y0, x1, y1 = _bbox(category, 0.0, 0.0, 1.0, 0.0, False)
    return math.sqrt(area / max(1e-6, (x1 - x0) * (y1 - y0)))


def sample_scene(
    rng: np.random.Generator,
    *,
    target: tuple[str, str | None] | None = None,
    target_categories: Iterable[str] | None = None,
    n_distractors: int | None = None,
    layout: str = "salient",
    exclude_categories: Collection[str] = (),
    forbidden_combos: Collection[Combo] = (),
    distractors: Iterable[Combo] | None = None,
) -> Scene:
    """A random scene, fully determined by ``rng``.

    - ``target``: ``(category, colour)``; colour may be None (random among the category's
      colours); None picks a random target from ``target_categories`` (default: all).
      An explicit target is used even when it is in ``forbidden_combos``.
    - ``n_distractors``: 0..3; None draws it at random. Placement is by rejection under the rules
      in the module docstring; a distractor that finds no legal place after many tries is left
      out (logged at debug level), so a scene may hold fewer than asked (not seen in 1800 trials).
    - ``layout``: ``'salient'`` or ``'free'`` (see the module docstring).
    - ``exclude_categories``: categories no distractor may have (e.g. other animals for feed_pet).
    - ``forbidden_combos``: (category, colour) pairs no random object may have (held-out combos).
    - ``distractors``: the exact distractors as (category, colour) pairs, placed in this order
      (instead of ``n_distractors`` random ones; at most 3, categories unique and not the
      target's); a ValueError when one finds no legal place (try another ``rng``).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if n_distractors is not None and not 0 <= n_distractors <= 3:
        raise ValueError(f"n_distractors must be 0..3 or None, got {n_distractors!r}")
    forbidden = set(forbidden_combos)
    if target is None:
        pool = list(CATEGORIES) if target_categories is None else list(target_categories)
        if not pool:
            raise ValueError("target_categories is empty")
        for name in pool:
            if name not in CATEGORIES:
                raise ValueError(f"unknown object category {name!r}; known: {sorted(CATEGORIES)}")
        choices = [(c, col) for c in pool for col in CATEGORIES[c].colours if (c, col) not in forbidden]
        if not choices:
            raise ValueError("every colour of the allowed target categories is forbidden")
        category, colour = choices[int(rng.integers(0, len(choices)))]
    else:
        if not (isinstance(target, tuple | list) and len(target) == 2):
            raise ValueError(f"target must be (category, colour) or None, got {target!r}")
        category, colour = target
        if colour is None:
            if category not in CATEGORIES:
                raise ValueError(f"unknown object category {category!r}; known: {sorted(CATEGORIES)}")
            allowed = [c for c in CATEGORIES[category].colours if (category, c) not in forbidden]
            if not allowed:
                raise ValueError(f"every colour of {category!r} is forbidden")
            colour = allowed[int(rng.integers(0, len(allowed)))]
        check_combo(category, colour)

    explicit = None if distractors is None else _check_distractors(distractors, category, n_distractors)
    style = _sample_style(rng)
    if explicit is not None:
        n = len(explicit)
    else:
        n = int(rng.integers(0, 4)) if n_distractors is None else n_distractors

    salient = layout == "salient"
    tgt = None
    for _ in range(50):
        if salient:
            tgt = _place(rng, category, colour, size_range=(0.46, 0.64), centre_box=(0.38, 0.38, 0.62, 0.66))
        else:
            tgt = _place(rng, category, colour, size_range=(0.26, 0.46), centre_box=None)
        if tgt is not None and (not salient or _area(tgt.bbox) <= 0.33):
            break
    if tgt is None:  # cannot happen with the ranges above; keep the error explicit
        raise RuntimeError(f"could not place target {category}/{colour}")

    # distractor categories: others, unique, not excluded
    pool = [c for c in CATEGORIES if c != category and c not in exclude_categories]
    rng.shuffle(pool)
    objects = [tgt]
    t_area, t_dist = _area(tgt.bbox), _dist(tgt)
    for cat_name in pool if explicit is None else [c for c, _ in explicit]:
        if len(objects) - 1 >= n:
            break
        if explicit is None:
            colours = [c for c in CATEGORIES[cat_name].colours if (cat_name, c) not in forbidden]
            if not colours:
                continue
            col = colours[int(rng.integers(0, len(colours)))]
        else:
            col = dict(explicit)[cat_name]
        placed = None
        for _ in range(25 if explicit is None else 200):
            if salient:
                hi = _size_for_area(cat_name, 0.45 * t_area)
                cand = _place(rng, cat_name, col, size_range=(min(0.2, hi * 0.8), hi), centre_box=None)
                if cand is None or _area(cand.bbox) > 0.5 * t_area or _dist(cand) < t_dist + 0.12:
                    continue
            else:
                cand = _place(rng, cat_name, col, size_range=(0.24, 0.44), centre_box=None)
                if cand is None:
                    continue
            if _max_cover([*objects, cand]) <= MAX_COVER:
                placed = cand
                break
        if placed is None:
            if explicit is not None:
                raise ValueError(f"no legal place for the {col} {cat_name} distractor with this rng")
            log.debug("no legal place for a %s distractor; scene keeps %d", cat_name, len(objects) - 1)
            continue
        objects.append(placed)

    ordered = sorted(objects, key=lambda o: o.bbox[3])  # back to front
    return Scene(tuple(ordered), ordered.index(tgt), style, layout)


def _check_distractors(distractors: Iterable[Combo], target: str, n_distractors: int | None) -> list[Combo]:
    """Validated explicit distractors of :func:`sample_scene`."""
    out = [(str(c), str(col)) for c, col in distractors]
    if n_distractors is not None:
        raise ValueError("give either distractors or n_distractors, not both")
    if len(out) > 3:
        raise ValueError(f"at most 3 distractors, got {len(out)}")
    for c, col in out:
        check_combo(c, col)
    cats = [c for c, _ in out]
    if len(set(cats)) != len(cats) or target in cats:
        raise ValueError(
            f"distractor categories must be unique and differ from the target {target!r}: {cats}"
        )
    return out


def scene_labels(scene: Scene) -> dict[str, object]:
    """Class labels of a scene for auxiliary vision losses.

    ``target_category`` / ``target_colour``: indices into :data:`CATEGORY_NAMES` /
    :data:`COLOUR_NAMES`; ``present``: multi-hot uint8 vector over categories.
    """
    present = np.zeros(len(CATEGORY_NAMES), dtype=np.uint8)
    for obj in scene.objects:
        present[CATEGORY_NAMES.index(obj.category)] = 1
    return {
        "target_category": CATEGORY_NAMES.index(scene.target.category),
        "target_colour": COLOUR_NAMES.index(scene.target.colour),
        "present": present,
    }


def scene_from_spec(spec: dict, *, layout: str = "salient") -> Scene:
    """A scene from a demo-scenario mapping ``{target: [category, colour], distractors: 2, seed: 11}``.

    Missing keys: no target (random), random distractor count, seed 0.
    """
    if not isinstance(spec, dict):
        raise ValueError(f"a scene spec must be a mapping, got {type(spec).__name__}")
    unknown = set(spec) - {"target", "distractors", "seed", "layout"}
    if unknown:
        raise ValueError(
            f"unknown scene spec keys {sorted(unknown)}; known: target, distractors, seed, layout"
        )
    target = spec.get("target")
    if target is not None:
        if not (isinstance(target, list | tuple) and len(target) == 2):
            raise ValueError(f"scene target must be [category, colour], got {target!r}")
        target = (str(target[0]), None if target[1] is None else str(target[1]))
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"scene seed must be a non-negative int, got {seed!r}")
    return sample_scene(
        np.random.default_rng(seed),
        target=target,
        n_distractors=spec.get("distractors"),
        layout=spec.get("layout", layout),
    )
