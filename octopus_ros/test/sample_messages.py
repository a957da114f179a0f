"""Fully populated sample messages shared by the round-trip and cross-process tests.

Every field holds a non-default value (floats exactly representable in float32),
so a field lost or garbled in transit is caught.
"""

from builtin_interfaces.msg import Duration, Time
from octopus_msgs.msg import Argument, FunctionCall, Outcome
from std_msgs.msg import Header


def sample_function_call() -> FunctionCall:
    return FunctionCall(
        header=Header(stamp=Time(sec=1_763_800_000, nanosec=123_456_789), frame_id="camera_optical_frame"),
        request_id="utt-0042",
        source=FunctionCall.SOURCE_UTTERANCE,
        function_name="place",
        function_token=1,
        arguments=[
            Argument(name="object", type=Argument.TYPE_STRING, value="red cup", string_value="red cup"),
            Argument(name="location", type=Argument.TYPE_ENUM, value="shelf", string_value="shelf"),
            Argument(name="count", type=Argument.TYPE_INT, value="3", int_value=3, float_value=3.0),
            Argument(name="speed", type=Argument.TYPE_FLOAT, value="0.25", float_value=0.25),
            Argument(name="gentle", type=Argument.TYPE_BOOL, value="True", bool_value=True),
        ],
        confidence=0.8125,
        language="zh",
        utterance="把红色杯子放到架子上",
        raw_output="<nexa_1>('red cup', 'shelf')<nexa_end>",
        image_age=Duration(sec=0, nanosec=87_000_000),
        inference_latency=Duration(sec=0, nanosec=12_500_000),
    )


def sample_outcome() -> Outcome:
    return Outcome(
        header=Header(stamp=Time(sec=1_763_800_001, nanosec=5), frame_id="camera_optical_frame"),
        request_id="utt-0043",
        code=Outcome.NO_FRESH_IMAGE,
        code_name="NO_FRESH_IMAGE",
        reason="newest image is 2.31 s old (max_image_age 1.00 s)",
        utterance="pick up the red cup",
        function_name="pick_up",
        confidence=0.5,
        latency=Duration(sec=0, nanosec=1_500_000),
    )
