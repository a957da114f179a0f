"""octopus_msgs: definitions are valid for third-party tools, and messages round-trip."""

from pathlib import Path

import pytest
from octopus_msgs.msg import Argument, FunctionCall, Outcome
from octopus_msgs.srv import Ask
from rclpy.serialization import deserialize_message, serialize_message

from octopus_ros.ros.msg_dict import fill_message, message_to_dict

from conftest import REPO_ROOT
from sample_messages import sample_function_call, sample_outcome

MSGS_DIR = REPO_ROOT / "octopus_msgs"
OUTCOME_CODES = [
    "OK",
    "REJECTED_LOW_CONFIDENCE",
    "NO_FRESH_IMAGE",
    "INVALID_INPUT",
    "NOT_ALLOWED",
    "BUSY",
    "TIMEOUT",
    "MODEL_ERROR",
]


@pytest.mark.parametrize("make", [sample_function_call, sample_outcome])
def test_cdr_round_trip_keeps_every_field(make):
    msg = make()
    data = serialize_message(msg)
    back = deserialize_message(data, type(msg))
    assert back == msg
    assert message_to_dict(back) == message_to_dict(msg)


def test_dict_round_trip_rebuilds_nested_sequences():
    msg = sample_function_call()
    rebuilt = fill_message(FunctionCall(), message_to_dict(msg))
    assert rebuilt == msg
    assert isinstance(rebuilt.arguments[0], Argument)


def test_outcome_codes_are_distinct_constants():
    values = [getattr(Outcome, name) for name in OUTCOME_CODES]
    assert len(set(values)) == len(values)
    assert Outcome.OK == 0  # default-constructed outcome is never mistaken for a failure code name


def test_ask_service_round_trip():
    request = Ask.Request(text="recycle this", request_id="r1", publish=True)
    request.compressed_image.format = "jpeg"
    request.compressed_image.data = b"\xff\xd8\xff\xe0fake"
    back = deserialize_message(serialize_message(request), Ask.Request)
    assert back == request
    assert Ask.Request().publish is False  # the documented default
    response = Ask.Response(call=sample_function_call(), outcome=sample_outcome())
    assert deserialize_message(serialize_message(response), Ask.Response) == response


def _definition_files() -> list[Path]:
    return sorted(MSGS_DIR.glob("msg/*.msg")) + sorted(MSGS_DIR.glob("srv/*.srv"))


def test_every_interface_file_is_listed_in_cmake():
    cmake = (MSGS_DIR / "CMakeLists.txt").read_text()
    for path in _definition_files():
        assert f'"{path.parent.name}/{path.name}"' in cmake, path


def _kilted_store_with_our_messages():
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.ROS2_KILTED)
    types = {}
    for path in sorted(MSGS_DIR.glob("msg/*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"octopus_msgs/msg/{path.stem}"))
    store.register(types)
    return store


@pytest.mark.parametrize("path", _definition_files(), ids=lambda p: p.name)
def test_definitions_parse_with_rosbags(path):
    """rosbags (a third-party bag library) parses each definition, so bag tools can read our topics."""
    from rosbags.typesys import get_types_from_msg

    typename = f"octopus_msgs/{path.parent.name}/{path.stem}"
    if path.suffix == ".srv":
        request, response = path.read_text().split("\n---\n")
        types = {
            **get_types_from_msg(request, typename + "_Request"),
            **get_types_from_msg(response, typename + "_Response"),
        }
    else:
        types = get_types_from_msg(path.read_text(), typename)
    assert types, path
    # Register with the other definitions so cross-references (Argument[] in FunctionCall) resolve.
    store = _kilted_store_with_our_messages()
    store.register(types)
    for name in types:
        assert name in store.fielddefs


def test_rosbags_cdr_matches_rclpy():
    """Bytes written by rclpy decode with rosbags' independent CDR implementation."""
    store = _kilted_store_with_our_messages()
    msg = sample_function_call()
    decoded = store.deserialize_cdr(serialize_message(msg), "octopus_msgs/msg/FunctionCall")
    assert decoded.function_name == msg.function_name
    assert decoded.utterance == msg.utterance
    assert decoded.header.stamp.nanosec == msg.header.stamp.nanosec
    assert [a.name for a in decoded.arguments] == [a.name for a in msg.arguments]
    assert decoded.arguments[2].int_value == 3
    assert decoded.confidence == pytest.approx(msg.confidence)
    assert decoded.inference_latency.nanosec == msg.inference_latency.nanosec
