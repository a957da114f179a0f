"""Example phrasings in the function registry (functions/examples.py): schema, errors, round trip."""

from __future__ import annotations

import re

import pytest
import yaml

from octopus_ros.functions import FunctionRegistry, RegistryError, load_default_registry
from octopus_ros.functions.examples import Phrasing, slot_values

BASE = """version: 1
functions:
  - name: no_action
    token: 0
    decline: true
    description: {en: Do nothing.}
  - name: open_door
    token: 1
    description: {en: Open a door., zh: 开门。}
    args:
      - name: door
        type: enum
        values: [front, back, garage_side]
%(arg_examples)s
      - name: note
        type: string
        max_length: 12
%(note_examples)s
    examples:
%(examples)s
"""
GOOD_ARG = """        examples:
          en: {front: [front, main], back: rear}
          zh: {front: 前, back: 后}"""
GOOD_NOTE = """        examples:
          en: [quickly, gently]
          zh: [快点]"""
GOOD_EXAMPLES = """      en:
        - open the {door} door {note}
        - {say: let me in, args: {door: front, note: now}}
      zh:
        - "{note}打开{door}门\""""


def _write(tmp_path, **parts) -> str:
    values = {"arg_examples": GOOD_ARG, "note_examples": GOOD_NOTE, "examples": GOOD_EXAMPLES, **parts}
    path = tmp_path / "functions.yaml"
    path.write_text(BASE % values, encoding="utf-8")
    return str(path)


def test_examples_parse_and_round_trip(tmp_path):
    reg = FunctionRegistry.from_yaml(_write(tmp_path))
    spec = reg.by_name("open_door")
    assert spec.examples["en"][0] == Phrasing("open the {door} door {note}")
    assert spec.examples["en"][1].fixed == (("door", "front"), ("note", "now"))
    assert spec.examples["en"][0].slots == ("door", "note")
    assert spec.args[0].examples["en"] == {"front": ("front", "main"), "back": ("rear",)}
    assert spec.args[1].examples["zh"] == {"快点": ("快点",)}
    again = FunctionRegistry.from_dict(yaml.safe_load(yaml.safe_dump(reg.to_dict(), allow_unicode=True)))
    assert again == reg
    assert again.by_name("open_door").examples == spec.examples


def test_slot_values_fall_back_to_enum_values_and_number_ranges(tmp_path):
    reg = FunctionRegistry.from_yaml(_write(tmp_path, arg_examples=""))
    door = reg.by_name("open_door").args[0]
    assert slot_values(door, "en")["garage_side"] == ("garage side",)
    speed = load_default_registry().by_name("set_speed").args[0]
    values = slot_values(speed, "en")
    assert min(values) == speed.min and max(values) == speed.max


def test_the_bundled_registry_still_loads():
    assert len(load_default_registry()) == 13


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        ({"examples": "      en:\n        - open the {window}"}, "'window' is not an argument of open_door"),
        (
            {"examples": "      en:\n        - open the {door} door"},
            "['note'] are neither a {slot} nor fixed",
        ),
        (
            {"examples": "      en:\n        - {say: '{door} {note}', args: {door: front}}"},
            "'door' is both a slot and fixed",
        ),
        (
            {"examples": "      en:\n        - {say: '{note} x', args: {door: attic}}"},
            "'attic' is not one of",
        ),
        ({"arg_examples": "        examples:\n          en: [front, attic]"}, "'attic' is not one of"),
        ({"note_examples": "        examples:\n          en: [much too long a note]"}, "max 12"),
        ({"note_examples": ""}, "slot {note} needs examples of the string argument 'note'"),
        (
            {"note_examples": "        examples:\n          en: [quickly]"},
            "needs examples of the string argument 'note' in 'zh'",
        ),
        ({"examples": "      en: open the door"}, "examples[en] must be a non-empty list"),
        ({"examples": "      en:\n        - 'open {door {note}'"}, "not a valid template"),
    ],
)
def test_bad_examples_name_the_file_and_line(tmp_path, parts, message):
    path = _write(tmp_path, **parts)
    with pytest.raises(RegistryError) as info:
        FunctionRegistry.from_yaml(path)
    text = str(info.value)
    # the file, the line of the function (or of its argument) and the function's path
    assert re.match(re.escape(path) + r":(7|11|17): functions\[1\] 'open_door'", text), text
    assert message in text, text
