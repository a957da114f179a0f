"""octopus_node with ``backend:=onnx`` over real DDS (issue 14 item 3): the whole model on
onnxruntime, no torch library in the node process, and a clear configure failure without an
export."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from node_harness import RobotSide, start_node, stop_node, wait_for_log
from octopus_msgs.msg import Outcome

from octopus_ros.paths import default_model_dir

pytestmark = pytest.mark.slow


def linked_checkpoint(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in default_model_dir().iterdir():
        if f.is_file():
            os.symlink(f, dst / f.name)
    return dst


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    from octopus_ros.model.onnx_export_all import export_all

    ckpt = linked_checkpoint(tmp_path_factory.mktemp("lean_node") / "ckpt")
    export_all(ckpt)
    return ckpt


def mapped_libraries(pid: int) -> set[str]:
    return {Path(line.split()[-1]).name for line in open(f"/proc/{pid}/maps") if "/" in line}


def test_node_runs_the_onnx_backend_without_torch(ros_env, rclpy_context, exported):
    proc = start_node(ros_env, f"model_path:={exported}", "backend:=onnx", "rate_limit:=0.0")
    robot = RobotSide(rclpy_context)
    try:
        robot.wait_active(proc)
        robot.send_frame()
        stop = robot.say("stop")
        robot.send_frame()
        declined = robot.say("sing me a song about the moon")
        robot.settle()
        libs = mapped_libraries(proc.pid)
    finally:
        log = stop_node(proc)
        robot.destroy_node()
    assert (stop.code, stop.function_name) == (Outcome.OK, "stop"), stop.reason
    assert declined.code != Outcome.OK or declined.function_name == "no_action", declined.reason
    assert [c.function_name for c in robot.calls] == ["stop"]
    assert "onnx backend" in log, log[-2000:]
    assert any(lib.startswith("libonnxruntime") for lib in libs), sorted(libs)[:50]
    assert not [lib for lib in libs if "torch" in lib], [lib for lib in libs if "torch" in lib]


def test_configure_fails_clearly_without_an_export(ros_env, tmp_path):
    ckpt = linked_checkpoint(tmp_path / "ckpt")
    proc = start_node(ros_env, f"model_path:={ckpt}", "backend:=onnx")
    try:
        wait_for_log(proc, "stays unconfigured")
    finally:
        log = stop_node(proc)
    assert "configure failed: CheckpointError" in log, log[-2000:]
    assert f"{ckpt}/onnx/manifest.json" in log and "python -m octopus_ros.model.onnx_export_all" in log, log[
        -2000:
    ]
    assert "stays unconfigured" in log
