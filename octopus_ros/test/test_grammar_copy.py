"""Copy, do not invent (issue 12.2): a ``source: utterance`` argument can only be a span of the
user's words, whatever the model prefers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, FunctionRegistry, RegistryError, parse_call
from octopus_ros.functions.grammar import WordSpans
from octopus_ros.model.decoding import ConstrainedDecoder
from octopus_ros.model.runtime import Octopus
from octopus_ros.model.testing import tiny_model
from octopus_ros.paths import config_path

UTTERANCES = [
    "text Bob that the meeting is cancelled",
    "tell mom I'll be home by six",
    "给鲍勃发短信说会议取消了",
    "message alice: back\\slash and 'quotes' <b>",
    "发短信给老妈：我晚点回，你们先吃",
    "shoot mom a text: running late, start dinner without me, the kids are hungry",
]


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


def test_the_registry_declares_send_messages_text_copied(registry):
    (contact, text) = registry.by_name("send_message").args
    assert text.source == "utterance" and contact.source is None
    assert registry.by_name("pick_up").args[0].source is None
    with pytest.raises(RegistryError, match="source is only valid for string"):
        FunctionRegistry.from_dict(
            {
                "version": 1,
                "functions": [
                    {
                        "name": "a",
                        "token": 0,
                        "description": {"en": "x"},
                        "args": [{"name": "n", "type": "int", "min": 0, "max": 1, "source": "utterance"}],
                    },
                    {"name": "no", "token": 1, "decline": True, "description": {"en": "no"}},
                ],
            }
        )
    with pytest.raises(RegistryError, match="source must be one of"):
        FunctionRegistry.from_dict(
            {
                "version": 1,
                "functions": [
                    {
                        "name": "a",
                        "token": 0,
                        "description": {"en": "x"},
                        "args": [{"name": "s", "type": "string", "source": "image"}],
                    },
                    {"name": "no", "token": 1, "decline": True, "description": {"en": "no"}},
                ],
            }
        )


def _word_spans(text: str) -> set[str]:
    """Reference: substrings that start and end at word boundaries, without edge white space. A
    word of the test alphabet is a run of latin letters, apostrophes inside it included ("a'b");
    each Chinese character is a word of its own."""
    import re

    inside = set()
    for m in re.finditer(r"[abc]+(?:'[abc]+)*", text):
        inside.update(range(m.start() + 1, m.end()))
    n = len(text)
    out = set()
    for i in range(n):
        for j in range(i + 1, n + 1):
            if text[i].isspace() or text[j - 1].isspace():
                continue
            if i not in inside and j not in inside:
                out.add(text[i:j])
    return out


@settings(max_examples=300, deadline=None)
@given(text=st.text(alphabet="ab'c红色 ,", max_size=12), probe=st.text(alphabet="ab'c红色 ,", max_size=6))
def test_word_spans_accept_exactly_the_word_aligned_substrings(text, probe):
    spans = WordSpans(text)
    node: int | None = 0
    for ch in probe:
        node = spans.step(node, ch)
        if node is None:
            break
    whole = bool(probe) and node is not None and spans.closable(node)
    assert whole == (probe in _word_spans(text)), (text, probe)
    if node is not None and probe:  # a prefix of a span can always be finished
        assert spans.closable(node) or spans.has_next(node)


def _msg(text: str, contact: str = "mom") -> str:
    return f"<nexa_10>('{contact}', '" + text.replace("\\", "\\\\").replace("'", "\\'") + "')<nexa_end>"


def test_apostrophes_inside_words_are_not_boundaries(registry):
    utterance = "tell mom I'll be home, don’t wait"
    bound = CallGrammar(registry).bind(utterance)
    for ok in ("I'll be home", "don’t wait", "home,", "mom I'll"):
        assert bound.is_span(ok), ok
    for bad in ("ll be home", "'ll be home", "I'", "don", "t wait"):
        assert not bound.is_span(bad), bad


def test_a_bound_grammar_accepts_spans_only(registry):
    grammar = CallGrammar(registry)
    bound = grammar.bind("tell mom I'll be home by six")
    assert bound.accepts(_msg("I'll be home by six"))
    assert bound.accepts(_msg("home"))
    assert (
        not bound.accepts(_msg("t")) and not bound.accepts(_msg("ome")) and not bound.accepts(_msg("home "))
    )
    assert bound.accepts(_msg("mom I'll")) and bound.accepts(_msg("six"))
    assert not bound.accepts(_msg("I'll be home by seven"))
    assert not bound.accepts(_msg("call me when you can"))
    assert not bound.accepts(_msg("six by home"))
    assert grammar.accepts(_msg("call me when you can"))  # unbound: a free string
    # other arguments stay as they were: enums, free strings, numbers
    assert bound.accepts("<nexa_0>('red cup')<nexa_end>") and bound.accepts("<nexa_11>(0.5)<nexa_end>")
    back = grammar.bind("say a\\b and 'hi'")
    assert back.accepts(_msg("a\\b and 'hi'")) and not back.accepts(_msg("a\\c"))
    # a backslash is only allowed where the utterance has a quote or backslash next
    assert bound.advance(bound.advance(bound.start(), "<nexa_10>('mom', 'te"), "\\") is None
    assert bound.advance(bound.advance(bound.start(), "<nexa_10>('mom', 'I"), "\\'") is not None
    # the contact is one the utterance says (test_grammar_named.py)
    assert not bound.accepts(_msg("home", contact="bob"))


def test_a_copied_span_never_runs_into_max_length_unclosable(registry):
    """Longer than ``max_length`` (48): a span typed up to the limit must still be closable there.
    A span that could only end past the limit used to be accepted, and the quote the grammar then
    forced was refused ("forced piece "'" rejected"), so the decision failed as BAD_SYNTAX."""
    utterance = "shoot mom a text: running late, start dinner without me"
    bound = CallGrammar(registry).bind(utterance)
    opened = bound.advance(bound.start(), "<nexa_10>('mom', '")
    assert bound.advance(opened, "mom a text: running late, start dinner without m") is None
    assert bound.accepts(_msg("mom a text: running late, start dinner without"))
    for a in range(len(utterance)):
        for b in range(a + 1, len(utterance) + 1):
            state = bound.advance(opened, utterance[a:b])
            if state is None:
                continue
            assert b - a <= 48
            forced = bound.forced(state)
            assert bound.advance(state, forced) is not None
            # from every accepted state some way on exists: closing, or one more character
            assert bound.advance(state, "'") is not None or any(
                bound.advance(state, c) is not None for c in set(utterance)
            ), utterance[a:b]


def test_cache_keys_share_what_the_utterance_does_not_change(registry):
    grammar = CallGrammar(registry)
    a, b = grammar.bind("text bob hello"), grammar.bind("text bob goodbye")
    pick = a.advance(a.start(), "<nexa_0>('re")
    send = a.advance(a.start(), "<nexa_10>('bob', 'he")
    assert a.cache_key(pick) is b.cache_key(pick) is grammar
    assert a.cache_key(send) is a and b.cache_key(send) is b
    assert b.advance(send, "l") is None and a.advance(send, "l") is not None


def test_a_span_never_runs_into_a_character_a_string_cannot_hold(registry):
    """Found by the adversarial test below (which=3, seed=1070): after "quotes' " the utterance goes
    on with "<b>", which no call string may hold, and the span could neither close nor continue
    (BAD_SYNTAX). The grammar now refuses the space, and every accepted state has a way on."""
    utterance = UTTERANCES[3]
    bound = CallGrammar(registry).bind(utterance)
    opened = bound.advance(bound.start(), "<nexa_10>('alice', '")
    assert bound.advance(opened, "quotes\\'") is not None
    assert bound.advance(opened, "quotes\\' ") is None
    for a in range(len(utterance)):
        for b in range(a + 1, len(utterance) + 1):
            typed = utterance[a:b].replace("\\", "\\\\").replace("'", "\\'")
            state = bound.advance(opened, typed)
            if state is None:
                continue
            assert bound.advance(state, "'") is not None or any(
                bound.advance(state, c) is not None for c in {*utterance, "\\"}
            ), utterance[a:b]


# ----------------------------------------------------------------------------- adversarial decoding


def _hostile_step(tok, utterance: str, nexa_end_id: int, rng: np.random.Generator):
    """A fake LM that prefers tokens whose text is NOT in the utterance, and never wants to stop."""
    V = len(tok)
    texts = [tok.decode([i]) for i in range(V)]
    outside = torch.tensor([0.0 if t and t in utterance else 50.0 for t in texts])

    def logits() -> torch.Tensor:
        out = outside + torch.from_numpy(rng.normal(0, 5, V).astype(np.float32))
        out[nexa_end_id] = -50.0
        return out

    return logits


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(UTTERANCES) - 1), seed=st.integers(0, 2**31 - 1), jf=st.booleans())
def test_adversarial_logits_still_copy_a_span(registry, tok, which, seed, jf):
    utterance = UTTERANCES[which]
    model_cfg = tiny_model(tok).config
    decoder = ConstrainedDecoder(
        tokenizer=tok, nexa_token_ids=model_cfg.nexa_token_ids, nexa_end_id=model_cfg.nexa_end_id
    )
    rng = np.random.default_rng(seed)
    hostile = _hostile_step(tok, utterance, model_cfg.nexa_end_id, rng)
    first = hostile()
    first[model_cfg.nexa_token_ids[10]] = 100.0  # send_message
    grammar = CallGrammar(registry).bind(utterance)
    res = decoder.decode(first, lambda ids: hostile(), grammar, max_new_tokens=200, jump_forward=jf)
    assert res.error is None, res
    call = parse_call(res.text, registry)
    assert call.function == "send_message"
    text = call.args[1].value
    assert text and text in _word_spans(utterance), (text, utterance)


