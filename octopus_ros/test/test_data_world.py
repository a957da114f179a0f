"""Synthetic world: vocabulary, scene sampling rules, rendering at any size, determinism."""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np
import pytest

from octopus_ros.data import (
    CATEGORIES,
    COLOURS,
    RECYCLE_BIN,
    contact_sheet,
    object_name,
    render,
    sample_scene,
    scene_from_spec,
)
from octopus_ros.data.render import stage_box_pixels
from octopus_ros.data.world import MAX_COVER, _max_cover


def _quiet(scene):
    """The scene without blur and noise (for comparing content across sizes)."""
    return dataclasses.replace(scene, style=dataclasses.replace(scene.style, noise=0.0, blur=0.0))


def test_vocabulary_sizes_and_names():
    assert len(CATEGORIES) >= 12
    assert len(COLOURS) >= 8
    colourable = [c for c in CATEGORIES.values() if len(c.colours) >= 8]
    assert len(colourable) >= 8
    assert object_name("cup", "red") == "red cup"
    assert object_name("cup", "red", "zh") == "红色杯子"
    assert object_name("cup", "red", "zh", zh_style=1) == "红色的杯子"
    assert object_name("cup", "red", "zh", zh_style=2) == "红杯子"
    assert object_name("banana", "yellow") == "banana"
    assert object_name("plant", "green", "zh") == "植物"
    for cat in CATEGORIES.values():
        assert cat.zh and all("\u4e00" <= ch <= "\u9fff" for ch in cat.zh)
    for col in COLOURS.values():
        assert col.zh.endswith("色")


def test_bins():
    assert RECYCLE_BIN["bottle"] == RECYCLE_BIN["can"] == "recycling"
    assert RECYCLE_BIN["apple"] == RECYCLE_BIN["banana"] == "compost"
    for name in ("phone", "keys", "cup", "shoe", "book"):
        assert RECYCLE_BIN[name] == "trash"
    for name in ("dog", "cat", "plant"):
        assert name not in RECYCLE_BIN


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"target": ("elephant", "red")}, "unknown object category"),
        ({"target": ("cup", "teal")}, "unknown colour"),
        ({"target": ("banana", "red")}, "cannot be red"),
        ({"layout": "random"}, "layout"),
        ({"n_distractors": 5}, "n_distractors"),
        ({"target": "cup"}, "target must be"),
    ],
)
def test_bad_scene_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sample_scene(np.random.default_rng(0), **kwargs)


@pytest.mark.parametrize("size", [0, 8, (320,), (320, 240, 3), "64", 1.5, True])
def test_bad_sizes(size):
    scene = sample_scene(np.random.default_rng(0))
    with pytest.raises(ValueError, match="size"):
        render(scene, size)


def test_same_seed_same_bytes():
    for seed in (0, 1, 99):
        a = sample_scene(np.random.default_rng(seed))
        b = sample_scene(np.random.default_rng(seed))
        assert a == b
        assert render(a, 64).tobytes() == render(b, 64).tobytes()
        assert render(a, (320, 240)).tobytes() == render(b, (320, 240)).tobytes()
    c = sample_scene(np.random.default_rng(2))
    assert render(c, 64).tobytes() != render(sample_scene(np.random.default_rng(3)), 64).tobytes()


@pytest.mark.parametrize("category", sorted(CATEGORIES))
def test_every_category_renders(category):
    """The object visibly changes the pixels inside its box, at 64 px and at 320x240."""
    for colour in CATEGORIES[category].colours[:2]:
        scene = _quiet(sample_scene(np.random.default_rng(7), target=(category, colour), n_distractors=0))
        empty = dataclasses.replace(scene, objects=())
        for size in (64, (320, 240)):
            img, bg = render(scene, size), render(empty, size)
            w, h = (size, size) if isinstance(size, int) else size
            assert img.shape == (h, w, 3) and img.dtype == np.uint8
            x0, y0, x1, y1 = stage_box_pixels(scene.target.bbox, size)
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            diff = np.abs(img.astype(int) - bg.astype(int)).sum(axis=2)
            changed = (diff[y0:y1, x0:x1] > 30).mean()
            assert changed > 0.2, (category, colour, size, changed)
            outside = diff.copy()
            outside[max(0, y0 - 1) : y1 + 1, max(0, x0 - 1) : x1 + 1] = 0
            assert (outside > 30).mean() < 0.002  # nothing drawn outside the box


