"""Named objects in the grammar: a ``names_object: true`` string argument (pick_up's object) takes,
when the request names objects of the model's grounding vocabulary, only one of those phrases; a
request that names none leaves it a free string. The runtime's object-swap check stays the rule
for decode modes without a grammar."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, FunctionRegistry, RegistryError, parse_call
from octopus_ros.functions.registry import ArgSpec
from octopus_ros.lean.decision import named_objects, object_mismatch
from octopus_ros.model.grounding import GroundingModel
from octopus_ros.model.testing import adversarial_decode
from octopus_ros.paths import config_path, default_model_dir


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.fixture(scope="module")
def rules():
    """The synthetic world's vocabulary, as the bundled grounding head carries it."""
    return GroundingModel.load(default_model_dir())


def test_the_object_arguments_are_declared(registry):
    declared = {(f.name, a.name) for f in registry.functions for a in f.args if a.names_object}
    assert declared == {
        ("pick_up", "object"),
        ("place", "object"),
        ("recycle", "item"),
        ("find_item", "item"),
    }


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"type": "enum", "values": ["a"], "names_object": True}, "only valid for string"),
        ({"type": "string", "source": "utterance", "names_object": True}, "not copied"),
        ({"type": "string", "names_object": "yes"}, "true or false"),
    ],
)
def test_names_object_is_checked(kwargs, message):
    with pytest.raises(RegistryError, match=message):
        ArgSpec(name="thing", **kwargs)


@pytest.mark.parametrize(
    "utterance, phrases",
    [
        ("put the blue keys on the floor", ("blue keys",)),
        ("把蓝色的钥匙放到地上", ("blue keys",)),
        ("把黑钥匙扔掉", ("black keys",)),
        ("swap the red cup for the green ball", ("red cup", "green ball")),
        ("I can't find my blue cup anywhere", ("blue cup",)),  # "can't" is not a can
        ("请帮我把蓝色的手机放书架上", ("blue phone",)),  # 书架 (bookshelf) is no book
        ("pick that up", ()),
        ("grab a towel", ()),
        ("grab the cup", ()),  # no colour said: nothing narrows (the view settles the colour)
        ("can you pick that up?", ()),
        # a demonstrative and its measure word between the colour and the object (stop 47)
        ("黄的那个苹果烂了，扔了", ("yellow apple",)),
        ("红色那只杯子拿起来", ("red cup",)),
        ("把红的拿起来", ()),  # no object said
    ],
)
def test_named_phrases_are_the_calls_spelling(rules, utterance, phrases):
    assert rules.named_phrases(utterance) == phrases


def test_bare_categories_on_request(rules):
    phrases = rules.named_phrases("grab the cup", bare=True)
    assert "red cup" in phrases and "white cup" in phrases
    assert all(p.endswith(" cup") for p in phrases)


def _picks(grammar: CallGrammar) -> set[str]:
    candidates = ("blue keys", "blue book", "red cup", "green ball", "a towel")
    return {c for c in candidates if grammar.accepts(f"<nexa_0>('{c}')<nexa_end>")}


def test_a_bound_grammar_offers_only_the_named_objects(registry):
    grammar = CallGrammar(registry)
    assert _picks(grammar.bind("put the blue keys down", objects=("blue keys",))) == {"blue keys"}
    two = grammar.bind("x", objects=("red cup", "green ball"))
    assert _picks(two) == {"red cup", "green ball"}
    assert two.accepts("<nexa_1>('red cup', 'table')<nexa_end>")  # place's object too
    assert not two.accepts("<nexa_1>('blue book', 'table')<nexa_end>")
    assert two.accepts("<nexa_8>('green ball')<nexa_end>")  # find_item's item
    # nothing named: a free string, as before; the unbound grammar is untouched by binding
    everything = {"blue keys", "blue book", "red cup", "green ball", "a towel"}
    assert _picks(grammar.bind("pick that up", objects=())) == everything
    assert _picks(grammar.bind("pick that up")) == everything
    assert _picks(grammar) == everything
    # other string arguments are not object arguments: a message's text stays a span of the request
    msg = grammar.bind("text bob the red cup is here", objects=("red cup",))
    assert msg.accepts("<nexa_10>('bob', 'the red cup is here')<nexa_end>")