def test_the_runtime_binds_the_utterance(registry, tok):
    """Through Octopus.decide, with an LM head that wants invented text."""
    octopus = Octopus(model=tiny_model(tok, seed=3), tokenizer=tok, registry=registry)
    cfg = octopus.config
    lm = octopus.model.lm
    old = lm.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    utterance = "text Bob that the meeting is cancelled"
    texts = [tok.decode([i]) for i in range(old.out_features)]
    bias = torch.tensor([0.0 if t and t in utterance else 40.0 for t in texts])
    bias[cfg.nexa_token_ids[10]] = 200.0
    bias[cfg.nexa_end_id] = -100.0
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(bias)
    lm.lm_head = head
    try:
        d = octopus.decide(utterance, np.zeros((32, 32, 3), np.uint8), max_new_tokens=120)
    finally:
        lm.lm_head = old
    assert d.ok, d.error
    assert d.call.function == "send_message"
    assert d.call.args[1].value in utterance


@pytest.mark.parametrize(
    ("utterance", "body", "copied"),
    [
        ("text Bob that the meeting is cancelled.", "the meeting is cancelled", True),
        (
            "text  Bob that the   meeting is cancelled",
            "the meeting is cancelled",
            True,
        ),  # as the model reads it
        ("跟 Bob 说 晚饭 七点", "晚饭七点", True),
        ("text Bob that the meeting is cancelled", "call me when you can", False),  # a memorised body
        ("text Bob that the meeting is cancelled", "eting is", False),  # not word-aligned
        ("text Bob that it's done", "it's done", True),
    ],
)
def test_an_invented_body_is_not_published(utterance, body, copied):
    """The grammar keeps constrained decoding to spans; the outcome rule checks again before
    publishing, whatever decoded the call (generate / plain modes, a grammar bug)."""
    import functools
    from types import SimpleNamespace

    from octopus_ros.functions import FunctionRegistry, parse_call, validate_call
    from octopus_ros.paths import config_path
    from octopus_ros.runtime.outcomes import OutcomeCode, decision_outcome, invented_args

    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    escaped = body.replace("'", "\\'")
    call = parse_call(f"<nexa_10>('bob', '{escaped}')<nexa_end>", registry)
    code, reason = decision_outcome(
        SimpleNamespace(call=call, error=None, confidence=0.99),
        registry,
        functools.partial(validate_call, registry=registry),
        allowlist=None,
        threshold=0.5,
        utterance=utterance,
    )
    assert (code == OutcomeCode.OK) is copied, reason
    assert bool(invented_args(registry.by_name("send_message"), call, utterance)) is not copied
    if not copied:
        assert code == OutcomeCode.MODEL_ERROR and "never invented" in reason and repr(body) in reason
