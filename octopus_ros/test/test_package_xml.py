"""package.xml declares what the package's code imports.

Every module the Python code or the launch files import (lazily or not) must be the
standard library, this package, a ROS package named in an ``<exec_depend>``/``<depend>``, a
Python library whose rosdep key is an ``<exec_depend>``, or a library without a rosdep key
listed in PIP_ONLY (those are named in the README's install steps). A new import that is
none of these fails the test until someone decides which it is.
"""

from __future__ import annotations

import ast
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]

# Python import name -> rosdep key. The keys were checked against ros/rosdistro
# rosdep/python.yaml (2026-08): they exist for Ubuntu (Jammy/Noble) and Debian.
ROSDEP_KEYS = {
    "numpy": "python3-numpy",
    "yaml": "python3-yaml",
    "cv2": "python3-opencv",
    "PIL": "python3-pil",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "torch": "python3-torch",
    "transformers": "python3-transformers-pip",
    "onnxruntime": "python3-onnxruntime-pip",
}
# No rosdep key exists: pip-installed on the robot (README). torchvision comes with torch's wheels.
PIP_ONLY = {
    "open_clip",
    "tokenizers",
    "safetensors",
    "onnx",
    "onnxscript",
    "peft",
    "torchvision",
    "rosbags",
    "chatterbot_corpus",
    "opencc",  # read as data (its character tables: functions/language.to_simplified), not imported
}
# Imported only by test helpers inside the package (functions/testing.py builds hypothesis strategies).
TEST_ONLY = {"hypothesis", "pytest"}
OWN = {"octopus_ros", "octopus_msgs"}


def _declared() -> set[str]:
    root = ET.parse(PKG / "package.xml").getroot()
    return {el.text.strip() for tag in ("depend", "exec_depend") for el in root.iter(tag) if el.text}


def _imports() -> dict[str, list[str]]:
    """Top-level module name -> files that import it (every import statement, also inside functions)."""
    found: dict[str, list[str]] = {}
    files = [*sorted((PKG / "octopus_ros").rglob("*.py")), *sorted((PKG / "launch").glob("*.py"))]
    for file in files:
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                found.setdefault(name.split(".")[0], []).append(str(file.relative_to(PKG)))
    return found


def test_every_import_is_declared_or_named_pip_only():
    declared = _declared()
    problems = []
    for module, files in sorted(_imports().items()):
        if module in sys.stdlib_module_names or module in OWN | PIP_ONLY | TEST_ONLY:
            continue
        key = ROSDEP_KEYS.get(module, module)  # a ROS package's rosdep key is its own name
        if key not in declared:
            problems.append(f"{module} (imported by {files[0]}) needs <exec_depend>{key}</exec_depend>")
    assert not problems, "package.xml misses:\n" + "\n".join(problems)


PIP_NAMES = {  # module -> pip name
    "open_clip": "open_clip_torch",
    "chatterbot_corpus": "chatterbot-corpus",
    "opencc": "opencc-python-reimplemented",
}


def test_package_xml_and_the_readme_name_every_pip_only_library():
    comments = " ".join(
        c
        for c in re.findall(r"<!--(.*?)-->", (PKG / "package.xml").read_text(), re.S)
        if "No rosdep key" in c
    )
    readme = (PKG.parent / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("The pip-only libraries (no rosdep key)") :][:600]
    for module in sorted(PIP_ONLY):
        name = PIP_NAMES.get(module, module)
        assert re.search(rf"\b{re.escape(name)}\b", comments), f"package.xml's comment misses {name}"
        assert f"`{name}`" in section, f"the README's pip-only list misses {name}"


def test_the_issue_11_dependencies_are_declared():
    declared = _declared()
    for key in (
        "ament_index_python",
        "rcl_interfaces",
        "python3-pil",
        "python3-torch",
        "python3-transformers-pip",
        "python3-onnxruntime-pip",
    ):
        assert key in declared, key


def test_package_xml_parses_with_catkin_pkg():
    from catkin_pkg.package import parse_package

    package = parse_package(str(PKG / "package.xml"))
    package.validate()
    assert package.name == "octopus_ros"
