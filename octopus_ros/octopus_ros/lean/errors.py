"""The checkpoint error both runtimes raise (``octopus_ros.model.CheckpointError`` is this class)."""

from __future__ import annotations

from pathlib import Path


class CheckpointError(Exception):
    """A checkpoint is missing, corrupt, truncated or inconsistent. ``file`` names the culprit."""

    def __init__(self, file: str | Path, problem: str):
        self.file = str(file)
        self.problem = problem
        super().__init__(f"{self.file}: {problem}")
