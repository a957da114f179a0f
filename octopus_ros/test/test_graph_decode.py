"""The static-cache decode path (model/graph_decode.py), which CUDA graphs record on a GPU.

CI has no GPU, so the graph itself is not replayed here (benchmarks/bench_gpu.py checks it on
one); these tests check what the graph records: the same passes on the static cache, run
eagerly, give the dynamic cache's decisions and logits, one-token and jump-forward passes alike.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octopus_ros.data.natural import load_natural_set
from octopus_ros.functions import load_default_registry
from octopus_ros.model import Octopus
from octopus_ros.model.graph_decode import StaticDecoder
from octopus_ros.model.testing import tiny_model, tiny_tokenizer
from octopus_ros.paths import default_model_dir


@pytest.fixture(scope="module")
def bundled_pair():
    return Octopus.load(default_model_dir()), Octopus.load(default_model_dir(), static_decode="eager")


def _free_logits(d) -> list[np.ndarray]:
    return [np.asarray(t[0], dtype=np.float64) for t in d.free_logits]


def test_static_cache_decides_as_the_dynamic_cache_on_the_natural_set(bundled_pair):
    dynamic, static = bundled_pair
    items = load_natural_set(registry=dynamic.registry)[::6]
    jumped = 0
    for item in items:
        frame = item.frame()
        a = dynamic.decide(item.text, frame, keep_logits=True)
        b = static.decide(item.text, frame, keep_logits=True)
        assert b.raw_text == a.raw_text, item.id
        assert b.confidence == pytest.approx(a.confidence, abs=1e-4), item.id
        for x, y in zip(_free_logits(a), _free_logits(b), strict=True):
            assert np.abs(x - y).max() < 1e-3, item.id
        jumped += a.timings["tokens"] - 1 > a.timings["forward_passes"]  # some passes fed several tokens
    assert static._static is not None and static._static.length > 0  # the static path ran
    assert jumped > 0


@pytest.mark.parametrize("one_token_passes", [False, True])
def test_one_token_and_several_token_passes_match_the_dynamic_cache(one_token_passes):
    """A random tiny LM with grouped KV heads (4 query, 2 KV): the same token stream fed one at a
    time and in jump-forward chunks (one eager pass, or one replayable pass per token as with the
    graph) gives the dynamic cache's logits at every position."""
    tok = tiny_tokenizer()
    lm = tiny_model(tok).lm.eval()
    torch.manual_seed(1)
    prompt = torch.randint(0, 200, (1, 9))
    stream = [[5], [17, 3, 8], [40], [2, 9], [11]]
    with torch.no_grad():
        out = lm(input_ids=prompt, use_cache=True)
        kv = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
        static = StaticDecoder(lm, max_len=32, graph=False, one_token_passes=one_token_passes)
        static.load(kv)
        cache = out.past_key_values
        for ids in stream:
            want = lm(input_ids=torch.tensor([ids]), past_key_values=cache, use_cache=True).logits[0, -1]
            got = static.step(ids)
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert static.length == 9 + sum(map(len, stream))


def test_a_prompt_too_long_for_the_static_cache_uses_the_dynamic_one():
    tok = tiny_tokenizer()
    registry = load_default_registry()
    model = tiny_model(tok)
    frame = np.zeros((32, 32, 3), np.uint8)
    plain = Octopus(model=model, tokenizer=tok, registry=registry)
    static = Octopus(model=model, tokenizer=tok, registry=registry, static_decode="eager")
    static.decide("pick up the red cup", frame)  # builds the static decoder
    static._static.max_len = 8  # shorter than any prompt: every decision must fall back
    long = "pick up the red cup " * 20
    assert static.decide(long, frame).raw_text == plain.decide(long, frame).raw_text


def test_static_decode_settings_are_checked():
    tok = tiny_tokenizer()
    registry = load_default_registry()
    model = tiny_model(tok)
    with pytest.raises(ValueError, match="static_decode must be one of"):
        Octopus(model=model, tokenizer=tok, registry=registry, static_decode="fast")
    with pytest.raises(ValueError, match="needs device 'cuda'"):
        Octopus(model=model, tokenizer=tok, registry=registry, static_decode="graph")
    with pytest.raises(ValueError, match="CUDA graphs need"):
        StaticDecoder(model.lm, graph=True)
    assert Octopus(model=model, tokenizer=tok, registry=registry).static_decode == "off"  # auto on a CPU
