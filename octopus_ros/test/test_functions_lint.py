"""functions/lint.py: a function's name word taught only as a decline is found and named."""

from __future__ import annotations

from octopus_ros.functions import FunctionRegistry, load_default_registry
from octopus_ros.functions.lint import decline_only_names


def test_the_bundled_registry_teaches_recycle_only_as_a_decline():
    [finding] = decline_only_names(load_default_registry())
    assert (finding.function, finding.word, finding.language) == ("recycle", "recycle", "en")
    assert finding.declines == ("recycle the dog",)
    assert "'recycle the dog'" in finding.describe() and "reason to" in finding.describe()


def _registry(tmp_path, water_phrasings: list[str]):
    lines = [
        "version: 1",
        "functions:",
        "  - name: water_plant",
        "    token: 0",
        "    description: {en: Water the plant.}",
        "    examples:",
        "      en:",
        *(f"        - {p}" for p in water_phrasings),
        "  - name: no_action",
        "    token: 1",
        "    decline: true",
        "    description: {en: Do nothing.}",
        "    examples:",
        "      en:",
        "        - water the cat",
        "        - tell me a joke",
    ]
    path = tmp_path / "functions.yaml"
    path.write_text("\n".join(lines) + "\n")
    return FunctionRegistry.from_yaml(path)


def test_a_name_word_some_function_trains_on_is_fine(tmp_path):
    found = decline_only_names(_registry(tmp_path, ["give the plant some water", "soak the plant"]))
    assert found == []


def test_a_name_word_only_in_a_decline_is_found(tmp_path):
    [finding] = decline_only_names(_registry(tmp_path, ["soak the plant", "give it a drink"]))
    assert (finding.function, finding.word, finding.declines) == ("water_plant", "water", ("water the cat",))
