"""A FunctionCall and an Outcome cross a real DDS link between two processes, every field intact."""

import json
import subprocess
import sys

from octopus_ros.ros.msg_dict import message_to_dict

from sample_messages import sample_function_call, sample_outcome

TIMEOUT_S = 30.0


def test_function_call_and_outcome_cross_processes(ros_env):
    from octopus_ros.ros.dds_env import environment_problem

    from conftest import TEST_DIR

    assert environment_problem(ros_env) is None, environment_problem(ros_env)
    receiver = subprocess.Popen(
        [sys.executable, str(TEST_DIR / "procs" / "receive_samples.py"), str(TIMEOUT_S)],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    publisher = subprocess.Popen(
        [sys.executable, str(TEST_DIR / "procs" / "publish_samples.py"), str(TIMEOUT_S)],
        env=ros_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = receiver.communicate(timeout=TIMEOUT_S + 15)
    pub_out, pub_err = publisher.communicate(timeout=TIMEOUT_S + 15)
    assert receiver.returncode == 0, f"receiver failed:\n{out}\n{err}\npublisher:\n{pub_out}\n{pub_err}"
    assert publisher.returncode == 0, f"publisher failed:\n{pub_out}\n{pub_err}"

    # The Fast DDS profile (shared memory + loopback UDP) must load without parser errors.
    assert "XMLPARSER" not in err + pub_err, err + pub_err

    got = {line["kind"]: line["msg"] for line in map(json.loads, out.splitlines())}
    assert got["function_call"] == message_to_dict(sample_function_call())
    assert got["outcome"] == message_to_dict(sample_outcome())
