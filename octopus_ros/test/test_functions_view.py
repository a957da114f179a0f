"""Registry: ``requires_view`` / ``view_arg`` / ``view_object`` (issue 12 item 3), file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from octopus_ros.functions import ArgValue, Call, FunctionRegistry, RegistryError, load_default_registry

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "octopus_tiny" / "functions.yaml"

# function -> (view_arg, view_object); every other function needs no view
EXPECTED_VIEW = {
    "pick_up": ("object", None),
    "place": ("object", None),
    "recycle": ("item", None),
    "water_plant": (None, "plant"),
    "feed_pet": ("pet", None),
}


@pytest.mark.parametrize("which", ["config", "bundled"])
def test_shipped_registries_declare_the_view_functions(which):
    registry = load_default_registry() if which == "config" else FunctionRegistry.from_yaml(BUNDLED)
    declared = {s.name: (s.view_arg, s.view_object) for s in registry.functions if s.requires_view}
    assert declared == EXPECTED_VIEW
    assert [s.name for s in registry.view_functions()] == list(EXPECTED_VIEW)
    # find_item's point is to search for something not (yet) in view
    assert not registry.by_name("find_item").requires_view
    assert not registry.decline_function.requires_view


def test_view_phrase_of_a_call():
    registry = load_default_registry()
    pick = registry.by_name("pick_up")
    call = Call("pick_up", pick.token, (ArgValue("object", "string", "red cup"),))
    assert pick.view_phrase(call) == "red cup"
    place = registry.by_name("place")
    call = Call(
        "place", place.token, (ArgValue("object", "string", "book"), ArgValue("location", "enum", "table"))
    )
    assert place.view_phrase(call) == "book"
    water = registry.by_name("water_plant")
    assert water.view_phrase(Call("water_plant", water.token)) == "plant"
    stop = registry.by_name("stop")
    assert stop.view_phrase(Call("stop", stop.token)) is None


def test_view_fields_survive_a_round_trip(tmp_path):
    import yaml

    registry = load_default_registry()
    path = tmp_path / "copy.yaml"
    path.write_text(yaml.safe_dump(registry.to_dict(), allow_unicode=True), encoding="utf-8")
    again = FunctionRegistry.from_yaml(path)
    assert {s.name: (s.requires_view, s.view_arg, s.view_object) for s in again.functions} == {
        s.name: (s.requires_view, s.view_arg, s.view_object) for s in registry.functions
    }
    # disabling a function keeps its declaration but drops it from view_functions()
    data = registry.to_dict()
    next(f for f in data["functions"] if f["name"] == "pick_up")["enabled"] = False
    fewer = FunctionRegistry.from_dict(data)
    assert "pick_up" not in [s.name for s in fewer.view_functions()]
    assert fewer.by_name("pick_up").requires_view


HEADER = """\
version: 1
functions:
  - name: nothing
    token: 0
    decline: true
    description: {en: nothing fits}
"""

BAD = {
    "view_arg without requires_view": (
        """
        - name: a     # <-
          token: 1
          view_arg: x
          description: {en: a}
          args: [{name: x, type: string}]
        """,
        "view_arg is only valid with requires_view: true",
    ),
    "requires_view without an object": (
        """
        - name: a     # <-
          token: 1
          requires_view: true
          description: {en: a}
          args: [{name: x, type: string}]
        """,
        "needs exactly one of view_arg",
    ),
    "both view_arg and view_object": (
        """
        - name: a     # <-
          token: 1
          requires_view: true
          view_arg: x
          view_object: cup
          description: {en: a}
          args: [{name: x, type: string}]
        """,
        "needs exactly one of view_arg",
    ),
    "view_arg not an argument": (
        """
        - name: a     # <-
          token: 1
          requires_view: true
          view_arg: thing
          description: {en: a}
          args: [{name: x, type: string}]
        """,
        "view_arg 'thing' is not an argument of a",
    ),
    "view_arg of a float": (
        """
        - name: a     # <-
          token: 1
          requires_view: true
          view_arg: x
          description: {en: a}
          args: [{name: x, type: float, min: 0, max: 1}]
        """,
        "must be a string or enum argument, not float",
    ),
    "requires_view not a bool": (
        """
        - name: a     # <-
          token: 1
          requires_view: yes please
          view_object: cup
          description: {en: a}
        """,
        "requires_view must be true or false",
    ),
    "empty view_object": (
        """
        - name: a     # <-
          token: 1
          requires_view: true
          view_object: "  "
          description: {en: a}
        """,
        "view_object must be a non-empty phrase",
    ),
    "misspelt key": (
        """
        - name: a     # <-
          token: 1
          requires_veiw: true
          description: {en: a}
        """,
        "unknown key(s) ['requires_veiw']",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_view_errors_name_file_and_line(tmp_path, name):
    body, message = BAD[name]
    text = HEADER + textwrap.indent(textwrap.dedent(body).strip("\n") + "\n", "  ")
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "# <-" in row)
    path = tmp_path / "f.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RegistryError) as info:
        FunctionRegistry.from_yaml(path)
    assert str(info.value).startswith(f"{path}:{line}: functions[1] 'a': "), str(info.value)
    assert message in str(info.value), str(info.value)


def test_the_decline_function_cannot_require_a_view(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text(
        HEADER.replace(
            "    decline: true\n", "    decline: true\n    requires_view: true\n    view_object: x\n"
        ),
        encoding="utf-8",
    )
    with pytest.raises(
        RegistryError, match=r"f\.yaml:3: functions\[0\] 'nothing': the decline function cannot"
    ):
        FunctionRegistry.from_yaml(path)
