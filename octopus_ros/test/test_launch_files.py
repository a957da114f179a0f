"""Launch files, Gazebo world and bridge config: what can be checked without launch or Gazebo.

This machine has no `launch`, `launch_ros` or Gazebo. The launch files are checked
three ways: statically (they parse, define generate_launch_description, declare the
arguments, start executables this package installs); by running them against recording
stand-ins of the launch API (every action's constructor arguments are kept, opaque
functions are called with the declared defaults), which exercises their own logic
(parameters per namespace, lifecycle events, included files that exist); and the
Gazebo world / bridge config are checked as XML / YAML and against each other. That
the real launch API accepts these calls is NOT verified here.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from lifecycle_msgs.msg import Transition

from octopus_ros.ros.launch_params import (
    ParamsFileError,
    as_bool,
    fully_qualified_name,
    key_matches,
    node_parameters,
)

from conftest import PACKAGE_DIR

LAUNCH_DIR = PACKAGE_DIR / "launch"
LAUNCH_FILES = ["octopus.launch.py", "demo.launch.py", "gazebo.launch.py"]
WORLD = PACKAGE_DIR / "worlds" / "octopus_home.sdf"
BRIDGE = PACKAGE_DIR / "config" / "gz_bridge.yaml"
ROS_GZ_SIM_SHARE = "/opt/ros/distro/share/ros_gz_sim"


# --------------------------------------------------------------------------- static checks
def console_scripts() -> set[str]:
    tree = ast.parse((PACKAGE_DIR / "setup.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and " = octopus_ros." in node.value:
            names.add(node.value.split("=")[0].strip())
    return names


def keyword_constants(tree: ast.AST, call_name: str, keyword: str) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == call_name
        ):
            for kw in node.keywords:
                if kw.arg == keyword and isinstance(kw.value, ast.Constant):
                    out.append(kw.value.value)
    return out


def declared_arguments(tree: ast.AST) -> list[str]:
    return [
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "DeclareLaunchArgument"
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ]


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_launch_file_parses_and_defines_generate_launch_description(name):
    tree = ast.parse((LAUNCH_DIR / name).read_text(), filename=name)
    functions = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert "generate_launch_description" in functions
    args = functions["generate_launch_description"].args
    assert not args.args and not args.posonlyargs and not args.kwonlyargs
    assert ast.get_docstring(tree), "launch files say what they start and that they were not run here"
    declared = declared_arguments(tree)
    assert len(declared) == len(set(declared))
    assert {"params_file", "namespace", "log_level"} <= set(declared)
    # Executables are this package's console scripts, or ros_gz's bridge.
    packages = keyword_constants(tree, "Node", "package") + keyword_constants(
        tree, "LifecycleNode", "package"
    )
    assert set(packages) <= {"octopus_ros", "ros_gz_bridge"}
    executables = keyword_constants(tree, "Node", "executable") + keyword_constants(
        tree, "LifecycleNode", "executable"
    )
    assert set(executables) - {"parameter_bridge"} <= console_scripts()


def test_octopus_launch_declares_the_standard_arguments():
    tree = ast.parse((LAUNCH_DIR / "octopus.launch.py").read_text())
    assert {"params_file", "namespace", "use_sim_time", "autostart"} <= set(declared_arguments(tree))
    assert keyword_constants(tree, "LifecycleNode", "executable") == ["octopus_node"]


def test_console_scripts_cover_the_launched_nodes():
    assert {"octopus_node", "sim_camera", "demo_actuator", "speech_script"} <= console_scripts()


# --------------------------------------------------------------------------- recording stand-ins
class Recorded:
    """A launch API object: keeps its constructor arguments."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __repr__(self):
        return f"{type(self).__name__}({self.args}, {self.kwargs})"


class LaunchConfiguration(Recorded):
    def perform(self, context):
        return context.values[self.args[0]]


