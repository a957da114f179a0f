"""The command lines' checks of what a user can get wrong (evaluate, octopus_finetune, train_all,
octopus_demo, sim_camera): each mistake is refused before the work starts, as
``prog: error: <reason naming the flag or file>`` and exit status 2, never a traceback, and never
after minutes of work whose result is then lost.

No ROS traffic and no training here: the checks run before either would start.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import pytest
import torch

from octopus_ros.functions import FunctionRegistry
from octopus_ros.model.testing import make_tiny_checkpoint
from octopus_ros.paths import config_path
from octopus_ros.training import evaluate, finetune, train_all


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny checkpoint with the bundled functions (written once)."""
    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model", config_path("functions.yaml"))


def _exit_2(main, argv, capsys) -> str:
    """``main(argv)`` ends with status 2; returns its stderr (one ``prog: error:`` line, no traceback)."""
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert ": error: " in err and "Traceback" not in err, err
    return err


# ----------------------------------------------------------------------------- evaluate.number
def test_number_names_the_range_and_refuses_what_is_outside():
    positive = evaluate.number(int, low=1)
    assert positive("3") == 3
    for text, why in (("-1", ">= 1"), ("0", ">= 1"), ("x", "not an integer"), ("1.5", "not an integer")):
        with pytest.raises(Exception, match=why):
            positive(text)
    share = evaluate.number(float, low=0, high=1, low_open=True)
    assert share("1") == 1.0 and share("0.5") == 0.5
    for text in ("0", "1.01", "nan", "inf"):
        with pytest.raises(Exception, match="must be"):
            share(text)


# ----------------------------------------------------------------------------- evaluate
@pytest.mark.parametrize(
    "flags, says",
    [
        (["--n", "-1"], "argument --n: must be an integer >= 1"),
        (["--n", "0"], "argument --n"),
        (["--seed", "x"], "argument --seed: 'x' is not an integer"),
        (["--precision", "int3"], "argument --precision: invalid choice: 'int3'"),
        (["--second-opinion", "/nonexistent"], "--second-opinion /nonexistent: no such directory"),
        (["--out", "/proc/zz/metrics.json"], "--out /proc/zz/metrics.json: cannot write there"),
    ],
)
def test_evaluate_refuses_bad_flags_before_loading(tiny, flags, says, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("the evaluation ran"))
    assert says in _exit_2(evaluate.main, [str(tiny), *flags], capsys)


def test_evaluate_refuses_an_out_file_it_could_not_update(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("the evaluation ran"))
    assert "is a directory" in _exit_2(evaluate.main, [str(tiny), "--out", str(tmp_path)], capsys)
    broken = tmp_path / "metrics.json"
    broken.write_text("{not json", encoding="utf-8")
    assert "is not a JSON file" in _exit_2(evaluate.main, [str(tiny), "--out", str(broken)], capsys)
    assert broken.read_text(encoding="utf-8") == "{not json"  # left as it was


