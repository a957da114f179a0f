"""The checkpoint error both runtimes raise (``octopus_ros.model.CheckpointError`` is this class), and
the torch-free reader of a checkpoint's ``config.json`` (``model.checkpoint`` and ``octopus_demo``'s
check before it starts anything use it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, truncated or inconsistent. ``file`` names the culprit."""

    def __init__(self, file: str | Path, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")


def read_config_json(path: str | Path) -> tuple[Path, Any]:
    """(path of ``config.json``, its parsed JSON) of a model directory; CheckpointError naming the
    directory or the file when the directory or the file is missing or the file is not JSON."""
    file = Path(path) / CONFIG_FILE
    if not Path(path).is_dir():
        raise CheckpointError(path, "checkpoint directory does not exist")
    if not file.is_file():
        raise CheckpointError(file, "missing")
    try:
        return file, json.loads(file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(file, f"not valid JSON ({e})") from e
