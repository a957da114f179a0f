"""Function registry: the shipped YAML, round trips, allowlists, and file:line validation errors."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from octopus_ros.functions import (
    ArgSpec,
    FunctionRegistry,
    FunctionSpec,
    RegistryError,
    load_default_registry,
)
from octopus_ros.functions.testing import all_types_registry, all_types_registry_dict

EXPECTED = {
    0: ("pick_up", ["object:string"]),
    1: ("place", ["object:string", "location:enum"]),
    2: ("navigate_to", ["place:enum"]),
    3: ("stop", []),
    4: ("take_photo", []),
    5: ("recycle", ["item:string", "bin:enum"]),
    6: ("water_plant", []),
    7: ("feed_pet", ["pet:enum"]),
    8: ("find_item", ["item:string"]),
    9: ("describe_scene", []),
    10: ("send_message", ["contact:enum", "text:string"]),
    11: ("set_speed", ["value:float"]),
    12: ("no_action", []),
}


@pytest.fixture(scope="module")
def shipped() -> FunctionRegistry:
    return load_default_registry()


def test_shipped_registry_has_the_fixed_tokens(shipped):
    assert shipped.num_tokens == 13 and len(shipped) == 13
    for token, (name, args) in EXPECTED.items():
        spec = shipped.by_token(token)
        assert spec is not None and spec.name == name
        assert [f"{a.name}:{a.type}" for a in spec.args] == args
        assert spec.enabled
        assert spec.description["en"] and spec.description["zh"], name
        assert shipped.by_name(name) is spec
    assert [s.token for s in shipped.functions] == list(range(13))
    assert shipped.decline_function.name == "no_action"


def test_shipped_argument_details(shipped):
    place = shipped.by_name("place")
    assert place.args[1].values == ("table", "shelf", "counter", "floor", "box")
    assert shipped.by_name("navigate_to").args[0].values == (
        "kitchen",
        "living_room",
        "bedroom",
        "bathroom",
        "office",
        "charging_dock",
        "front_door",
    )
    assert shipped.by_name("recycle").args[1].values == ("recycling", "compost", "trash")
    assert shipped.by_name("feed_pet").args[0].values == ("dog", "cat")
    assert shipped.by_name("send_message").args[0].values == ("mom", "dad", "alice", "bob", "office")
    assert shipped.by_name("send_message").args[1].max_length == 48
    assert shipped.by_name("pick_up").args[0].max_length == 32
    speed = shipped.by_name("set_speed").args[0]
    assert (speed.min, speed.max) == (0.0, 1.0) and isinstance(speed.min, float)


def test_round_trips(shipped, tmp_path):
    assert FunctionRegistry.from_dict(shipped.to_dict()) == shipped
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(shipped.to_dict(), allow_unicode=True), encoding="utf-8")
    assert FunctionRegistry.from_yaml(path) == shipped
    other = all_types_registry()
    assert FunctionRegistry.from_dict(other.to_dict()) == other
    assert FunctionRegistry(other.functions) == other
    assert other != shipped


def test_lookups_and_enabled():
    reg = all_types_registry()
    assert reg.by_name("nope") is None and reg.by_token(6) is None and reg.by_token(99) is None
    assert reg.num_tokens == 8  # token 6 is a gap
    assert "quiet" in reg and "quiet" not in {s.name for s in reg.enabled()}
    assert [s.token for s in reg.functions] == sorted(s.token for s in reg.functions)


def test_allowed_names():
    reg = all_types_registry()
    everything = {"grab", "move", "count", "tune", "nothing", "wave"}
    assert reg.allowed_names(None) == everything
    assert reg.allowed_names(()) == everything  # the node's "empty = every enabled function"
    assert reg.allowed_names(["grab"]) == {"grab", "nothing"}  # decline always allowed
    assert reg.allowed_names(["grab", "quiet"]) == {"grab", "nothing"}  # disabled stays out
    with pytest.raises(ValueError, match="unknown functions"):
        reg.allowed_names(["grab", "fly"])


def test_describe(shipped):
    en = shipped.describe("en")
    assert en.splitlines()[0] == "<nexa_0> pick_up(object: string<=32): Pick up an object."
    assert "enum{table|shelf|counter|floor|box}" in en and "float[0.0..1.0]" in en
    assert "拿起一个物体" in shipped.describe("zh")
    assert shipped.describe("fr") == en  # English fallback
    plain = shipped.describe("en", allowlist=["stop"], tokens=False)
    assert plain.splitlines() == [
        "stop(): Stop all motion immediately.",
        "no_action(): No function fits the request, or the request was not understood.",
    ]


def test_direct_construction_validates():
    with pytest.raises(RegistryError, match="min/max"):
        ArgSpec("x", "string", min=1)
    with pytest.raises(RegistryError, match="greater than max"):
        ArgSpec("x", "int", min=2, max=1)
    spec = FunctionSpec("a", 0, decline=True, description={"en": "a"})
    with pytest.raises(RegistryError, match="token 0 is already used"):
        FunctionRegistry([spec, FunctionSpec("b", 0, description={"en": "b"})])
    assert ArgSpec("x", "string").max_length == 48


# ----------------------------------------------------------------------------- bad files
HEADER = """\
version: 1
functions:
  - name: nothing
    token: 0
    decline: true
    description: {en: nothing fits}
