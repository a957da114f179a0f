"""Word dropout keeps every slot word; the bilingual glossary holds no held-out combo or phrasing."""

from __future__ import annotations

import re

import numpy as np
import pytest

from octopus_ros.data import default_splits, generate, object_name, templates_for
from octopus_ros.data.augment import (
    NOT_AUGMENTED,
    greyscale,
    insert_noise,
    protected_vocabulary,
    shuffle_tiles,
    strip_colour_words,
    word_dropout,
)
from octopus_ros.data.tasks import lexicon_corpus


def test_word_dropout_keeps_slot_words_and_changes_templates():
    rng = np.random.default_rng(0)
    changed = 0
    for ex in generate("train", 400, seed=3):
        if ex.function in NOT_AUGMENTED:
            continue
        out = word_dropout(ex.instruction, ex.language, rng, p=0.3)
        changed += out != ex.instruction
        assert out.strip()
        if ex.mode == "named" and ex.function in ("pick_up", "find_item"):
            name = ex.answer.split("'")[1]  # the English canonical name
            if ex.language == "en":
                assert all(w in out.lower() for w in name.split()), (ex.instruction, out)
            else:  # every Chinese character of the object's name survives
                kept = {c for c in ex.instruction if c in protected_vocabulary()[1]}
                assert kept <= set(out), (ex.instruction, out)
    assert changed > 100


def test_word_dropout_is_deterministic_and_checks_its_input():
    a = word_dropout("could you grab the red cup for me?", "en", np.random.default_rng(5), p=0.5)
    b = word_dropout("could you grab the red cup for me?", "en", np.random.default_rng(5), p=0.5)
    assert a == b and "red" in a and "cup" in a
    assert word_dropout("stop", "en", np.random.default_rng(0), p=0.9) == "stop"  # nothing to drop
    with pytest.raises(ValueError, match="language"):
        word_dropout("x y", "fr", np.random.default_rng(0))
    with pytest.raises(ValueError, match="p must be"):
        word_dropout("x y", "en", np.random.default_rng(0), p=1.0)


def test_lexicon_has_both_directions_and_no_held_out_combo_or_phrasing():
    splits = default_splits()
    lines = lexicon_corpus(splits)
    assert "红色 = red" in lines and "red = 红色" in lines and "杯子 = cup" in lines
    held_names = set()
    for category, colour in splits.heldout_combos:
        held_names.add(object_name(category, colour, "en"))
        held_names.update(object_name(category, colour, "zh", zh_style=s) for s in range(3))
    entries = {side for line in lines for side in line.split(" = ")}
    assert not entries & held_names
    train_en = {object_name(c, col, "en") for c, col in splits.train_combos()}
    assert train_en <= entries
    for t in (t for f in ("pick_up", "recycle") for lang in ("en", "zh") for t in templates_for(f, lang)):
        fixed_text = t.text.replace("@", "").split("{")[0].strip()
        if len(fixed_text) > 6:
            assert not any(fixed_text in line for line in lines), t.id


def test_insert_noise_adds_words_but_never_splits_a_slot_word():
    rng = np.random.default_rng(1)
    for ex in generate("train", 300, seed=4):
        if ex.function in NOT_AUGMENTED:
            continue
        out = insert_noise(ex.instruction, ex.language, rng)
        assert len(out) > len(ex.instruction)
        if ex.mode == "named" and ex.function in ("pick_up", "find_item"):
            if ex.language == "en":  # the English object name stays one contiguous phrase
                assert ex.answer.split("'")[1] in out.lower(), (ex.instruction, out)
            else:  # every run of protected characters (the object's name among them) stays whole;
                # runs apart in the instruction may get words between them ("地上的绿色书")
                protected = "".join(sorted(protected_vocabulary()[1]))
                runs = re.findall("[" + re.escape(protected) + "]+", ex.instruction)
                assert runs and all(run in out for run in runs), (ex.instruction, out)
    assert insert_noise("pick up the red cup", "en", np.random.default_rng(2)) == insert_noise(
        "pick up the red cup", "en", np.random.default_rng(2)
    )
    with pytest.raises(ValueError, match="language"):
        insert_noise("x", "fr", np.random.default_rng(0))
    with pytest.raises(ValueError, match="max_words"):
        insert_noise("x", "en", np.random.default_rng(0), max_words=0)


def test_image_augmentations_remove_colour_or_shape_and_nothing_else():
    ex = generate("train", 1, seed=0)[0]
    grey = greyscale(ex.image)
    assert grey.shape == ex.image.shape and grey.dtype == np.uint8
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    # a pure colour keeps its luminance
    assert greyscale(np.array([[[255, 0, 0]]], np.uint8))[0, 0, 0] == 76
    tiled = shuffle_tiles(ex.image, 8, np.random.default_rng(0))
    assert tiled.shape == ex.image.shape and not np.array_equal(tiled, ex.image)
    # the same pixels, only moved: colour histogram unchanged
    assert np.array_equal(np.sort(tiled.reshape(-1, 3), axis=0), np.sort(ex.image.reshape(-1, 3), axis=0))
    with pytest.raises(ValueError, match="tiles"):
        shuffle_tiles(ex.image, 7, np.random.default_rng(0))
    with pytest.raises(ValueError, match="uint8"):
        greyscale(ex.image.astype(np.float32))
    assert strip_colour_words("a photo of a red cup and a gray dog") == "a photo of a cup and a dog"
