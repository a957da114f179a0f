"""Decode steps on a static KV cache, replayed as a CUDA graph.

On a GPU one decode pass of a small LM is bound by the host, not the GPU: the H200 run of
``benchmarks/bench_gpu.py`` (README, "The CUDA path, measured") took 30-37 ms per pass of the
0.5B shape, whose weights the GPU reads in 0.24 ms, because every pass launches a few hundred
small kernels from Python. A CUDA graph records those launches once and replays them as one.

A graph needs fixed shapes and fixed memory, so the pass it records feeds one token into a
*static* cache: per layer one key and one value buffer of ``max_len`` positions, written at the
position held in a device tensor, and an additive attention mask over all ``max_len`` positions
(0 where a position holds a token of this decision, the dtype's minimum elsewhere). The position
ids, the write position and the mask are updated in place before each replay; nothing in the
recorded pass reads a value back to the host. The tokens of a jump-forward pass are fed one replay
each (``one_token_passes``, the default with the graph), or as one eager pass on the same buffers.

:class:`StaticDecoder` works on any device: on the CPU (or with ``graph=False``) it runs the same
static-cache passes eagerly, which is how the tests check it against the dynamic cache without a
GPU. The LM is a transformers causal LM whose ``forward`` takes ``attention_mask`` as a dict of
ready masks (Qwen2, Llama and their kin) and ``position_ids``.
"""

from __future__ import annotations

import logging

import torch

from .modeling import kv_geometry

log = logging.getLogger(__name__)

KV = list[tuple[torch.Tensor, torch.Tensor]]
STATIC_DECODE = ("auto", "graph", "eager", "off")


def resolve_static_decode(setting: str, device: torch.device) -> str:
    """The ``static_decode`` setting for a device: ``"auto"`` is the graph on CUDA and ``"off"``
    (the dynamic cache) elsewhere, where it gains nothing. ValueError for an unknown setting or a
    graph off CUDA."""
    if setting not in STATIC_DECODE:
        raise ValueError(f"static_decode must be one of {STATIC_DECODE}, got {setting!r}")
    if setting == "auto":
        return "graph" if device.type == "cuda" else "off"
    if setting == "graph" and device.type != "cuda":
        raise ValueError("static_decode 'graph' (CUDA graphs) needs device 'cuda'")
    return setting