def _broken_models(tiny, root):
    """name -> (model folder, what the error must say)."""
    import shutil

    out = {"nonexistent": (root / "nonexistent", "checkpoint directory does not exist")}
    (root / "empty").mkdir()
    out["empty"] = (root / "empty", "config.json: missing")
    for name in ("trunc", "noconfig", "wrongshape"):
        shutil.copytree(tiny, root / name)
    weights = root / "trunc" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    out["trunc"] = (root / "trunc", "model.safetensors: truncated")
    (root / "noconfig" / "config.json").unlink()
    out["noconfig"] = (root / "noconfig", "config.json: missing")
    config = json.loads((root / "wrongshape" / "config.json").read_text(encoding="utf-8"))
    config["model"]["lm"]["hidden_size"] *= 2
    (root / "wrongshape" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    out["wrongshape"] = (root / "wrongshape", "weights do not match config.json")
    return out


def test_evaluate_names_a_model_folder_it_cannot_load(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(evaluate, "evaluate", lambda *a, **k: pytest.fail("the evaluation ran"))
    for name, (folder, says) in _broken_models(tiny, tmp_path).items():
        err = _exit_2(evaluate.main, [str(folder), "--no-write"], capsys)
        assert f"checkpoint {folder}: cannot load the model" in err and says in err, (name, err)
    # a second opinion that is not a model: named as the second opinion
    err = _exit_2(
        evaluate.main, [str(tiny), "--no-write", "--second-opinion", str(tmp_path / "empty")], capsys
    )
    assert "--second-opinion" in err and str(tmp_path / "empty") in err


def test_evaluate_help_explains_every_argument():
    out = subprocess.run(
        [sys.executable, "-m", "octopus_ros.training.evaluate", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    for words in (
        "the model directory to evaluate",
        "seed of the splits' draws",
        "the precision the model runs",
    ):
        assert words in " ".join(out.split()), words


# ----------------------------------------------------------------------------- octopus_finetune flags
@pytest.mark.parametrize(
    "flags, says",
    [
        (["--threads", "-3"], "argument --threads: must be an integer >= 0"),
        (["--eval-n", "-1"], "argument --eval-n: must be an integer >= 1"),
        (["--eval-n", "0"], "argument --eval-n"),
        (["--warmup", "-1"], "argument --warmup: must be an integer >= 0"),
        (["--lora", "--lora-alpha", "0"], "argument --lora-alpha: must be an integer >= 1"),
        (["--lora", "--lora-r", "0"], "argument --lora-r: must be an integer >= 1"),
        (["--lr", "-1"], "argument --lr: must be a number > 0"),
        (["--lr", "0"], "argument --lr"),
        (["--lora", "--lora-dropout", "1"], "argument --lora-dropout"),
        (["--steps", "0"], "argument --steps"),
        (["--seconds", "nan"], "argument --seconds: must be a finite number"),
        (["--heldout", "1"], "argument --heldout"),
        (["--mix", "0"], "argument --mix"),
        (["--mix", "1", "2"], "--mix needs one weight per --data source (1), got 2"),
        (["--registry-n", "-5"], "argument --registry-n"),
        (["--copier-steps", "-1"], "argument --copier-steps"),
        (["--seed", "-1"], "argument --seed"),
        (["--image-std", "0.2", "0", "0.2"], "argument --image-std"),
    ],
)
def test_finetune_refuses_bad_numbers_when_it_reads_them(tiny, tmp_path, flags, says, capsys, monkeypatch):
    monkeypatch.setattr(finetune, "run", lambda args: pytest.fail("the fine-tune ran"))
    argv = ["--base", str(tiny), "--out", str(tmp_path / "out"), *flags]
    assert says in _exit_2(finetune.main, argv, capsys)


def test_finetune_threads_zero_is_torchs_choice_and_said_so(tiny, tmp_path):
    args = finetune.build_parser().parse_args(["--base", str(tiny), "--out", str(tmp_path), "--threads", "0"])
    assert finetune._config(args).threads == 0
    help_text = " ".join(finetune.build_parser().format_help().split())
    assert "torch CPU threads (default: torch's choice, one per core; 0: the same)" in help_text


def test_finetune_help_says_each_default_once():
    help_text = " ".join(finetune.build_parser().format_help().split())
    assert "(default: registry)" in help_text and "(default: ['registry'])" not in help_text
    assert "(default: equal)" in help_text and "(default: equal) (default: None)" not in help_text
    assert help_text.count("(default: None)") == 0
    assert "--allow-token-changes" in help_text and "keeps its learned meaning" in help_text


# ----------------------------------------------------------------------------- token changes
def _swapped(tmp_path):
    """The bundled registry with stop's and take_photo's tokens swapped, and a new function."""
    text = config_path("functions.yaml").read_text(encoding="utf-8")
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    stop, photo = registry.by_name("stop").token, registry.by_name("take_photo").token
    text = text.replace(f"token: {stop}\n", "token: STOP\n").replace(f"token: {photo}\n", f"token: {stop}\n")
    text = text.replace("token: STOP\n", f"token: {photo}\n")
    path = tmp_path / "swapped.yaml"
    path.write_text(text, encoding="utf-8")
    swapped = FunctionRegistry.from_yaml(path)
    assert swapped.by_name("stop").token == photo and swapped.by_name("take_photo").token == stop
    return path, stop, photo


def test_a_registry_that_swaps_tokens_is_refused_naming_them(tmp_path, caplog):
    path, stop, photo = _swapped(tmp_path)
    old, new = FunctionRegistry.from_yaml(config_path("functions.yaml")), FunctionRegistry.from_yaml(path)
    with pytest.raises(finetune.FinetuneError) as refused:
        finetune.check_tokens(old, new, free=old.num_tokens)
    text = str(refused.value)
    assert f"<nexa_{stop}> was 'stop' in the base model and is 'take_photo'" in text
    assert f"<nexa_{photo}> was 'take_photo' in the base model and is 'stop'" in text
    assert f"the next free one (<nexa_{old.num_tokens}>" in text and "--allow-token-changes" in text
    assert "must keep their tokens" in text
    assert finetune.token_changes(old, old) == []
    # a function moved to a token the base had for none is a change too
    moved = tmp_path / "moved.yaml"
    text = config_path("functions.yaml").read_text(encoding="utf-8")
    moved.write_text(text.replace(f"token: {stop}\n", "token: 20\n"), encoding="utf-8")
    changes = finetune.token_changes(old, FunctionRegistry.from_yaml(moved))
    assert changes == [f"'stop' was <nexa_{stop}> in the base model and is <nexa_20>"]
    with caplog.at_level(logging.WARNING, logger="octopus_ros.training.finetune"):
        finetune.check_tokens(old, new, free=old.num_tokens, allow=True)
    assert "--allow-token-changes" in caplog.text and "'take_photo'" in caplog.text


def test_a_new_function_after_a_gap_is_refused(tmp_path):
    old = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    text = config_path("functions.yaml").read_text(encoding="utf-8")
    entry = (
        "\n  - name: open_door\n    token: {token}\n    description: {{en: Open a door., zh: 开门。}}\n"
        "    args:\n      - {{name: door, type: enum, values: [front, back]}}\n"
    )
    for token, refused in ((old.num_tokens, False), (old.num_tokens + 6, True)):
        path = tmp_path / f"gap{token}.yaml"
        path.write_text(text.rstrip("\n") + entry.format(token=token), encoding="utf-8")
        new = FunctionRegistry.from_yaml(path)
        if not refused:
            finetune.check_tokens(old, new, free=old.num_tokens)  # the next free token: fine
            continue
        with pytest.raises(finetune.FinetuneError, match=rf"'open_door' at <nexa_{token}> leave a gap"):
            finetune.check_tokens(old, new, free=old.num_tokens)


def test_finetune_stops_on_swapped_tokens_before_building_data(tiny, tmp_path, caplog, monkeypatch):
    path, stop, _ = _swapped(tmp_path)
    monkeypatch.setattr(finetune, "build_sources", lambda *a: pytest.fail("the data was built"))
    argv = ["--base", str(tiny), "--functions", str(path), "--out", str(tmp_path / "o"), "--threads", "1"]
    assert finetune.main(argv) == 2
    assert f"octopus_finetune: error: --functions {path} changes the tokens" in caplog.text
    assert f"<nexa_{stop}> was 'stop'" in caplog.text
    assert not (tmp_path / "o").exists()
    args = finetune.build_parser().parse_args([*argv, "--allow-token-changes"])
    assert finetune._config(args).allow_token_changes


# ----------------------------------------------------------------------------- train_all
@pytest.mark.parametrize(
    "flags, says",
    [
        (["--scale", "-1"], "argument --scale: must be a number > 0"),
        (["--scale", "0"], "argument --scale"),
        (["--threads", "-2"], "argument --threads: must be an integer >= 1"),
        (["--threads", "0"], "argument --threads"),
        (["--eval-n", "-1"], "argument --eval-n"),
        (["--pool-calls", "0"], "argument --pool-calls"),
        (["--seed", "-3"], "argument --seed"),
        (["--grounding-steps", "-1"], "argument --grounding-steps"),
        (["--perceiver-latents", "0", "--connector", "perceiver"], "argument --perceiver-latents"),
        (["--grey", "1.5"], "argument --grey: must be a number in [0, 1]"),
        (["--refine-lr", "0"], "argument --refine-lr"),
        (["--steps", "calls=-5"], "--steps calls=-5: must be an integer >= 1"),
        (["--seconds", "calls=0"], "--seconds calls=0: must be a number > 0"),
    ],
)
def test_train_all_refuses_bad_numbers(tmp_path, flags, says, capsys, monkeypatch):
    monkeypatch.setattr(train_all, "train", lambda *a, **k: pytest.fail("the training ran"))
    assert says in _exit_2(train_all.main, ["--out", str(tmp_path / "o"), *flags], capsys)


def test_train_all_help_explains_every_flag(monkeypatch):
    import argparse

    captured = {}

    class StopError(Exception):
        pass

    def grab(self, argv=None, namespace=None):
        captured["parser"] = self
        raise StopError

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", grab)
    with pytest.raises(StopError):
        train_all.main(["--out", "x"])
    for action in captured["parser"]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings


# ----------------------------------------------------------------------------- octopus_demo
def test_demo_checks_its_flags_before_starting_a_process(tmp_path, capsys, monkeypatch):
    from octopus_ros.demo import run_demo

    monkeypatch.setattr(run_demo, "run", lambda *a: pytest.fail("the demo started its processes"))
    main = run_demo.main
    err = _exit_2(main, ["--scenario", str(tmp_path / "none.yaml")], capsys)
    assert f"octopus_demo: error: --scenario: {tmp_path / 'none.yaml'}: cannot read scenario" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: []\n", encoding="utf-8")
    assert "non-empty 'steps'" in _exit_2(main, ["--scenario", str(bad)], capsys)
    for flag in ("--camera-rate", "--timeout"):
        for value in ("0", "-5", "nan", "x"):
            assert f"argument {flag}" in _exit_2(main, [flag, value], capsys)
    assert "argument --log-level" in _exit_2(main, ["--log-level", "loud"], capsys)
    assert "nope: checkpoint directory does not exist" in _exit_2(
        main, ["--model", str(tmp_path / "nope")], capsys
    )
    (tmp_path / "m").mkdir()
    assert "config.json: missing" in _exit_2(main, ["--model", str(tmp_path / "m")], capsys)
    (tmp_path / "m" / "config.json").write_text("{nope", encoding="utf-8")
    assert "not valid JSON" in _exit_2(main, ["--model", str(tmp_path / "m")], capsys)


def test_demo_help_explains_every_flag():
    from octopus_ros.demo import run_demo

    for action in run_demo.build_parser()._actions:
        if action.option_strings and action.dest != "help":
            assert action.help and len(action.help) > 10, action.option_strings


class _Proc:
    """A child process as wait_for_speech sees it."""

    def __init__(self, code=None):
        self.returncode = code

    def poll(self):
        return self.returncode


def test_demo_stops_waiting_when_a_process_ends_or_the_node_cannot_configure(capsys):
    from octopus_ros.demo.run_demo import wait_for_speech

    def procs(**codes):
        return {name: _Proc(codes.get(name)) for name in ("camera", "octopus", "actuator", "speech")}

    logs = {"octopus": ["[ERROR] [1.0] [octopus_node]: configure failed: CheckpointError: m: truncated"]}
    assert wait_for_speech(procs(), logs, timeout=60) == 1
    assert (
        "octopus_node could not configure: CheckpointError: m: truncated; stopping" in capsys.readouterr().out
    )
    assert wait_for_speech(procs(camera=2), {}, timeout=60) == 1
    assert "the camera process ended (status 2)" in capsys.readouterr().out
    assert wait_for_speech(procs(speech=0), {}, timeout=60) == 0  # the scenario played
    assert (
        wait_for_speech(procs(), {"octopus": ["[INFO] configured: model m"]}, timeout=0.3, poll_s=0.05) == 1
    )
    assert "timed out after 0.3 s" in capsys.readouterr().out


# ----------------------------------------------------------------------------- sim_camera
def test_sim_camera_refuses_a_rate_that_is_not_a_positive_number():
    from octopus_ros.ros.sim_camera import SimCameraError, frame_period

    assert math.isclose(frame_period(15.0), 1 / 15) and frame_period(5) == 0.2
    for rate in (0, 0.0, -2.5, float("nan"), float("inf"), "abc", True, None):
        with pytest.raises(SimCameraError, match="parameter rate"):
            frame_period(rate)
