"""Both packages build with colcon in a normal workspace, as on a robot (CI runs this once)."""

import os
import subprocess

import pytest

from conftest import REPO_ROOT


@pytest.mark.slow
def test_colcon_builds_both_packages(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "scripts" / "colcon_check.sh"), str(tmp_path / "ws")],
        env={**os.environ},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "build OK" in result.stdout
    install = tmp_path / "ws" / "install"
    assert (install / "share" / "octopus_msgs" / "srv" / "Ask.srv").is_file()
    assert (install / "share" / "octopus_ros" / "config" / "fastdds_localhost.xml").is_file()
    site = next((install / "lib").glob("python3*/site-packages"))
    assert (site / "octopus_ros" / "model" / "configs" / "octopus-tiny.json").is_file()
    for name in (
        "natural_set.yaml",
        "natural_check.yaml",
        "natural_third.yaml",
    ):  # make evaluate reads all three
        assert (site / "octopus_ros" / "data" / "natural" / name).is_file(), name
