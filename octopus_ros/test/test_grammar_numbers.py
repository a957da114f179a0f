"""Numbers a request says (functions/numbers.py) and the ``narrow`` number arguments they narrow
(functions/grammar.py): "bump your speed up to eighty percent" cannot come out as 0.5."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import FunctionRegistry, parse_call
from octopus_ros.functions.grammar import CallGrammar
from octopus_ros.functions.numbers import en_number, said_numbers, zh_number
from octopus_ros.model.testing import adversarial_decode
from octopus_ros.paths import config_path


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.mark.parametrize(
    "utterance, numbers",
    [
        ("Bump your speed up to eighty percent, you're crawling", [0.8]),
        ("thirty-five percent", [0.35]),
        ("thirty five per cent", [0.35]),
        ("speed up to 90%", [0.9]),
        ("Ｓｅｔ ｓｐｅｅｄ ｔｏ ８０％", [0.8]),  # full-width, as a Chinese input method writes it
        ("move at 0.4 of your max speed", [0.4]),
        ("could you move at three quarters speed", [0.75]),
        ("quarter speed", [0.25]),
        ("go at half speed", [0.5]),
        ("two thirds speed", [2 / 3]),
        ("速度：百分之三十，谢谢", [0.3]),
        ("太快了，调到两成速度吧", [0.2]),
        ("用一半的速度走", [0.5]),
        ("速度调到四分之三", [0.75]),
        ("你也太慢了，速度调到零点八吧", [0.8]),
        ("以最大速度的0.4行驶", [0.4]),
        ("slow down from 80% to 30%", [0.8, 0.3]),
        ("move 3 steps", [3]),
        # number words alone say no quantity
        ("pick this one up", []),
        ("someone is at the door", []),
        ("去三楼", []),
        ("go to the kitchen", []),
    ],
)
def test_said_numbers(utterance, numbers):
    assert said_numbers(utterance) == pytest.approx(numbers)


def test_hostile_numbers_are_not_read():
    assert said_numbers("9" * 400 + "%") == []  # infinity
    assert said_numbers("9" * 5000) == []  # int() refuses it
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    CallGrammar(registry).bind("set the speed to " + "9" * 5000 + "% or " + "9" * 400 + ".5")  # no error


def test_the_words_read_back_what_the_templates_write():
    """Every speed the synthetic world says in words is read as the speed it means."""
    for pct in range(0, 101):
        assert said_numbers(f"go at {en_number(pct)} percent") == pytest.approx([pct / 100])
        assert said_numbers(f"百分之{zh_number(pct)}的速度") == pytest.approx([pct / 100])


def _speeds(grammar: CallGrammar) -> set[str]:
    return {_text(k) for k in range(0, 101) if grammar.accepts(f"<nexa_11>({_text(k)})<nexa_end>")}


def _text(k: int) -> str:
    from octopus_ros.functions.calls import format_float

    return format_float(k / 100)


@pytest.mark.parametrize(
    "utterance, offered",
    [
        ("Bump your speed up to eighty percent", {"0.8"}),
        ("速度降到两成", {"0.2"}),
        ("slow down from 80% to 30%", {"0.8", "0.3"}),
        ("speed 150%", None),  # out of range: every speed stays open
        ("slow down", None),  # none said
        ("go at 20% or 25%", None),  # "0.2" is a prefix of "0.25": not narrowed
    ],
)
def test_a_narrow_number_is_offered_the_numbers_said(registry, utterance, offered):
    assert registry.by_name("set_speed").args[0].narrow
    grammar = CallGrammar(registry).bind(utterance)
    got = _speeds(grammar)
    assert got == (offered if offered is not None else _speeds(CallGrammar(registry)))
    if offered is not None:
        assert grammar.cache_key(grammar.advance(grammar.start(), "<nexa_11>(")) is grammar


def test_int_arguments_and_the_registry_check():
    from octopus_ros.functions.registry import ArgSpec, RegistryError

    reg = FunctionRegistry.from_dict(
        {
            "version": 1,
            "functions": [
                {
                    "name": "move",
                    "token": 0,
                    "description": {"en": "Move some steps."},
                    "args": [{"name": "steps", "type": "int", "min": 1, "max": 10, "narrow": True}],
                },
                {"name": "no_action", "token": 1, "decline": True, "description": {"en": "Nothing."}},
            ],
        }
    )
    grammar = CallGrammar(reg).bind("move 3 steps, not 0.5")
    assert {k for k in range(1, 11) if grammar.accepts(f"<nexa_0>({k})<nexa_end>")} == {3}
    assert FunctionRegistry.from_dict(reg.to_dict()).by_name("move").args[0].narrow
    with pytest.raises(RegistryError, match="narrow is only valid for enum, bool, int and float"):
        ArgSpec(name="x", type="string", narrow=True)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), jf=st.booleans(), which=st.integers(0, 2))
def test_adversarial_logits_write_the_speed_said(registry, tok, seed, jf, which):
    """A fake LM that wants other digits still writes the speed the request says."""
    utterance, speed = [
        ("Bump your speed up to eighty percent", 0.8),
        ("用一半的速度走", 0.5),
        ("could you move at three quarters speed", 0.75),
    ][which]
    grammar = CallGrammar(registry).bind(utterance)
    res = adversarial_decode(tok, grammar, 11, ("0.1", "0.2", "0.3", "1.0"), seed=seed, jump_forward=jf)
    assert res.error is None, res
    call = parse_call(res.text, registry)
    assert call.function == "set_speed" and call.args[0].value == pytest.approx(speed), res.text


_TEXT = st.text(
    alphabet=st.sampled_from(
        list("0123456789.%％ -一二两三四五六七八九十百零点成分之半速percntquarthlfwoy ")
    ),
    max_size=60,
) | st.text(max_size=60)


@settings(max_examples=300, deadline=None)
@given(text=_TEXT)
def test_any_text_reads_as_finite_numbers_and_binds(text):
    """Whatever a speech recogniser writes, the reader returns finite numbers and the grammar binds."""
    import math

    numbers = said_numbers(text)
    assert all(math.isfinite(v) for v in numbers)
    CallGrammar(FunctionRegistry.from_yaml(config_path("functions.yaml"))).bind(text)