def _fake_module(name: str, **members) -> types.ModuleType:
    module = types.ModuleType(name)
    classes: dict[str, type] = {}

    def __getattr__(attr):  # noqa: N807 - module-level __getattr__
        if attr.startswith("__"):
            raise AttributeError(attr)
        return classes.setdefault(attr, type(attr, (Recorded,), {}))

    module.__getattr__ = __getattr__
    for key, value in members.items():
        setattr(module, key, value)
    return module


def _share(package: str) -> str:
    return str(PACKAGE_DIR) if package == "octopus_ros" else f"/opt/ros/distro/share/{package}"


@pytest.fixture
def fake_launch(monkeypatch):
    """Install stand-ins for launch, launch_ros and ament_index_python (this machine has
    none that work: `import launch` even finds octopus_ros/launch/ as a namespace package)."""
    names = [
        "launch",
        "launch.actions",
        "launch.events",
        "launch.event_handlers",
        "launch.substitutions",
        "launch.launch_description_sources",
        "launch_ros",
        "launch_ros.actions",
        "launch_ros.event_handlers",
        "launch_ros.events",
        "launch_ros.events.lifecycle",
    ]
    for name in names:
        extra = {"LaunchConfiguration": LaunchConfiguration} if name == "launch.substitutions" else {}
        monkeypatch.setitem(sys.modules, name, _fake_module(name, **extra))
    ament = types.ModuleType("ament_index_python.packages")
    ament.get_package_share_directory = _share
    monkeypatch.setitem(sys.modules, "ament_index_python.packages", ament)


class Context:
    def __init__(self, values):
        self.values = values


