"""Per-function routing of decided calls to standard typed ROS topics.

Downstream robots already listen to standard topics: ``/cmd_vel`` (``geometry_msgs/Twist``),
``/goal_pose`` (``geometry_msgs/PoseStamped``, what Nav2 and RViz use), plain strings.
A routing table, read from YAML and validated against the function registry when the
node is configured, says which typed messages each call becomes::

    frame_id: map                      # default frame of named places
    named_places:                      # poses for pose_stamped routes (yaw in rad, or yaw_deg)
      kitchen: {x: 4.0, y: 1.5, yaw_deg: 90}
    routes:
      stop:         {kind: zero_twist, topic: /cmd_vel}
      set_speed:    {kind: float32, topic: /octopus/speed_limit, argument: value}
      navigate_to:  {kind: pose_stamped, topic: /goal_pose, argument: place}
      send_message: {kind: string, topic: /octopus/messages, template: "to {contact}: {text}"}
      "*":          {kind: string, topic: /octopus/call_text, template: "{call}"}   # every call

A function may list several routes. Route kinds (:data:`ROUTE_KINDS`):

``zero_twist``
    an all-zero ``geometry_msgs/Twist`` (keys: ``topic``);
``zero_twist_stamped``
    an all-zero ``geometry_msgs/TwistStamped``, stamped when published, for bases that take
    stamped velocities (ros2_control's diff_drive_controller on Jazzy, Nav2 Kilted's velocity
    output); the header's ``frame_id`` is the route's, else ``base_link`` (keys: ``topic``,
    optional ``frame_id``);
``float32``
    ``std_msgs/Float32`` holding a numeric argument (keys: ``topic``, ``argument``);
``pose_stamped``
    ``geometry_msgs/PoseStamped`` of the named place an argument names; the header's
    ``frame_id`` is the place's, else the route's ``frame_id``, else the table's; the
    stamp is left zero for the publisher to set (keys: ``topic``, ``argument``, optional
    ``frame_id``);
``string``
    ``std_msgs/String`` from a ``str.format`` template over the call's arguments by
    name, plus ``{function}`` (its name) and ``{call}`` (its canonical text,
    ``name(arg='v', ...)``); an argument with one of these names takes precedence
    (keys: ``topic``, ``template``).

:meth:`RoutingTable.from_dict` reports every problem at once in one
:class:`RoutingError`: unknown functions, kinds or keys, invalid topic names, template
fields the function does not have (or that fail to format), non-numeric ``float32``
arguments, places missing for an enum value of a ``pose_stamped`` argument, a topic
used with two message types. :meth:`RoutingTable.route` only builds messages; the
node publishes them.

The module imports no ROS package at import time; message classes are imported when
messages are built or :meth:`RoutingTable.topics` is called.
"""

from __future__ import annotations

import importlib
import logging
import math
import re
import string
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from octopus_ros.paths import read_config_text

log = logging.getLogger(__name__)

WILDCARD = "*"
"""Routes under this key apply to every call (only ``{function}`` / ``{call}`` in templates)."""

RESERVED_FIELDS = ("function", "call")
"""Template fields every call provides besides its arguments."""


# --------------------------------------------------------------------------- protocols
class ArgLike(Protocol):
    """One argument of a decided call."""

    name: str
    value: Any


class CallLike(Protocol):
    """A decided call: ``function`` name and its arguments."""

    function: str
    args: Iterable[ArgLike]


class RegistryLike(Protocol):
    """The function registry: ``by_name(name)`` gives a spec whose ``args`` each have
    ``name``, ``type`` (string, int, float, bool, enum) and ``values`` (enum values),
    or None (or KeyError) for an unknown name."""

    def by_name(self, name: str) -> Any: ...


# --------------------------------------------------------------------------- data
class RoutingError(ValueError):
    """A routing table or a call that cannot be routed; ``problems`` lists every issue."""

    def __init__(self, problems: list[str], source: str = "routing") -> None:
        self.problems = list(problems)
        self.source = source
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            text = f"{source}: {len(self.problems)} problems:\n" + "\n".join(
                f"  - {p}" for p in self.problems
            )
        super().__init__(text)


