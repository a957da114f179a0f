"""Calls and parser: canonical text, error kinds, plain/JSON mode, validation, and fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import (
    ArgValue,
    Call,
    ErrorKind,
    ParseError,
    format_float,
    load_default_registry,
    make_call,
    parse_call,
    parse_plain,
    validate_call,
)
from octopus_ros.functions.testing import all_types_registry, calls

REG = load_default_registry()
ALL = all_types_registry()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def ok(result) -> Call:
    assert isinstance(result, Call), result
    return result


def kind(result) -> str:
    assert isinstance(result, ParseError), result
    assert result.kind != ErrorKind.INTERNAL, result
    return result.kind


# ----------------------------------------------------------------------------- canonical text
def test_to_text_canonical():
    assert make_call(REG, "pick_up", "red cup").to_text() == "<nexa_0>('red cup')<nexa_end>"
    assert make_call(REG, "take_photo").to_text() == "<nexa_4>()<nexa_end>"
    assert make_call(REG, "place", "red cup", "shelf").to_text() == "<nexa_1>('red cup', 'shelf')<nexa_end>"
    assert make_call(REG, "set_speed", 1).to_text() == "<nexa_11>(1.0)<nexa_end>"
    assert make_call(REG, "set_speed", value=0.125).to_text() == "<nexa_11>(0.12)<nexa_end>"
    assert make_call(REG, "find_item", "it's a\\b").to_text() == r"<nexa_8>('it\'s a\\b')<nexa_end>"
    move = make_call(ALL, "move", -3, 0.5, True, "b c")
    assert move.to_text() == "<nexa_1>(-3, 0.5, True, 'b c')<nexa_end>"
    assert move.to_plain() == "move(-3, 0.5, True, 'b c')" == str(move)
    assert move.kwargs() == {"steps": -3, "speed": 0.5, "fast": True, "mode": "b c"}


@pytest.mark.parametrize(
    "value, text",
    [
        (0.5, "0.5"),
        (1, "1.0"),
        (0.25, "0.25"),
        (0.125, "0.12"),
        (-0.001, "0.0"),
        (2.999, "3.0"),
        (-1.5, "-1.5"),
    ],
)
def test_format_float(value, text):
    assert format_float(value) == text


def test_format_float_rejects_non_finite():
    with pytest.raises(ValueError):
        format_float(float("nan"))


def test_make_call_errors():
    with pytest.raises(ParseError) as info:
        make_call(REG, "fly")
    assert info.value.kind == "UNKNOWN_FUNCTION" and isinstance(info.value, ValueError)
    with pytest.raises(ParseError, match="ENUM_VALUE"):
        make_call(REG, "place", "cup", "roof")
    with pytest.raises(ParseError, match="ARG_COUNT"):
        make_call(REG, "place", "cup")
    with pytest.raises(ParseError, match="ARG_NAME"):
        make_call(REG, "pick_up", "cup", object="cup")
    with pytest.raises(ParseError, match="STRING_TOO_LONG"):
        make_call(REG, "pick_up", "x" * 33)
    with pytest.raises(ParseError, match="ARG_RANGE"):
        make_call(REG, "set_speed", 1.5)


# ----------------------------------------------------------------------------- parse_call
@pytest.mark.parametrize(
    "text, expected",
    [
        ("<nexa_0>('red cup')<nexa_end>", "pick_up('red cup')"),
        ("  <nexa_3>()<nexa_end>\n", "stop()"),
        ("<nexa_3>()<nexa_end></s> trailing text is ignored", "stop()"),
        ("<nexa_10>('mom', 'on my way, 5 min')<nexa_end>", "send_message('mom', 'on my way, 5 min')"),
        ("<nexa_11>(1)<nexa_end>", "set_speed(1.0)"),  # lenient: an int for a float
        ("<nexa_11>(0.125)<nexa_end>", "set_speed(0.12)"),  # value 0.125; text is canonical
        ("<nexa_8>('红色的杯子')<nexa_end>", "find_item('红色的杯子')"),
        ("<nexa_12>()<nexa_end>", "no_action()"),
    ],
)
def test_parse_call_valid(text, expected):
    assert str(ok(parse_call(text, REG))) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "EMPTY"),
        ("   \n", "EMPTY"),
        ("pick_up('cup')", "NO_FUNCTION_TOKEN"),
        ("<nexa_end>", "NO_FUNCTION_TOKEN"),
        ("<nexa_x>('cup')", "NO_FUNCTION_TOKEN"),
        ("I think <nexa_3>()<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_13>()<nexa_end>", "UNKNOWN_TOKEN"),
        ("<nexa_03>()<nexa_end>", "UNKNOWN_TOKEN"),
        ("<nexa_99999999999999999999>()<nexa_end>", "UNKNOWN_TOKEN"),
        ("<nexa_\u0663>()<nexa_end>", "NO_FUNCTION_TOKEN"),  # Arabic-Indic 3 is not <nexa_3>
        ("<nexa_3>", "NO_END"),
        ("<nexa_3>(", "NO_END"),
        ("<nexa_3>()", "NO_END"),
        ("<nexa_3>()<nexa_e", "NO_END"),
        ("<nexa_0>('red", "NO_END"),
        ("<nexa_0>('red\\", "NO_END"),
        ("<nexa_1>('red',", "NO_END"),
        ("<nexa_3>()<nexa_3>()<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_3>[]<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_1>('cup','box')<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_1>('cup',  'box')<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_0>( 'cup')<nexa_end>", "BAD_SYNTAX"),
        ('<nexa_0>("cup")<nexa_end>', "BAD_SYNTAX"),
        ("<nexa_0>('a\\nb')<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_0>('cup' 'mug')<nexa_end>", "BAD_SYNTAX"),
        ("<nexa_0>()<nexa_end>", "ARG_COUNT"),
        ("<nexa_3>('x')<nexa_end>", "ARG_COUNT"),
        ("<nexa_1>('cup')<nexa_end>", "ARG_COUNT"),
        ("<nexa_0>(cup)<nexa_end>", "ARG_TYPE"),
        ("<nexa_0>(3)<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>('0.5')<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>(nan)<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>(inf)<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>(1e-3)<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>(.5)<nexa_end>", "ARG_TYPE"),
        ("<nexa_11>(1.5)<nexa_end>", "ARG_RANGE"),
        ("<nexa_11>(-0.5)<nexa_end>", "ARG_RANGE"),
        ("<nexa_11>(" + "9" * 5000 + ")<nexa_end>", "ARG_RANGE"),
        ("<nexa_11>(" + "9" * 399 + ")<nexa_end>", "ARG_RANGE"),  # float('9'*399) is inf
        ("<nexa_2>('garage')<nexa_end>", "ENUM_VALUE"),
        ("<nexa_2>('Kitchen')<nexa_end>", "ENUM_VALUE"),
        ("<nexa_0>('" + "x" * 33 + "')<nexa_end>", "STRING_TOO_LONG"),
        ("<nexa_0>('')<nexa_end>", "BAD_STRING"),
        ("<nexa_0>('a<nexa_end>')<nexa_end>", "BAD_STRING"),
        ("<nexa_0>('tab\there')<nexa_end>", "BAD_STRING"),
    ],
)
def test_parse_call_errors(text, expected):
    assert kind(parse_call(text, REG)) == expected


def test_three_decimal_float_keeps_its_value():
    assert ok(parse_call("<nexa_11>(0.125)<nexa_end>", REG)).kwargs() == {"value": 0.125}


def test_allowlist_and_disabled():
    assert kind(parse_call("<nexa_4>()<nexa_end>", REG, allowlist=["stop"])) == "NOT_ALLOWED"
    assert ok(parse_call("<nexa_3>()<nexa_end>", REG, allowlist=["stop"])).function == "stop"
    # The decline function is always allowed: a constrained model must be able to say no.
    assert ok(parse_call("<nexa_12>()<nexa_end>", REG, allowlist=["stop"])).function == "no_action"
    assert ok(parse_call("<nexa_4>()<nexa_end>", REG, allowlist=[])).function == "take_photo"
    assert kind(parse_call("<nexa_3>()<nexa_end>", ALL)) == "DISABLED"
    assert kind(parse_call("<nexa_6>()<nexa_end>", ALL)) == "UNKNOWN_TOKEN"  # a gap
    with pytest.raises(ValueError, match="unknown functions"):
        parse_call("<nexa_3>()<nexa_end>", REG, allowlist=["fly"])


def test_kinds_compare_as_plain_strings():
    err = parse_call("<nexa_4>()<nexa_end>", REG, allowlist=["stop"])
    assert err.kind == "NOT_ALLOWED" and err.kind in {"NOT_ALLOWED", "DISABLED"}
    assert str(err).startswith("NOT_ALLOWED: ") and err.text == "<nexa_4>()<nexa_end>"
    assert parse_call(None, REG).kind == "BAD_SYNTAX"  # not even text: still no exception


def test_parse_error_pickles():
    import pickle

    err = parse_call("<nexa_13>()<nexa_end>", REG)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.kind, copy.message, copy.text, copy.position) == (
        err.kind,
        err.message,
        err.text,
        err.position,
    )
    call = ok(parse_call("<nexa_1>('cup', 'box')<nexa_end>", REG))
    assert pickle.loads(pickle.dumps(call)) == call


def test_error_position():
    err = parse_call("<nexa_1>('cup', 'roof')<nexa_end>", REG)
    assert err.kind == "ENUM_VALUE" and err.position == 16


# ----------------------------------------------------------------------------- properties
@FUZZ
@given(call=st.one_of(calls(REG), calls(ALL)))
def test_canonical_text_round_trips(call):
    registry = REG if call.function in REG and REG.by_name(call.function).token == call.token else ALL
    text = call.to_text()
    assert parse_call(text, registry) == call
    assert validate_call(call, registry) is None
    assert parse_plain(call.to_plain(), registry) == call
    assert parse_plain(text, registry) == call


@FUZZ
@given(call=calls(ALL), data=st.data())
def test_truncated_and_mutated_calls_never_raise(call, data):
    text = call.to_text()
    cut = data.draw(st.integers(0, len(text) - 1))
    assert kind(parse_call(text[:cut], ALL)) in {"EMPTY", "NO_END", "NO_FUNCTION_TOKEN"}
    at = data.draw(st.integers(0, len(text)))
    junk = data.draw(
        st.text(st.sampled_from("'\\,() <>_0-9.eaTFn\u0663\x00\"{}"), max_size=4) | st.text(max_size=3)
    )
    drop = data.draw(st.integers(0, 3))
    mutated = text[:at] + junk + text[at + drop :]
    for result in (parse_call(mutated, ALL), parse_plain(mutated, ALL)):
        if isinstance(result, Call):
            assert validate_call(result, ALL) is None
        else:
            kind(result)


@FUZZ
@given(text=st.text(max_size=80))
def test_random_text_never_raises(text):
    for parse in (parse_call, parse_plain):
        for candidate in (text, "<nexa_1>(" + text, "<nexa_0>('" + text, "{" + text):
            result = parse(candidate, ALL)
            if isinstance(result, Call):
                assert validate_call(result, ALL) is None
            else:
                kind(result)


@FUZZ
@given(
    obj=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(["function", "args", "name", "steps", "speed", "fast", "mode", "object"]),
                c,
                max_size=4,
            )
        ),
        max_leaves=8,
    )
)
def test_random_json_never_raises(obj):
    import json

    text = json.dumps(obj)
    for candidate in (text, json.dumps({"function": "move", "args": obj})):
        result = parse_plain(candidate, ALL)
        if isinstance(result, Call):
            assert validate_call(result, ALL) is None
        else:
            kind(result)


def test_hostile_json_never_raises():
    for text in [
        "[" * 100_000,
        '{"function": "set_speed", "args": {"value": ' + "9" * 5000 + "}}",
        "{" + '"a":' * 50_000,
    ]:
        kind(parse_plain(text, REG))
    big = '{"function": "set_speed", "args": {"value": ' + "9" * 400 + "}}"
    assert kind(parse_plain(big, REG)) == "ARG_RANGE"


# ----------------------------------------------------------------------------- plain text and JSON
@pytest.mark.parametrize(
    "text, expected",
    [
        ("pick_up('red cup')", "pick_up('red cup')"),
        ('pick_up("red cup")', "pick_up('red cup')"),
        ("Sure! I will call place( object = 'cup' , location='box' ) now.", "place('cup', 'box')"),
        ("place('cup', location=\"shelf\",)", "place('cup', 'shelf')"),
        ("print(stop())", "stop()"),
        ("set_speed(value=1)", "set_speed(1.0)"),
        ('{"function": "pick_up", "args": {"object": "red cup"}}', "pick_up('red cup')"),
        ('{"function": "place", "args": ["cup", "box"]}', "place('cup', 'box')"),
        ('{"name": "stop"}', "stop()"),
        ('```json\n{"function": "set_speed", "arguments": {"value": 0.3}}\n```', "set_speed(0.3)"),
        ("<nexa_3>()<nexa_end>", "stop()"),
    ],
)
def test_parse_plain_valid(text, expected):
    assert str(ok(parse_plain(text, REG))) == expected


def test_parse_plain_bool_spellings():
    assert ok(parse_plain("move(1, 0.5, true, 'a')", ALL)).kwargs()["fast"] is True
    assert (
        ok(parse_plain('{"function": "move", "args": [1, 0.5, false, "a"]}', ALL)).kwargs()["fast"] is False
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "EMPTY"),
        ("I cannot help with that.", "NO_FUNCTION_TOKEN"),
        ("fly(to='moon')", "UNKNOWN_FUNCTION"),
        ("place('cup'", "NO_END"),
        ("place('cup' 'box')", "BAD_SYNTAX"),
        ("place(location='box', 'cup')", "BAD_SYNTAX"),
        ("place('cup', colour='box')", "ARG_NAME"),
        ("place('cup', object='mug')", "ARG_NAME"),
        ("place('cup')", "ARG_COUNT"),
        ("place('cup', box)", "ARG_TYPE"),
        ('{"function": "pick_up"', "BAD_SYNTAX"),
        ('{"function": 3}', "BAD_SYNTAX"),
        ("[1, 2]", "NO_FUNCTION_TOKEN"),
        ('{"function": "fly"}', "UNKNOWN_FUNCTION"),
        ('{"function": "pick_up", "args": {"object": "cup", "colour": "red"}}', "ARG_NAME"),
        ('{"function": "pick_up", "args": {}}', "ARG_COUNT"),
        ('{"function": "pick_up", "args": ["a", "b"]}', "ARG_COUNT"),
        ('{"function": "pick_up", "args": "cup"}', "BAD_SYNTAX"),
        ('{"function": "pick_up", "args": {"object": 3}}', "ARG_TYPE"),
        ('{"function": "set_speed", "args": {"value": true}}', "ARG_TYPE"),
        ('{"function": "set_speed", "args": {"value": NaN}}', "ARG_RANGE"),
        ('{"function": "set_speed", "args": {"value": Infinity}}', "ARG_RANGE"),
        ('{"function": "navigate_to", "args": {"place": "moon"}}', "ENUM_VALUE"),
    ],
)
def test_parse_plain_errors(text, expected):
    assert kind(parse_plain(text, REG)) == expected


def test_parse_plain_allowlist():
    assert kind(parse_plain("take_photo()", REG, ["stop"])) == "NOT_ALLOWED"
    assert kind(parse_plain('{"function": "quiet"}', ALL)) == "DISABLED"


# ----------------------------------------------------------------------------- validate_call
def test_validate_call():
    good = make_call(REG, "place", "cup", "box")
    assert validate_call(good, REG, None) is None
    assert validate_call(good, REG, ["place"]) is None
    assert validate_call(good, REG, ["stop"]).kind == "NOT_ALLOWED"
    assert validate_call(Call("quiet", 3), ALL, None).kind == "DISABLED"
    assert validate_call(Call("fly", 0), REG, None).kind == "UNKNOWN_FUNCTION"
    assert validate_call("stop", REG, None).kind == "UNKNOWN_FUNCTION"
    assert validate_call(Call("place", 2, good.args), REG, None).kind == "UNKNOWN_TOKEN"
    assert validate_call(Call("place", 1, good.args[:1]), REG, None).kind == "ARG_COUNT"
    assert validate_call(Call("place", 1, list(good.args)), REG, None).kind == "ARG_COUNT"
    swapped = (good.args[1], good.args[0])
    assert validate_call(Call("place", 1, swapped), REG, None).kind == "ARG_TYPE"
    bad_enum = (good.args[0], ArgValue("location", "enum", "roof"))
    assert validate_call(Call("place", 1, bad_enum), REG, None).kind == "ENUM_VALUE"
    speed = lambda v: Call("set_speed", 11, (ArgValue("value", "float", v),))  # noqa: E731
    assert validate_call(speed(1), REG) is None
    assert validate_call(speed(True), REG).kind == "ARG_TYPE"
    assert validate_call(speed("0.5"), REG).kind == "ARG_TYPE"
    assert validate_call(speed(float("nan")), REG).kind == "ARG_RANGE"
    assert validate_call(speed(1.0001), REG).kind == "ARG_RANGE"
    steps = lambda v: Call("count", 2, (ArgValue("n", "int", v),))  # noqa: E731
    assert validate_call(steps(15), ALL) is None
    assert validate_call(steps(15.0), ALL).kind == "ARG_TYPE"
    assert validate_call(steps(False), ALL).kind == "ARG_TYPE"
    text = lambda v: Call("pick_up", 0, (ArgValue("object", "string", v),))  # noqa: E731
    assert validate_call(text("a\nb"), REG).kind == "BAD_STRING"
    assert validate_call(text("<nexa_3>"), REG).kind == "BAD_STRING"
