"""Repoint the include directories that some ros-* wheels hard-code to their build machine.

The exported ``<pkg>__rosidl_generator_py`` cmake targets of several wheels list
``/opt/python/cp311-cp311/include/python3.11`` and that machine's numpy include
directory. CMake refuses imported targets whose include directories do not exist,
so building an interface package (octopus_msgs) against the wheels fails. This
rewrites those entries to this interpreter's and this numpy's include directories.
Idempotent: a file with no missing include directory is left untouched.

usage: python fix_wheel_cmake.py VENV PYTHON_INCLUDE NUMPY_INCLUDE
"""

import re
import sys
from pathlib import Path

LINE = re.compile(r'(INTERFACE_INCLUDE_DIRECTORIES\s+")([^"]*)(")')


def _replacement(entry: str, py_inc: str, np_inc: str) -> str:
    if Path(entry).exists() or entry.startswith("$"):
        return entry
    if "numpy" in entry:
        return np_inc
    if re.search(r"/include/python3\.\d+$", entry):
        return py_inc
    return entry


def main() -> int:
    venv, py_inc, np_inc = sys.argv[1:4]
    changed = 0
    for path in sorted(Path(venv, "share").glob("*/cmake/*__rosidl_generator_pyExport.cmake")):
        text = path.read_text()

        def fix(m: re.Match) -> str:
            entries = [_replacement(e, py_inc, np_inc) for e in m.group(2).split(";")]
            return m.group(1) + ";".join(entries) + m.group(3)

        new = LINE.sub(fix, text)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"[msgs] repointed include directories in {changed} wheel cmake export file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
