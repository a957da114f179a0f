"""Bags without DDS: a run written with rosbags, labelled, turned into records, scored.

The bag is built message by message (the types octopus_record writes), so each rule of the
labelling is pinned down: which frame an utterance gets, which answer the node gave, what a
still-unconfirmed line does, and how a replay is scored.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from octopus_ros.bags import io as bag_io
from octopus_ros.bags import labels as bag_labels
from octopus_ros.bags.replay import Decided, freshness_problem, score
from octopus_ros.data.records import RecordError, load_image, read_records
from octopus_ros.functions import load_default_registry

S = 1_000_000_000
T0 = 1_700_000_000 * S  # recorder clock at the start of the run


@pytest.fixture(scope="module")
def registry():
    return load_default_registry()


def _types():
    store = bag_io.typestore()
    return store.types


def _msg(msgtype: str, **fields):
    """A rosbags message; scalar fields not given (e.g. added to the .msg later) get their zero value."""
    import dataclasses

    cls = _types()[msgtype]
    zero = {"float": 0.0, "int": 0, "str": "", "bool": False}
    for f in dataclasses.fields(cls):
        if f.name not in fields and not f.type.startswith("ClassVar"):
            if f.type not in zero:
                raise TypeError(f"{msgtype}.{f.name} ({f.type}) must be given")
            fields[f.name] = zero[f.type]
    return cls(**fields)


def _header(stamp_ns: int, frame_id: str = "cam"):
    t = _types()
    return t["std_msgs/msg/Header"](
        stamp=t["builtin_interfaces/msg/Time"](sec=stamp_ns // S, nanosec=stamp_ns % S), frame_id=frame_id
    )


def _image(rgb: np.ndarray, stamp_ns: int, compressed: bool):
    t = _types()
    if compressed:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
        assert ok
        return t[bag_io.COMPRESSED](header=_header(stamp_ns), format="png", data=png.reshape(-1))
    h, w = rgb.shape[:2]
    return t[bag_io.IMAGE](
        header=_header(stamp_ns),
        height=h,
        width=w,
        encoding="rgb8",
        is_bigendian=0,
        step=w * 3,
        data=rgb.reshape(-1),
    )


def _duration(seconds: float):
    return _types()["builtin_interfaces/msg/Duration"](sec=int(seconds), nanosec=int((seconds % 1) * 1e9))


def _outcome(rid: str, code: str, text: str, function: str = "", confidence: float = 0.9):
    codes = {"OK": 0, "REJECTED_LOW_CONFIDENCE": 1, "NO_ACTION": 8}
    return _msg(
        bag_io.OUTCOME,
        header=_header(0, ""),
        request_id=rid,
        code=codes[code],
        code_name=code,
        reason="test",
        utterance=text,
        function_name=function,
        confidence=confidence,
        latency=_duration(0.05),
    )


def _call(rid: str, text: str, raw: str, function: str, token: int, stamp_ns: int):
    return _msg(
        bag_io.FUNCTION_CALL,
        header=_header(stamp_ns),
        request_id=rid,
        source=0,
        function_name=function,
        function_token=token,
        arguments=[],
        confidence=0.9,
        language="en",
        utterance=text,
        raw_output=raw,
        image_age=_duration(0.1),
        inference_latency=_duration(0.05),
    )


FRAMES = [np.full((12, 16, 3), v, np.uint8) for v in (10, 100, 200)]
for _k, _f in enumerate(FRAMES):
    _f[_k, :, 0] = 255  # distinguishable beyond their grey level


def write_run(path, *, compressed: bool = False):
    """A run: frames received at 1.0, 1.5 and 3.0 s (stamped 50 ms earlier), four utterances.

    - "hello" at 0.5 s: before any frame;
    - "pick up the red cup" at 1.6 s: the node decided on frame 1 (stamp 0.95 s), although frame 2
      had arrived: the call's stamp, not the receipt time, picks the frame;
    - "what is the weather" at 3.5 s: NO_ACTION (the frame is the newest at receipt, frame 3);
    - "take a photo" at 3.6 s: REJECTED_LOW_CONFIDENCE: no call to copy.
    """
    image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    speech, calls, outcomes = "/speech/text", "/octopus_node/function_calls", "/octopus_node/outcomes"
    say = _types()[bag_io.STRING]
    ms = S // 1000
    with bag_io.BagWriter(path) as bag:
        bag.add_topic(image_topic, bag_io.COMPRESSED if compressed else bag_io.IMAGE)
        for topic, msgtype in (
            (speech, bag_io.STRING),
            (calls, bag_io.FUNCTION_CALL),
            (outcomes, bag_io.OUTCOME),
        ):
            bag.add_topic(topic, msgtype)
        bag.write_msg(speech, T0 + 500 * ms, say(data="hello"))
        bag.write_msg(outcomes, T0 + 501 * ms, _outcome("utt-a-00001", "NO_ACTION", "hello"))
        for rgb, t in zip(FRAMES[:2], (T0 + S, T0 + 1500 * ms), strict=True):
            bag.write_msg(image_topic, t, _image(rgb, t - 50 * ms, compressed))
        bag.write_msg(speech, T0 + 1600 * ms, say(data="pick up the  red cup"))
        raw = "<nexa_0>('red cup')<nexa_end>"
        stamp = T0 + 950 * ms + 150  # frame 1's stamp, after the node's round trip through float seconds
        bag.write_msg(
            calls, T0 + 1650 * ms, _call("utt-a-00002", "pick up the red cup", raw, "pick_up", 0, stamp)
        )
        bag.write_msg(
            outcomes, T0 + 1651 * ms, _outcome("utt-a-00002", "OK", "pick up the red cup", "pick_up")
        )
        bag.write_msg(image_topic, T0 + 3 * S, _image(FRAMES[2], T0 + 3 * S - 50 * ms, compressed))
        bag.write_msg(speech, T0 + 3500 * ms, say(data="what is the weather"))
        weather = _outcome("utt-a-00003", "NO_ACTION", "what is the weather", "no_action")
        bag.write_msg(outcomes, T0 + 3501 * ms, weather)
        bag.write_msg(speech, T0 + 3600 * ms, say(data="take a photo"))
        photo = _outcome("utt-a-00004", "REJECTED_LOW_CONFIDENCE", "take a photo", "take_photo", 0.2)
        bag.write_msg(outcomes, T0 + 3601 * ms, photo)
    return path


@pytest.mark.parametrize("compressed", [False, True])
def test_labels_pair_each_utterance_with_the_frame_the_node_used(tmp_path, registry, compressed):
    bag = write_run(tmp_path / "run1", compressed=compressed)
    assert "storage_identifier: mcap" in (bag / "metadata.yaml").read_text()
    labels = bag_labels.extract(bag, registry, auto_confirm=True)
    got = [(lab.utterance, lab.node["outcome"], lab.answer, lab.status, lab.image_from) for lab in labels]
    assert got == [
        ("hello", "NO_ACTION", "no_action()", "todo", "none"),  # no frame yet: cannot be confirmed
        ("pick up the  red cup", "OK", "pick_up('red cup')", "ok", "call"),
        ("what is the weather", "NO_ACTION", "no_action()", "ok", "receipt"),
        ("take a photo", "REJECTED_LOW_CONFIDENCE", None, "todo", "receipt"),
    ]
    assert labels[1].image["stamp_ns"] == T0 + S  # frame 1 (the call's), not frame 2 (newest)
    assert labels[2].image["stamp_ns"] == labels[3].image["stamp_ns"] == T0 + 3 * S
    frame = bag_io.load_frame(bag, labels[1].image["topic"], labels[1].image["stamp_ns"])
    np.testing.assert_array_equal(frame, FRAMES[0])


def test_labels_file_to_records_needs_every_line_confirmed(tmp_path, registry):
    bag = write_run(tmp_path / "bags" / "run1")
    labels_file = tmp_path / "labels" / "run1.labels.jsonl"
    assert bag_labels.main(["extract", str(bag), "--out", str(labels_file)]) == 0
    lines = [json.loads(x) for x in labels_file.read_text().splitlines()]
    assert lines[1]["image"]["bag"] == "../bags/run1"  # relative to the labels file
    out = tmp_path / "data" / "records.jsonl"
    with pytest.raises(bag_labels.LabelError) as err:
        bag_labels.to_records(labels_file, out, registry)
    assert str(err.value).count("still 'todo'") == 4 and f"{labels_file}:4:" in str(err.value)

    # The user's pass: skip the first, confirm two, correct the rejected one (a typo first).
    lines[0]["status"] = "skip"
    lines[1]["status"] = lines[2]["status"] = "ok"
    lines[3].update(status="ok", answer="take_foto()")
    labels_file.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    with pytest.raises(
        bag_labels.LabelError, match=rf"{labels_file}:4: answer 'take_foto\(\)' is not a valid call"
    ):
        bag_labels.to_records(labels_file, out, registry)
    lines[3]["answer"] = "take_photo()"
    labels_file.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    assert bag_labels.main(["records", str(labels_file), "--out", str(out)]) == 0
    records = read_records(out, registry)
    assert [(r.instruction, r.answer) for r in records] == [
        ("pick up the  red cup", "<nexa_0>('red cup')<nexa_end>"),
        ("what is the weather", "<nexa_12>()<nexa_end>"),
        ("take a photo", "<nexa_4>()<nexa_end>"),
    ]
    assert json.loads(out.read_text().splitlines()[0])["image"]["bag"] == "../bags/run1"
    np.testing.assert_array_equal(load_image(records[0].query.image, records[0].where), FRAMES[0])
    np.testing.assert_array_equal(load_image(records[2].query.image, records[2].where), FRAMES[2])

    # A reference to a frame that is not in the bag is an error naming the record's line.
    bad = json.loads(out.read_text().splitlines()[0])
    bad["image"]["stamp_ns"] += 1
    (tmp_path / "data" / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    [record] = read_records(tmp_path / "data" / "bad.jsonl", registry)
    with pytest.raises(RecordError, match=r"bad.jsonl:1: .*no message on /camera/image_raw at bag time"):
        load_image(record.query.image, record.where)


def test_a_labelled_bag_is_a_fine_tuning_source(tmp_path, registry):
    """octopus_finetune --data bag:PATH: the run's confirmed lines, frames read from the bag."""
    from octopus_ros.training.finetune import FinetuneConfig, FinetuneError, bag_labels_path, build_sources

    bag = write_run(tmp_path / "my_run")
    cfg = FinetuneConfig(data=[f"bag:{bag}"], heldout=0.0)
    with pytest.raises(FinetuneError, match=r"no labels file .*my_run\.labels\.jsonl: label the run first"):
        build_sources(registry, 32, cfg)
    labels_file = bag_labels_path(bag)
    assert labels_file == tmp_path / "my_run.labels.jsonl"
    assert bag_labels.main(["extract", str(bag), "--out", str(labels_file)]) == 0
    with pytest.raises(FinetuneError, match="still 'todo'"):  # nobody has looked at the lines yet
        build_sources(registry, 32, cfg)
    assert bag_labels.main(["extract", str(bag), "--out", str(labels_file), "--auto-confirm", "--force"]) == 0
    lines = [json.loads(x) for x in labels_file.read_text().splitlines()]
    for line in lines:  # the lines auto-confirm could not take: no frame yet, no call to copy
        line["status"] = line["status"] if line["status"] == "ok" else "skip"
    labels_file.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    [source] = build_sources(registry, 32, cfg)
    assert source.name == f"bag:{bag}" and not source.heldout
    got = sorted((it.instruction, it.answer) for it in source.train)
    assert got == [
        ("pick up the  red cup", "<nexa_0>('red cup')<nexa_end>"),
        ("what is the weather", "<nexa_12>()<nexa_end>"),
    ]
    first = next(it for it in source.train if it.function == "pick_up")
    np.testing.assert_array_equal(first.image(), FRAMES[0])  # the frame the node decided on, from the bag
    with pytest.raises(FinetuneError, match="no such bag folder"):
        build_sources(registry, 32, FinetuneConfig(data=[f"bag:{tmp_path / 'nope'}"]))