"""

BAD = {
    "duplicate token": (
        """
        - name: a
          token: 1
          description: {en: a}
        - name: b     # <-
          token: 1
          description: {en: b}
        """,
        "token 1 is already used by 'a' (line 7)",
    ),
    "duplicate name": (
        """
        - name: a
          token: 1
          description: {en: a}
        - name: a     # <-
          token: 2
          description: {en: a}
        """,
        "duplicate name",
    ),
    "unknown type": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - name: x   # <-
              type: str
        """,
        "unknown type 'str'",
    ),
    "min > max": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: int, min: 5, max: 1}   # <-
        """,
        "min 5 is greater than max 1",
    ),
    "missing max": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: float, min: 0.5}   # <-
        """,
        "need both min and max",
    ),
    "empty enum": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: enum, values: []}   # <-
        """,
        "non-empty list of values",
    ),
    "enum with a quote": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: enum, values: ["it's"]}   # <-
        """,
        "without quotes",
    ),
    "enum of booleans": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: enum, values: [yes, no]}   # <-
        """,
        "must be a string (quote it in YAML)",
    ),
    "bad function name": (
        """
        - name: Pick-Up   # <-
          token: 1
          description: {en: a}
        """,
        "must match [a-z][a-z0-9_]*",
    ),
    "bad argument name": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: 2x, type: bool}   # <-
        """,
        "argument name '2x'",
    ),
    "second decline": (
        """
        - name: a     # <-
          token: 1
          decline: true
          description: {en: a}
        """,
        "exactly one function must have decline: true, found 2",
    ),
    "decline with args": (
        None,
        "the decline function must take no arguments",
    ),
    "unknown function key": (
        """
        - name: a     # <-
          token: 1
          descripton: {en: a}
        """,
        "unknown key(s) ['descripton']",
    ),
    "unknown argument key": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - name: x   # <-
              type: string
              maxlength: 5
        """,
        "unknown key(s) ['maxlength']",
    ),
    "max_length on an int": (
        """
        - name: a
          token: 1
          description: {en: a}
          args:
            - {name: x, type: int, min: 0, max: 3, max_length: 4}   # <-
        """,
        "max_length is only valid for string",
    ),
    "negative token": (
        """
        - name: a     # <-
          token: -1
          description: {en: a}
        """,
        "token must be an integer >= 0",
    ),
    "missing token": (
        """
        - name: a     # <-
          description: {en: a}
        """,
        "missing required key 'token'",
    ),
    "no English description": (
        """
        - name: a     # <-
          token: 1
          description: {zh: 一}
        """,
        "needs at least an English",
    ),
    "duplicate YAML key": (
        """
        - name: a
          token: 1
          token: 2     # <-
          description: {en: a}
        """,
        "duplicate key 'token' (first on line 8)",
    ),
    "YAML syntax": (
        """
        - name: a
          token: [1     # <-
        """,
        "invalid YAML",
    ),
}


def _bad_yaml(tmp_path, name):
    body, message = BAD[name]
    if body is None:  # the decline function itself with args
        text = (
            HEADER.replace("name: nothing\n", "name: nothing  # <-\n") + "    args: [{name: x, type: bool}]\n"
        )
    else:
        text = HEADER + textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")
    if name == "YAML syntax":
        marked = len(text.splitlines()) + 1  # the parser notices at end of input
    else:
        marked = next(i for i, line in enumerate(text.splitlines(), 1) if "# <-" in line)
    path = tmp_path / f"{name.replace(' ', '_')}.yaml"
    path.write_text(text, encoding="utf-8")
    return path, marked, message


@pytest.mark.parametrize("name", sorted(BAD))
def test_errors_name_file_and_line(tmp_path, name):
    path, line, message = _bad_yaml(tmp_path, name)
    with pytest.raises(RegistryError) as info:
        FunctionRegistry.from_yaml(path)
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: "), text
    assert message in text, text
    assert isinstance(info.value, ValueError)


def test_top_level_errors(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("version: 2\nfunctions: []\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"f\.yaml:1: version: must be 1"):
        FunctionRegistry.from_yaml(path)
    path.write_text("version: 1\nfunctions: []\nextra: 3\n", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"f\.yaml:1: unknown key\(s\) \['extra'\]"):
        FunctionRegistry.from_yaml(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(RegistryError, match=r"f\.yaml:1: expected a mapping"):
        FunctionRegistry.from_yaml(path)
    with pytest.raises(RegistryError, match="cannot read"):
        FunctionRegistry.from_yaml(tmp_path / "missing.yaml")
    data = all_types_registry_dict()
    data["functions"][5]["decline"] = False
    with pytest.raises(RegistryError, match=r"^<dict>: functions: exactly one function .* found 0"):
        FunctionRegistry.from_dict(data)
