"""Records (data/records.py) and registry-generated instructions (data/registry_data.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from octopus_ros.data import registry_data
from octopus_ros.data.records import BagImage, RecordError, load_image, read_records
from octopus_ros.functions import FunctionRegistry, load_default_registry, parse_call
from octopus_ros.paths import config_path

OPEN_DOOR = """
  - name: open_door
    token: 13
    description: {en: Open a door of the house., zh: 打开家里的一扇门。}
    args:
      - name: door
        type: enum
        values: [front, back, garage]
        examples:
          en: {front: [front, main], back: rear}
          zh: {front: 前, back: 后, garage: 车库}
    examples:
      en:
        - open the {door} door
        - please open the {door} door
        - can you open the {door} door
        - I need the {door} door open
        - get the {door} door open for me
        - {say: let the dog out, args: {door: back}}
      zh:
        - 打开{door}门
        - 请把{door}门打开
"""


@pytest.fixture
def registry(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text(
        config_path("functions.yaml").read_text(encoding="utf-8").rstrip("\n") + OPEN_DOOR, "utf-8"
    )
    return FunctionRegistry.from_yaml(path)


def _image(path, size=(40, 30), colour=(200, 10, 10)):
    Image.new("RGB", size, colour).save(path)
    return path.name


def test_records_load_and_answers_become_canonical(tmp_path, registry):
    _image(tmp_path / "a.png")
    (tmp_path / "frames").mkdir()
    _image(tmp_path / "frames" / "b.jpg", (64, 48))
    lines = [
        {
            "image": "a.png",
            "instruction": "open the front door",
            "answer": "open_door('front')",
            "language": "en",
        },
        {
            "image": "frames/b.jpg",
            "instruction": "把红色的杯子拿起来",
            "answer": "<nexa_0>('red cup')<nexa_end>",
            "language": "zh",
            "id": "cup-1",
            "context": [
                {"image": "a.png", "instruction": "open the back door", "answer": "open_door(door='back')"}
            ],
        },
    ]
    path = tmp_path / "records.jsonl"
    path.write_text(
        "# my robot\n\n" + "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", "utf-8"
    )
    records = read_records(path, registry)
    assert [r.answer for r in records] == ["<nexa_13>('front')<nexa_end>", "<nexa_0>('red cup')<nexa_end>"]
    assert records[0].id == f"{path}:3" and records[1].id == "cup-1"
    assert records[1].context[0].answer == "<nexa_13>('back')<nexa_end>"
    assert records[1].function == "pick_up" and records[1].language == "zh"
    image = load_image(records[0].query.image)
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8 and tuple(image[0, 0]) == (200, 10, 10)


BAD = [
    ("{not json", "not valid JSON"),
    ('{"image": "a.png", "instruction": "hi", "language": "en"}', "missing required key 'answer'"),
    ('{"image": "a.png", "instruction": "x", "answer": "fly()", "language": "en"}', "unknown function"),
    ('{"image": "a.png", "instruction": "x", "answer": "open_door(\'attic\')", "language": "en"}', "attic"),
    (
        '{"image": "nope.png", "instruction": "x", "answer": "stop()", "language": "en"}',
        "image file not found",
    ),
    ('{"image": "a.png", "instruction": " ", "answer": "stop()", "language": "en"}', "instruction must be"),
    ('{"image": "a.png", "instruction": "x", "answer": "stop()", "language": "English"}', "language must be"),
    (
        '{"image": "a.png", "instruction": "x", "answer": "stop()", "language": "en", "colour": 1}',
        "unknown key",
    ),
    (
        '{"image": "a.png", "instruction": "x", "answer": "stop()", "language": "en", '
        '"context": [{"image": "a.png", "instruction": "y", "answer": "<nexa_99>()<nexa_end>"}]}',
        "context[0]: answer",
    ),
    (
        '{"image": {"bag": "run1", "topic": "/cam"}, "instruction": "x", "answer": "stop()", "language": "en"}',
        "stamp_ns",
    ),
    ("[1, 2]", "must be a JSON object"),
]


def test_every_bad_line_is_reported_with_file_and_line(tmp_path, registry):
    _image(tmp_path / "a.png")
    good = '{"image": "a.png", "instruction": "stop", "answer": "stop()", "language": "en"}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join([good, *(line for line, _ in BAD), good]) + "\n", "utf-8")
    with pytest.raises(RecordError) as info:
        read_records(path, registry)
    problems = info.value.problems
    for k, (_, message) in enumerate(BAD):
        line = k + 2
        assert any(p.startswith(f"{path}:{line}: ") and message in p for p in problems), (
            line,
            message,
            problems,
        )
    assert not any(p.startswith(f"{path}:1: ") or p.startswith(f"{path}:{len(BAD) + 2}: ") for p in problems)


def test_a_copied_message_is_a_span_of_what_the_model_reads(tmp_path, registry):
    """send_message's body is copied from the utterance: a body that ends with the request's full
    stop loses it (the model never reads it, lean/prompt.model_utterance); a body the
    instruction does not hold is a problem with its file and line."""
    _image(tmp_path / "a.png")
    rows = [
        ("text mom: I'm home.", "send_message('mom', \"I'm home.\")", "I'm home"),
        ("告诉妈妈我到了！", "send_message('mom', '我到了！')", "我到了"),
        ("ping bob: lunch? ok", "send_message('bob', 'lunch? ok')", "lunch? ok"),
        ("tell dad the  car is ready.", "send_message('dad', 'the car is ready')", "the car is ready"),
    ]
    path = tmp_path / "m.jsonl"
    path.write_text(
        "".join(
            json.dumps({"image": "a.png", "instruction": i, "answer": a, "language": "en"}) + "\n"
            for i, a, _ in rows
        ),
        "utf-8",
    )
    got = [parse_call(r.query.answer, registry).args[1].value for r in read_records(path, registry)]
    assert got == [want for *_, want in rows]
    bad = tmp_path / "bad.jsonl"
    line = {"image": "a.png", "instruction": "text mom", "answer": "send_message('mom', 'hi there')"}
    bad.write_text(json.dumps({**line, "language": "en"}) + "\n", "utf-8")
    with pytest.raises(RecordError, match=rf"{bad}:1: .*'hi there' is not a span of the instruction"):
        read_records(bad, registry)


def test_duplicate_ids_empty_files_and_bag_references(tmp_path, registry):
    _image(tmp_path / "a.png")
    rec = {"image": "a.png", "instruction": "stop", "answer": "stop()", "language": "en", "id": "x"}
    path = tmp_path / "dup.jsonl"
    path.write_text(json.dumps(rec) + "\n" + json.dumps(rec) + "\n", "utf-8")
    with pytest.raises(RecordError, match=r"dup.jsonl:2: duplicate id 'x' \(first at .*dup.jsonl:1\)"):
        read_records(path, registry)
    (tmp_path / "empty.jsonl").write_text("# nothing\n", "utf-8")
    with pytest.raises(RecordError, match="no records"):
        read_records(tmp_path / "empty.jsonl", registry)
    bag = {**rec, "image": {"bag": "run1", "topic": "/camera/image_raw", "stamp_ns": 5}}
    (tmp_path / "bag.jsonl").write_text(json.dumps(bag) + "\n", "utf-8")
    [record] = read_records(tmp_path / "bag.jsonl", registry)
    assert record.query.image == BagImage(tmp_path / "run1", "/camera/image_raw", 5)
    with pytest.raises(RecordError, match=r"bag.jsonl:1: .*run1: not a rosbag2 bag"):
        load_image(record.query.image, record.where)


def test_registry_phrasings_generate_valid_calls_and_hold_some_out(registry):
    refs = registry_data.phrasings(registry)
    assert {r.function for r in refs} == {"open_door"}
    train, held = registry_data.split_phrasings(refs, 0.3, seed=0)
    assert len(held) == 2 and {r.language for r in held} == {"en"}  # zh keeps its 2 (min_left 3)
    examples = registry_data.generate(registry, train, 300, seed=1)
    held_texts = {r.phrasing.say for r in held}
    spoken = {"front": {"front", "main", "前"}, "back": {"rear", "后", "back"}, "garage": {"garage", "车库"}}
    for ex in examples:
        call = parse_call(ex.answer, registry)
        assert call.function == "open_door"
        door = call.kwargs()["door"]
        assert ex.phrasing not in {r.id for r in held}
        assert not any(ex.instruction == t.format(door=w) for t in held_texts for w in spoken[door])
        if ex.instruction != "let the dog out":
            assert any(w in ex.instruction for w in spoken[door]), ex
    seen = {(ex.language, parse_call(ex.answer, registry).kwargs()["door"]) for ex in examples}
    assert ("zh", "garage") in seen and ("en", "garage") in seen  # en: no example -> the enum value itself
    assert any("main" in ex.instruction for ex in examples)


def test_doc_lines_carry_each_functional_token_and_description(registry):
    lines = registry_data.doc_lines(registry)
    assert "<nexa_13> open door: Open a door of the house." in lines
    assert "<nexa_13> open door: 打开家里的一扇门。" in lines
    assert len([x for x in lines if x.startswith("<nexa_0> pick up")]) >= 2
    assert registry_data.doc_lines(load_default_registry(), ["stop"]) == [
        "<nexa_3> stop: Stop all motion immediately.",
        "<nexa_3> stop: 立即停止所有动作。",
    ]


LIGHT_REGISTRY = """
version: 1
functions:
  - name: set_light
    token: 0
    description: {en: Switch a light., zh: 开关灯。}
    args:
      - name: room
        type: enum
        values: [kitchen, hallway]
        examples: {en: {kitchen: kitchen, hallway: [hallway, hall]}, zh: {kitchen: 厨房, hallway: 走廊}}
      - name: "on"
        type: bool
        examples:
          en: {true: "on", false: "off"}
          zh: {true: [打开, 开], false: [关掉, 关]}
    examples:
      en:
        - {say: "turn on the {room} light", args: {"on": true}}
        - {say: "turn off the {room} light", args: {"on": false}}
        - {say: "kill the {room} lights", args: {"on": false}}
        - {say: "lights on or off in the {room}? off", args: {"on": false}}
        - {say: "say {{hi}} online, {room} light on", args: {"on": true}}
        - {say: "turn on the light", args: {"on": true, "room": hallway}}
      zh:
        - {say: "帮我打开{room}的灯", args: {"on": true}}
        - {say: "{room}不用开灯了", args: {"on": false}}
  - name: no_action
    token: 1
    decline: true
    description: {en: Decline., zh: 不执行。}
