"""`make demo`: the full loop as separate processes talking over DDS on this machine.

Starts the simulated camera, octopus_node (bundled model, autostart), the demo
actuator and the scripted speech publisher; streams their logs with a prefix; when the
speech script has played the scenario, stops the others and prints the summary
(accuracy against the scenario's expected calls, p50/p95 latency). Exit status 0 when
every utterance got its outcome.

This runner plays the role of ``ros2 launch octopus_ros demo.launch.py`` on a machine
without the launch system (see launch/demo.launch.py for the robot version).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unicodedata
from pathlib import Path

from octopus_ros.demo.scenario import Scenario
from octopus_ros.paths import config_path, default_model_dir

NODES = {
    "camera": "octopus_ros.ros.sim_camera",
    "octopus": "octopus_ros.ros.octopus_node",
    "actuator": "octopus_ros.ros.demo_actuator",
    "speech": "octopus_ros.ros.speech_script",
}


def _stream(name: str, proc: subprocess.Popen, lines: list[str]) -> None:
    for line in proc.stdout:
        line = line.rstrip()
        lines.append(line)
        print(f"[{name:8s}] {line}", flush=True)


def check_environment() -> None:
    """Refuse to run with discovery that could leave the machine."""
    from octopus_ros.ros.dds_env import environment_problem

    problem = environment_problem()
    if problem is not None:
        raise SystemExit(f"DDS traffic could leave this machine: {problem}")


def run(args: argparse.Namespace) -> int:
    check_environment()
    report = Path(args.report or tempfile.mkstemp(prefix="octopus_demo_", suffix=".json")[1])
    model = args.model or str(default_model_dir())
    ros = ["--ros-args", "--log-level", args.log_level]
    commands = {
        "camera": [*ros, "-p", f"scenario_file:={args.scenario}", "-p", f"rate:={args.camera_rate}"],
        "octopus": [
            *ros,
            "--params-file",
            str(config_path("octopus.yaml")),
            "-p",
            "autostart:=true",
            "-p",
            f"model_path:={model}",
            "-p",
            f"precision:={args.precision}",
        ],
        "actuator": ros,
        "speech": [*ros, "-p", f"scenario_file:={args.scenario}", "-p", f"report_file:={report}"],
    }
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    procs: dict[str, subprocess.Popen] = {}
    threads = []
    logs: dict[str, list[str]] = {}
    t_start = time.monotonic()
    print(
        f"[demo    ] ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}, discovery LOCALHOST, model {model}",
        flush=True,
    )
    try:
        for name, module in NODES.items():
            procs[name] = subprocess.Popen(
                [sys.executable, "-m", module, *commands[name]],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            logs[name] = []
            thread = threading.Thread(target=_stream, args=(name, procs[name], logs[name]), daemon=True)
            thread.start()
            threads.append(thread)
        code = procs["speech"].wait(timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"[demo    ] timed out after {args.timeout} s", flush=True)
        code = 1
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        for thread in threads:
            thread.join(timeout=2)
    if code != 0 or not report.exists() or report.stat().st_size == 0:
        print("[demo    ] the speech script did not complete; see the logs above", flush=True)
        return 1
    data = json.loads(report.read_text(encoding="utf-8"))
    print_summary(data, wall_s=time.monotonic() - t_start, scenario=Scenario.from_yaml(args.scenario))
    print(f"[demo    ] report: {report}")
    return 0


def _pad(text: str, width: int) -> str:
    """Cut/pad to a display width (CJK characters take two columns in a terminal)."""
    out, used = "", 0
    for ch in text:
        w = 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
        if used + w > width:
            break
        out, used = out + ch, used + w
    return out + " " * (width - used)


def split_by_model(data: dict, scenario: Scenario) -> dict[str, tuple[int, int]]:
    """(correct, steps) for the steps that depend on the model and for the node's input checks."""
    by_index = {step.index: step for step in scenario.steps}
    out = {"model": [0, 0], "input checks": [0, 0]}
    for r in data["steps"]:
        key = "model" if by_index[r["index"]].depends_on_model else "input checks"
        out[key][0] += bool(r["correct"])
        out[key][1] += 1
    return {k: (v[0], v[1]) for k, v in out.items()}


def print_summary(data: dict, *, wall_s: float, scenario: Scenario | None = None) -> None:
    s = data["summary"]
    print()
    print("utterance".ljust(48), "result".ljust(46), "round trip")
    for r in data["steps"]:
        mark = " " if r["correct"] else "x"
        print(f"{mark} {_pad(r['utterance'], 46)} {_pad(r['got'], 46)} {r['round_trip_ms']:7.1f} ms")
    print()
    print(
        f"accuracy        {s['correct']}/{s['steps']} = {s['accuracy']:.1%} against the scenario's expectations"
    )
    if scenario is not None:
        parts = split_by_model(data, scenario)
        (mc, mn), (ic, n_in) = parts["model"], parts["input checks"]
        print(f"  of which       model {mc}/{mn}; input checks before the model {ic}/{n_in}")
    print("latency (ms)       p50      p95")
    for key, label in [
        ("round_trip_ms", "round trip"),
        ("node_latency_ms", "node"),
        ("model_ms", "model"),
        ("node_overhead_ms", "node - model"),
        ("transport_ms", "DDS + callbacks"),
    ]:
        print(f"  {label:16s} {s[key]['p50']:7.1f}  {s[key]['p95']:7.1f}")
    print(f"demo wall time  {wall_s:.1f} s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default=str(config_path("demo_scenario.yaml")))
    parser.add_argument("--model", default="", help="checkpoint directory (default: the bundled model)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "int8"])
    parser.add_argument("--camera-rate", type=float, default=15.0)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--report", default="", help="write the JSON report here")
    parser.add_argument("--log-level", default="info")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
