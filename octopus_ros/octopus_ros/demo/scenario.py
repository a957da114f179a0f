"""Scripted demo scenarios: which scene the camera shows, what is said, what should happen.

A scenario file (YAML) is shared by the simulated camera and the speech script:

    image_size: [320, 240]          # camera frame size (width, height)
    steps:
      - scene: {target: [cup, red], distractors: 2, seed: 11}
        say: pick up the red cup
        expect: "<nexa_0>('red cup')<nexa_end>"   # the expected call (canonical text)
      - camera: pause               # the camera stops publishing before this utterance
        say: take a photo
        expect_outcome: NO_FRESH_IMAGE

Steps that expect INVALID_INPUT, NO_FRESH_IMAGE (or another outcome the node decides before the
model runs) check the node's input handling: they do not depend on the model, and the demo and
its test count them apart from the model's score (:attr:`Step.depends_on_model`).

No rclpy here: the loader is tested without ROS.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

# Outcomes the node decides before the model runs (README, "What happens to an utterance"): bad
# text or a malformed frame, the rate limit or a full queue, no fresh frame, the e-stop, not active.
PRE_MODEL_OUTCOMES = frozenset({"INVALID_INPUT", "BUSY", "NO_FRESH_IMAGE", "ESTOP", "NOT_ACTIVE"})


class ScenarioError(ValueError):
    """The scenario file is malformed; the message names the file and the step."""


@dataclass(frozen=True)
class Step:
    index: int
    say: str
    scene: dict[str, Any] | None  # None when the camera pauses
    expect: str | None  # expected call text (outcome OK)
    expect_outcome: str  # expected outcome code name

    @property
    def camera_paused(self) -> bool:
        return self.scene is None

    @property
    def depends_on_model(self) -> bool:
        """False for a step whose expected outcome the node decides before the model runs."""
        return self.expect_outcome not in PRE_MODEL_OUTCOMES


@dataclass(frozen=True)
class Scenario:
    image_size: tuple[int, int]
    steps: tuple[Step, ...]
    source: str

    @classmethod
    def from_yaml(cls, path: str | Path) -> Scenario:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as e:
            raise ScenarioError(f"{path}: cannot read scenario: {e}") from e
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<dict>") -> Scenario:
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
            raise ScenarioError(f"{source}: a scenario needs a non-empty 'steps' list")
        size = data.get("image_size", [320, 240])
        if not (
            isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v >= 16 for v in size)
        ):
            raise ScenarioError(f"{source}: image_size must be [width, height] in pixels, got {size!r}")
        steps = []
        for i, raw in enumerate(data["steps"]):
            where = f"{source}: step {i}"
            if not isinstance(raw, dict) or not isinstance(raw.get("say"), str):
                raise ScenarioError(f"{where}: each step needs 'say' (text)")
            paused = raw.get("camera") == "pause"
            scene = None if paused else raw.get("scene")
            if not paused and not isinstance(scene, dict):
                raise ScenarioError(f"{where}: needs a 'scene' mapping or 'camera: pause'")
            expect = raw.get("expect")
            outcome = raw.get("expect_outcome", "OK" if expect else None)
            if outcome is None:
                raise ScenarioError(f"{where}: needs 'expect' (a call) or 'expect_outcome' (a code name)")
            steps.append(Step(i, raw["say"], scene, expect, outcome))
        return cls((size[0], size[1]), tuple(steps), source)