class _StaticKV:
    """The cache object the LM's attention layers call ``update`` on: fixed buffers, written in place."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, max_len: int, dtype, device):
        shape = (1, kv_heads, max_len, head_dim)
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(layers)]
        self.where = torch.zeros(1, dtype=torch.long, device=device)  # positions the next pass writes

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        self.keys[layer_idx].index_copy_(2, self.where, key_states)
        self.values[layer_idx].index_copy_(2, self.where, value_states)
        return self.keys[layer_idx], self.values[layer_idx]

    def get_seq_length(self, layer_idx: int = 0) -> int:  # never asked: position ids are always given
        raise RuntimeError("the static decode cache has no sequence length; pass position_ids")


class StaticDecoder:
    """One decision's decode passes on a static cache, one-token passes as a CUDA graph.

    ``load(kv)`` takes the KV of the prompt (system prompt, image, utterance: the dynamic cache's
    layers after the prefill); each ``step(ids)`` then feeds ``ids`` and returns the last position's
    logits (V,), like the dynamic path's step. ``fits(prompt_len, n_new)`` says whether a prompt of
    ``prompt_len`` tokens plus ``n_new`` more fits in ``max_len`` (otherwise use the dynamic cache).
    """

    def __init__(
        self, lm, *, max_len: int = 512, graph: bool | None = None, one_token_passes: bool | None = None
    ):
        param = next(lm.parameters())
        self.lm, self.device, self.dtype = lm, param.device, param.dtype
        self.max_len = int(max_len)
        self.graph = (self.device.type == "cuda") if graph is None else bool(graph)
        # feed a jump-forward pass's tokens one replay each (default with the graph: a replay costs
        # a fraction of one eager pass) rather than as one eager pass of several tokens
        self.one_token_passes = self.graph if one_token_passes is None else bool(one_token_passes)
        if self.graph and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the LM on a CUDA device")
        layers, kv_heads, head_dim = kv_geometry(lm.config)
        self.cache = _StaticKV(layers, kv_heads, head_dim, self.max_len, self.dtype, self.device)
        self._where = self.cache.where  # the tensor the recorded pass reads: filled, never replaced
        self.masked = torch.finfo(self.dtype).min
        self.length = 0
        # the recorded pass's inputs (updated in place) and output
        self._ids = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._pos = torch.zeros((1, 1), dtype=torch.long, device=self.device)
        self._mask = torch.full((1, 1, 1, self.max_len), self.masked, dtype=self.dtype, device=self.device)
        self._logits: torch.Tensor | None = None
        self._graph = None
        self.replays = 0  # passes served by the graph (for tests and benchmarks)

    def fits(self, prompt_len: int, n_new: int) -> bool:
        return prompt_len + n_new <= self.max_len

    @torch.no_grad()
    def load(self, kv: KV) -> None:
        """Copy the prompt's KV (per layer (1, kv_heads, T, head_dim) keys and values) in."""
        n = int(kv[0][0].shape[2])
        if n > self.max_len:
            raise ValueError(f"a prompt of {n} tokens does not fit the static cache of {self.max_len}")
        for layer, (k, v) in enumerate(kv):
            self.cache.keys[layer][:, :, :n].copy_(k)
            self.cache.values[layer][:, :, :n].copy_(v)
        self._mask.fill_(self.masked)
        self._mask[..., :n] = 0.0
        self.length = n

    def _forward(self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.lm(
            input_ids=ids,
            position_ids=positions,
            attention_mask={"full_attention": mask},
            past_key_values=self.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits

    @torch.no_grad()
    def step(self, new_ids: list[int]) -> torch.Tensor:
        n, start = len(new_ids), self.length
        if start + n > self.max_len:
            raise ValueError(f"the static cache of {self.max_len} positions is full")
        if n > 1 and self.one_token_passes:
            for token in new_ids[:-1]:
                self.step([token])
            return self.step(new_ids[-1:])
        if n == 1:
            self._ids.fill_(new_ids[0])
            self._pos.fill_(start)
            self._where.fill_(start)
            self._mask[..., start] = 0.0
            if self.graph and self._graph is None:
                try:
                    self._record()
                except Exception as e:  # a torch / driver that cannot record this LM: stay eager
                    log.warning(
                        "CUDA graph recording failed (%s: %s); decoding without it", type(e).__name__, e
                    )
                    self.graph, self._logits = False, None
            if self.graph:
                self._graph.replay()
                self.replays += 1
                logits = self._logits.clone()  # the next replay overwrites the recorded output
            else:
                logits = self._forward(self._ids, self._pos, self._mask)
        else:  # several tokens: eager, causal among themselves
            positions = torch.arange(start, start + n, device=self.device)
            later = torch.arange(self.max_len, device=self.device)[None, :] > positions[:, None]
            mask = torch.zeros((1, 1, n, self.max_len), dtype=self.dtype, device=self.device)
            mask[0, 0][later] = self.masked  # every position up to its own holds this decision's tokens
            self.cache.where = positions
            try:
                logits = self._forward(torch.tensor([new_ids], device=self.device), positions[None, :], mask)
            finally:
                self.cache.where = self._where
            self._mask[..., start : start + n] = 0.0
        self.length = start + n
        return logits[0, -1]

    def _record(self) -> None:
        """Record the one-token pass (after warm-up passes on a side stream, as CUDA graphs require).

        The warm-up passes write at the current position, which the pass being served writes
        again; nothing else of the cache changes."""
        stream = torch.cuda.Stream(device=self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._forward(self._ids, self._pos, self._mask)
        torch.cuda.current_stream(self.device).wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._logits = self._forward(self._ids, self._pos, self._mask)
        self._graph = graph
