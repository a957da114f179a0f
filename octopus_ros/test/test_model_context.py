"""In-context examples (Otter) in the prompt: the text and ids of a prompt with examples, its
training labels, and Octopus.decide with examples, per call or fixed (cached prefix), against a
prompt built by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octopus_ros.model import ContextExample, PromptFormat, load_checkpoint
from octopus_ros.model.runtime import Octopus
from octopus_ros.model.testing import make_tiny_checkpoint
from octopus_ros.model.tokenizer import IMAGE_TOKEN
from octopus_ros.paths import config_path

CONTEXT = (
    ("pick up the blue ball", "pick_up('blue ball')"),  # by name: written as <nexa_0>(...)<nexa_end>
    ("stop right now", "<nexa_3>()<nexa_end>"),
)
QUERY = "pick up the red cup"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.set_num_threads(1)
    return make_tiny_checkpoint(
        tmp_path_factory.mktemp("ctx") / "tiny", config_path("functions.yaml"), seed=3
    )


@pytest.fixture(scope="module")
def octopus(ckpt):
    return Octopus.load(ckpt)


@pytest.fixture(scope="module")
def frame():
    return np.random.default_rng(5).integers(0, 255, (40, 48, 3), dtype=np.uint8)


def _turns(octopus) -> str:
    """The examples as the prompt should carry them, written out by hand for the default template."""
    calls = [octopus.registry.by_name("pick_up").token, octopus.registry.by_name("stop").token]
    assert calls == [0, 3]
    return (
        "\nUser: pick up the blue ball\nGPT:<nexa_0>('blue ball')<nexa_end>"
        "\nUser: stop right now\nGPT:<nexa_3>()<nexa_end>"
    )


def test_prompt_with_context_round_trips(octopus):
    cfg = octopus.config
    assert cfg.prompt_template == "{system}{images}\nUser: {instruction}\nGPT:"
    fmt = PromptFormat(tokenizer=octopus.tokenizer, config=cfg)
    context = octopus.canonical_context(CONTEXT)
    assert context[0] == ContextExample("pick up the blue ball", "<nexa_0>('blue ball')<nexa_end>")
    images = IMAGE_TOKEN * cfg.num_image_tokens
    # without examples the prompt is what it always was (the bundled model's training prompts)
    assert fmt.build_prompt(QUERY) == f"{cfg.system_prompt}{images}\nUser: {QUERY}\nGPT:"
    text = fmt.build_prompt(QUERY, context)
    assert text == f"{cfg.system_prompt}{_turns(octopus)}{images}\nUser: {QUERY}\nGPT:"
    ids = fmt.encode_prompt(QUERY, context)
    assert octopus.tokenizer.decode(ids, skip_special_tokens=False) == text
    prefix = fmt.system_prefix_ids(context)
    assert ids[: len(prefix)] == prefix and ids[len(prefix)] == cfg.image_token_id
    assert cfg.nexa_token_ids[3] in prefix  # the examples are in the cacheable prefix
    # training: loss on the query's answer only, not on the examples' answers
    ex = fmt.build_training_example(QUERY, "<nexa_0>('red cup')<nexa_end>", context)
    n = len(ids)
    assert ex.input_ids[:n] == ids and ex.labels[:n] == [-100] * n
    assert ex.labels[n:] == ex.input_ids[n:] and ex.input_ids[-1] == cfg.nexa_end_id


def test_template_that_cannot_carry_context_says_so(octopus):
    import copy

    cfg = copy.deepcopy(octopus.config)
    cfg.prompt_template = "{images}\nUser: {instruction}\nGPT:"  # no {system}
    fmt = PromptFormat(tokenizer=octopus.tokenizer, config=cfg)
    assert fmt.build_prompt(QUERY).endswith("GPT:")
    with pytest.raises(ValueError, match="cannot carry in-context examples"):
        fmt.build_prompt(QUERY, [("a", "<nexa_3>()<nexa_end>")])


def _same(a, b) -> None:
    assert a.raw_text == b.raw_text
    assert len(a.free_logits) == len(b.free_logits) > 0
    for (la, ia), (lb, ib) in zip(a.free_logits, b.free_logits, strict=True):
        assert ia == ib
        torch.testing.assert_close(la, lb, atol=2e-4, rtol=1e-4)


def test_decide_with_context_equals_hand_built_prompt(ckpt, octopus, frame):
    # the reference: a model whose system prompt has the examples written in by hand
    ref_ckpt = load_checkpoint(ckpt)
    ref_ckpt.model.config.system_prompt += _turns(octopus)
    ref = Octopus(model=ref_ckpt.model, tokenizer=ref_ckpt.tokenizer, registry=octopus.registry)
    want = ref.decide(QUERY, frame, keep_logits=True)
    plain = octopus.decide(QUERY, frame, keep_logits=True)
    assert not torch.allclose(plain.free_logits[0][0], want.free_logits[0][0], atol=1e-3), (
        "the examples must change what the model sees"
    )
    stale = octopus.encode(frame)  # prefilled without examples

    # per call, on a raw frame and on a pre-encoded one
    _same(octopus.decide(QUERY, frame, context=CONTEXT, keep_logits=True), want)
    _same(octopus.decide(QUERY, stale, context=CONTEXT, keep_logits=True), want)

    # fixed: cached in the system prefix and in the image prefill
    try:
        octopus.set_context(CONTEXT)
        assert octopus.context == octopus.canonical_context(CONTEXT)
        enc = octopus.encode(frame)
        assert enc.prefix == tuple(octopus.prompt.system_prefix_ids(octopus.context))
        _same(octopus.decide(QUERY, enc, keep_logits=True), want)
        _same(octopus.decide(QUERY, frame, keep_logits=True), want)
        _same(octopus.decide(QUERY, stale, keep_logits=True), want)  # an encoding from before
        _same(octopus.decide(QUERY, enc, context=(), keep_logits=True), plain)  # none, this once
        for mode in ("generate",):
            assert (
                octopus.decide(QUERY, frame, mode=mode).raw_text
                == ref.decide(QUERY, frame, mode=mode).raw_text
            )
    finally:
        octopus.set_context(())
    _same(octopus.decide(QUERY, enc, keep_logits=True), plain)  # enc's prefix has examples: not used
    _same(octopus.decide(QUERY, octopus.encode(frame), keep_logits=True), plain)


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        (("open the pod bay doors", "open_pod_bay_doors()"), r"example 0 \('open the pod bay doors' =>"),
        (("pick up", "pick_up("), r"example 0 \('pick up' => 'pick_up\('\): not a valid call"),
        (("", "stop()"), "instruction must be non-empty"),
        (("just words",), r"context\[0\] must be an \(instruction, answer\) pair"),
    ],
)
def test_bad_context_is_refused_naming_the_example(octopus, bad, match):
    before = octopus.context
    with pytest.raises(ValueError, match=match):
        octopus.set_context([bad])
    assert octopus.context == before
    with pytest.raises(ValueError, match=match):
        octopus.decide(QUERY, np.zeros((32, 32, 3), np.uint8), context=[bad])