@dataclass(frozen=True)
class NamedPlace:
    """A pose in the plane: position (m) and yaw (rad) in ``frame_id`` ("" = the table's default)."""

    name: str
    x: float
    y: float
    z: float = 0.0
    yaw: float = 0.0
    frame_id: str = ""


@dataclass(frozen=True)
class Route:
    """One typed message a call of ``function`` becomes (see the module docstring)."""

    function: str
    kind: str
    topic: str
    argument: str = ""
    template: str = ""
    frame_id: str = ""


@dataclass(frozen=True)
class _Kind:
    msg_type: str  # "package.msg.Class"
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


ROUTE_KINDS: dict[str, _Kind] = {
    "zero_twist": _Kind("geometry_msgs.msg.Twist", ("topic",)),
    "zero_twist_stamped": _Kind("geometry_msgs.msg.TwistStamped", ("topic",), ("frame_id",)),
    "float32": _Kind("std_msgs.msg.Float32", ("topic", "argument")),
    "pose_stamped": _Kind("geometry_msgs.msg.PoseStamped", ("topic", "argument"), ("frame_id",)),
    "string": _Kind("std_msgs.msg.String", ("topic", "template")),
}
"""Route kinds and the message type each builds."""

_TOP_LEVEL_KEYS = ("version", "frame_id", "named_places", "routes")
_PLACE_KEYS = ("x", "y", "z", "yaw", "yaw_deg", "frame_id")
_TOKEN = re.compile(r"^(~|[A-Za-z_][A-Za-z0-9_]*|\{[A-Za-z_][A-Za-z0-9_]*\})$")
_SAMPLE_VALUES = {"string": "text", "int": 1, "float": 0.5, "bool": True}


def _msg_class(path: str) -> type:
    """The message class named ``package.msg.Class`` (imported on first use)."""
    module_name, _, class_name = path.rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def topic_name_problem(topic: Any) -> str | None:
    """Why ``topic`` is not a valid ROS 2 topic name (absolute, relative or ``~/``), or None."""
    if not isinstance(topic, str) or not topic:
        return f"topic must be a non-empty string, got {topic!r}"
    if topic.endswith("/") and topic != "/":
        return f"topic '{topic}' must not end with '/'"
    if topic == "/":
        return "topic '/' has no name"
    body = topic[1:] if topic.startswith("/") else topic
    tokens = body.split("/")
    for i, token in enumerate(tokens):
        if not token:
            return f"topic '{topic}' has an empty token ('//')"
        if token == "~" and (i != 0 or topic.startswith("/")):
            return f"topic '{topic}' may only start with '~'"
        if not _TOKEN.match(token):
            return f"topic '{topic}': token '{token}' must be letters, digits and '_' and must not start with a digit"
    return None


def _spec_of(registry: Any, name: str) -> Any:
    try:
        return registry.by_name(name)
    except KeyError:
        return None


def _call_text(function: str, args: Mapping[str, Any]) -> str:
    inner = ", ".join(f"{k}={v!r}" for k, v in args.items())
    return f"{function}({inner})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- the table
