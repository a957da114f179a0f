"""Call grammar: canonical calls accepted in any chunking, rejections, forced text, state shape."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, GrammarState, load_default_registry, parse_call, validate_call
from octopus_ros.functions.testing import all_types_registry, calls

REG = load_default_registry()
ALL = all_types_registry()
G_REG = CallGrammar(REG)
G_ALL = CallGrammar(ALL)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_UNITS = re.compile(r"<nexa_(?:[0-9]+|end)>|.", re.DOTALL)


def units(text: str) -> list[str]:
    """Characters, with each functional token kept whole (as a tokenizer emits it)."""
    return _UNITS.findall(text)


def feed(grammar: CallGrammar, pieces) -> GrammarState | None:
    state = grammar.start()
    for piece in pieces:
        state = grammar.advance(state, piece)
        if state is None:
            return None
    return state


def grammar_for(call) -> tuple[CallGrammar, object]:
    spec = REG.by_name(call.function)
    return (G_REG, REG) if spec is not None and spec.token == call.token else (G_ALL, ALL)


# ----------------------------------------------------------------------------- acceptance
@FUZZ
@given(call=st.one_of(calls(REG), calls(ALL)), data=st.data())
def test_canonical_calls_accepted_in_any_chunking(call, data):
    grammar, registry = grammar_for(call)
    text = call.to_text()
    pieces = units(text)
    whole = grammar.advance(grammar.start(), text)
    by_unit = feed(grammar, pieces)
    assert whole is not None and grammar.is_complete(whole)
    assert by_unit == whole
    cuts = sorted(data.draw(st.sets(st.integers(1, len(pieces) - 1), max_size=len(pieces))))
    chunks = ["".join(pieces[a:b]) for a, b in zip([0, *cuts], [*cuts, len(pieces)], strict=True)]
    assert feed(grammar, chunks) == whole
    assert parse_call(text, registry) == call
    # every proper prefix is a live, incomplete state
    state = grammar.start()
    for piece in pieces[:-1]:
        state = grammar.advance(state, piece)
        assert state is not None and not grammar.is_complete(state)


def _pool(registry) -> list[str]:
    chars = set("'\\(), -.0123456789TrueFalsxy中")
    for spec in registry.functions:
        for arg in spec.args:
            for value in arg.values:
                chars.update(value)
    tokens = [spec.token_text for spec in registry.functions] + ["<nexa_99>", "<nexa_end>"]
    return sorted(chars) + tokens + ["ab", "1.", ", '", "')", "0)"]


@FUZZ
@given(data=st.data(), which=st.sampled_from(["REG", "ALL"]))
def test_random_walks_parse_and_never_dead_end(data, which):
    grammar, registry = (G_REG, REG) if which == "REG" else (G_ALL, ALL)
    pool = _pool(registry)
    state, text = grammar.start(), ""
    for _ in range(120):
        if grammar.is_complete(state):
            break
        forced = grammar.forced(state)
        if forced:
            assert grammar.advance(state, forced) is not None
        options = [(p, s) for p in pool if (s := grammar.advance(state, p)) is not None]
        assert options, f"dead end after {text!r}"
        piece, state = data.draw(st.sampled_from(options))
        text += piece
    if grammar.is_complete(state):
        call = parse_call(text, registry)  # everything the grammar accepts parses
        assert validate_call(call, registry) is None, (text, call)
        assert grammar.accepts(text)


# ----------------------------------------------------------------------------- rejections
@pytest.mark.parametrize(
    "grammar, prefix, nxt",
    [
        # functional tokens: allowed, enabled, whole
        (CallGrammar(REG, allowlist=["stop"]), "", "<nexa_4>"),
        (G_ALL, "", "<nexa_3>"),  # disabled
        (G_ALL, "", "<nexa_6>"),  # no such function
        (G_REG, "", "<nexa_03>"),
        (G_REG, "", "<nexa_"),  # split special token
        (G_REG, "", "<"),
        (G_REG, "", " <nexa_3>"),
        (G_REG, "", "<nexa_end>"),
        (G_REG, "<nexa_3>()", "<nexa_"),
        (G_REG, "<nexa_3>()", "<nexa_end> "),
        (G_REG, "<nexa_3>()<nexa_end>", "x"),
        (G_REG, "<nexa_3>", "["),
        (G_REG, "<nexa_3>", "(<nexa_end>"),
        # argument counts
        (G_REG, "<nexa_3>(", "'"),
        (G_REG, "<nexa_0>(", ")"),
        (G_REG, "<nexa_0>('a'", ","),
        (G_REG, "<nexa_1>('a'", ")"),
        # separators
        (G_REG, "<nexa_1>('a'", ",'"),
        (G_REG, "<nexa_1>('a', ", " "),
        (G_REG, "<nexa_0>(", " "),
        # strings
        (G_REG, "<nexa_0>(", '"'),
        (G_REG, "<nexa_0>(", "cup"),
        (G_REG, "<nexa_0>('", "'"),  # empty
        (G_REG, "<nexa_0>('" + "x" * 32, "x"),  # too long
        (G_REG, "<nexa_0>('" + "x" * 31, "xx"),
        (G_REG, "<nexa_0>('" + "x" * 32, "\\"),
        (G_REG, "<nexa_0>('" + "x" * 31 + "\\'", "\\'"),
        (G_REG, "<nexa_0>('a", "<"),
        (G_REG, "<nexa_0>('a", ">"),
        (G_REG, "<nexa_0>('a", "\n"),
        (G_REG, "<nexa_0>('a", "\x00"),
        (G_REG, "<nexa_0>('a\\", "n"),
        # enums
        (G_REG, "<nexa_2>(", "kitchen"),
        (G_REG, "<nexa_2>(", "'garage'"),
        (G_REG, "<nexa_2>('kitchen", "s"),
        (G_REG, "<nexa_2>('", "'"),
        (G_ALL, "<nexa_1>(0, 0.5, True, 'a", "c"),
        # bools
        (G_ALL, "<nexa_1>(0, 0.5, ", "true"),
        (G_ALL, "<nexa_1>(0, 0.5, ", "'True'"),
        # ints (count: [10, 20]; steps: [-5, 120])
        (G_ALL, "<nexa_2>(", "3"),
        (G_ALL, "<nexa_2>(", "0"),
        (G_ALL, "<nexa_2>(", "-"),
        (G_ALL, "<nexa_2>(2", "1"),
        (G_ALL, "<nexa_2>(1", ")"),  # 1 < 10
        (G_ALL, "<nexa_2>(20", "0"),
        (G_ALL, "<nexa_1>(", "-0"),
        (G_ALL, "<nexa_1>(", "-6"),
        (G_ALL, "<nexa_1>(", "+1"),
        (G_ALL, "<nexa_1>(0", "1"),  # leading zero
        (G_ALL, "<nexa_1>(12", "1"),
        (G_ALL, "<nexa_1>(", "1.0"),
        (G_ALL, "<nexa_1>(", ","),
        # floats (set_speed: [0, 1]; speed: [-1.5, 2.25]; gain: [0.1, 0.3])
        (G_REG, "<nexa_11>(", "2"),
        (G_REG, "<nexa_11>(", "-"),
        (G_REG, "<nexa_11>(1.", "5"),
        (G_REG, "<nexa_11>(1.00", "1"),
        (G_REG, "<nexa_11>(0.123", "4"),  # at most 3 decimals
        (G_REG, "<nexa_11>(1", ")"),  # a float needs its decimals
        (G_REG, "<nexa_11>(1.", ")"),
        (G_REG, "<nexa_11>(", ".5"),
        (G_REG, "<nexa_11>(", "nan"),
        (G_REG, "<nexa_11>(", "inf"),
        (G_REG, "<nexa_11>(0", "0"),
        (G_ALL, "<nexa_1>(0, ", "-1.6"),
        (G_ALL, "<nexa_1>(0, ", "-2"),
        (G_ALL, "<nexa_1>(0, -1.5", "1"),
        (G_ALL, "<nexa_1>(0, ", "2.26"),
        (G_ALL, "<nexa_1>(0, ", "3"),
        (G_ALL, "<nexa_4>(", "1"),
        (G_ALL, "<nexa_4>(0.", "0"),  # 0.0xx < 0.1
        (G_ALL, "<nexa_4>(0.3", "1"),
        (G_ALL, "<nexa_4>(0.30", "1"),
    ],
)
def test_rejections(grammar, prefix, nxt):
    state = grammar.advance(grammar.start(), prefix)
    assert state is not None, prefix
    assert grammar.advance(state, nxt) is None, (prefix, nxt)


@pytest.mark.parametrize(
    "grammar, text",
    [
        (CallGrammar(REG, allowlist=["stop"]), "<nexa_12>()<nexa_end>"),  # decline always allowed
        (G_ALL, "<nexa_2>(10)<nexa_end>"),
        (G_ALL, "<nexa_2>(20)<nexa_end>"),
        (G_ALL, "<nexa_1>(-5, -1.5, False, '中文')<nexa_end>"),
        (G_ALL, "<nexa_1>(120, 2.25, True, 'ab')<nexa_end>"),
        (G_ALL, "<nexa_1>(0, -0.125, True, 'b c')<nexa_end>"),
        (G_ALL, "<nexa_4>(0.1)<nexa_end>"),  # float bounds compare like the parser does
        (G_ALL, "<nexa_4>(0.300)<nexa_end>"),
        (G_ALL, "<nexa_7>()<nexa_end>"),
        (G_REG, "<nexa_11>(0.0)<nexa_end>"),
        (G_REG, "<nexa_11>(1.000)<nexa_end>"),
        (G_REG, "<nexa_0>('\\\\\\'')<nexa_end>"),
        (G_REG, "<nexa_0>('" + "x" * 31 + "\\'')<nexa_end>"),
    ],
)
def test_edge_calls_accepted_and_parsed(grammar, text):
    assert grammar.accepts(text)
    registry = grammar.registry
    assert validate_call(parse_call(text, registry), registry) is None


def test_allowed_function_tokens():
    assert G_REG.allowed_function_tokens() == list(range(13))
    assert G_ALL.allowed_function_tokens() == [0, 1, 2, 4, 5, 7]
    assert CallGrammar(REG, allowlist=["stop", "pick_up"]).allowed_function_tokens() == [0, 3, 12]
    assert CallGrammar(REG, allowlist=[]).allowed_function_tokens() == list(range(13))
    with pytest.raises(ValueError):
        CallGrammar(REG, allowlist=["fly"])


# ----------------------------------------------------------------------------- forced text
@pytest.mark.parametrize(
    "grammar, prefix, forced",
    [
        (G_REG, "", ""),
        (CallGrammar(REG, allowlist=["no_action"]), "", "<nexa_12>()<nexa_end>"),
        (G_REG, "<nexa_5>", "('"),
        (G_REG, "<nexa_3>", "()<nexa_end>"),
        (G_REG, "<nexa_0>('cup'", ")<nexa_end>"),
        (G_REG, "<nexa_0>('cup')", "<nexa_end>"),
        (G_REG, "<nexa_0>('", ""),
        (G_REG, "<nexa_0>('cu", ""),
        (G_REG, "<nexa_0>('a\\", ""),
        (G_REG, "<nexa_0>('" + "x" * 32, "')<nexa_end>"),
        (G_REG, "<nexa_5>('can'", ", '"),
        (G_REG, "<nexa_5>('can', 'c", "ompost')<nexa_end>"),
        (G_REG, "<nexa_5>('can', 'r", "ecycling')<nexa_end>"),
        (G_REG, "<nexa_2>(", "'"),
        (G_REG, "<nexa_2>('b", ""),
        (G_REG, "<nexa_2>('be", "droom')<nexa_end>"),
        (G_REG, "<nexa_10>(", "'"),
        (G_REG, "<nexa_10>('mom'", ", '"),
        (G_REG, "<nexa_11>(", ""),
        (G_REG, "<nexa_11>(1", ".0"),
        (G_REG, "<nexa_11>(1.000", ")<nexa_end>"),
        (G_REG, "<nexa_3>()<nexa_end>", ""),
        (G_ALL, "<nexa_2>(2", "0)<nexa_end>"),
        (G_ALL, "<nexa_1>(-5", ", "),
        (G_ALL, "<nexa_1>(0, 0.5, ", ""),
        (G_ALL, "<nexa_1>(0, 0.5, T", "rue, '"),
        (G_ALL, "<nexa_1>(0, 0.5, True, '", ""),
        (G_ALL, "<nexa_1>(0, 0.5, True, 'a", ""),  # 'a' or 'ab'
        (G_ALL, "<nexa_1>(0, 0.5, True, 'b", " c')<nexa_end>"),
    ],
)
def test_forced(grammar, prefix, forced):
    state = grammar.advance(grammar.start(), prefix)
    assert state is not None
    assert grammar.forced(state) == forced
    assert grammar.advance(state, forced) is not None


# ----------------------------------------------------------------------------- states
def test_states_are_small_hashable_and_shared():
    g = G_REG
    s = g.start()
    a = g.advance(s, "<nexa_0>('abc")
    b = g.advance(s, "<nexa_0>('x\\'y")  # an escape counts as one character
    assert a == b and hash(a) == hash(b) and {a: 1}[b] == 1
    assert g.advance(s, "<nexa_1>('a', 'box'") == g.advance(s, "<nexa_1>('zz top', 'shelf'")
    assert g.advance(s, "<nexa_0>('ab") != a  # length differs
    assert isinstance(a, tuple) and len(a) == 5 and all(isinstance(x, int) for x in a)
    assert g.advance(s, "") == s
    done = g.advance(s, "<nexa_3>()<nexa_end>")
    assert g.is_complete(done) and done == g.advance(s, "<nexa_9>()<nexa_end>")
    assert not g.is_complete(s)
