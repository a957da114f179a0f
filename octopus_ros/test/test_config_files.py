"""Configuration files and topic names are checked before anything can block or half-apply."""

from __future__ import annotations

import os
import threading

import pytest

from octopus_ros.paths import read_config_text


def test_read_config_text_reads_a_small_utf8_file(tmp_path):
    path = tmp_path / "functions.yaml"
    path.write_text("functions: []  # 功能\n", encoding="utf-8")
    assert read_config_text(path) == "functions: []  # 功能\n"


def test_a_fifo_a_directory_a_huge_file_and_other_bytes_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "screen.fifo"
    os.mkfifo(fifo)
    done = threading.Event()
    errors: list[Exception] = []

    def read() -> None:
        try:
            read_config_text(fifo)
        except OSError as e:
            errors.append(e)
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5.0), "reading a FIFO blocked"
    assert "not a regular file" in str(errors[0])
    with pytest.raises(OSError, match="is a directory"):
        read_config_text(tmp_path)
    big = tmp_path / "big.yaml"
    big.write_bytes(b"#" * 2048)
    with pytest.raises(OSError, match="2048 bytes; a configuration file may have at most 1024"):
        read_config_text(big, max_bytes=1024)
    latin = tmp_path / "latin1.yaml"
    latin.write_bytes("caf\xe9: 1\n".encode("latin-1"))
    with pytest.raises(OSError, match=r"not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_config_text(latin)
    with pytest.raises(FileNotFoundError):
        read_config_text(tmp_path / "missing.yaml")


def test_the_registry_routing_and_safety_screen_loaders_refuse_a_fifo(tmp_path):
    from octopus_ros.functions import FunctionRegistry, RegistryError
    from octopus_ros.runtime.safety import SafetyScreen, SafetyScreenError

    fifo = tmp_path / "x.fifo"
    os.mkfifo(fifo)
    with pytest.raises(RegistryError, match="not a regular file"):
        FunctionRegistry.from_yaml(fifo)
    with pytest.raises(SafetyScreenError, match="not a regular file"):
        SafetyScreen(fifo)


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("/camera/image_raw", ""),
        ("~/image", ""),
        ("{node}/speech", ""),
        ("speech/text", ""),
        ("/estop//x", "repeated '/'"),
        ("/9speech", "must not start with a number"),
        ("/camera/{bad}", "unknown substitution: {bad}"),
        ("/a b", "characters other than alphanumerics"),
        ("/speech/", "must not end with a forward slash"),
    ],
)
def test_topic_names_are_checked_as_rcl_checks_them(topic, problem):
    from octopus_ros.ros.params import ParameterValueError, check_value, topic_name_problem

    found = topic_name_problem(topic)
    assert (problem in found) if problem else found == "", found
    if problem:
        with pytest.raises(ParameterValueError, match="speech_topic is not a valid topic name"):
            check_value("speech_topic", topic)
    else:
        assert check_value("speech_topic", topic) == topic
