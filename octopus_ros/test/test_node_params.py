"""octopus_node parameters: declared with descriptors, documented in config/octopus.yaml, validated."""

import yaml
from rclpy.parameter import Parameter

from octopus_ros.ros import params as P

from conftest import PACKAGE_DIR


def test_yaml_lists_every_parameter_with_its_default():
    text = (PACKAGE_DIR / "config" / "octopus.yaml").read_text()
    assert text == P.render_yaml(), (
        "regenerate: python -m octopus_ros.ros.params > octopus_ros/config/octopus.yaml"
    )
    data = yaml.safe_load(text)
    values = data["/**/octopus_node"]["ros__parameters"]
    assert list(values) == list(P.PARAMETERS)
    for name, spec in P.PARAMETERS.items():
        assert values[name] == spec.default, name


def test_node_declares_all_parameters_with_descriptions(rclpy_context):
    from octopus_ros.ros.octopus_node import OctopusNode

    node = OctopusNode(context=rclpy_context)
    try:
        for name, spec in P.PARAMETERS.items():
            assert node.has_parameter(name), name
            descriptor = node.describe_parameter(name)
            assert descriptor.description.startswith(spec.description[:20]), name
        assert node.describe_parameter("confidence_threshold").floating_point_range[0].to_value == 1.0
        params = P.read_parameters(node)
        assert params.allowed_functions == ()  # [''] means every enabled function

        # Out-of-range values are refused by the descriptor range, bad choices by the callback.
        bad = node.set_parameters([Parameter("confidence_threshold", value=1.5)])[0]
        assert not bad.successful
        bad = node.set_parameters([Parameter("precision", value="int2")])[0]
        assert not bad.successful and "precision must be one of" in bad.reason
        ok = node.set_parameters([Parameter("confidence_threshold", value=0.7)])[0]
        assert ok.successful

        # int4 is the lean runtime's precision: refused with backend torch, by name, at read time
        import pytest

        assert node.set_parameters([Parameter("precision", value="int4")])[0].successful
        with pytest.raises(P.ParameterValueError, match="precision int4 is the lean runtime's"):
            P.read_parameters(node)
        assert node.set_parameters([Parameter("backend", value="onnx")])[0].successful
        assert P.read_parameters(node).precision == "int4"
        node.set_parameters([Parameter("precision", value="fp16")])
        with pytest.raises(P.ParameterValueError, match="backend onnx takes precision fp32, int8 or int4"):
            P.read_parameters(node)
        # the lean runtime decodes constrained only: refused at configure, not on every request
        node.set_parameters(
            [Parameter("precision", value="int8"), Parameter("decode_mode", value="generate")]
        )
        with pytest.raises(
            P.ParameterValueError, match="backend onnx decodes in decode_mode constrained only"
        ):
            P.read_parameters(node)
        node.set_parameters([Parameter("backend", value="torch")])
        assert P.read_parameters(node).decode_mode == "generate"  # the torch runtime has the baselines
    finally:
        node.destroy_node()


def test_check_value_messages_name_the_parameter():
    import pytest

    with pytest.raises(P.ParameterValueError, match="device must be one of"):
        P.check_value("device", "tpu")
    with pytest.raises(P.ParameterValueError, match="speech_topic is not a valid topic"):
        P.check_value("speech_topic", "/bad topic")
    assert P.check_value("allowed_functions", ["stop", " ", "pick_up"]) == ("stop", "pick_up")


def test_publish_after_context_shutdown_is_dropped_not_raised(ros_env):
    """A result finishing while Ctrl-C shuts the context down must not raise from the engine thread.

    CI once caught this race: the standing-instruction worker published a call just after
    the signal handler had shut the context down ("publisher's context is invalid").
    """
    import pytest
    import rclpy
    from rclpy.context import Context
    from std_msgs.msg import Bool, String

    from octopus_ros.ros.octopus_node import OctopusNode

    context = Context()
    rclpy.init(context=context, domain_id=int(ros_env["ROS_DOMAIN_ID"]))
    node = OctopusNode(context=context)
    node._pubs["calls"] = node.create_publisher(String, "~/probe", 1)
    node._publish("calls", String(data="alive"))  # a live context publishes
    with pytest.raises(TypeError):  # and real publishing errors still raise
        node._publish("calls", Bool(data=True))
    rclpy.shutdown(context=context)
    node._publish("calls", String(data="late"))  # dropped with a warning, no exception
    node.destroy_node()
