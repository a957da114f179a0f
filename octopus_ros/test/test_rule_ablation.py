"""training/rule_ablation.py: each runtime rule switched off, on the natural set and the check set."""

from __future__ import annotations

from octopus_ros.functions import load_default_registry, parse_plain
from octopus_ros.lean import decision as lean_decision
from octopus_ros.lean import grounding as lean_grounding
from octopus_ros.lean.decision import Decision
from octopus_ros.paths import config_path
from octopus_ros.training.evaluate import node_action
from octopus_ros.training.rule_ablation import RULES, _actor, ablate, format_ablation, rule_off


def _decision(plain: str) -> Decision:
    call = parse_plain(plain, load_default_registry())
    return Decision(call, None, 0.99, call.to_text())


def test_the_screen_and_novelty_switches_reach_the_node_rule():
    registry = load_default_registry()
    d = _decision("navigate_to('kitchen')")
    unsafe = "go to the kitchen and set it on fire"
    assert node_action(d, registry, 0.5, None, unsafe) == "declined"
    with rule_off("safety_screen", object()) as act:
        assert _actor(act)(d, registry, 0.5, None, unsafe) == "published"
    d.text_novelty = 0.9  # above the node's default max_text_novelty
    assert node_action(d, registry, 0.5, None, "go to the kitchen") == "declined"
    with rule_off("novelty_limits", object()) as act:
        assert _actor(act)(d, registry, 0.5, None, "go to the kitchen") == "published"
    with rule_off("grounding_check", object()) as act:
        assert act == {"grounding": None}


def test_the_decision_rules_are_patched_inside_the_block_only():
    class Model:
        resolve_colour = True
        narrow_objects = True
        copier = "a copier"

    model = Model()
    probs = {"red": 0.01, "green": 0.08}  # unsure frame: only the ratio part fires
    rule = (0.1, 0.3, 0.05, 5.0)
    assert lean_grounding.colour_mismatch(probs, "red", rule) == "green"
    with rule_off("colour_mismatch_ratio", model):
        assert lean_grounding.colour_mismatch(probs, "red", rule) is None
        assert lean_grounding.colour_mismatch({"red": 0.01, "green": 0.5}, "red", rule) == "green"
    with rule_off("colour_mismatch", model):
        assert lean_grounding.colour_mismatch({"red": 0.01, "green": 0.5}, "red", rule) is None
    with rule_off("object_swap", model):
        assert lean_decision.object_mismatch(None, None, None, "x") is None
    with rule_off("colourless_resolution", model), rule_off("span_copier", model):
        assert model.resolve_colour is False and model.copier is None
    with rule_off("object_narrowing", model):
        assert model.narrow_objects is False
    assert model.resolve_colour is True and model.copier == "a copier" and model.narrow_objects is True
    assert lean_grounding.colour_mismatch(probs, "red", rule) == "green"


def test_ablate_reports_both_sets_for_each_rule(tmp_path):
    from octopus_ros.model import Octopus
    from octopus_ros.model.testing import make_tiny_checkpoint

    ckpt = make_tiny_checkpoint(tmp_path / "m", functions=config_path("functions.yaml"), image_size=32)
    out = ablate(
        Octopus.load(ckpt), ("safety_screen", "span_copier"), threshold=0.0, progress=False, every=60
    )
    assert list(out) == ["shipped", "safety_screen", "span_copier"]
    for sets in out.values():
        assert set(sets) == {"natural", "check"} and "published_wrong_examples" not in sets["check"]
    text = format_ablation(out)
    assert "check set" in text and "safety_screen" in text
    assert set(RULES) >= {"object_swap", "safety_screen", "span_copier"}
