"""The node's ``colour_check`` parameter: the setting's rule (lean/grounding.colour_check_rule), the
parameter refusing bad values, and configure giving both models' heads the rule."""

from __future__ import annotations

import math

import pytest

from octopus_ros.lean.grounding import colour_check_rule, colour_mismatch

HEAD = (0.1, 0.3, 0.05, 100.0)  # the bundled heads' rule (grounding.json)


def test_settings_mean_the_head_rule_none_or_two_numbers():
    assert colour_check_rule("", HEAD) == HEAD and colour_check_rule("head", HEAD) == HEAD
    assert colour_check_rule(" Head ", None) is None  # a head without a rule keeps none
    assert colour_check_rule("none", HEAD) is None and colour_check_rule("off", HEAD) is None
    assert colour_check_rule("0.2,0.3", HEAD) == (0.2, 0.3, 0.05, 100.0)  # the ratio branch is kept
    below, at_least, ratio, times = colour_check_rule("0.3, 0.2", None)
    assert (below, at_least) == (0.3, 0.2) and math.isinf(ratio) and math.isinf(times)
    # what the stricter rule changes: a named colour at 0.15 beside another at 0.6
    probs = {"red": 0.15, "blue": 0.6}
    assert colour_mismatch(probs, "red", HEAD) is None
    assert colour_mismatch(probs, "red", colour_check_rule("0.2,0.3", HEAD)) == "blue"


@pytest.mark.parametrize("bad", ["strict", "0.2", "0.2,0.3,0.4", "a,b", "1.5,0.3", "0.2,-0.1"])
def test_bad_settings_are_refused_by_name(bad):
    from octopus_ros.ros import params as P

    with pytest.raises(ValueError, match="colour_check"):
        colour_check_rule(bad, HEAD)
    with pytest.raises(P.ParameterValueError, match="colour_check"):
        P.check_value("colour_check", bad)
    assert P.check_value("colour_check", " 0.2,0.3 ") == "0.2,0.3"


@pytest.mark.slow
def test_configure_gives_both_heads_the_rule(rclpy_context):
    from rclpy.lifecycle import TransitionCallbackReturn
    from rclpy.parameter import Parameter

    from octopus_ros.ros.octopus_node import OctopusNode

    node = OctopusNode(
        context=rclpy_context,
        parameter_overrides=[
            Parameter("image_topic", value=""),
            Parameter("routing_file", value="none"),
            Parameter("prefetch_rate", value=0.0),
            Parameter("colour_check", value="0.2,0.3"),
        ],
    )
    try:
        bad = node.set_parameters([Parameter("colour_check", value="strict")])[0]
        assert not bad.successful and "colour_check" in bad.reason
        assert node.trigger_configure() == TransitionCallbackReturn.SUCCESS
        assert node._second is not None  # the bundled model's second opinion
        for model in (node._model, node._second):
            assert model.grounding.colour_mismatch == (0.2, 0.3, 0.05, 100.0)
    finally:
        node.destroy_node()
