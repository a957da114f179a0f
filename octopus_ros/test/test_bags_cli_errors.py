"""The bag tools' answers to a user's mistakes: a clear ``prog: error: ...`` and exit code 2, never a
traceback, never a result that is not one, never a half-written file.

octopus_replay (bad --model, flags, a labels file of another bag, nothing to score), octopus_label
(an existing --out, a bad stamp, an empty or truncated bag, a BOM) and octopus_record's start
(bad names and depth, an output it cannot create). No DDS here: the recorder's SIGTERM and a start
that fails inside rclpy are in test_bags_record_replay.py.
"""

from __future__ import annotations

import json
import shutil

import pytest
from test_bags_labels import write_run

from octopus_ros.bags import io as bag_io
from octopus_ros.bags import labels as bag_labels
from octopus_ros.bags import replay as bag_replay
from octopus_ros.functions import load_default_registry
from octopus_ros.paths import config_path
from octopus_ros.ros import replay as octopus_replay


@pytest.fixture(scope="module")
def registry():
    return load_default_registry()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from octopus_ros.model.testing import make_tiny_checkpoint

    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("model") / "tiny", config_path("functions.yaml"), image_size=32
    )


@pytest.fixture(scope="module")
def run1(tmp_path_factory):
    """A 4-utterance bag and its auto-confirmed labels (lines 2 and 3 ok), in a folder of its own."""
    folder = tmp_path_factory.mktemp("run")
    bag = write_run(folder / "run1")
    labels = folder / "run1.labels.jsonl"
    assert bag_labels.main(["extract", str(bag), "--out", str(labels), "--auto-confirm"]) == 0
    return bag, labels


def _replay(argv, capsys) -> tuple[int, str]:
    rc = octopus_replay.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