def test_same_content_at_any_size():
    """The centre crop of a 320x240 frame, resized to 64, matches the 64 px render."""
    for seed in range(5):
        scene = _quiet(sample_scene(np.random.default_rng(seed)))
        small = render(scene, 64).astype(np.float32)
        wide = render(scene, (320, 240))
        crop = cv2.resize(wide[:, 40:280], (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(small - crop).mean() < 6.0
        big = cv2.resize(render(scene, 224), (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
        assert np.abs(small - big).mean() < 6.0


def test_placement_rules():
    rng = np.random.default_rng(123)
    for i in range(300):
        layout = "salient" if i % 2 else "free"
        scene = sample_scene(rng, layout=layout)
        cats = [o.category for o in scene.objects]
        assert len(cats) == len(set(cats)), "categories are unique in a scene"
        assert 1 <= len(scene.objects) <= 4
        for o in scene.objects:
            x0, y0, x1, y1 = o.bbox
            assert 0.0 <= x0 < x1 <= 1.0 and 0.0 <= y0 < y1 <= 1.0
        assert _max_cover(list(scene.objects)) <= MAX_COVER + 1e-9
        bottoms = [o.bbox[3] for o in scene.objects]
        assert bottoms == sorted(bottoms), "drawn back to front"
        if layout == "salient":
            t = scene.target
            t_area = (t.bbox[2] - t.bbox[0]) * (t.bbox[3] - t.bbox[1])
            for d in scene.distractors:
                d_area = (d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])
                assert d_area * 2 <= t_area + 1e-9
                assert math.hypot(d.cx - 0.5, d.cy - 0.5) > math.hypot(t.cx - 0.5, t.cy - 0.5)
            assert scene.by_saliency()[0] is t


def test_distractor_count_and_exclusions():
    rng = np.random.default_rng(5)
    counts = []
    for _ in range(100):
        scene = sample_scene(rng, target=("dog", None), n_distractors=3, exclude_categories=("cat",))
        assert scene.target.category == "dog"
        assert scene.find("cat") is None
        counts.append(len(scene.distractors))
    assert np.mean(counts) > 2.8


def test_forbidden_combos_never_drawn_at_random():
    forbidden = {("cup", c) for c in CATEGORIES["cup"].colours[:-1]} | {("ball", "red")}
    rng = np.random.default_rng(9)
    for _ in range(200):
        scene = sample_scene(rng, forbidden_combos=forbidden)
        assert not any(o.combo in forbidden for o in scene.objects)
    explicit = sample_scene(rng, target=("ball", "red"), forbidden_combos=forbidden)
    assert explicit.target.combo == ("ball", "red")


def test_scene_from_demo_spec():
    scene = scene_from_spec({"target": ["cup", "red"], "distractors": 2, "seed": 11})
    assert scene.target.combo == ("cup", "red")
    assert len(scene.distractors) == 2
    assert scene == scene_from_spec({"target": ["cup", "red"], "distractors": 2, "seed": 11})
    with pytest.raises(ValueError, match="unknown scene spec keys"):
        scene_from_spec({"target": ["cup", "red"], "colour": "x"})
    with pytest.raises(ValueError, match="seed"):
        scene_from_spec({"seed": -1})


def test_scene_labels():
    from octopus_ros.data import CATEGORY_NAMES, COLOUR_NAMES, scene_labels

    scene = scene_from_spec({"target": ["cup", "red"], "distractors": 2, "seed": 4})
    labels = scene_labels(scene)
    assert CATEGORY_NAMES[labels["target_category"]] == "cup"
    assert COLOUR_NAMES[labels["target_colour"]] == "red"
    assert labels["present"].sum() == 3 and labels["present"][CATEGORY_NAMES.index("cup")] == 1


def test_contact_sheet(tmp_path):
    from types import SimpleNamespace

    rng = np.random.default_rng(0)
    items = [
        SimpleNamespace(
            image=render(sample_scene(rng), 64), instruction="pick up", answer="<nexa_0>('x')<nexa_end>"
        )
        for _ in range(5)
    ]
    path = contact_sheet(items, tmp_path / "sheet.png", columns=4, cell=64)
    from PIL import Image

    with Image.open(path) as im:
        assert im.size[0] == 4 * 64
    with pytest.raises(ValueError):
        contact_sheet([], tmp_path / "empty.png")