"""


def test_counterfactual_phrasings_say_every_value_where_the_fixed_one_is_said(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text(LIGHT_REGISTRY, "utf-8")
    registry = FunctionRegistry.from_yaml(path)
    refs = registry_data.phrasings(registry)
    derived = registry_data.with_counterfactuals(registry, refs)[len(refs) :]
    says = {(r.language, r.phrasing.say, r.phrasing.fixed) for r in derived}
    assert says == {
        # "turn on" and "turn off" give one phrasing
        ("en", "turn {on} the {room} light", ()),
        # literal braces stay literal; "online" is not the word "on"
        ("en", "say {{hi}} online, {room} light {on}", ()),
        # an enum fixed value, too: the room said in the text is not there
        ("en", "turn {on} the light", (("room", "hallway"),)),
        # 打开 is taken whole, not its 开
        ("zh", "帮我{on}{room}的灯", ()),
    }  # "kill" says no form; "on or off ... off" says three; 不用开灯 (off) says a form of on
    assert [r.id for r in derived][:1] == ["set_light.en.0~on"]
    rng = np.random.default_rng(0)
    seen = set()
    for ref in derived:
        for _ in range(20):
            ex = registry_data.realise(registry, ref, rng)
            call = parse_call(ex.answer, registry).kwargs()
            seen.add((ex.language, call["on"]))
            if ex.language == "zh":
                assert ("打开" in ex.instruction or "开" in ex.instruction) == call["on"], ex
            elif "{on}" not in ex.instruction:
                assert (" on " in f" {ex.instruction} ") == call["on"], ex
    assert seen == {("en", True), ("en", False), ("zh", True), ("zh", False)}


def test_phrasings_whose_fixed_value_is_unsaid_are_drawn_as_often_as_asked(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text(
        LIGHT_REGISTRY.replace("        type: bool\n", "        type: bool\n        narrow: true\n"), "utf-8"
    )
    registry = FunctionRegistry.from_yaml(path)
    refs = registry_data.with_counterfactuals(registry, registry_data.phrasings(registry))
    # "kill" says neither value; "on or off ... off" says both (off among them); 不用开灯 says on as
    # the value not wanted, which says off (the grammar's rule)
    assert [r.phrasing.say for r in refs if not registry_data.says_fixed_values(registry, r)] == [
        "kill the {room} lights"
    ]

    def kill_share(weight):
        examples = registry_data.generate(registry, refs, 3000, seed=1, unsaid_weight=weight)
        english = [ex for ex in examples if ex.language == "en"]
        return sum(ex.instruction.startswith("kill") for ex in english) / len(english)

    n_en = sum(r.language == "en" for r in refs)  # one of them unsaid
    assert kill_share(1.0) == pytest.approx(1 / n_en, abs=0.03)
    assert kill_share(5.0) == pytest.approx(5 / (n_en + 4), abs=0.04)
    # the default draws exactly what it drew before the option existed (these are the draws of
    # registry_data.generate as it was at 9ac3345, before unsaid_weight), so runs stay reproducible
    assert [e.instruction for e in registry_data.generate(registry, refs, 8, seed=1)] == [
        "say {hi} online, hall light on",
        "turn off the hall light",
        "kill the hallway lights",
        "say {hi} online, kitchen light on",
        "厨房不用开灯了",
        "say {hi} online, hall light off",
        "帮我打开厨房的灯",
        "帮我打开厨房的灯",
    ]
    with pytest.raises(ValueError, match="unsaid_weight"):
        registry_data.generate(registry, refs, 5, unsaid_weight=0)


def test_counterfactual_examples_carry_their_twins(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text(LIGHT_REGISTRY, "utf-8")
    registry = FunctionRegistry.from_yaml(path)
    refs = registry_data.with_counterfactuals(registry, registry_data.phrasings(registry))
    plain = registry_data.generate(registry, refs, 200, seed=3)
    assert all(ex.twins == () for ex in plain)
    assert [ex.instruction for ex in registry_data.generate(registry, refs, 200, seed=3, twins=False)] == [
        ex.instruction for ex in plain
    ]
    paired = [ex for ex in registry_data.generate(registry, refs, 200, seed=3, twins=True) if ex.twins]
    assert paired and all("~on" in ex.phrasing for ex in paired)
    for ex in paired:
        [(text, answer)] = ex.twins
        mine, other = parse_call(ex.answer, registry).kwargs(), parse_call(answer, registry).kwargs()
        assert other == {**mine, "on": not mine["on"]}
        if ex.language == "en":  # the words differ only where the value is said
            assert sorted(set(ex.instruction.split()) ^ set(text.split())) == ["off", "on"]


def test_a_byte_order_mark_at_the_start_is_not_a_bad_record(tmp_path, registry):
    _image(tmp_path / "a.png")
    rec = {"image": "a.png", "instruction": "stop", "answer": "stop()", "language": "en"}
    path = tmp_path / "bom.jsonl"
    path.write_bytes("\ufeff".encode() + (json.dumps(rec) + "\n").encode("utf-8"))  # as Notepad saves it
    [record] = read_records(path, registry)
    assert record.query.instruction == "stop" and record.query.answer == "<nexa_3>()<nexa_end>"