def _argparse_error(main, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        main([str(a) for a in argv])
    assert exit_.value.code == 2
    return capsys.readouterr().err


# ------------------------------------------------------------------------ octopus_replay: the model
def test_replay_reports_a_model_it_cannot_load(tmp_path, tiny, run1, capsys):
    bag, _ = run1
    empty = tmp_path / "empty"
    empty.mkdir()
    truncated = shutil.copytree(tiny, tmp_path / "truncated")
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    no_config = shutil.copytree(tiny, tmp_path / "no_config")
    (no_config / "config.json").unlink()
    cases = [
        (empty, "config.json: missing"),
        (tmp_path / "nope", "checkpoint directory does not exist"),
        (truncated, "model.safetensors: truncated"),
        (no_config, "config.json: missing"),
    ]
    for model, why in cases:
        rc, err = _replay([bag, "--offline", "--model", model], capsys)
        assert rc == 2 and f"octopus_replay: error: cannot load --model {model}" in err and why in err, err


def test_replay_reports_a_bad_registry_and_allowlist(tmp_path, tiny, run1, capsys):
    bag, labels = run1
    text = config_path("functions.yaml").read_text(encoding="utf-8")
    typo = tmp_path / "typo.yaml"
    typo.write_text(text.replace("    token: 0\n", "    tokn: 0\n", 1), encoding="utf-8")
    rc, err = _replay([bag, "--offline", "--labels", labels, "--model", tiny, "--functions", typo], capsys)
    assert rc == 2 and "invalid function registry" in err and f"{typo}:" in err and "tokn" in err, err
    argv = [bag, "--offline", "--labels", labels, "--model", tiny, "--allowed-functions", "dance"]
    rc, err = _replay(argv, capsys)
    assert rc == 2 and "--allowed-functions: allowlist names unknown functions ['dance']" in err, err


# ------------------------------------------------------------------------ octopus_replay: flags
@pytest.mark.parametrize(
    ("flags", "why"),
    [
        (["--offline", "--precision", "int3"], "argument --precision: invalid choice: 'int3'"),
        (["--offline", "--device", "gpu"], "argument --device: must be cpu, cuda or cuda:N, got 'gpu'"),
        (["--online", "--rate", "0"], "argument --rate: must be a number > 0, got '0'"),
        (["--online", "--rate", "-1"], "argument --rate: must be a number > 0, got '-1'"),
        (["--online", "--timeout", "-1"], "argument --timeout: must be a number > 0, got '-1'"),
        (["--offline", "--confidence-threshold", "2"], "--confidence-threshold: must be a number in [0, 1]"),
        (["--offline", "--confidence-threshold", "-1"], "--confidence-threshold: must be a number in [0, 1]"),
        (["--offline", "--max-image-age", "nan"], "--max-image-age: must be a finite number"),
        (["--offline", "--json", "/nonexistent-dir/x.json"], "its folder /nonexistent-dir does not exist"),
        (["--offline", "--json", "/proc/x.json"], "--json /proc/x.json: cannot be written"),
    ],
)
def test_replay_flags_are_checked_before_anything_runs(run1, capsys, flags, why):
    err = _argparse_error(octopus_replay.main, [run1[0], *flags], capsys)
    assert f"octopus_replay: error: {why}" in err or why in err, err


# ------------------------------------------------------------------------ octopus_replay: which bag
def test_replay_replays_the_bag_on_the_command_line(tmp_path, tiny, run1, capsys):
    bag, labels = run1
    other = write_run(tmp_path / "run2")  # the same run's content, another bag folder
    rc, err = _replay([other, "--offline", "--labels", labels, "--model", tiny], capsys)
    assert rc == 2 and f"is labelled on the bag {bag}" in err and f"not on {other}" in err, err

    # A labels file moved away from its bag (its relative references now lead nowhere) still
    # replays the bag given, frames included.
    moved = tmp_path / "elsewhere" / "moved.labels.jsonl"
    moved.parent.mkdir()
    shutil.copy(labels, moved)
    report = tmp_path / "moved.json"
    rc, err = _replay([bag, "--offline", "--labels", moved, "--model", tiny, "--json", report], capsys)
    got = json.loads(report.read_text())
    assert rc == 0 and got["metrics"]["utterances"] == 4 and got["metrics"]["scored"] == 2, err
    assert [d["outcome"] for d in got["decided"]][0] == "NO_FRESH_IMAGE"  # "hello": before any frame

    # Lines that are not the bag's utterances: each named, with the bag's own.
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    lines[1]["utterance"] = "pick up the blue cup"
    edited = tmp_path / "edited.labels.jsonl"
    edited.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    with pytest.raises(bag_labels.LabelError) as e:
        bag_replay.labels_for(bag, edited)
    assert f"{edited} does not match the bag {bag}" in str(e.value)
    assert f"{edited}:2: utterance 2 is 'pick up the blue cup'" in str(e.value)


def test_replay_topic_flags_must_name_topics_of_the_bag(run1, capsys):
    bag, labels = run1
    for flag in ("--image-topic", "--speech-topic"):
        rc, err = _replay([bag, "--offline", "--labels", labels, flag, "/nope"], capsys)
        assert rc == 2 and "no topic /nope in the bag (topics: ['/camera/image_raw'," in err, err
    rc, err = _replay([bag, "--offline", "--labels", labels, "--image-topic", "/speech/text"], capsys)
    assert rc == 2 and "/speech/text is std_msgs/msg/String, not a camera topic" in err, err


# ------------------------------------------------------------------------ nothing to score
def test_replay_with_nothing_to_score_is_an_error(tmp_path, run1, capsys):
    bag, labels = run1
    with bag_io.BagWriter(tmp_path / "empty") as empty:
        empty.add_topic("/camera/image_raw", bag_io.IMAGE)
        empty.add_topic("/speech/text", bag_io.STRING)
    rc, err = _replay([tmp_path / "empty", "--offline"], capsys)
    assert rc == 2 and "no utterance in the bag" in err, err
    todo = tmp_path / "todo.labels.jsonl"
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    for line in lines:
        line["status"] = "todo"
        line["image"] = line["image"] and {**line["image"], "bag": str(bag)}
    todo.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for mode in ("--offline", "--online"):  # checked before any model or node
        rc, err = _replay([bag, mode, "--labels", todo], capsys)
        assert rc == 2 and "no labelled utterance: 4 line(s)" in err and "still todo; label them" in err


# ------------------------------------------------------------------------ octopus_label
def test_extract_never_overwrites_labels_without_force(tmp_path, run1, capsys):
    bag, _ = run1
    out = tmp_path / "run1.labels.jsonl"
    assert bag_labels.main(["extract", str(bag), "--out", str(out)]) == 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    lines[1]["status"] = "ok"
    labelled = "\n".join(json.dumps(x) for x in lines) + "\n"
    out.write_text(labelled)
    capsys.readouterr()
    assert bag_labels.main(["extract", str(bag), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"octopus_label: error: {out}: already exists" in err and "--force" in err
    assert out.read_text() == labelled  # the hand labels are intact
    assert bag_labels.main(["extract", str(bag), "--out", str(out), "--force"]) == 0
    assert json.loads(out.read_text().splitlines()[1])["status"] == "todo"


def test_extract_of_an_empty_or_truncated_bag(tmp_path, run1, capsys):
    with bag_io.BagWriter(tmp_path / "empty") as empty:
        empty.add_topic("/camera/image_raw", bag_io.IMAGE)
        empty.add_topic("/speech/text", bag_io.STRING)
    out = tmp_path / "x.labels.jsonl"
    assert bag_labels.main(["extract", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no utterance in the bag (nothing on /speech/text)" in capsys.readouterr().err
    assert not out.exists()
    cut = shutil.copytree(run1[0], tmp_path / "cut")
    mcap = next(cut.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:-300])
    assert bag_labels.main(["extract", str(cut), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "File end magic is invalid" in err and "was not closed properly" in err and "reindex" in err


def test_a_bad_stamp_is_reported_on_the_labels_line_and_nothing_is_written(tmp_path, run1, registry):
    bag, labels = run1
    lines = [json.loads(x) for x in labels.read_text().splitlines()]
    lines[1]["image"]["stamp_ns"] = "abc"
    bad = tmp_path / "bad.labels.jsonl"
    bad.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "out.jsonl"
    with pytest.raises(bag_labels.LabelError, match=rf"{bad}:2: image.stamp_ns must be .* got 'abc'"):
        bag_labels.to_records(bad, out, registry)
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]
    for key, value in (("received_ns", "1"), ("n", True), ("image_from", "camera")):
        lines = [json.loads(x) for x in labels.read_text().splitlines()]
        lines[2][key] = value
        bad.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
        with pytest.raises(bag_labels.LabelError, match=rf"{bad}:3: {key} must be"):
            bag_labels.read_labels(bad)


def test_records_are_written_whole_or_not_at_all(tmp_path, run1, registry, monkeypatch):
    from octopus_ros.data import records

    bag, labels = run1
    out = tmp_path / "records.jsonl"
    out.write_text("earlier\n")

    def refuse(path, registry):
        raise records.RecordError([f"{path}:2: something the format refuses"])

    monkeypatch.setattr(records, "read_records", refuse)
    with pytest.raises(bag_labels.LabelError) as e:
        bag_labels.to_records(labels, out, registry, skip_todo=True)
    assert f"{labels}:3: something the format refuses" in str(e.value)  # the 2nd ok line is line 3
    assert out.read_text() == "earlier\n" and sorted(p.name for p in tmp_path.iterdir()) == ["records.jsonl"]


def test_a_utf8_bom_is_accepted(tmp_path, run1, registry):
    bag, labels = run1
    bom = tmp_path / "run1.labels.jsonl"
    text = labels.read_text(encoding="utf-8").replace('"bag": "run1"', f'"bag": "{bag}"')
    bom.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    assert [lab.n for lab in bag_labels.read_labels(bom)] == [1, 2, 3, 4]


# ------------------------------------------------------------------------ octopus_record's start
def test_record_checks_its_flags_before_creating_anything(tmp_path, monkeypatch, capsys):
    from octopus_ros.ros import record

    monkeypatch.chdir(tmp_path)
    cases = [
        (["--image-depth", "-1"], "argument --image-depth: must be an integer >= 1"),
        (["--node", "not/valid//name"], "--node 'not/valid//name': topic name must not contain repeated '/'"),
        (["--speech-topic", "bad topic"], "--speech-topic 'bad topic': topic name must not contain"),
    ]
    for flags, why in cases:
        err = _argparse_error(record.main, ["octopus_record", "r1", *flags], capsys)
        assert f"octopus_record: error: {why}" in err, err
    (tmp_path / "taken").mkdir()
    err = _argparse_error(record.main, ["octopus_record", "taken"], capsys)
    assert "taken: already exists" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]


def test_a_bag_that_cannot_be_created_leaves_nothing(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(bag_io.BagError, match="cannot create the bag"):
        bag_io.BagWriter(tmp_path / "file" / "run")
    writer = bag_io.BagWriter(tmp_path / "new" / "deeper" / "run")  # creates two folders
    writer.add_topic("/speech/text", bag_io.STRING)
    writer.discard()  # what a recorder whose start failed does
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ------------------------------------------------------------------------ octopus_replay: second opinion
class _HearsStop:
    """The bundled model, told "stop" whatever was said: a second opinion that makes another call
    than the first model's (a real decision, on the same frame)."""

    def __init__(self, model):
        self.model, self.registry = model, model.registry

    def encode(self, image):
        return self.model.encode(image)

    def decide(self, text, image, **kw):
        return self.model.decide("stop", image, **kw)


def test_offline_replay_consults_the_second_opinion_as_the_node_does(tmp_path, tiny, run1, capsys):
    """Offline replay publishes what the node would: with the node's default second_opinion (auto)
    a call the second model does not make is NO_ACTION "second opinion: ..." (it was scored as
    published before). The flag is checked as the node checks the parameter."""
    bag, labels = run1
    model = bag_replay.load_model()
    lines = bag_replay.labels_for(bag, labels)
    alone = bag_replay.replay_offline(lines, model)
    published = [d for d in alone if d.outcome == "OK"]
    assert [d.call for d in published] == ["take_photo()"], alone
    checked = bag_replay.replay_offline(lines, model, second_opinion=_HearsStop(model))
    held = {d.n: d for d in checked}[published[0].n]
    assert held.outcome == "NO_ACTION" and held.call is None
    # its stop on "take a photo" is itself declined: take_photo claims "photo" (the registry)
    assert held.reason.startswith("second opinion: the second model does not act"), held.reason
    assert "which asks for take_photo, not stop" in held.reason, held.reason

    other = tmp_path / "other_functions"
    shutil.copytree(tiny, other)
    text = (other / "functions.yaml").read_text(encoding="utf-8")
    (other / "functions.yaml").write_text(text.replace("Stop", "Halt", 1), encoding="utf-8")
    for second, why in [
        (tmp_path / "nope", "no such directory"),
        (other, "its functions.yaml is not"),
    ]:
        rc, err = _replay(
            [bag, "--offline", "--labels", labels, "--model", tiny, "--second-opinion", second], capsys
        )
        assert rc == 2 and "octopus_replay: error: --second-opinion" in err and why in err, err
    report = tmp_path / "off.json"
    argv = [
        bag,
        "--offline",
        "--labels",
        labels,
        "--model",
        tiny,
        "--second-opinion",
        "off",
        "--json",
        report,
    ]
    assert octopus_replay.main([str(a) for a in argv]) == 0
    assert "second opinion: off" in capsys.readouterr().out
