"""`make demo`: the full loop as separate processes talking over DDS on this machine.

Starts the simulated camera, octopus_node (bundled model, autostart), the demo
actuator and the scripted speech publisher; streams their logs with a prefix; when the
speech script has played the scenario, stops the others and prints the summary
(accuracy against the scenario's expected calls, p50/p95 latency). Exit status 0 when
every utterance got its outcome.

What a user can get wrong is checked before any process starts (the scenario file, read once here;
the camera rate; the timeout; the model directory's config.json), exit status 2 with the flag and
the reason. While the scenario plays, the demo stops as soon as a process ends early or the node
logs that its configure failed, instead of waiting out ``--timeout`` for a speech script that can
no longer be answered.

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

from octopus_ros.cli import number
from octopus_ros.demo.scenario import Scenario, ScenarioError
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


CONFIGURE_FAILED = "configure failed"  # what octopus_node logs when it cannot load its model


def model_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be the node's model, as far as its ``config.json`` tells (None: nothing
    found; :func:`~octopus_ros.lean.errors.read_config_json`, the checkpoint loaders' own reader).
    The node's load checks the rest (weights, tokenizer, functions); this only spares the demo the
    start of four processes for a directory that is plainly not a model."""
    from octopus_ros.lean.errors import CheckpointError, read_config_json

    try:
        file, data = read_config_json(path)
    except CheckpointError as e:
        return str(e)
    except OSError as e:  # unreadable
        return f"{Path(path) / 'config.json'}: cannot read ({e})"
    if not isinstance(data, dict):
        return f"{file}: not a JSON object"
    return None


def early_end(procs: dict[str, subprocess.Popen], logs: dict[str, list[str]]) -> str | None:
    """Why the demo cannot finish any more though the speech script still runs (None: it can): a
    process that ended (the camera refusing its rate, a node that crashed) or a node that logged
    that its configure failed (a broken model: it stays unconfigured and answers nothing)."""
    for name, proc in procs.items():
        if name != "speech" and proc.poll() is not None:
            return f"the {name} process ended (status {proc.returncode}) before the scenario was played"
    for line in logs.get("octopus", []):
        if CONFIGURE_FAILED in line:
            return f"octopus_node could not configure: {line.split(CONFIGURE_FAILED, 1)[1].lstrip(':; ')}"
    return None


def wait_for_speech(
    procs: dict[str, subprocess.Popen], logs: dict[str, list[str]], timeout: float, poll_s: float = 0.2
) -> int:
    """The speech script's exit status once it ends; 1 when the demo ends first: ``timeout`` seconds,
    or :func:`early_end` (the reason printed)."""
    deadline = time.monotonic() + timeout
    while True:
        code = procs["speech"].poll()
        if code is not None:
            return code
        reason = early_end(procs, logs)
        if reason is not None:
            print(f"[demo    ] {reason}; stopping the demo", flush=True)
            return 1
        if time.monotonic() >= deadline:
            print(f"[demo    ] timed out after {timeout} s", flush=True)
            return 1
        time.sleep(poll_s)


def run(args: argparse.Namespace, scenario: Scenario | None = None) -> int:
    """The demo (:func:`main` checks ``args`` first); ``scenario``: ``args.scenario`` already read."""
    check_environment()
    scenario = scenario if scenario is not None else Scenario.from_yaml(args.scenario)
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
        f"[demo    ] ROS_DOMAIN_ID={env.get('ROS_DOMAIN_ID', '0')}, discovery {env.get('ROS_AUTOMATIC_DISCOVERY_RANGE', 'SYSTEM_DEFAULT')}, model {model}",
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
        code = wait_for_speech(procs, logs, args.timeout)
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
    print_summary(data, wall_s=time.monotonic() - t_start, scenario=scenario)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="octopus_demo", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scenario",
        default=str(config_path("demo_scenario.yaml")),
        help="the scenario YAML the camera shows and the speech script says (default: the bundled "
        "config/demo_scenario.yaml; its format: octopus_ros/demo/scenario.py)",
    )
    parser.add_argument("--model", default="", help="checkpoint directory (default: the bundled model)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "int8"],
        help="the node's precision parameter (int8: dynamic quantization on the CPU; default fp32)",
    )
    parser.add_argument(
        "--camera-rate",
        type=number(float, low=0, low_open=True),
        default=15.0,
        help="frames per second the simulated camera publishes (> 0; default 15)",
    )
    parser.add_argument(
        "--timeout",
        type=number(float, low=0, low_open=True),
        default=600.0,
        help="seconds to wait for the whole scenario before the demo gives up (> 0; default 600); "
        "it stops earlier when a process ends or the node cannot configure its model",
    )
    parser.add_argument("--report", default="", help="write the JSON report here")
    parser.add_argument(
        "--log-level",
        default="info",
        type=str.lower,
        choices=["unset", "debug", "info", "warn", "error", "fatal"],
        help="ROS log level of the four processes (--ros-args --log-level; default info)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        scenario = Scenario.from_yaml(args.scenario)  # the one read: the summary uses it too
    except ScenarioError as e:
        parser.error(f"--scenario: {e}")
    if args.model:
        problem = model_problem(args.model)
        if problem is not None:
            parser.error(f"--model {args.model}: {problem}")
    return run(args, scenario)


if __name__ == "__main__":
    sys.exit(main())