def run_launch(path: Path, **overrides) -> list[Recorded]:
    """Load a launch file, evaluate its description with the declared defaults (plus
    overrides), expand opaque functions and our own included launch files; return the
    flat list of actions."""
    spec = importlib.util.spec_from_file_location(f"launch_file_{path.stem.replace('.', '_')}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert type(description).__name__ == "LaunchDescription"
    entities = description.args[0]
    values = {
        e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"
    }
    unknown = set(overrides) - set(values)
    assert not unknown, f"{path.name} does not declare {unknown}"
    values.update(overrides)
    actions: list[Recorded] = []
    for entity in entities:
        if type(entity).__name__ == "OpaqueFunction":
            actions.extend(entity.kwargs["function"](Context(values)))
        elif type(entity).__name__ != "DeclareLaunchArgument":
            actions.append(entity)
    expanded = []
    for action in actions:
        expanded.append(action)
        if type(action).__name__ == "IncludeLaunchDescription":
            included = Path(action.args[0].args[0])
            if included.parent == LAUNCH_DIR:
                expanded.extend(run_launch(included, **dict(action.kwargs["launch_arguments"])))
    return expanded


def of_type(actions, name):
    return [a for a in actions if type(a).__name__ == name]


def handlers(actions, kind):
    return [a.args[0] for a in of_type(actions, "RegisterEventHandler") if type(a.args[0]).__name__ == kind]


# --------------------------------------------------------------------------- octopus.launch.py
def test_octopus_launch_starts_a_lifecycle_node_and_activates_it(fake_launch):
    actions = run_launch(LAUNCH_DIR / "octopus.launch.py")
    [node] = of_type(actions, "LifecycleNode")
    kw = node.kwargs
    assert (kw["package"], kw["executable"], kw["name"], kw["namespace"]) == (
        "octopus_ros",
        "octopus_node",
        "octopus_node",
        "",
    )
    [params] = kw["parameters"]
    shipped = yaml.safe_load((PACKAGE_DIR / "config" / "octopus.yaml").read_text())["/**/octopus_node"][
        "ros__parameters"
    ]
    assert params["image_topic"] == shipped["image_topic"] and params["model_path"] == shipped["model_path"]
    assert params["use_sim_time"] is False and params["autostart"] is False

    # configure is emitted at start, for this node; activate once it reaches 'inactive'.
    [configure] = [a for a in of_type(actions, "EmitEvent") if a.kwargs["event"].kwargs["transition_id"] == 1]
    event = configure.kwargs["event"]
    assert type(event).__name__ == "ChangeState"
    assert event.kwargs["transition_id"] == Transition.TRANSITION_CONFIGURE
    assert event.kwargs["lifecycle_node_matcher"].args == (node,)
    transitions = {
        (h.kwargs["start_state"], h.kwargs["goal_state"]): h for h in handlers(actions, "OnStateTransition")
    }
    assert set(transitions) == {
        ("configuring", "inactive"),
        ("configuring", "unconfigured"),
        ("activating", "active"),
    }
    on_inactive = transitions[("configuring", "inactive")]
    assert on_inactive.kwargs["target_lifecycle_node"] is node
    [activate] = [e for e in on_inactive.kwargs["entities"] if type(e).__name__ == "EmitEvent"]
    assert activate.kwargs["event"].kwargs["transition_id"] == Transition.TRANSITION_ACTIVATE
    assert activate.kwargs["event"].kwargs["lifecycle_node_matcher"].args == (node,)
    # Handlers are registered before configure is emitted.
    assert actions.index(configure) > max(actions.index(a) for a in of_type(actions, "RegisterEventHandler"))


def test_octopus_launch_namespace_sim_time_and_no_autostart(fake_launch, tmp_path):
    params_file = tmp_path / "robot.yaml"
    params_file.write_text(
        yaml.safe_dump(
            {
                "/**": {"ros__parameters": {"device": "cpu", "confidence_threshold": 0.4}},
                "/robot1/octopus_node": {
                    "ros__parameters": {"device": "cuda", "image_topic": "/front/image"}
                },
                "octopus_node": {"ros__parameters": {"device": "never (root namespace only)"}},
            }
        )
    )
    actions = run_launch(
        LAUNCH_DIR / "octopus.launch.py",
        params_file=str(params_file),
        namespace="robot1",
        use_sim_time="true",
        autostart="false",
    )
    [node] = of_type(actions, "LifecycleNode")
    assert node.kwargs["namespace"] == "robot1"
    assert node.kwargs["parameters"] == [
        {
            "device": "cuda",
            "confidence_threshold": 0.4,
            "image_topic": "/front/image",
            "use_sim_time": True,
            "autostart": False,
        }
    ]
    assert not of_type(actions, "EmitEvent") and not of_type(actions, "RegisterEventHandler")


# --------------------------------------------------------------------------- demo.launch.py
def test_demo_launch_starts_the_four_processes(fake_launch):
    actions = run_launch(LAUNCH_DIR / "demo.launch.py", namespace="robot1")
    nodes = {n.kwargs["executable"]: n for n in of_type(actions, "Node")}
    assert set(nodes) == {"sim_camera", "demo_actuator", "speech_script"}
    [octopus] = of_type(actions, "LifecycleNode")  # from the included octopus.launch.py
    assert octopus.kwargs["namespace"] == "robot1"
    assert of_type(actions, "EmitEvent")  # lifecycle events came along with the include
    scenario = PACKAGE_DIR / "config" / "demo_scenario.yaml"
    [camera_params] = nodes["sim_camera"].kwargs["parameters"]
    assert camera_params["scenario_file"] == str(scenario) and camera_params["rate"] == 15.0
    [speech_params] = nodes["speech_script"].kwargs["parameters"]
    assert speech_params["node_name"] == "/robot1/octopus_node"
    assert speech_params["scenario_file"] == str(scenario)
    [actuator_params] = nodes["demo_actuator"].kwargs["parameters"]
    assert actuator_params["calls_topic"] == "/robot1/octopus_node/function_calls"
    # The launch ends when the speech script has played the scenario.
    [on_exit] = handlers(actions, "OnProcessExit")
    assert on_exit.kwargs["target_action"] is nodes["speech_script"]
    assert [type(e).__name__ for e in on_exit.kwargs["on_exit"]] == ["LogInfo", "EmitEvent"]
    assert type(on_exit.kwargs["on_exit"][1].kwargs["event"]).__name__ == "Shutdown"


# --------------------------------------------------------------------------- gazebo.launch.py
def test_gazebo_launch_starts_gazebo_bridge_node_and_actuator(fake_launch):
    actions = run_launch(LAUNCH_DIR / "gazebo.launch.py")
    includes = [Path(i.args[0].args[0]) for i in of_type(actions, "IncludeLaunchDescription")]
    assert Path(ROS_GZ_SIM_SHARE, "launch", "gz_sim.launch.py") in includes
    assert LAUNCH_DIR / "octopus.launch.py" in includes
    [gz] = [i for i in of_type(actions, "IncludeLaunchDescription") if "ros_gz_sim" in i.args[0].args[0]]
    gz_args = dict(gz.kwargs["launch_arguments"])["gz_args"]
    assert gz_args.startswith("-r ") and gz_args.split()[-1] == str(WORLD)
    assert WORLD.is_file()
    nodes = {n.kwargs["executable"]: n for n in of_type(actions, "Node")}
    assert set(nodes) == {"parameter_bridge", "demo_actuator"}
    [bridge_params] = nodes["parameter_bridge"].kwargs["parameters"]
    assert bridge_params["config_file"] == str(BRIDGE) and BRIDGE.is_file()
    [octopus] = of_type(actions, "LifecycleNode")
    assert octopus.kwargs["parameters"][0]["use_sim_time"] is True

    headless = run_launch(LAUNCH_DIR / "gazebo.launch.py", headless="true")
    [gz] = [i for i in of_type(headless, "IncludeLaunchDescription") if "ros_gz_sim" in i.args[0].args[0]]
    assert "-s --headless-rendering" in dict(gz.kwargs["launch_arguments"])["gz_args"]


# --------------------------------------------------------------------------- Gazebo world and bridge
@pytest.fixture(scope="module")
def world() -> ET.Element:
    root = ET.parse(WORLD).getroot()
    assert root.tag == "sdf" and root.get("version") in ("1.8", "1.9", "1.10", "1.11", "1.12")
    [w] = root.findall("world")
    return w


@pytest.fixture(scope="module")
def bridge() -> list[dict]:
    entries = yaml.safe_load(BRIDGE.read_text())
    assert isinstance(entries, list) and entries
    for e in entries:
        assert {"ros_topic_name", "gz_topic_name", "ros_type_name", "gz_type_name", "direction"} <= set(e), e
        assert e["direction"] in ("GZ_TO_ROS", "ROS_TO_GZ", "BIDIRECTIONAL")
    return entries


def bridged(entries, ros_topic):
    [entry] = [e for e in entries if e["ros_topic_name"] == ros_topic]
    return entry


def test_world_has_the_objects_and_a_camera(world):
    models = {m.get("name"): m for m in world.findall("model")}
    assert {"red_cup", "blue_bottle", "green_box", "yellow_ball", "table", "octopus_bot"} <= set(models)
    for name in ("red_cup", "blue_bottle", "green_box", "yellow_ball"):
        assert models[name].find("link/visual/material/diffuse") is not None, name
    cameras = list(world.iter("sensor"))
    assert [c.get("type") for c in cameras] == ["camera"]
    camera = cameras[0]
    assert camera.findtext("topic") == "/camera/image_raw"
    assert int(camera.findtext("camera/image/width")) == 640
    plugins = {p.get("name") for p in world.findall("plugin")}
    assert "gz::sim::systems::Sensors" in plugins  # without it, camera sensors publish nothing


def test_dynamic_links_have_mass_and_diff_drive_joints_exist(world):
    for model in world.findall("model"):
        if model.findtext("static", "false").strip() == "true":
            continue
        for link in model.findall("link"):
            mass = link.findtext("inertial/mass")
            assert mass is not None and float(mass) > 0, (model.get("name"), link.get("name"))
    robot = next(m for m in world.findall("model") if m.get("name") == "octopus_bot")
    [drive] = [p for p in robot.findall("plugin") if p.get("name") == "gz::sim::systems::DiffDrive"]
    joints = {j.get("name") for j in robot.findall("joint")}
    assert {drive.findtext("left_joint"), drive.findtext("right_joint")} <= joints


def test_bridge_connects_camera_and_cmd_vel_to_the_world(bridge, world):
    image = bridged(bridge, "/camera/image_raw")
    assert (image["ros_type_name"], image["gz_type_name"], image["direction"]) == (
        "sensor_msgs/msg/Image",
        "gz.msgs.Image",
        "GZ_TO_ROS",
    )
    camera = next(world.iter("sensor"))
    assert image["gz_topic_name"] == camera.findtext("topic")
    cmd_vel = bridged(bridge, "/cmd_vel")
    assert (cmd_vel["ros_type_name"], cmd_vel["gz_type_name"], cmd_vel["direction"]) == (
        "geometry_msgs/msg/Twist",
        "gz.msgs.Twist",
        "ROS_TO_GZ",
    )
    drive = next(p for p in world.iter("plugin") if p.get("name") == "gz::sim::systems::DiffDrive")
    assert cmd_vel["gz_topic_name"] == drive.findtext("topic")
    assert bridged(bridge, "/clock")["direction"] == "GZ_TO_ROS"  # use_sim_time needs it


def test_bridge_matches_the_node_parameters_and_routing(bridge):
    params = yaml.safe_load((PACKAGE_DIR / "config" / "octopus.yaml").read_text())["/**/octopus_node"][
        "ros__parameters"
    ]
    assert bridged(bridge, params["image_topic"])["direction"] == "GZ_TO_ROS"
    routing = yaml.safe_load((PACKAGE_DIR / "config" / "routing.yaml").read_text())
    stop_routes = routing["routes"]["stop"]
    stop_topic = (stop_routes[0] if isinstance(stop_routes, list) else stop_routes)["topic"]
    assert bridged(bridge, stop_topic)["direction"] == "ROS_TO_GZ"


# --------------------------------------------------------------------------- launch_params helpers
@pytest.mark.parametrize(
    ("key", "fqn", "matches"),
    [
        ("octopus_node", "/octopus_node", True),
        ("/octopus_node", "/octopus_node", True),
        ("octopus_node", "/robot1/octopus_node", False),
        ("/**", "/robot1/octopus_node", True),
        ("/**/octopus_node", "/octopus_node", True),
        ("/**/octopus_node", "/a/b/octopus_node", True),
        ("/*/octopus_node", "/robot1/octopus_node", True),
        ("/*/octopus_node", "/octopus_node", False),
        ("/robot1/octopus_node", "/robot2/octopus_node", False),
        ("/**", "/x", True),
        ("sim_camera", "/octopus_node", False),
    ],
)
def test_key_matching_follows_rcl(key, fqn, matches):
    assert key_matches(key, fqn) is matches


def test_node_parameters_errors_and_helpers(tmp_path, caplog):
    assert fully_qualified_name("octopus_node", "") == "/octopus_node"
    assert fully_qualified_name("octopus_node", "/robot1/") == "/robot1/octopus_node"
    bad = tmp_path / "bad.yaml"
    bad.write_text("octopus_node: {device: cpu}\n")
    with pytest.raises(ParamsFileError, match="entry 'octopus_node' has no 'ros__parameters' mapping"):
        node_parameters(bad, "octopus_node")
    bad.write_text("- 1\n")
    with pytest.raises(ParamsFileError, match="expected a mapping of node names"):
        node_parameters(bad, "octopus_node")
    with pytest.raises(ParamsFileError, match="cannot read parameters"):
        node_parameters(tmp_path / "missing.yaml", "octopus_node")
    other = tmp_path / "other.yaml"
    other.write_text("sim_camera: {ros__parameters: {rate: 5.0}}\n")
    assert node_parameters(other, "octopus_node") == {}
    assert "has no parameters for /octopus_node" in caplog.text
    assert as_bool("True") is True and as_bool("0") is False and as_bool(False) is False
    with pytest.raises(ValueError, match="expected true or false"):
        as_bool("maybe")