def test_one_named_object_is_forced_and_cache_keys_follow(registry):
    grammar = CallGrammar(registry)
    a = grammar.bind("u", objects=("blue keys",))
    b = grammar.bind("u", objects=("red cup",))
    state = a.advance(a.start(), "<nexa_0>")
    assert a.forced(state) == "('blue keys')<nexa_end>"
    assert b.forced(b.advance(b.start(), "<nexa_0>")) == "('red cup')<nexa_end>"
    inside = a.advance(a.start(), "<nexa_0>('")
    assert a.cache_key(inside) is a and b.cache_key(inside) is b
    free = grammar.bind("u")
    assert free.cache_key(free.advance(free.start(), "<nexa_0>('")) is grammar


def test_phrases_an_argument_cannot_hold_are_left_out(registry):
    g = CallGrammar(registry).bind("u", objects=("x" * 40, "it's", "red cup"))
    assert _picks(g) == {"red cup"}
    none_fit = CallGrammar(registry).bind("u", objects=("x" * 40,))
    assert none_fit.accepts("<nexa_0>('a towel')<nexa_end>")  # nothing that fits: left free


class _Model:
    def __init__(self, grounding, narrow=True):
        self.grounding, self.narrow_objects = grounding, narrow


def test_named_objects_follows_the_model(rules):
    assert named_objects(_Model(rules), "把蓝色的钥匙放到地上") == ("blue keys",)
    assert named_objects(_Model(rules, narrow=False), "the blue keys") is None
    assert named_objects(_Model(None), "the blue keys") is None


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), jf=st.booleans(), which=st.integers(0, 2))
def test_adversarial_logits_never_swap_a_named_object(registry, rules, tok, seed, jf, which):
    """A fake LM that wants the objects the user did not name still writes a named one, and the
    runtime's object-swap check has nothing to catch."""
    utterance = [
        "put the blue keys on the floor",
        "把紫色的杯子放到架子上",
        "drop the red cup or the green ball",
    ][which]
    unnamed = ("blue book", "red keys", "purple can", "white cup", "green cup")
    phrases = rules.named_phrases(utterance)
    grammar = CallGrammar(registry).bind(utterance, objects=phrases)
    res = adversarial_decode(tok, grammar, 1, unnamed, seed=seed, jump_forward=jf)  # place(object, location)
    assert res.error is None, res
    call = parse_call(res.text, registry)
    assert call.function == "place" and call.args[0].value in phrases, res.text
    assert object_mismatch(rules, registry.by_name("place"), call, utterance) is None


def test_the_runtime_binds_the_objects_the_request_names(monkeypatch):
    """The bundled model's decide() narrows by its grounding vocabulary: on a held-out request whose
    pair it never trained, it writes the named object with the narrowing and another without it
    (with ``narrow_objects`` off the grammar is bound without objects)."""
    from octopus_ros.data import generate
    from octopus_ros.model import Octopus

    seen: list = []
    bind = CallGrammar.bind

    def spy(self, utterance, **kwargs):
        seen.append(kwargs.get("objects"))
        return bind(self, utterance, **kwargs)

    monkeypatch.setattr(CallGrammar, "bind", spy)
    octopus = Octopus.load(default_model_dir())
    example = generate("unseen_combo", 40, 1234)[34]
    assert example.instruction == "would you set the black keys on the table?"  # the case measured
    d = octopus.decide(example.instruction, example.image)
    assert seen[-1] == ("black keys",)
    assert d.raw_text == example.answer == "<nexa_1>('black keys', 'table')<nexa_end>"
    octopus.narrow_objects = False
    d = octopus.decide(example.instruction, example.image)
    assert seen[-1] is None
    assert d.raw_text == "<nexa_1>('black bottle', 'table')<nexa_end>"  # the swap the narrowing prevents
