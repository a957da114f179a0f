"""The README's import rules for the package's rooms ("Layout"), checked for every module.

    functions/            no torch, no rclpy
    model/                no rclpy
    data/, training/      no rclpy
    runtime/              no rclpy
    lean/                 no torch, no rclpy
    ros/                  the only rclpy room

"rclpy" here means the ROS client side: rclpy itself, message and interface packages, launch and
cv_bridge. A module's imports are read from its source (every import statement, including lazy ones
inside functions; ``if TYPE_CHECKING:`` blocks are skipped) and followed through the package: a
functions/ module that imports a model/ module imports torch too, and importing
``octopus_ros.model.x`` runs ``octopus_ros/__init__.py`` and ``octopus_ros/model/__init__.py``.
A second check imports the rule-bound rooms for real and looks at ``sys.modules``, which also
catches a third-party library that pulls torch or rclpy in behind the package's back.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

PKG_DIR = Path(__file__).resolve().parents[1] / "octopus_ros"
PACKAGE = "octopus_ros"

TORCH = ("torch",)
# The ROS client side: a room without "rclpy" may import none of these.
ROS_EXACT = ("rclpy", "rosidl_runtime_py", "rosidl_parser", "cv_bridge", "launch", "launch_ros", "rosbag2_py")
ROS_SUFFIXES = ("_msgs", "_interfaces", "_srvs")

# room (first folder under octopus_ros/; "" for octopus_ros/__init__.py and the top-level modules
# paths.py and heap.py, which any room may use) -> forbidden groups. ros/ is the only rclpy room: any other room, a new one included,
# gets DEFAULT_RULE.
RULES: dict[str, tuple[str, ...]] = {
    "functions": ("torch", "rclpy"),
    "model": ("rclpy",),
    "data": ("rclpy",),
    "training": ("rclpy",),
    "runtime": ("rclpy",),
    "lean": ("torch", "rclpy"),
    "ros": (),
}
DEFAULT_RULE = ("rclpy",)


def _forbidden_group(module: str) -> str | None:
    top = module.split(".")[0]
    if top in TORCH:
        return "torch"
    if top in ROS_EXACT or top.endswith(ROS_SUFFIXES):
        return "rclpy"
    return None


def _module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(PKG_DIR).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PKG_DIR.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_statements(tree: ast.AST):
    """Every Import/ImportFrom in the tree, lazy ones included, TYPE_CHECKING blocks excluded."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _parents(module: str) -> list[str]:
    """The packages whose __init__ runs before ``module``: a.b.c -> a, a.b."""
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def direct_imports(module: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(imported module, line) for each import in ``path``; relative imports resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    out = []
    for node in _import_statements(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
            continue
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        out.append((target, node.lineno))
        for alias in node.names:  # `from pkg import submodule`
            sub = f"{target}.{alias.name}"
            if sub in known:
                out.append((sub, node.lineno))
    return out


@cache
def _graph() -> dict[str, list[tuple[str, int]]]:
    known = _modules()
    graph = {}
    for name, path in known.items():
        edges = direct_imports(name, path, known)
        # importing a module runs its parent packages' __init__ first
        edges += [(p, 0) for p in _parents(name) if p in known]
        graph[name] = edges
    return graph


def _internal(target: str, known) -> str | None:
    """The package module that importing ``target`` runs (the longest known prefix), if any."""
    parts = target.split(".")
    for i in range(len(parts), 0, -1):
        name = ".".join(parts[:i])
        if name in known:
            return name
    return None


def room_of(module: str, pkg_dir: Path) -> str:
    rel = module.split(".")[1:]
    return rel[0] if rel and (pkg_dir / rel[0]).is_dir() else ""


def violations(graph: dict[str, list[tuple[str, int]]], pkg_dir: Path = PKG_DIR) -> list[str]:
    """One line per (module, forbidden import) with the chain of imports that reaches it."""
    known = set(graph)
    problems = []
    for start in sorted(graph):
        room = room_of(start, pkg_dir)
        banned = set(RULES.get(room, DEFAULT_RULE))
        if not banned:
            continue
        # breadth-first over package modules, remembering which import reached each one
        prev: dict[str, tuple[str, int] | None] = {start: None}
        queue = [start]
        found: dict[str, tuple[str, int]] = {}
        while queue:
            mod = queue.pop(0)
            for target, line in graph[mod]:
                internal = _internal(target, known)
                if internal is None:
                    top = target.split(".")[0]  # one line per forbidden library
                    if _forbidden_group(target) in banned and top not in found:
                        found[top] = (mod, line)
                elif internal not in prev:
                    prev[internal] = (mod, line)
                    queue.append(internal)
        for target, (mod, line) in sorted(found.items()):
            hops = [_hop(mod, line)]
            while prev[mod] is not None:
                mod, line = prev[mod]
                hops.append(_hop(mod, line))
            chain = " -> ".join(reversed(hops))
            problems.append(f"{start} ({room or 'package root'}/) imports {target}: {chain}")
    return problems


def _hop(module: str, line: int) -> str:
    return f"{module}:{line}" if line else f"{module} (package of the next)"


def test_rooms_follow_the_readme_import_rules():
    graph = _graph()
    assert len(graph) > 50 and "octopus_ros.functions.grammar" in graph  # the walk found the package
    problems = violations(graph)
    assert not problems, "import rules broken (README, Layout):\n" + "\n".join(problems)


def test_the_checker_sees_lazy_transitive_and_relative_imports(tmp_path):
    """The rule check itself: a forbidden import is found however it is reached."""
    pkg = tmp_path / PACKAGE
    files = {
        "__init__.py": "",
        "functions/__init__.py": "from .calls import x\n",
        "functions/calls.py": "def f():\n    from octopus_ros.model import m\n    return m\n",
        "functions/grammar.py": "from .. import model\n",
        "model/__init__.py": "from . import m\n",
        "model/m.py": "import torch\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import rclpy\n",
        "runtime/__init__.py": "",
        "runtime/engine.py": "def g():\n    from ..ros import node\n",
        "ros/__init__.py": "",
        "ros/node.py": "import rclpy\nfrom std_msgs.msg import String\n",
    }
    for rel, text in files.items():
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        (pkg / rel).write_text(text, encoding="utf-8")
    known = {_module_name_in(p, tmp_path): p for p in sorted(pkg.rglob("*.py"))}
    graph = {
        n: direct_imports(n, p, known) + [(q, 0) for q in _parents(n) if q in known] for n, p in known.items()
    }
    problems = "\n".join(violations(graph, pkg))
    # functions/ reaches torch lazily through model/ (and its __init__'s relative import)
    assert "octopus_ros.functions.calls (functions/) imports torch" in problems
    assert "octopus_ros.functions.calls:2 -> octopus_ros.model.m:1" in problems
    assert "octopus_ros.functions.grammar:1 -> octopus_ros.model:1 -> octopus_ros.model.m:1" in problems
    assert "octopus_ros.functions (functions/) imports torch" in problems
    # runtime/ reaches rclpy and a message package through a lazy relative import of ros/
    assert "octopus_ros.runtime.engine (runtime/) imports rclpy" in problems
    assert "octopus_ros.runtime.engine (runtime/) imports std_msgs" in problems
    # model/ may use torch, and its TYPE_CHECKING-only rclpy does not count; ros/ is free
    assert "octopus_ros.model" not in "\n".join(p.split(" imports")[0] for p in problems.splitlines())
    assert "octopus_ros.ros" not in "\n".join(p.split(" (")[0] for p in problems.splitlines())


def _module_name_in(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_importing_the_rooms_loads_no_forbidden_library():
    """Import every module of each rule-bound room in a fresh interpreter; check sys.modules."""
    modules = _modules()
    for banned in (("torch", "rclpy"), ("rclpy",)):
        rooms = {r for r in {room_of(m, PKG_DIR) for m in modules} if RULES.get(r, DEFAULT_RULE) == banned}
        mods = [m for m in modules if room_of(m, PKG_DIR) in rooms and not m.endswith("__main__")]
        assert mods, banned
        code = (
            "import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "print(' '.join(sorted(sys.modules)))\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        loaded = [m for m in out.stdout.split() if _forbidden_group(m) in banned]
        assert not loaded, f"importing {sorted(rooms)} loaded {loaded[:10]}"
