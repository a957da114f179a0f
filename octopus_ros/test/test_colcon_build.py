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
        "natural_messages.yaml",
        "natural_chatty.yaml",
        "natural_asr.yaml",
        "natural_fresh.yaml",
        "natural_voices.yaml",
        "natural_situations.yaml",
        "natural_week.yaml",
        "natural_holiday.yaml",
        "natural_workday.yaml",
        "natural_rainy.yaml",
        "natural_flat.yaml",
        "natural_care.yaml",
    ):  # make evaluate reads all fifteen
        assert (site / "octopus_ros" / "data" / "natural" / name).is_file(), name

    # the executables go where `ros2 run` / `ros2 launch` look (setup.cfg), not to bin/: the README's
    # robot section puts that folder on PATH; each runs from there against the install space
    tools = install / "lib" / "octopus_ros"
    for name in ("octopus_node", "octopus_finetune", "octopus_record", "octopus_label", "octopus_replay"):
        assert os.access(tools / name, os.X_OK), name
    assert not (install / "bin" / "octopus_finetune").exists()

    def first(var: str, path: object) -> str:
        return f"{path}{os.pathsep}{os.environ[var]}" if os.environ.get(var) else str(path)

    env = {  # what `source install/setup.bash` sets
        **os.environ,
        "PYTHONPATH": first("PYTHONPATH", site),
        "AMENT_PREFIX_PATH": first("AMENT_PREFIX_PATH", install),
        "LD_LIBRARY_PATH": first("LD_LIBRARY_PATH", install / "lib"),
    }
    for name in ("octopus_finetune", "octopus_label"):
        shown = subprocess.run(
            [str(tools / name), "--help"], env=env, capture_output=True, text=True, timeout=300
        )
        assert shown.returncode == 0 and "usage:" in shown.stdout, shown.stderr[-2000:]
