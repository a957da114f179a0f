"""Procedural synthetic robot world and the data the model is trained on (no rclpy, no torch).

- :mod:`.world`: categories, colours and their EN/ZH names, :class:`Scene`, :func:`sample_scene`.
- :mod:`.render`: :func:`render` a scene at any size, :func:`contact_sheet`.
- :mod:`.instructions`: phrasing templates per function and language (from the registry's
  ``phrasings:``), the world's slot words, :func:`format_call`.
- :mod:`.captions`: captions and VQA pairs for alignment pretraining.
- :mod:`.tasks`: held-out :func:`make_splits`, :func:`generate` examples, captions, VQA, text corpus.

Quick start::

    from octopus_ros.data import generate
    examples = generate("train", 1000, seed=1)          # list[Example], 64x64 images
    ex = examples[0]; ex.image, ex.instruction, ex.answer  # (64, 64, 3) uint8, str, str
"""

from __future__ import annotations

from .captions import caption, vqa_pair
from .instructions import FUNCTIONS, LANGUAGES, TEMPLATES, Template, call_text, format_call, templates_for
from .render import contact_sheet, render
from .tasks import (
    SPLITS,
    Example,
    ExampleDataset,
    Splits,
    caption_one,
    default_splits,
    generate,
    generate_captions,
    generate_one,
    generate_vqa,
    instruction_corpus,
    make_splits,
    split_summary,
    vqa_one,
)
from .world import (
    CATEGORIES,
    CATEGORY_NAMES,
    COLOUR_NAMES,
    COLOURS,
    RECYCLE_BIN,
    Category,
    Colour,
    Scene,
    SceneObject,
    Style,
    all_combos,
    object_name,
    sample_scene,
    scene_from_spec,
    scene_labels,
)

__all__ = [
    "CATEGORIES",
    "CATEGORY_NAMES",
    "COLOURS",
    "COLOUR_NAMES",
    "FUNCTIONS",
    "LANGUAGES",
    "RECYCLE_BIN",
    "SPLITS",
    "TEMPLATES",
    "Category",
    "Colour",
    "Example",
    "ExampleDataset",
    "Scene",
    "SceneObject",
    "Splits",
    "Style",
    "Template",
    "all_combos",
    "call_text",
    "caption",
    "caption_one",
    "contact_sheet",
    "default_splits",
    "format_call",
    "generate",
    "generate_captions",
    "generate_one",
    "generate_vqa",
    "instruction_corpus",
    "make_splits",
    "object_name",
    "render",
    "sample_scene",
    "scene_from_spec",
    "scene_labels",
    "split_summary",
    "templates_for",
    "vqa_one",
    "vqa_pair",
]