def test_bag_topics_must_be_unambiguous(tmp_path):
    with bag_io.BagWriter(tmp_path / "two") as bag:
        bag.add_topic("/speech/text", bag_io.STRING)
        bag.add_topic("/other/text", bag_io.STRING)
        bag.add_topic("/camera/image_raw", bag_io.IMAGE)
    with pytest.raises(bag_io.BagError, match=r"several speech topics \['/other/text', '/speech/text'\]"):
        bag_io.read_run(tmp_path / "two")
    assert bag_io.read_run(tmp_path / "two", speech_topic="/speech/text").speech_topic == "/speech/text"
    with pytest.raises(bag_io.BagError, match="not a rosbag2 bag"):
        bag_io.read_run(tmp_path)
    with pytest.raises(bag_io.BagError, match="already exists"):
        bag_io.BagWriter(tmp_path / "two")


def test_scores_and_the_all_stale_error(tmp_path, registry):
    bag = write_run(tmp_path / "run1")
    labels = bag_labels.extract(bag, registry, auto_confirm=True)
    labels[3].answer, labels[3].status = "take_photo()", "ok"

    def d(n, outcome, call=None):
        return Decided(n, labels[n - 1].utterance, outcome, call, "", 0.9, 0.01 * n, "r")

    decided = [
        d(1, "NO_ACTION"),  # not scored: its label is still todo
        d(2, "OK", "pick_up(object='red cup')"),  # right (another spelling of the same call)
        d(3, "OK", "take_photo()"),  # published, label is the decline: published wrong
        d(4, "REJECTED_LOW_CONFIDENCE"),  # label take_photo(): missed
    ]
    m = score(labels, decided, registry)
    assert (m["scored"], m["accuracy"], m["published_wrong"], m["missed"]) == (3, 1 / 3, 1, 1)
    assert m["published_wrong_calls"] == [
        {"n": 3, "utterance": "what is the weather", "label": "no_action()", "published": "take_photo()"}
    ]
    assert m["latency_ms"]["p50"] == pytest.approx(25.0)
    assert freshness_problem(decided) is None
    stale = [d(n, "NO_FRESH_IMAGE") for n in (1, 2)]
    assert "every one of the 2 utterances ended NO_FRESH_IMAGE" in freshness_problem(stale)
    assert freshness_problem([*stale, d(3, "OK", "take_photo()")]) is None
