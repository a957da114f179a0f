"""The README's robot walkthrough ("On your robot") runs as written, on tiny models.

Blocks are fenced ``bash`` code preceded by ``<!-- robot-walkthrough: run -->`` (executed here, in
order, in one scratch folder, with ``BASE``/``STEPS``/``EVAL_N`` set to a tiny checkpoint and tiny
budgets) or ``<!-- robot-walkthrough: robot-only (why) -->`` (apt, sudo, a robot: they cannot run
here, so they are checked with ``bash -n``, and every ``--flag`` they give an ``octopus_*`` tool
must be one of its flags). Between the label extraction and the records step, the test does what
the README asks the user to do: confirm or skip each line. The bag the walkthrough labels is a
recorded-format run written with rosbags (test_bags_labels.write_run); recording from a live node
is test_bags_record_replay.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
MARK = re.compile(r"<!-- robot-walkthrough: (run|robot-only) ?(\(.*?\))? -->\n```bash\n(.*?)```", re.S)
TOOLS = ("octopus_finetune", "octopus_record", "octopus_label", "octopus_replay")


def blocks() -> list[tuple[str, str, str]]:
    """(kind, reason, script) of every marked block, in README order."""
    found = [
        (m.group(1), (m.group(2) or "").strip("()"), m.group(3)) for m in MARK.finditer(README.read_text())
    ]
    assert found, "no <!-- robot-walkthrough --> blocks in the README"
    return found


def _tool_commands(script: str) -> list[list[str]]:
    """Each command line of the script (continuations joined) that starts with an octopus_* tool."""
    joined = script.replace("\\\n", " ")
    commands = []
    for line in joined.splitlines():
        line = line.split(" # ")[0].strip()
        for part in re.split(r"&&|\|\||;", line):
            words = part.strip().split()
            if words and words[0] in TOOLS:
                commands.append(words)
    return commands


def _help(tool: str) -> str:
    exe = Path(sys.executable).parent / tool
    assert exe.exists(), f"{tool} is not installed (make setup installs the console scripts)"
    out = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    text = out.stdout
    if tool == "octopus_label":  # subcommands have their own flags
        for sub in ("extract", "records"):
            text += subprocess.run(
                [str(exe), sub, "--help"], capture_output=True, text=True, timeout=120
            ).stdout
    return text


def test_every_block_is_valid_bash_and_uses_real_flags():
    helps: dict[str, str] = {}
    kinds = [k for k, _, _ in blocks()]
    assert kinds.count("run") >= 3 and kinds.count("robot-only") >= 3
    for kind, reason, script in blocks():
        if kind == "robot-only":
            assert reason, "a robot-only block says why it cannot run here"
        check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True)
        assert check.returncode == 0, f"not valid bash:\n{script}\n{check.stderr}"
        for words in _tool_commands(script):
            tool = words[0]
            helps.setdefault(tool, _help(tool))
            for flag in (w.split("=")[0] for w in words[1:] if w.startswith("--") and w != "--ros-args"):
                assert re.search(rf"(^|\s|\[){re.escape(flag)}\b", helps[tool]), f"{tool} has no flag {flag}"


def _confirm_like_a_user(labels_file: Path) -> None:
    """What the README asks: correct/confirm each line (status ok), skip those that cannot be used."""
    lines = [json.loads(x) for x in labels_file.read_text(encoding="utf-8").splitlines()]
    for line in lines:
        if line["image"] is None:
            line["status"] = "skip"
            continue
        if line["answer"] is None:  # the node published no call: the user writes the right one
            line["answer"] = "take_photo()" if "photo" in line["utterance"] else "no_action()"
        line["status"] = "ok"
    labels_file.write_text(
        "\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n", encoding="utf-8"
    )


@pytest.mark.timeout(600)
def test_run_blocks_execute_on_tiny_models(tmp_path):
    from test_bags_labels import write_run

    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.paths import config_path

    base = make_tiny_checkpoint(tmp_path / "tiny_base", config_path("functions.yaml"), image_size=32)
    work = tmp_path / "work"
    work.mkdir()
    write_run(work / "my_run")  # what `octopus_record my_run` leaves on the robot
    env = {
        **os.environ,
        "BASE": str(base),
        "STEPS": "3",
        "EVAL_N": "4",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
    }
    ran = 0
    for kind, _, script in blocks():
        if kind != "run":
            continue
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, (
            f"README block failed:\n{script}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
        )
        ran += 1
        if (work / "my_run.labels.jsonl").exists() and not (work / "my_data").exists():
            _confirm_like_a_user(work / "my_run.labels.jsonl")
    assert ran >= 3
    metrics = json.loads((work / "my_model" / "metrics.json").read_text())
    assert metrics["new_functions"] == {"<nexa_13>": "open_door"}
    for name in ("before.json", "after.json"):
        report = json.loads((work / name).read_text())
        assert report["mode"] == "offline" and report["metrics"]["scored"] == 3, report["metrics"]
    assert (work / "my_model_2" / "model.safetensors").is_file()
    assert len((work / "my_data" / "records.jsonl").read_text().splitlines()) == 3
