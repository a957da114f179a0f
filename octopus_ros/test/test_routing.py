"""Routing of decided calls to standard typed topics: message contents and validation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
import yaml
from geometry_msgs.msg import PoseStamped, Twist
from std_msgs.msg import Float32, String

from octopus_ros.functions import load_default_registry, make_call
from octopus_ros.ros.routing import RoutingError, RoutingTable, topic_name_problem

from conftest import PACKAGE_DIR

ROUTING_YAML = PACKAGE_DIR / "config" / "routing.yaml"


# --------------------------------------------------------------------------- registry and calls
# The real registry (config/functions.yaml, 13 functions) and real Calls; the minimal
# protocol routing needs (by_name -> spec.args with name/type/values; call.function,
# call.args with name/value) is also exercised with plain stand-ins below.
REGISTRY = load_default_registry()
PLACES = REGISTRY.by_name("navigate_to").args[0].values


def call(function: str, **args: object):
    """A real, schema-checked Call."""
    return make_call(REGISTRY, function, **args)


@dataclass(frozen=True)
class ArgValue:
    name: str
    value: object


@dataclass(frozen=True)
class RawCall:
    """A call that skipped schema validation (to test route-time errors)."""

    function: str
    args: tuple[ArgValue, ...] = field(default=())


def raw_call(function: str, **args: object) -> RawCall:
    return RawCall(function, tuple(ArgValue(k, v) for k, v in args.items()))


@dataclass(frozen=True)
class ArgSpec:
    name: str
    type: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class FunctionSpec:
    name: str
    args: tuple[ArgSpec, ...] = ()


class StandInRegistry:
    def __init__(self, specs: list[FunctionSpec]) -> None:
        self._specs = {s.name: s for s in specs}

    def by_name(self, name: str) -> FunctionSpec | None:
        return self._specs.get(name)


@pytest.fixture(scope="module")
def table() -> RoutingTable:
    return RoutingTable.from_file(ROUTING_YAML, REGISTRY)


def yaw_of(q) -> float:
    return math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))


# --------------------------------------------------------------------------- the shipped table
def test_shipped_routing_yaml_validates_and_lists_its_topics(table):
    assert table.topics() == [
        ("/cmd_vel", Twist),
        ("/octopus/speed_limit", Float32),
        ("/goal_pose", PoseStamped),
        ("/octopus/messages", String),
    ]
    assert set(table.places) == set(PLACES)
    assert "stop -> /cmd_vel (zero_twist)" in table.summary()


def test_stop_is_a_zero_twist_on_cmd_vel(table):
    [(topic, msg)] = table.route(call("stop"))
    assert topic == "/cmd_vel" and isinstance(msg, Twist)
    values = [getattr(getattr(msg, v), a) for v in ("linear", "angular") for a in "xyz"]
    assert values == [0.0] * 6


def test_stop_can_be_a_stamped_zero_twist_for_bases_that_take_one():
    from geometry_msgs.msg import TwistStamped

    table = RoutingTable.from_dict(
        {"routes": {"stop": [{"kind": "zero_twist_stamped", "topic": "/diff_drive_controller/cmd_vel"}]}},
        load_default_registry(),
    )
    [(topic, msg)] = table.route(call("stop"))
    assert topic == "/diff_drive_controller/cmd_vel" and isinstance(msg, TwistStamped)
    assert msg.header.frame_id == "base_link"
    assert [getattr(getattr(msg.twist, v), a) for v in ("linear", "angular") for a in "xyz"] == [0.0] * 6
    framed = RoutingTable.from_dict(
        {
            "routes": {
                "stop": {"kind": "zero_twist_stamped", "topic": "/cmd_vel", "frame_id": "base_footprint"}
            }
        },
        load_default_registry(),
    )
    assert framed.route(call("stop"))[0][1].header.frame_id == "base_footprint"
    with pytest.raises(RoutingError, match="used with several message types"):
        RoutingTable.from_dict(
            {
                "routes": {
                    "stop": [
                        {"kind": "zero_twist", "topic": "/cmd_vel"},
                        {"kind": "zero_twist_stamped", "topic": "/cmd_vel"},
                    ]
                }
            },
            load_default_registry(),
        )


def test_set_speed_is_a_float32(table):
    [(topic, msg)] = table.route(call("set_speed", value=0.25))
    assert topic == "/octopus/speed_limit" and isinstance(msg, Float32)
    assert msg.data == pytest.approx(0.25)


@pytest.mark.parametrize("place", PLACES)
def test_navigate_to_is_a_pose_stamped_from_the_named_places(table, place):
    raw = yaml.safe_load(ROUTING_YAML.read_text())["named_places"][place]
    [(topic, msg)] = table.route(call("navigate_to", place=place))
    assert topic == "/goal_pose" and isinstance(msg, PoseStamped)
    assert msg.header.frame_id == "map"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (0, 0)  # the publisher stamps it
    p, q = msg.pose.position, msg.pose.orientation
    assert (p.x, p.y, p.z) == pytest.approx((raw["x"], raw["y"], 0.0))
    assert q.x == 0.0 and q.y == 0.0
    assert q.x**2 + q.y**2 + q.z**2 + q.w**2 == pytest.approx(1.0)
    assert math.degrees(yaw_of(q)) == pytest.approx(raw["yaw_deg"])


def test_send_message_is_a_formatted_string(table):
    [(topic, msg)] = table.route(call("send_message", contact="mom", text="dinner is ready"))
    assert topic == "/octopus/messages" and isinstance(msg, String)
    assert msg.data == "to mom: dinner is ready"


def test_unrouted_functions_give_nothing(table):
    assert table.route(call("pick_up", object="red cup")) == []
    assert table.route(call("no_action")) == []


def test_routed_messages_serialize(table):
    from rclpy.serialization import deserialize_message, serialize_message

    calls = [
        call("stop"),
        call("set_speed", value=1.0),
        call("navigate_to", place="office"),
        call("send_message", contact="bob", text="héllo 你好"),
    ]
    for c in calls:
        for _, msg in table.route(c):
            assert deserialize_message(serialize_message(msg), type(msg)) == msg


# --------------------------------------------------------------------------- more table features
def test_wildcard_generic_string_and_several_routes_per_function():
    data = {
        "named_places": {
            "kitchen": {"x": 1, "y": 2, "yaw": math.pi / 2, "frame_id": "house"},
            "office": {"x": 0, "y": 0},
        },
        "routes": {
            "stop": [
                {"kind": "zero_twist", "topic": "/cmd_vel"},
                {"kind": "string", "topic": "/octopus/events", "template": "{function} requested"},
            ],
            "feed_pet": {"kind": "string", "topic": "/octopus/events", "template": "feed the {pet:>4}"},
            "find_item": {"kind": "pose_stamped", "topic": "goal", "argument": "item", "frame_id": "odom"},
            "*": [{"kind": "string", "topic": "~/call_text", "template": "{call}"}],
        },
    }
    t = RoutingTable.from_dict(data, REGISTRY)
    routed = t.route(call("stop"))
    assert [(topic, type(m)) for topic, m in routed] == [
        ("/cmd_vel", Twist),
        ("/octopus/events", String),
        ("~/call_text", String),
    ]
    assert routed[1][1].data == "stop requested" and routed[2][1].data == "stop()"
    [(_, m1), (_, m2)] = t.route(call("feed_pet", pet="cat"))
    assert m1.data == "feed the  cat" and m2.data == "feed_pet(pet='cat')"
    [(_, text)] = t.route(call("pick_up", object="red cup"))
    assert text.data == "pick_up(object='red cup')"
    # Free-text place argument: the place's own frame wins over the route's, then the route's.
    [(topic, pose), _] = t.route(call("find_item", item="kitchen"))
    assert topic == "goal" and pose.header.frame_id == "house"
    assert math.degrees(yaw_of(pose.pose.orientation)) == pytest.approx(90.0)
    [(_, pose), _] = t.route(call("find_item", item="office"))
    assert pose.header.frame_id == "odom"
    assert t.functions() == ("stop", "feed_pet", "find_item", "*")
    assert [topic for topic, _ in t.topics()] == ["/cmd_vel", "/octopus/events", "goal", "~/call_text"]


def test_route_time_errors():
    data = {
        "named_places": {"office": {"x": 0, "y": 0}},
        "routes": {
            "find_item": {"kind": "pose_stamped", "topic": "/goal_pose", "argument": "item"},
            "set_speed": {"kind": "float32", "topic": "/speed", "argument": "value"},
        },
    }
    t = RoutingTable.from_dict(data, REGISTRY, source="test.yaml")
    with pytest.raises(
        RoutingError, match=r"test.yaml: route find_item -> /goal_pose: no named place 'attic'"
    ):
        t.route(raw_call("find_item", item="attic"))
    with pytest.raises(RoutingError, match=r"the call has no argument 'item'"):
        t.route(raw_call("find_item"))
    with pytest.raises(RoutingError, match=r"'fast' is not a finite number"):
        t.route(raw_call("set_speed", value="fast"))
    with pytest.raises(RoutingError, match=r"nan is not a finite number"):
        t.route(raw_call("set_speed", value=float("nan")))


# --------------------------------------------------------------------------- validation
def problems_of(data, registry=REGISTRY) -> list[str]:
    with pytest.raises(RoutingError) as info:
        RoutingTable.from_dict(data, registry, source="routing.yaml")
    assert str(info.value).startswith("routing.yaml: ")
    return info.value.problems


@pytest.mark.parametrize(
    ("routes", "expected"),
    [
        ({"dance": {"kind": "zero_twist", "topic": "/cmd_vel"}}, "unknown function 'dance'"),
        ({"stop": {"kind": "twist", "topic": "/cmd_vel"}}, "unknown message kind 'twist'"),
        ({"stop": {"topic": "/cmd_vel"}}, "unknown message kind None"),
        (
            {"send_message": {"kind": "string", "topic": "/m", "template": "to {recipient}: {text}"}},
            "template names '{recipient}', which function 'send_message' does not have",
        ),
        ({"stop": {"kind": "string", "topic": "/m", "template": "{speed}"}}, "'stop' does not have"),
        ({"*": {"kind": "string", "topic": "/m", "template": "{text}"}}, "which every call does not have"),
        (
            {"pick_up": {"kind": "string", "topic": "/m", "template": "{object.__class__}"}},
            "attribute or index access",
        ),
        ({"pick_up": {"kind": "string", "topic": "/m", "template": "{0}"}}, "positional field"),
        ({"pick_up": {"kind": "string", "topic": "/m", "template": "{object"}}, "not a valid format string"),
        (
            {"pick_up": {"kind": "string", "topic": "/m", "template": "{object:.2f}"}},
            "does not format the arguments",
        ),
        ({"stop": {"kind": "zero_twist", "topic": "/cmd vel"}}, "token 'cmd vel' must be letters"),
        ({"stop": {"kind": "zero_twist", "topic": "/cmd_vel", "linear": 1}}, "unknown keys ['linear']"),
        ({"stop": {"kind": "zero_twist"}}, "kind 'zero_twist' needs topic"),
        ({"stop": []}, "must be a route mapping or a non-empty list"),
        ({"pick_up": {"kind": "float32", "topic": "/f", "argument": "object"}}, "'object' is string"),
        ({"set_speed": {"kind": "float32", "topic": "/f", "argument": "speed"}}, "has no argument 'speed'"),
        ({"*": {"kind": "float32", "topic": "/f", "argument": "value"}}, "cannot route every call"),
        ({"set_speed": {"kind": "pose_stamped", "topic": "/g", "argument": "value"}}, "'value' is float"),
    ],
)
def test_each_invalid_route_is_reported(routes, expected):
    problems = problems_of({"routes": routes})
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_navigate_to_needs_a_place_for_every_enum_value():
    data = yaml.safe_load(ROUTING_YAML.read_text())
    del data["named_places"]["bathroom"], data["named_places"]["front_door"]
    [problem] = problems_of(data)
    assert "named_places has no entry for navigate_to's place values ['bathroom', 'front_door']" in problem


def test_all_problems_are_listed_together():
    data = {
        "frame": "map",
        "version": 2,
        "named_places": {
            "kitchen": {"x": 1, "yaw": 0, "yaw_deg": 0, "height": 3},
            "office": {"x": "far", "y": float("inf")},
            "hall": [1, 2],
        },
        "routes": {
            "dance": {"kind": "zero_twist", "topic": "/cmd_vel"},
            "stop": {"kind": "zero_twist", "topic": "/out"},
            "send_message": {"kind": "string", "topic": "/out", "template": "{nobody}"},
        },
    }
    problems = problems_of(data)
    expected = [
        "unknown top-level key 'frame'",
        "version 2 is not supported",
        "named_places.kitchen: unknown keys ['height']",
        "named_places.kitchen has no y",
        "named_places.kitchen gives both yaw and yaw_deg",
        "named_places.office.x must be a finite number, got 'far'",
        "named_places.office.y must be a finite number, got inf",
        "named_places.hall must be a mapping",
        "unknown function 'dance'",
        "template names '{nobody}'",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected), problems


def test_a_topic_with_two_message_types_is_refused():
    routes = {
        "stop": {"kind": "zero_twist", "topic": "/out"},
        "pick_up": {"kind": "string", "topic": "/out", "template": "{object}"},
    }
    [problem] = problems_of({"routes": routes})
    assert (
        "topic '/out' is used with several message types: geometry_msgs.msg.Twist, std_msgs.msg.String"
        in problem
    )


def test_top_level_shape_errors(tmp_path):
    with pytest.raises(RoutingError, match="expected a mapping at the top level, got list"):
        RoutingTable.from_dict([1, 2], REGISTRY)
    assert "routes must be a mapping" in problems_of({"routes": ["stop"]})[0]
    assert "named_places must be a mapping" in problems_of({"named_places": [1]})[0]
    bad = tmp_path / "bad.yaml"
    bad.write_text("routes: {stop: [\n")
    with pytest.raises(RoutingError, match=r"bad.yaml: not valid YAML"):
        RoutingTable.from_file(bad, REGISTRY)
    with pytest.raises(RoutingError, match=r"cannot read the file"):
        RoutingTable.from_file(tmp_path / "missing.yaml", REGISTRY)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    t = RoutingTable.from_file(empty, REGISTRY)
    assert t.topics() == [] and t.route(call("stop")) == [] and t.summary() == "no routes"


def test_registry_raising_key_error_counts_as_unknown():
    class Raising:
        def by_name(self, name):
            raise KeyError(name)

    assert (
        "unknown function 'stop'"
        in problems_of({"routes": {"stop": {"kind": "zero_twist", "topic": "/c"}}}, Raising())[0]
    )


@pytest.mark.parametrize("name", ["/cmd_vel", "cmd_vel", "~/out", "~", "/a/b_c/D9", "{node}/x", "_private"])
def test_valid_topic_names(name):
    assert topic_name_problem(name) is None


@pytest.mark.parametrize("name", ["", "/", "a//b", "/1abc", "/a/", "a b", "a/~", "/~/x", "a-b", 5])
def test_invalid_topic_names(name):
    assert topic_name_problem(name) is not None


def test_the_minimal_protocol_is_enough():
    """Any registry with by_name -> .args (name, type, values) and any call with
    .function and .args (name, value) work: routing does not need the functions room."""
    registry = StandInRegistry(
        [
            FunctionSpec("go", (ArgSpec("where", "enum", ("home", "dock")),)),
            FunctionSpec("say", (ArgSpec("words", "string"),)),
        ]
    )
    data = {
        "named_places": {"home": {"x": 1, "y": 2}, "dock": {"x": 3, "y": 4, "yaw": 0.5}},
        "routes": {
            "go": {"kind": "pose_stamped", "topic": "/goal_pose", "argument": "where"},
            "say": {"kind": "string", "topic": "/tts", "template": "{words}!"},
        },
    }
    t = RoutingTable.from_dict(data, registry)
    [(_, pose)] = t.route(raw_call("go", where="dock"))
    assert (pose.pose.position.x, pose.pose.position.y) == (3.0, 4.0)
    assert yaw_of(pose.pose.orientation) == pytest.approx(0.5)
    assert t.route(raw_call("say", words="hi"))[0][1].data == "hi!"
    del data["named_places"]["dock"]
    assert "values ['dock']" in problems_of(data, registry)[0]