class RoutingTable:
    """Validated routes per function and the named places; see the module docstring."""

    def __init__(
        self,
        routes: Mapping[str, Iterable[Route]],
        places: Mapping[str, NamedPlace],
        *,
        frame_id: str = "map",
        source: str = "routing",
    ) -> None:
        """Prefer :meth:`from_dict`, which validates; this stores what it is given."""
        self._routes = {name: tuple(rs) for name, rs in routes.items()}
        self.places = dict(places)
        self.frame_id = frame_id
        self.source = source

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_file(cls, path: str | Path, registry: RegistryLike) -> RoutingTable:
        """Read and validate a routing YAML file (see :meth:`from_dict`)."""
        import yaml

        path = Path(path)
        try:
            data = yaml.safe_load(read_config_text(path))
        except OSError as e:
            raise RoutingError([f"cannot read the file: {e}"], str(path)) from e
        except yaml.YAMLError as e:
            raise RoutingError([f"not valid YAML: {e}"], str(path)) from e
        return cls.from_dict(data if data is not None else {}, registry, source=str(path))

    @classmethod
    def from_dict(cls, data: Any, registry: RegistryLike, *, source: str = "routing") -> RoutingTable:
        """Build a table from parsed YAML, checked against ``registry``.

        Raises :class:`RoutingError` listing every problem found (not just the first).
        """
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise RoutingError([f"expected a mapping at the top level, got {type(data).__name__}"], source)
        for key in data:
            if key not in _TOP_LEVEL_KEYS:
                problems.append(f"unknown top-level key '{key}' (expected: {', '.join(_TOP_LEVEL_KEYS)})")
        if data.get("version", 1) != 1:
            problems.append(f"version {data.get('version')!r} is not supported (expected 1)")
        frame_id = data.get("frame_id", "map")
        if not isinstance(frame_id, str) or not frame_id:
            problems.append(f"frame_id must be a non-empty string, got {frame_id!r}")
            frame_id = "map"
        places = cls._parse_places(data.get("named_places") or {}, problems)
        routes = cls._parse_routes(data.get("routes") or {}, registry, places, problems)
        types_by_topic: dict[str, set[str]] = {}
        for route in (r for rs in routes.values() for r in rs):
            types_by_topic.setdefault(route.topic, set()).add(ROUTE_KINDS[route.kind].msg_type)
        for topic, types in types_by_topic.items():
            if len(types) > 1:
                problems.append(
                    f"topic '{topic}' is used with several message types: {', '.join(sorted(types))}"
                )
        if problems:
            raise RoutingError(problems, source)
        table = cls(routes, places, frame_id=frame_id, source=source)
        log.debug("routing table from %s: %s", source, table.summary())
        return table

    @staticmethod
    def _parse_places(raw: Any, problems: list[str]) -> dict[str, NamedPlace]:
        if not isinstance(raw, Mapping):
            problems.append(
                f"named_places must be a mapping of name -> {{x, y, yaw}}, got {type(raw).__name__}"
            )
            return {}
        places: dict[str, NamedPlace] = {}
        for name, entry in raw.items():
            where = f"named_places.{name}"
            if not isinstance(entry, Mapping):
                problems.append(f"{where} must be a mapping with x and y, got {entry!r}")
                continue
            bad_keys = [k for k in entry if k not in _PLACE_KEYS]
            if bad_keys:
                problems.append(f"{where}: unknown keys {bad_keys} (expected: {', '.join(_PLACE_KEYS)})")
            values: dict[str, float] = {}
            for key in ("x", "y", "z", "yaw", "yaw_deg"):
                if key not in entry:
                    continue
                number = _number(entry[key])
                if number is None:
                    problems.append(f"{where}.{key} must be a finite number, got {entry[key]!r}")
                else:
                    values[key] = number
            for key in ("x", "y"):
                if key not in entry:
                    problems.append(f"{where} has no {key}")
            if "yaw" in entry and "yaw_deg" in entry:
                problems.append(f"{where} gives both yaw and yaw_deg; give one")
            frame = entry.get("frame_id", "")
            if not isinstance(frame, str):
                problems.append(f"{where}.frame_id must be a string, got {frame!r}")
                frame = ""
            yaw = values.get("yaw", math.radians(values.get("yaw_deg", 0.0)))
            places[str(name)] = NamedPlace(
                str(name), values.get("x", 0.0), values.get("y", 0.0), values.get("z", 0.0), yaw, frame
            )
        return places

    @classmethod
    def _parse_routes(
        cls, raw: Any, registry: RegistryLike, places: Mapping[str, NamedPlace], problems: list[str]
    ) -> dict[str, tuple[Route, ...]]:
        if not isinstance(raw, Mapping):
            problems.append(
                f"routes must be a mapping of function name -> route(s), got {type(raw).__name__}"
            )
            return {}
        routes: dict[str, tuple[Route, ...]] = {}
        for function, entries in raw.items():
            function = str(function)
            spec = None
            if function != WILDCARD:
                spec = _spec_of(registry, function)
                if spec is None:
                    problems.append(
                        f"routes.{function}: unknown function '{function}' (not in the function registry)"
                    )
                    continue
            if isinstance(entries, Mapping):
                entries = [entries]
            if not isinstance(entries, list) or not entries:
                problems.append(f"routes.{function} must be a route mapping or a non-empty list of them")
                continue
            parsed = []
            for i, entry in enumerate(entries):
                where = f"routes.{function}" + (f"[{i}]" if len(entries) > 1 else "")
                route = cls._parse_route(function, spec, entry, places, where, problems)
                if route is not None:
                    parsed.append(route)
            routes[function] = tuple(parsed)
        return routes

    @staticmethod
    def _parse_route(
        function: str,
        spec: Any,
        entry: Any,
        places: Mapping[str, NamedPlace],
        where: str,
        problems: list[str],
    ) -> Route | None:
        if not isinstance(entry, Mapping):
            problems.append(f"{where} must be a mapping with kind and topic, got {entry!r}")
            return None
        kind_name = entry.get("kind")
        kind = ROUTE_KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            problems.append(f"{where}: unknown message kind {kind_name!r} (known: {', '.join(ROUTE_KINDS)})")
            return None
        allowed = ("kind", *kind.required, *kind.optional)
        before = len(problems)
        extra = [k for k in entry if k not in allowed]
        if extra:
            problems.append(
                f"{where}: unknown keys {extra} for kind '{kind_name}' (allowed: {', '.join(allowed)})"
            )
        missing = [k for k in kind.required if k not in entry]
        if missing:
            problems.append(f"{where}: kind '{kind_name}' needs {', '.join(missing)}")
            return None
        topic = entry["topic"]
        topic_problem = topic_name_problem(topic)
        if topic_problem:
            problems.append(f"{where}: {topic_problem}")
        args = {a.name: a for a in spec.args} if spec is not None else {}
        route = Route(
            function=function,
            kind=kind_name,
            topic=str(topic),
            argument=str(entry.get("argument", "")),
            template=str(entry.get("template", "")),
            frame_id=str(entry.get("frame_id", "")),
        )
        if kind_name in ("float32", "pose_stamped"):
            if function == WILDCARD:
                problems.append(
                    f"{where}: kind '{kind_name}' reads an argument, so it cannot route every call ('*')"
                )
                return None
            arg = args.get(route.argument)
            if arg is None:
                problems.append(
                    f"{where}: function '{function}' has no argument '{route.argument}' "
                    f"(its arguments: {', '.join(args) or 'none'})"
                )
            elif kind_name == "float32" and arg.type not in ("float", "int"):
                problems.append(f"{where}: float32 needs a numeric argument; '{arg.name}' is {arg.type}")
            elif kind_name == "pose_stamped":
                if arg.type == "enum":
                    missing_places = [v for v in (arg.values or ()) if v not in places]
                    if missing_places:
                        problems.append(
                            f"{where}: named_places has no entry for {function}'s {arg.name} values "
                            f"{missing_places}"
                        )
                elif arg.type == "string":
                    log.info("%s: '%s' is free text; unknown places fail when routed", where, arg.name)
                else:
                    problems.append(
                        f"{where}: pose_stamped needs an enum or string argument; '{arg.name}' is {arg.type}"
                    )
        if kind_name == "string":
            RoutingTable._check_template(route, args, where, problems)
        return route if len(problems) == before else None

    @staticmethod
    def _check_template(route: Route, args: Mapping[str, Any], where: str, problems: list[str]) -> None:
        template = route.template
        before = len(problems)
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
        except ValueError as e:
            problems.append(f"{where}: template {template!r} is not a valid format string: {e}")
            return
        known = [*args, *RESERVED_FIELDS]
        for field in fields:
            if field == "" or field.isdigit():
                problems.append(f"{where}: template {template!r} uses a positional field; name an argument")
            elif not field.isidentifier():
                problems.append(
                    f"{where}: template field '{{{field}}}' uses attribute or index access, which is not allowed"
                )
            elif field not in known:
                what = "every call" if route.function == WILDCARD else f"function '{route.function}'"
                problems.append(
                    f"{where}: template names '{{{field}}}', which {what} does not have "
                    f"(available: {', '.join(known)})"
                )
        if len(problems) > before:
            return
        # Dry run with a typical value per argument type: catches format specs that cannot apply.
        sample = {"function": route.function, "call": f"{route.function}()"}
        for name, arg in args.items():
            values = getattr(arg, "values", None) or ()
            sample[name] = (
                values[0] if arg.type == "enum" and values else _SAMPLE_VALUES.get(arg.type, "text")
            )
        try:
            template.format(**sample)
        except (ValueError, TypeError, KeyError, IndexError) as e:
            problems.append(f"{where}: template {template!r} does not format the arguments: {e}")

    # ---------------------------------------------------------------- queries
    def routes_for(self, function: str) -> tuple[Route, ...]:
        """The routes a call of ``function`` takes (its own, then the ``*`` ones)."""
        return self._routes.get(function, ()) + (
            self._routes.get(WILDCARD, ()) if function != WILDCARD else ()
        )

    def functions(self) -> tuple[str, ...]:
        """Function names with their own routes (``*`` included when present)."""
        return tuple(self._routes)

    def topics(self) -> list[tuple[str, type]]:
        """Distinct ``(topic, message class)`` pairs the table publishes, in file order."""
        seen: dict[tuple[str, str], None] = {}
        for routes in self._routes.values():
            for route in routes:
                seen.setdefault((route.topic, ROUTE_KINDS[route.kind].msg_type), None)
        return [(topic, _msg_class(path)) for topic, path in seen]

    def summary(self) -> str:
        """One line per route, e.g. ``stop -> /cmd_vel (zero_twist)``, joined by '; '."""
        return (
            "; ".join(
                f"{r.function} -> {r.topic} ({r.kind})" for routes in self._routes.values() for r in routes
            )
            or "no routes"
        )

    # ---------------------------------------------------------------- building messages
    def route(self, call: CallLike) -> list[tuple[str, Any]]:
        """The ``(topic, message)`` pairs for a decided call; empty when it has no routes.

        Pure: nothing is published. Raises :class:`RoutingError` when the call lacks a
        routed argument, a float32 argument is not a number, or a free-text place is
        not in ``named_places``.
        """
        routes = self.routes_for(call.function)
        if not routes:
            return []
        args = {a.name: a.value for a in call.args}
        out = []
        for route in routes:
            out.append((route.topic, self._build(route, call.function, args)))
        return out

    def _build(self, route: Route, function: str, args: Mapping[str, Any]) -> Any:
        msg_class = _msg_class(ROUTE_KINDS[route.kind].msg_type)
        where = f"route {function} -> {route.topic}"
        if route.kind in ("float32", "pose_stamped") and route.argument not in args:
            raise RoutingError([f"{where}: the call has no argument '{route.argument}'"], self.source)
        if route.kind == "zero_twist":
            return msg_class()  # every field of a new Twist is 0.0
        if route.kind == "zero_twist_stamped":
            msg = msg_class()  # twist all 0.0; the node stamps the header when it publishes
            msg.header.frame_id = route.frame_id or "base_link"
            return msg
        if route.kind == "float32":
            value = _number(args[route.argument])
            if value is None:
                raise RoutingError(
                    [
                        f"{where}: argument '{route.argument}' = {args[route.argument]!r} is not a finite number"
                    ],
                    self.source,
                )
            return msg_class(data=value)
        if route.kind == "pose_stamped":
            place = self.places.get(str(args[route.argument]))
            if place is None:
                raise RoutingError(
                    [f"{where}: no named place '{args[route.argument]}' (known: {', '.join(self.places)})"],
                    self.source,
                )
            msg = msg_class()
            msg.header.frame_id = place.frame_id or route.frame_id or self.frame_id
            msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = place.x, place.y, place.z
            # Rotation about z by yaw: q = (0, 0, sin(yaw/2), cos(yaw/2)).
            msg.pose.orientation.z = math.sin(place.yaw / 2.0)
            msg.pose.orientation.w = math.cos(place.yaw / 2.0)
            return msg
        fields = {"function": function, "call": _call_text(function, args), **args}
        try:
            text = route.template.format(**fields)
        except (KeyError, ValueError, TypeError, IndexError) as e:
            raise RoutingError([f"{where}: template {route.template!r} failed: {e}"], self.source) from e
        return msg_class(data=text)
