"""The full loop as in `make demo`: camera, speech, octopus_node (bundled model) and actuator as
separate processes over DDS; the bundled model must give the scenario's expected calls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from octopus_ros.demo.scenario import Scenario
from octopus_ros.paths import config_path, default_model_dir

pytestmark = pytest.mark.slow


def test_demo_loop_with_bundled_model(ros_env, tmp_path):
    assert (default_model_dir() / "model.safetensors").is_file(), "the bundled model is missing"
    report = tmp_path / "report.json"
    result = subprocess.run(
        [sys.executable, "-m", "octopus_ros.demo.run_demo", "--report", str(report), "--timeout", "400"],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=450,
    )
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-5000:]
    data = json.loads(report.read_text(encoding="utf-8"))
    steps = data["steps"]
    scenario = Scenario.from_yaml(config_path("demo_scenario.yaml"))
    assert len(steps) == len(scenario.steps)  # every utterance got its outcome
    # Guarantees that do not depend on the model's accuracy.
    by_text = {s["utterance"]: s for s in steps}
    assert by_text[""]["outcome"] == "INVALID_INPUT"
    assert by_text["take a photo"]["outcome"] == "NO_FRESH_IMAGE"
    # The bundled model's regression floor: v7 scored 20/20 on this scenario when committed (v6 and v5
    # 20/20, v4 19/20); its held-out accuracy still misses some of the project's targets (docs/training.md).
    wrong = [
        f"{s['utterance']!r}: expected {s['expected']}, got {s['got']}" for s in steps if not s["correct"]
    ]
    assert len(wrong) <= 3, "\n".join(wrong)
    # Routed typed messages reached the actuator process.
    if by_text["stop"]["correct"]:
        assert "/cmd_vel: zero twist" in log
    if by_text["please go over to the kitchen"]["correct"]:
        assert "/goal_pose: navigate to (4.00, 2.50)" in log
    assert "summary" in log and "accuracy" in log
