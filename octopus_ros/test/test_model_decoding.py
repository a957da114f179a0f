"""Constrained decoding: only allowed, schema-valid calls, even under adversarial logits;
jump-forward and the KV prefix caches change speed, not results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, FunctionRegistry, parse_call, validate_call
from octopus_ros.model.decoding import TokenTable, split_utf8
from octopus_ros.model.runtime import Decision, Octopus
from octopus_ros.model.testing import tiny_model
from octopus_ros.paths import config_path

ALLOWLISTS = [
    None,
    ("pick_up",),
    ("set_speed", "stop"),
    ("navigate_to", "feed_pet"),
    ("place", "send_message"),
]


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.fixture(scope="module")
def octopus(tok, registry):
    return Octopus(model=tiny_model(tok, seed=5), tokenizer=tok, registry=registry)


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)


def assert_valid(d: Decision, registry, allowlist):
    """Either a call that is allowed and inside its schema, or a typed error; never both/neither."""
    assert (d.call is None) != (d.error is None)
    grammar = CallGrammar(registry, allowlist=allowlist)
    if d.call is not None:
        assert validate_call(d.call, registry, allowlist) is None
        assert d.call.function in registry.allowed_names(allowlist)
        assert grammar.accepts(d.raw_text)
        assert 0.0 <= d.confidence <= 1.0  # 0.0: a product of many small probabilities underflows
    else:
        assert d.confidence == 0.0 and d.error.kind
        if d.mode == "constrained":  # only ever cut short, never off the grammar
            assert d.error.kind == "NO_END" and grammar.advance(grammar.start(), d.raw_text) is not None


def adversarial_head(octopus: Octopus, bias: torch.Tensor) -> torch.nn.Module:
    """Swap in an LM head with a bias (the original is untied and kept for restoring)."""
    lm = octopus.model.lm
    old = lm.lm_head
    head = torch.nn.Linear(old.in_features, old.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(old.weight)
        head.bias.copy_(bias)
    lm.lm_head = head
    return old


def hostile_bias(tok, octopus: Octopus, registry, allowlist, rng: torch.Generator) -> torch.Tensor:
    """Random logits plus large pushes toward disallowed functions and out-of-schema text."""
    cfg = octopus.config
    V = octopus.model.lm.get_output_embeddings().out_features
    bias = torch.randn(V, generator=rng) * 8
    allowed = registry.allowed_names(allowlist)
    for spec in registry.functions:
        if spec.name not in allowed:
            bias[cfg.nexa_token_ids[spec.token]] += 60  # disallowed functional tokens
    pushed = {
        tid
        for text in ('"', "<", ">", "9", "-", "2", "True", "\\", "banana", "红", "))", ",")
        for tid in tok.encode(text, add_special_tokens=False)
    }
    pushed |= {cfg.image_token_id, cfg.eos_token_id, cfg.pad_token_id, cfg.nexa_end_id}
    pushed.add(tok.convert_tokens_to_ids("ç"))  # a lone UTF-8 lead byte: the token ends mid-character
    for tid in pushed:  # each junk token gets its own random push, so different junk wins per seed
        bias[tid] += 20 + 40 * torch.rand(1, generator=rng).item()
    return bias


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, len(ALLOWLISTS) - 1), jf=st.booleans())
def test_adversarial_logits_never_give_invalid_calls(octopus, tok, registry, frame, seed, which, jf):
    allowlist = ALLOWLISTS[which]
    rng = torch.Generator().manual_seed(seed)
    old = adversarial_head(octopus, hostile_bias(tok, octopus, registry, allowlist, rng))
    octopus.jump_forward = jf
    try:
        d = octopus.decide("把红色的杯子拿起来", frame, allowlist=allowlist, max_new_tokens=64)
    finally:
        octopus.model.lm.lm_head = old
        octopus.jump_forward = True
    assert_valid(d, registry, allowlist)


def test_tokens_ending_inside_a_character_give_whole_characters(octopus, tok, registry, frame):
    V = octopus.model.lm.get_output_embeddings().out_features
    bias = torch.zeros(V)
    bias[tok.convert_tokens_to_ids("ç")] = 100.0  # 0xE7: first byte of U+7000..U+7FFF (e.g. 红)
    bias[octopus.config.nexa_token_ids[0]] = 100.0
    old = adversarial_head(octopus, bias)
    try:
        d = octopus.decide("拿起", frame, allowlist=("pick_up",), max_new_tokens=128)
    finally:
        octopus.model.lm.lm_head = old
    assert_valid(d, registry, ("pick_up",))
    text = d.call.args[0].value
    assert len(text) == 32 and all(0x7000 <= ord(c) <= 0x7FFF for c in text), text


def test_disallowed_function_is_never_emitted_even_when_certain(octopus, registry, frame):
    cfg = octopus.config
    V = octopus.model.lm.get_output_embeddings().out_features
    bias = torch.zeros(V)
    bias[cfg.nexa_token_ids[registry.by_name("navigate_to").token]] = 1000.0
    old = adversarial_head(octopus, bias)
    try:
        d = octopus.decide("go to the kitchen", frame, allowlist=("stop",))
    finally:
        octopus.model.lm.lm_head = old
    assert d.call.function in ("stop", "no_action")
    assert d.confidence < 1e-6  # the model wanted something else: the confidence says so


@pytest.mark.parametrize("allowlist", ALLOWLISTS)
def test_random_model_outputs_are_valid_in_every_mode(octopus, registry, frame, allowlist):
    for mode in ("constrained", "generate", "plain"):
        d = octopus.decide("pick up the red cup", frame, allowlist=allowlist, mode=mode, max_new_tokens=64)
        assert_valid(d, registry, allowlist)
        for key in ("preprocess", "encode", "prefill", "decode", "total", "tokens"):
            assert key in d.timings
    assert octopus.decide("x", frame, allowlist=allowlist).call is not None  # constrained: always a call


def test_confidence_is_at_most_function_token_probability(octopus, registry, frame):
    enc = octopus.encode(frame)
    ids = octopus.prompt.encode_prompt("pick up the red cup")
    with torch.no_grad():
        logits, *_ = octopus._prefill(ids, enc)
    d = octopus.decide("pick up the red cup", enc)
    probs = torch.softmax(logits.float(), dim=-1)
    p_fn = float(probs[octopus.config.nexa_token_ids[d.call.token]])
    assert d.confidence <= p_fn + 1e-6


def test_jump_forward_and_prefix_caches_do_not_change_results(tok, registry, frame):
    model = tiny_model(tok, seed=11)
    variants = {
        "all": Octopus(model=model, tokenizer=tok, registry=registry),
        "no_jf": Octopus(model=model, tokenizer=tok, registry=registry, jump_forward=False),
        "system_kv_only": Octopus(model=model, tokenizer=tok, registry=registry, prefill_on_encode=False),
        "no_cache": Octopus(model=model, tokenizer=tok, registry=registry, prefix_cache=False),
    }
    ids = variants["all"].prompt.encode_prompt("feed the cat")
    with torch.no_grad():
        first = {k: o._prefill(ids, o.encode(frame))[0] for k, o in variants.items()}
    for k in variants:
        torch.testing.assert_close(first[k], first["no_cache"], atol=1e-4, rtol=1e-4)
    for allowlist in ALLOWLISTS:
        out = {k: o.decide("feed the cat", frame, allowlist=allowlist) for k, o in variants.items()}
        texts = {k: d.raw_text for k, d in out.items()}
        assert len(set(texts.values())) == 1, texts
        # Every complete call has forced text (at least "(" and <nexa_end>): jump-forward must save
        # passes, strictly. Without it, every token after the functional one costs one pass.
        jf, no_jf = out["all"].timings, out["no_jf"].timings
        assert out["all"].error is None, texts
        assert no_jf["forward_passes"] == no_jf["tokens"] - 1, no_jf
        assert jf["tokens"] == no_jf["tokens"], (jf, no_jf)
        assert jf["forward_passes"] < no_jf["forward_passes"], (allowlist, jf, no_jf)
    # the cached prefixes are not modified by a call: the same encoding gives the same answer twice
    o = variants["all"]
    enc = o.encode(frame)
    a, b = o.decide("stop", enc), o.decide("stop", enc)
    assert a.raw_text == b.raw_text and a.confidence == pytest.approx(b.confidence, rel=1e-5)


def test_jump_forward_feeds_forced_text_without_a_pass(octopus, tok, registry, frame):
    """A call whose whole tail is forced: with jump-forward it costs no pass after the prefill;
    without it, one pass per forced token. The counts are fixed by the grammar and tokenizer."""
    cfg = octopus.config
    V = octopus.model.lm.get_output_embeddings().out_features
    bias = torch.zeros(V)
    bias[cfg.nexa_token_ids[registry.by_name("stop").token]] = 1000.0  # the model surely says stop
    forced = tok.encode(f"(){octopus.decoder.end_text}", add_special_tokens=False)
    assert forced[-1] == cfg.nexa_end_id and len(forced) >= 2
    old = adversarial_head(octopus, bias)
    try:
        octopus.jump_forward = True
        with_jf = octopus.decide("stop", frame)
        octopus.jump_forward = False
        without = octopus.decide("stop", frame)
    finally:
        octopus.model.lm.lm_head = old
        octopus.jump_forward = True
    token = registry.by_name("stop").token
    assert with_jf.raw_text == without.raw_text == f"<nexa_{token}>(){octopus.decoder.end_text}"
    assert with_jf.timings["forward_passes"] == 0
    assert with_jf.timings["forced_tokens"] == len(forced)
    assert with_jf.timings["tokens"] == without.timings["tokens"] == 1 + len(forced)
    assert without.timings["forward_passes"] == len(forced)


def test_bad_inputs_and_configuration_errors(octopus, frame):
    with pytest.raises(ValueError, match="uint8"):
        octopus.encode(frame.astype(np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        octopus.encode(frame[:, :, :2])
    with pytest.raises(ValueError, match="unknown functions"):
        octopus.decide("hi", frame, allowlist=("fly_to_moon",))
    with pytest.raises(ValueError, match="mode must be"):
        octopus.decide("hi", frame, mode="beam")
    d = octopus.decide("hi", frame, allowlist=("place",), max_new_tokens=3)
    assert d.call is None and d.error.kind == "NO_END" and d.raw_text.startswith("<nexa_")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(alphabet=st.sampled_from(list("ab cup'(),红色杯子拿起来é😀\\0123")), max_size=24))
def test_token_bytes_round_trip(tok, text):
    table = TokenTable(tok)
    ids = tok.encode(text, add_special_tokens=False)
    data = b"".join(table.token_bytes[i] for i in ids)
    assert data == text.encode("utf-8")
    head, tail = split_utf8(data[:-1]) if data else ("", b"")
    assert (head.encode("utf-8") + tail) == data[:-1]


def test_parse_of_constrained_output_round_trips(octopus, registry, frame):
    for allowlist in ALLOWLISTS:
        d = octopus.decide("把红色的杯子拿起来", frame, allowlist=allowlist)
        again = parse_call(d.raw_text, registry, allowlist=allowlist)
        assert again == d.call
