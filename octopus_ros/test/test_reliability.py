"""The reduced reliability suite (``make reliability`` at 1/10 size) against octopus_node, bundled model.

Every class must meet its target: no crash, exactly one outcome per utterance, nothing disallowed
published, broken checkpoints refused with the file named, the e-stop kept (races, lifecycle
cycles, latched before start, estop_on_start), RSS growth within 2 % from cycle 10 to 20.
The full-size run and what each column means: benchmarks/reliability.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytestmark = pytest.mark.slow

REDUCED = [
    "--fuzz", "1000",
    "--burst", "1000",
    "--cycles", "20",
    "--estop-cycles", "2",
    "--estop-rounds", "4",
    "--allowlist", "60",
    "--checkpoint-cases", "10",
    "--seed", "13",
]  # fmt: skip


def test_reduced_reliability_suite(ros_env, tmp_path):
    report = tmp_path / "reliability.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "benchmarks" / "reliability.py"),
            *REDUCED,
            "--domain",
            ros_env["ROS_DOMAIN_ID"],
            "--json",
            str(report),
        ],
        env=ros_env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    table = proc.stdout[proc.stdout.find("class ") :] if "class " in proc.stdout else proc.stdout[-3000:]
    assert report.exists(), (
        f"no report (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    rows = json.loads(report.read_text())
    names = {r["name"] for r in rows}
    expected = {"fuzz:utterance", "fuzz:image", "fuzz:compressed", "fuzz:ask", "fuzz:params"}
    expected |= {"allowlist", "checkpoints", "estop", "lifecycle", "burst"}
    assert names == expected, f"classes run: {sorted(names)}\n{table}"
    assert sum(r["inputs"] for r in rows if r["name"].startswith("fuzz:")) >= 900, table
    missed = [r["name"] for r in rows if not r["met"]]
    assert not missed, f"targets missed: {missed}\n{table}"
    assert proc.returncode == 0, table
