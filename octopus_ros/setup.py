"""ament_python package for octopus_ros (also pip-installable, editable, into a venv)."""

from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

package_name = "octopus_ros"
here = Path(__file__).parent


def tree(folder: str):
    """data_files entries that install ``folder`` recursively under share/octopus_ros/."""
    entries = []
    for path in sorted((here / folder).rglob("*")):
        if path.is_file() and "stages" not in path.parts:  # stage checkpoints are training leftovers
            rel = path.relative_to(here)
            entries.append((f"share/{package_name}/{rel.parent}", [str(rel)]))
    return entries


setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    # Named model configs are data inside the Python package (open_clip style).
    package_data={
        "octopus_ros.model": ["configs/*.json", "configs/vlm/*.json"],
        "octopus_ros.data.natural": [
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
        ],
        "octopus_ros.data.probes": ["safety_probe.yaml"],
        "octopus_ros.runtime": ["safety.yaml"],
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.py")),
        *tree("config"),
        *tree("models"),
        *tree("worlds"),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="octopus_ros developers",
    maintainer_email="dev@octopus-ros.invalid",
    description="Vision-driven actions for ROS 2 with functional-token multimodal models.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},
    entry_points={
        "console_scripts": [
            "octopus_node = octopus_ros.ros.octopus_node:main",
            "sim_camera = octopus_ros.ros.sim_camera:main",
            "demo_actuator = octopus_ros.ros.demo_actuator:main",
            "speech_script = octopus_ros.ros.speech_script:main",
            "octopus_demo = octopus_ros.demo.run_demo:main",
            "octopus_finetune = octopus_ros.training.finetune:main",
            "octopus_record = octopus_ros.ros.record:main",
            "octopus_label = octopus_ros.bags.labels:main",
            "octopus_replay = octopus_ros.ros.replay:main",
            "octopus_export_onnx = octopus_ros.model.onnx_export_all:main",
        ],
    },
)
