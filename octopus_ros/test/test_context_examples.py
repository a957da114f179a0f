"""The node's fixed in-context examples (``context_examples``): the entry form and its errors
(runtime/context.py), the engine fixing them on the model, and the node refusing bad entries at
parameter set and at configure."""

from __future__ import annotations

import pytest

from octopus_ros.functions import FunctionRegistry
from octopus_ros.paths import config_path
from octopus_ros.runtime.context import ContextExampleError, parse_context_examples

GOOD = ["pick up the red cup => pick_up('red cup')", "去厨房 => navigate_to(place='kitchen')"]


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


def test_entries_become_canonical_pairs(registry):
    assert parse_context_examples(["", *GOOD, " "], registry) == (
        ("pick up the red cup", "<nexa_0>('red cup')<nexa_end>"),
        ("去厨房", "<nexa_2>('kitchen')<nexa_end>"),
    )
    # without a registry: the form only, the call as written
    assert parse_context_examples(["stop => stop()"]) == (("stop", "stop()"),)
    assert parse_context_examples([""]) == ()


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        (["pick up the cup pick_up('cup')"], r"context_examples\[0\] .*has no '=>'"),
        (["stop()", "=> stop()"], r"context_examples\[0\] 'stop\(\)': has no '=>'"),
        (
            ["stop => stop()", " => stop()"],
            r"context_examples\[1\] ' => stop\(\)': the utterance .* is empty",
        ),
        (["stop =>  "], r"context_examples\[0\] .*the call after '=>' is empty"),
        (["say <nexa_3> => stop()"], r"context_examples\[0\] .*utterance is not acceptable.*reserved"),
        (["x => stop()"] * 9, "has 9 entries; at most 8"),
    ],
)
def test_bad_form_is_refused_naming_the_entry(entries, match):
    with pytest.raises(ContextExampleError, match=match):
        parse_context_examples(entries)


@pytest.mark.parametrize(
    ("entry", "match"),
    [
        (
            "open the pod bay doors => open_pod_bay_doors()",
            r"\[1\] 'open the pod bay doors => .*not a valid call",
        ),
        (
            "go => navigate_to(place='moon')",
            r"\[1\] \"go => navigate_to\(place='moon'\)\".*'moon' is not one of",
        ),
        ("pick it up => pick_up(", r"\[1\] .*not a valid call"),
        ("stop => <nexa_99>()<nexa_end>", r"\[1\] .*not a valid call"),
    ],
)
def test_bad_call_is_refused_with_a_registry(registry, entry, match):
    parse_context_examples([GOOD[0], entry])  # the form is fine
    with pytest.raises(ContextExampleError, match=match):
        parse_context_examples([GOOD[0], entry], registry)


def test_an_example_outside_the_allowlist_is_refused(registry):
    assert parse_context_examples(GOOD, registry, ["pick_up", "navigate_to"]) == parse_context_examples(
        GOOD, registry
    )
    assert parse_context_examples(GOOD, registry, []) == parse_context_examples(GOOD, registry)  # all
    with pytest.raises(ContextExampleError, match=r"\[1\] .*calls 'navigate_to', which allowed_functions"):
        parse_context_examples(GOOD, registry, ["pick_up"])
    # the decline function is always allowed, so an example of declining always fits
    assert parse_context_examples(["sing a song => no_action()"], registry, ["stop"])


class _Model:
    def __init__(self):
        self.context = None

    def set_context(self, examples):
        self.context = examples


def test_engine_fixes_the_examples_on_the_model(registry):
    from octopus_ros.runtime.engine import ActionEngine, EngineConfig

    def make(model, entries):
        return ActionEngine(
            model=model,
            registry=registry,
            config=EngineConfig(context_examples=tuple(entries)),
            validate=lambda call, allowlist: None,
            on_result=lambda result: None,
        )

    model = _Model()
    make(model, GOOD)
    assert model.context == parse_context_examples(GOOD, registry)
    untouched = _Model()
    make(untouched, [])
    assert untouched.context is None
    with pytest.raises(ContextExampleError, match=r"context_examples\[0\] 'x => fly\(\)'"):
        make(_Model(), ["x => fly()"])


def test_node_refuses_bad_entries_at_set_and_at_configure(rclpy_context, tmp_path):
    from lifecycle_msgs.msg import State
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from octopus_ros.model.testing import make_tiny_checkpoint
    from octopus_ros.ros.octopus_node import OctopusNode

    tiny = make_tiny_checkpoint(tmp_path / "tiny", config_path("functions.yaml"))
    node = OctopusNode(
        context=rclpy_context,
        parameter_overrides=[
            Parameter("model_path", value=str(tiny)),
            Parameter("image_topic", value=""),
            Parameter("routing_file", value="none"),
            Parameter("prefetch_rate", value=0.0),
        ],
    )
    try:
        # unconfigured: the form is checked at once (no registry yet)
        bad = node.set_parameters([Parameter("context_examples", value=["stop", "go => stop()"])])[0]
        assert not bad.successful and "context_examples[0] 'stop': has no '=>'" in bad.reason
        # an unknown function passes the form check, and configure then fails naming it
        ok = node.set_parameters([Parameter("context_examples", value=["fly away => fly()"])])[0]
        assert ok.successful
        assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
        assert node._state_machine.current_state[0] == State.PRIMARY_STATE_UNCONFIGURED
        assert node._engine is None
        # good examples: configure succeeds and the model carries them
        assert node.set_parameters([Parameter("context_examples", value=GOOD)])[0].successful
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert [c.instruction for c in node._model.context] == ["pick up the red cup", "去厨房"]
        assert node._model.context[1].answer == "<nexa_2>('kitchen')<nexa_end>"
        # configured: a set is checked against the registry at once
        bad = node.set_parameters([Parameter("context_examples", value=[GOOD[0], "x => fly()"])])[0]
        assert not bad.successful and "context_examples[1] 'x => fly()'" in bad.reason
        assert node.get_parameter("context_examples").value == GOOD
        # the allowlist may not exclude a function the fixed examples call, nor the reverse
        bad = node.set_parameters([Parameter("allowed_functions", value=["stop"])])[0]
        assert not bad.successful and "calls 'pick_up', which allowed_functions" in bad.reason
        assert node._engine.config.allowlist == ()
        ok = node.set_parameters([Parameter("allowed_functions", value=["pick_up", "navigate_to"])])[0]
        assert ok.successful and node._engine.config.allowlist == ("pick_up", "navigate_to")
        bad = node.set_parameters([Parameter("context_examples", value=["halt => stop()"])])[0]
        assert not bad.successful and "calls 'stop', which allowed_functions" in bad.reason
    finally:
        node.destroy_node()
