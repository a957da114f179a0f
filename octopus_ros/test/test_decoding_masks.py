"""Token masks of the constrained decoder (issue 14 item 2): the per-state masks are exactly the
tokens the grammar accepts, and the fast paths (top token first, cached masks, scan in logit
order) choose what a brute-force scan over the whole vocabulary chooses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from octopus_ros.functions import CallGrammar, FunctionRegistry
from octopus_ros.model.decoding import ConstrainedDecoder
from octopus_ros.model.testing import tiny_model
from octopus_ros.paths import config_path

UTTERANCES = ["text Bob that the meeting is cancelled", "给鲍勃发短信说会议取消了", "put the red cup away"]
ALLOWLISTS = [None, ("set_speed", "stop"), ("place", "send_message")]


@pytest.fixture(scope="module")
def registry():
    return FunctionRegistry.from_yaml(config_path("functions.yaml"))


@pytest.fixture(scope="module")
def cfg(tok):
    return tiny_model(tok).config


def make_decoder(tok, cfg) -> ConstrainedDecoder:
    return ConstrainedDecoder(tokenizer=tok, nexa_token_ids=cfg.nexa_token_ids, nexa_end_id=cfg.nexa_end_id)


class BruteForce(ConstrainedDecoder):
    """The reference: every token of the vocabulary checked, best logit wins."""

    def _best_allowed(self, grammar, state, pending, logits):  # logits: the pass's numpy row
        for tid in torch.argsort(torch.as_tensor(logits), descending=True, stable=True).tolist():
            ok = self.accept(grammar, state, pending, tid)
            if ok is not None:
                return tid, ok
        return None


def brute_mask(decoder: ConstrainedDecoder, grammar, state, pending: bytes) -> list[int]:
    return [t for t in range(decoder.table.size) if decoder.accept(grammar, state, pending, t) is not None]


def random_logits(size: int, rng: np.random.Generator, tok, cfg) -> torch.Tensor:
    """Distinct random logits with junk (special tokens, quotes, lone UTF-8 lead bytes) on top."""
    out = torch.from_numpy(rng.permutation(size).astype(np.float32))
    for text in ("'", "<", ")", ",", "9", "\\"):
        for t in tok.encode(text, add_special_tokens=False):
            out[t] += size * rng.random()
    out[cfg.nexa_end_id] += size * rng.random()
    out[tok.convert_tokens_to_ids("ç")] += size * rng.random()
    return out


def states_along(decoder, grammar, logits_fn, first) -> list[tuple]:
    """(state, pending) pairs a decode visits (recorded through accept's calls)."""
    seen = []
    inner = decoder._best_allowed

    def spy(g, state, pending, logits):
        seen.append((state, pending))
        return inner(g, state, pending, logits)

    decoder._best_allowed = spy
    try:
        decoder.decode(first, lambda ids: logits_fn(), grammar, max_new_tokens=40, jump_forward=False)
    finally:
        del decoder._best_allowed
    return seen


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**31 - 1), which=st.integers(0, len(UTTERANCES) - 1), fn=st.integers(0, 12))
def test_masks_are_exactly_the_accepted_tokens(registry, tok, cfg, seed, which, fn):
    decoder = make_decoder(tok, cfg)
    decoder.mask_budget = 10**9  # every state enumerated, free text too
    grammar = CallGrammar(registry).bind(UTTERANCES[which])
    rng = np.random.default_rng(seed)
    V = len(tok)
    first = random_logits(V, rng, tok, cfg)
    first[cfg.nexa_token_ids[fn]] = 10.0 * V
    states = states_along(decoder, grammar, lambda: random_logits(V, rng, tok, cfg), first)
    assert states
    for state, pending in states[:12]:
        got = decoder.allowed_ids(grammar, state, pending)
        assert got is not None
        assert got.tolist() == brute_mask(decoder, grammar, state, pending), (state, pending)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**31 - 1),
    which=st.integers(0, len(UTTERANCES) - 1),
    allow=st.integers(0, len(ALLOWLISTS) - 1),
    budget=st.sampled_from([0, 8, 4096]),
    jf=st.booleans(),
)
def test_choices_equal_a_scan_of_the_whole_vocabulary(registry, tok, cfg, seed, which, allow, budget, jf):
    """Fast paths (top token, cached mask, open-state scan; budget 0 forces the scan) decide what
    the brute-force reference decides, token for token, with the same confidence."""
    grammar = CallGrammar(registry, allowlist=ALLOWLISTS[allow]).bind(UTTERANCES[which])
    fast = make_decoder(tok, cfg)
    slow = BruteForce(tokenizer=tok, nexa_token_ids=cfg.nexa_token_ids, nexa_end_id=cfg.nexa_end_id)
    fast.mask_budget = budget
    V = len(tok)
    for _ in range(2):  # the second decode runs on cached masks
        rng = np.random.default_rng(seed)
        seq = [random_logits(V, rng, tok, cfg) for _ in range(41)]
        runs = []
        for dec in (fast, slow):
            it = iter(seq[1:])
            step = lambda ids, it=it: next(it)  # noqa: E731
            runs.append(dec.decode(seq[0], step, grammar, max_new_tokens=40, jump_forward=jf))
        a, b = runs
        assert (a.text, a.token_ids, a.error) == (b.text, b.token_ids, b.error)
        assert a.forward_passes == b.forward_passes
        assert (a.confidence > 0) == (b.confidence > 0)
        if a.confidence > 0:
            assert math.log(a.confidence) == pytest.approx(math.log(b.confidence), rel=1e-6)


def test_confidence_is_the_product_of_the_free_tokens_softmax(registry, tok, cfg):
    """The confidence, computed once over all free tokens, is the product of each free token's
    softmax probability at temperature T (float64 reference, row by row)."""
    decoder = make_decoder(tok, cfg)
    grammar = CallGrammar(registry).bind(UTTERANCES[0])
    V = len(tok)
    rng = np.random.default_rng(3)
    first = torch.from_numpy(rng.normal(0, 2, V).astype(np.float32))
    first[cfg.nexa_token_ids[10]] += 8.0  # send_message: free choices inside the copied text

    def step(ids):
        return torch.from_numpy(rng.normal(0, 2, V).astype(np.float32))

    res = decoder.decode(first, step, grammar, temperature=0.7, keep_logits=True, max_new_tokens=40)
    assert res.error is None and res.free_tokens == len(res.free_logits) >= 3, res
    logp = sum(float(torch.log_softmax(row.double() / 0.7, dim=0)[t]) for row, t in res.free_logits)
    assert res.confidence > 0.0 and math.log(res.confidence) == pytest.approx(logp, rel=1e-6)
