"""Record -> label -> replay (offline and online) of a real octopus_node run (issue 11, item 4).

The node runs the bundled model in its own process; ``octopus_record`` records camera, speech and
the node's calls and outcomes into an MCAP bag; the bag is labelled (auto-confirm), turned into
records whose images are read back from the bag, replayed offline (the model reads the bag, no
DDS) and online (republished into a fresh node), and every replay must reproduce the recorded
node's outcome and call for every utterance.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from node_harness import RobotSide, start_node, stop_node

from octopus_ros.bags import io as bag_io
from octopus_ros.bags import labels as bag_labels
from octopus_ros.data.records import load_image, read_records
from octopus_ros.functions import load_default_registry
from octopus_ros.ros import replay as octopus_replay

# (scene of the demo scenario, utterance): scenes the bundled model was trained on, one decline.
STEPS = [
    ({"target": ["cup", "red"], "distractors": 2, "seed": 11}, "pick up the red cup"),
    ({"target": ["can", "yellow"], "distractors": 2, "seed": 13}, "回收这个"),
    ({"target": ["dog", "brown"], "distractors": 1, "seed": 17}, "它饿了，喂点吃的"),
    ({"target": ["keys", "purple"], "distractors": 2, "seed": 20}, "snap a photo"),
    ({"target": ["shoe", "black"], "distractors": 2, "seed": 18}, "what's the weather like today?"),
]


def _frames() -> list[np.ndarray]:
    from octopus_ros.data import render, scene_from_spec

    return [render(scene_from_spec(s), (160, 120), np.random.default_rng(s["seed"])) for s, _ in STEPS]


def _recorder(env, bag) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "octopus_ros.ros.record", str(bag)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_recorder(robot: RobotSide, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """The recorder (and the node) match every topic before anything is said."""

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"octopus_record exited early:\n{proc.stdout.read()}")
        return (
            robot.speech_pub.get_subscription_count() >= 2
            and robot.image_pub.get_subscription_count() >= 2
            and robot.count_subscribers("/octopus_node/outcomes") >= 2
            and robot.count_subscribers("/octopus_node/function_calls") >= 2
        )

    assert robot.spin_until(ready, timeout), "octopus_record did not subscribe"
    robot.settle(1.0)  # the recorder's readers must also be matched on the node's side


def _decided(report: dict) -> list[tuple]:
    return [(d["n"], d["outcome"], d["call"]) for d in report["decided"]]


@pytest.mark.timeout(300)
def test_record_label_replay_offline_and_online(tmp_path, ros_env, rclpy_context):
    bag = tmp_path / "run1"
    frames = _frames()
    node = start_node(ros_env, "threads:=1")
    recorder = _recorder(ros_env, bag)
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(node)
        _wait_recorder(robot, recorder)
        recorded = []
        for rgb, (_, text) in zip(frames, STEPS, strict=True):
            robot.send_frame(rgb, settle=0.3)
            recorded.append(robot.say(text))
        robot.settle(0.5)
        recorder.send_signal(2)
        rec_log = recorder.communicate(timeout=30)[0]
        assert recorder.returncode == 0, rec_log
        _check_record_label_offline(tmp_path, bag, frames, recorded, {c.request_id: c for c in robot.calls})

        # Online, into the same live node (image_age_source:=stamp, the default): rebased stamps
        # reproduce the run; the recorded stamps kept are stale to that node, and that is an error.
        labels_file = tmp_path / "labels" / "run1.labels.jsonl"
        on_json = tmp_path / "online.json"
        rc = octopus_replay.main(
            [str(bag), "--online", "--labels", str(labels_file), "--json", str(on_json), "--timeout", "60"]
        )
        on = json.loads(on_json.read_text())
        assert rc == 0 and on["error"] is None, on
        assert _decided(on) == _want(recorded, robot.calls)
        stale_json = tmp_path / "stale.json"
        rc = octopus_replay.main(
            [str(bag), "--online", "--time", "keep", "--labels", str(labels_file), "--json", str(stale_json)]
        )
        stale = json.loads(stale_json.read_text())
        assert rc == 3 and "every one of the 5 utterances ended NO_FRESH_IMAGE" in stale["error"]
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        stop_node(node)


def _want(recorded, calls) -> list[tuple]:
    """(n, outcome, call by name) of the recorded node, per utterance."""
    registry = load_default_registry()
    by_id = {c.request_id: c for c in calls}
    return [
        (
            k,
            o.code_name,
            bag_labels._node_answer(o, by_id.get(o.request_id), registry) if o.code_name == "OK" else None,
        )
        for k, o in enumerate(recorded, start=1)
    ]


def _check_record_label_offline(tmp_path, bag, frames, recorded, calls) -> None:
    codes = [o.code_name for o in recorded]
    assert "OK" in codes and codes.count("NO_FRESH_IMAGE") == 0, codes

    # The bag: MCAP, metadata version 8, every topic with its messages and definitions.
    meta = (bag / "metadata.yaml").read_text()
    assert "storage_identifier: mcap" in meta and "version: 8" in meta
    run = bag_io.read_run(bag)
    assert [u.text for u in run.utterances] == [t for _, t in STEPS]
    assert len(run.outcomes) == len(STEPS) and len(run.calls) == codes.count("OK")
    assert len(run.frames) == len(STEPS)

    # Label (auto-confirm): each line carries the node's decision and the frame it used.
    registry = load_default_registry()
    labels = bag_labels.extract(run, registry, auto_confirm=True)
    labels_file = bag_labels.write_labels(labels, tmp_path / "labels" / "run1.labels.jsonl")
    for lab, outcome in zip(labels, recorded, strict=True):
        assert lab.node["outcome"] == outcome.code_name
        if outcome.code_name == "OK":
            call = calls[outcome.request_id]
            assert lab.image_from == "call" and lab.answer == lab.node["call"]
            assert lab.image["stamp_ns"] == next(
                f.log_ns for f in run.frames if abs(f.stamp_ns - bag_io.stamp_ns(call.header)) < 2000
            )
        if outcome.code_name == "NO_ACTION":
            assert lab.answer == "no_action()" and lab.image_from == "receipt"
    records_file = tmp_path / "data" / "run1.records.jsonl"
    answered = [lab for lab in labels if lab.answer is not None]
    bag_labels.to_records(labels_file, records_file, registry)
    records = read_records(records_file, registry)
    assert [r.instruction for r in records] == [lab.utterance for lab in answered]
    for record, lab in zip(records, answered, strict=True):
        # The bag reference reads back exactly the frame that was published with the utterance.
        np.testing.assert_array_equal(load_image(record.query.image, record.where), frames[lab.n - 1])

    # Offline: the model reads the bag; same outcome and call for every utterance as the node.
    off_json = tmp_path / "offline.json"
    rc = octopus_replay.main([str(bag), "--offline", "--labels", str(labels_file), "--json", str(off_json)])
    off = json.loads(off_json.read_text())
    assert rc == 0 and off["error"] is None
    assert _decided(off) == _want(recorded, calls.values())
    assert off["metrics"]["accuracy"] == 1.0 and off["metrics"]["published_wrong"] == 0


@pytest.mark.timeout(120)
def test_record_sigterm_closes_the_bag(tmp_path, ros_env, rclpy_context):
    """SIGTERM (a process manager's stop) ends the recording as Ctrl-C does: rc 0, a whole bag."""
    from std_msgs.msg import String

    bag = tmp_path / "run_term"
    recorder = _recorder(ros_env, bag)
    robot = RobotSide(rclpy_context)
    try:

        def subscribed() -> bool:
            if recorder.poll() is not None:
                raise RuntimeError(f"octopus_record exited early:\n{recorder.stdout.read()}")
            return (
                robot.speech_pub.get_subscription_count() >= 1
                and robot.image_pub.get_subscription_count() >= 1
            )

        assert robot.spin_until(subscribed, 60), "octopus_record did not subscribe"
        robot.settle(1.0)  # its readers matched on our side too
        robot.send_frame(settle=0.3)
        robot.speech_pub.publish(String(data="hello robot"))
        robot.settle(0.5)
        recorder.send_signal(15)
        log = recorder.communicate(timeout=30)[0]
        assert recorder.returncode == 0 and "closed" in log, log
    finally:
        if recorder.poll() is None:
            recorder.kill()
            recorder.wait()
        robot.destroy_node()
    assert (bag / "metadata.yaml").is_file()
    run = bag_io.read_run(bag)
    assert [u.text for u in run.utterances] == ["hello robot"] and len(run.frames) == 1


def test_record_start_that_fails_leaves_no_folder(tmp_path, ros_env):
    """A start that fails after the bag was opened (here: one topic given twice) removes it: the
    same name can be given again."""
    bag = tmp_path / "runs" / "r1"
    cmd = [
        sys.executable,
        "-m",
        "octopus_ros.ros.record",
        str(bag),
        "--image-topic",
        "/a",
        "--speech-topic",
        "/a",
    ]
    done = subprocess.run(cmd, env=ros_env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "octopus_record: error: cannot start recording" in done.stderr
    assert "topic /a added twice" in done.stderr and "Traceback" not in done.stderr
    assert list(tmp_path.iterdir()) == []
