"""Named values in the grammar: a ``named: true`` enum argument (send_message's contact) accepts only
the values the utterance says, so the model chooses among the people it heard; with none said
every value stays open and the runtime's unnamed rule declines the call."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, FunctionRegistry, parse_call
from octopus_ros.functions.mentions import unnamed_args
from octopus_ros.model.testing import adversarial_decode
from octopus_ros.paths import config_path

CONTACTS = ("mom", "dad", "alice", "bob", "office")


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


def _contacts(grammar: CallGrammar) -> set[str]:
    return {c for c in CONTACTS if grammar.accepts(f"<nexa_10>('{c}', 'hi')<nexa_end>")}


@pytest.mark.parametrize(
    "utterance, said",
    [
        ("text Bob hi", {"bob"}),
        ("给老妈发短信说hi", {"mom"}),
        ("tell my dad and Alice hi", {"dad", "alice"}),
        ("bobsleigh hi", set(CONTACTS)),  # "bob" inside a word is not said: nothing narrows
        ("send a text saying hi", set(CONTACTS)),  # none said: all open, the runtime declines
    ],
)
def test_a_bound_grammar_offers_the_contacts_the_utterance_says(registry, utterance, said):
    grammar = CallGrammar(registry)
    assert _contacts(grammar.bind(utterance)) == said
    assert _contacts(grammar) == set(CONTACTS)  # the unbound grammar is untouched by binding
    assert _contacts(grammar.bind("send a text saying hi")) == set(CONTACTS)


def test_one_said_contact_is_forced(registry):
    g = CallGrammar(registry).bind("text Bob hi")
    state = g.advance(g.start(), "<nexa_10>")
    assert g.forced(state) == "('bob', '"
    other = CallGrammar(registry).bind("text Alice hi")  # a second binding has its own tries
    assert other.forced(other.advance(other.start(), "<nexa_10>")) == "('alice', '"
    assert g.forced(state) == "('bob', '"


def test_cache_keys_are_the_bound_grammar_only_where_narrowed(registry):
    grammar = CallGrammar(registry)
    a, b = grammar.bind("text Bob hi"), grammar.bind("text Alice hi")
    inside = a.advance(a.start(), "<nexa_10>('")
    assert a.cache_key(inside) is a and b.cache_key(inside) is b
    pick = a.advance(a.start(), "<nexa_0>('re")
    assert a.cache_key(pick) is grammar and b.cache_key(pick) is grammar


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), jf=st.booleans(), which=st.integers(0, 2))
def test_adversarial_logits_never_send_to_someone_unnamed(registry, tok, seed, jf, which):
    """A fake LM that wants every contact the user did not name still writes a named one."""
    utterance = ["text Bob that the meeting is cancelled", "跟妈妈说我到了", "tell dad and alice I'm home"][
        which
    ]
    unsaid = [c for c in CONTACTS if c not in _contacts(CallGrammar(registry).bind(utterance))]
    grammar = CallGrammar(registry).bind(utterance)
    res = adversarial_decode(tok, grammar, 10, unsaid, seed=seed, jump_forward=jf)
    assert res.error is None, res
    call = parse_call(res.text, registry)
    assert call.function == "send_message"
    assert not unnamed_args(registry.by_name("send_message"), call, utterance), res.text


LIGHT = {
    "version": 1,
    "functions": [
        {
            "name": "set_light",
            "token": 0,
            "description": {"en": "Switch a light."},
            "args": [
                {"name": "room", "type": "enum", "values": ["kitchen", "hallway"], "narrow": True},
                {
                    "name": "on",
                    "type": "bool",
                    "narrow": True,
                    "examples": {
                        "en": {True: "on", False: "off"},
                        "zh": {True: ["打开", "开"], False: ["关掉", "关"]},
                    },
                },
            ],
        },
        {"name": "no_action", "token": 1, "decline": True, "description": {"en": "Nothing."}},
    ],
}


def _lights(grammar: CallGrammar) -> set[tuple[str, bool]]:
    return {
        (room, on)
        for room in ("kitchen", "hallway")
        for on in (True, False)
        if grammar.accepts(f"<nexa_0>('{room}', {on})<nexa_end>")
    }


@pytest.mark.parametrize(
    "utterance, offered",
    [
        ("turn the hallway light off", {("hallway", False)}),
        ("把厨房的灯打开", {("kitchen", True), ("hallway", True)}),  # no Chinese forms for the rooms here
        ("lights on in the kitchen and the hallway", {("kitchen", True), ("hallway", True)}),
        (
            "turn the kitchen light off and the hallway one on",
            {(r, v) for r in ("kitchen", "hallway") for v in (True, False)},
        ),
        ("it is too dark in here", {(r, v) for r in ("kitchen", "hallway") for v in (True, False)}),
        (
            "is that true? turn the kitchen light off",
            {("kitchen", False)},
        ),  # "True" is not how a bool is said
        # a bool value said only right after a negation is the one not wanted: the other is offered
        ("厨房的灯别开着了", {("kitchen", False), ("hallway", False)}),
        ("no lights on in the hallway", {("hallway", False)}),
        ("please don't switch off the hallway light", {("hallway", True)}),
        ("别关掉厨房的灯", {("kitchen", True), ("hallway", True)}),
        ("don't turn it on, turn the hallway light off", {("hallway", False)}),
        # a negation reaches to the end of its clause, not past a comma: "no, ..." asks for on
        ("no, turn the hallway light on", {("hallway", True)}),
        ("别，开厨房的灯", {("kitchen", True), ("hallway", True)}),  # 别 is within reach of 开
    ],
)
def test_narrow_enum_and_bool_arguments_offer_what_the_request_says(utterance, offered):
    registry = FunctionRegistry.from_dict(LIGHT)
    assert _lights(CallGrammar(registry).bind(utterance)) == offered


def test_said_words_narrow_as_spoken_forms_do_but_never_fill_a_slot():
    import copy

    from octopus_ros.functions.examples import slot_values
    from octopus_ros.functions.registry import ArgSpec, RegistryError

    light = copy.deepcopy(LIGHT)
    on = light["functions"][0]["args"][1]
    on["said"] = {"en": {True: ["brighten"], False: ["kill"]}, "zh": {False: ["熄", "灭"]}}
    registry = FunctionRegistry.from_dict(light)
    arg = registry.by_name("set_light").args[1]
    assert arg.spoken_forms(False) == ("off", "关掉", "关", "kill", "熄", "灭")
    grammar = CallGrammar(registry)
    assert _lights(grammar.bind("brighten up the hallway")) == {("hallway", True)}
    assert _lights(grammar.bind("把走廊的灯熄了")) == {("kitchen", False), ("hallway", False)}
    assert _lights(grammar.bind("别灭走廊的灯")) == {("kitchen", True), ("hallway", True)}  # negated
    # training fills a {slot} with the examples' forms only: "turn the lights {on}" never reads "kill"
    assert slot_values(arg, "en") == {True: ("on",), False: ("off",)}
    again = FunctionRegistry.from_dict(registry.to_dict()).by_name("set_light").args[1]
    assert again.said == arg.said
    with pytest.raises(RegistryError, match="said is only read for enum and bool arguments"):
        ArgSpec(name="x", type="string", said={"en": {"a": ["yes"]}})
    plain = ArgSpec(name="x", type="enum", values=("kitchen",), said={"zh": {"kitchen": ["厨房"]}})
    assert plain.spoken_forms("kitchen") == ("厨房", "kitchen")  # read by the origin rule, never narrowing
    with pytest.raises(RegistryError, match=r"argument 'x' said\[en\] must be a non-empty mapping"):
        ArgSpec(name="x", type="bool", narrow=True, said={"en": [True]})
    with pytest.raises(RegistryError, match="said: 'off' says both False and True"):
        ArgSpec(
            name="x", type="bool", narrow=True, examples={"en": {False: "off"}}, said={"en": {True: ["off"]}}
        )


def test_narrow_declines_nothing_and_is_checked():
    from octopus_ros.functions import parse_call
    from octopus_ros.functions.registry import ArgSpec, RegistryError

    registry = FunctionRegistry.from_dict(LIGHT)
    call = parse_call("<nexa_0>('kitchen', True)<nexa_end>", registry)
    assert unnamed_args(registry.by_name("set_light"), call, "it is too dark in here") == []  # not `named`
    assert registry.by_name("set_light").args[1].spoken_forms(True) == ("on", "打开", "开")
    with pytest.raises(RegistryError, match="narrow is only valid for enum, bool, int and float"):
        ArgSpec(name="x", type="string", narrow=True)
    assert FunctionRegistry.from_dict(registry.to_dict()).by_name("set_light").args[1].narrow


@pytest.mark.parametrize(
    "utterance, offered",
    [
        # a request that says neither asks for the unsaid value
        ("I need some light in the kitchen", {("kitchen", True)}),
        ("走廊亮个灯", {("kitchen", True), ("hallway", True)}),
        # what is said still rules, and so does a value said only after a negation
        ("make sure the hallway lights are off", {("hallway", False)}),
        ("no lights on in the hallway", {("hallway", False)}),
        ("turn the kitchen light off", {("kitchen", False)}),
    ],
)
def test_an_unsaid_bool_offers_its_unsaid_value(utterance, offered):
    import copy

    light = copy.deepcopy(LIGHT)
    light["functions"][0]["args"][1]["unsaid"] = True
    registry = FunctionRegistry.from_dict(light)
    assert _lights(CallGrammar(registry).bind(utterance)) == offered
    assert FunctionRegistry.from_dict(registry.to_dict()).by_name("set_light").args[1].unsaid is True


def test_unsaid_is_for_a_narrow_bool_only():
    from octopus_ros.functions.registry import ArgSpec, RegistryError

    with pytest.raises(RegistryError, match="unsaid is only valid for a bool argument with narrow: true"):
        ArgSpec(name="x", type="bool", unsaid=True)
    with pytest.raises(RegistryError, match="unsaid is only valid for a bool argument with narrow: true"):
        ArgSpec(name="x", type="enum", values=("a",), narrow=True, unsaid=True)
    with pytest.raises(RegistryError, match="unsaid must be true or false"):
        ArgSpec(name="x", type="bool", narrow=True, unsaid="on")


@pytest.mark.parametrize(
    "utterance, offered",
    [
        # both values said, one only as how things are: the other is what is asked for
        ("the hallway lights are still on, turn them off", {("hallway", False)}),
        ("the kitchen light has been on all day, switch it off", {("kitchen", False)}),
        ("it's off in the hallway, turn it on", {("hallway", True)}),
        # ... a question about it, or what someone left it as
        ("is the hallway light still on? turn it off, it's wasting power", {("hallway", False)}),
        ("someone left the kitchen light on again, turn it off, will you?", {("kitchen", False)}),
        # ... but not a state word of an earlier part of the request
        ("the hallway is dark so turn the light on, it's been off all day", {("hallway", True)}),
        ("厨房的灯一直开着，关掉吧", {("kitchen", False), ("hallway", False)}),
        # one value said, as a state: it stays the value said ("make sure ... are off")
        ("make sure the kitchen light is on", {("kitchen", True)}),
        ("把厨房的灯开着", {("kitchen", True), ("hallway", True)}),
        # both said as requests: both open
        (
            "turn the kitchen light off and the hallway one on",
            {(r, v) for r in ("kitchen", "hallway") for v in (True, False)},
        ),
    ],
)
def test_a_value_said_as_how_things_are_gives_way_to_the_one_asked_for(utterance, offered):
    registry = FunctionRegistry.from_dict(LIGHT)
    assert _lights(CallGrammar(registry).bind(utterance)) == offered
