"""Grammar-constrained greedy decoding with functional tokens and jump-forward.

The call grammar (``octopus_ros.functions.CallGrammar``) is character-level: its text starts
with the functional token's literal (``"<nexa_3>"``) and ends with ``"<nexa_end>"``. This module
maps LM tokens onto that text:

1. The first token must be one of the *allowed* functional tokens (argmax among them).
2. Every later token is the highest-scoring token whose text the grammar accepts. Byte-level
   tokens may end inside a multi-byte UTF-8 character; the pending bytes are carried over and
   only accepted if some character starting with them can continue the call.
3. Jump-forward: when the grammar forces text (``"')"``, the rest of an enum value,
   ``"<nexa_end>"``), its tokens are fed to the LM in the next forward pass together with the
   last chosen token, instead of one pass per token. Forced text is only jumped when it
   tokenizes the same on its own as after the text so far, so the LM sees the token boundaries
   it was trained on.
4. Confidence = product of the (unconstrained) probabilities of the tokens the model chose
   freely; forced tokens do not count. It is at most the function token's probability. The
   probabilities are a softmax at ``temperature`` (the checkpoint's calibrated T, 1 when absent);
   the choices themselves are greedy and do not depend on it. It is computed once per call,
   over the logits of all free tokens together, not once per pass.

Cost per forward pass (the LM's own pass aside): the grammar is checked on a handful of tokens,
never in a Python loop over the vocabulary. The highest-logit token is tried first (one
``argmax``); when the grammar refuses it, the set of tokens the grammar accepts in that state
(a token mask, see :meth:`ConstrainedDecoder.allowed_ids`) is built once by walking the
vocabulary's byte trie with the grammar (pruned at the first refused character) and cached per
state, and the choice is an argmax over those ids only. States where most of the vocabulary is
allowed (free text) are scanned in decreasing logit order instead.

The decoder never raises for bad model output: dead ends and over-long outputs come back as
a :class:`DecodeResult` with ``error`` set.

Torch-free (numpy): both runtimes use it, the torch :class:`~octopus_ros.model.runtime.Octopus`
(``octopus_ros.model.decoding`` re-exports it) and the onnxruntime
:class:`~octopus_ros.lean.runtime.LeanOctopus`. Logits may be numpy arrays or torch tensors (any
device); each pass converts them to one float32 numpy row once (:func:`as_numpy`).
"""

from __future__ import annotations

import bisect
import codecs
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class Grammar(Protocol):
    """What the decoder needs from a call grammar (``octopus_ros.functions.CallGrammar``)."""

    def start(self) -> Hashable: ...

    def advance(self, state: Hashable, text: str) -> Hashable | None: ...

    def forced(self, state: Hashable) -> str: ...

    def is_complete(self, state: Hashable) -> bool: ...

    def allowed_function_tokens(self) -> Sequence[int]: ...

    # Optional: ``cache_key(state)``, what the decoder's caches key on instead of the grammar
    # itself (a grammar bound to one utterance shares the entries that do not depend on it).


@dataclass
class DecodeResult:
    """Outcome of one constrained decode."""

    text: str  # call text so far, e.g. "<nexa_0>('red cup')<nexa_end>"
    token_ids: list[int] = field(default_factory=list)
    confidence: float = 0.0
    error: tuple[str, str] | None = None  # (kind, message) when no complete call was produced
    function_index: int | None = None
    forward_passes: int = 0  # LM passes after the prefill
    free_tokens: int = 0  # tokens chosen by the model
    forced_tokens: int = 0  # tokens fed by jump-forward
    # (logits (V,), chosen id) of every freely chosen token, kept only when asked (calibration);
    # the rows are of the kind ``step`` returned (torch tensors from the torch runtime)
    free_logits: list[tuple[Any, int]] | None = None
    # (start, end, log probability at the temperature) of every freely chosen token: where its text
    # lies in ``text``; ``confidence`` is exp of the sum of the log probabilities
    free_pieces: list[tuple[int, int, float]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.error is None


def as_numpy(logits: Any) -> np.ndarray:
    """One row of logits (V,) as a float32 numpy array: a numpy array as it is (float32), a torch
    tensor (any device or dtype) through ``.float().cpu().numpy()``, without importing torch."""
    if isinstance(logits, np.ndarray):
        return logits if logits.dtype == np.float32 else logits.astype(np.float32)
    if hasattr(logits, "detach"):  # a torch tensor
        return logits.detach().float().cpu().numpy()
    return np.asarray(logits, dtype=np.float32)


def _kept(row: Any, as_array: np.ndarray) -> Any:
    """A copy of a logits row for ``free_logits``, of the caller's kind (torch rows stay torch)."""
    if hasattr(row, "detach"):
        return row.detach().float().cpu().clone()
    return np.array(as_array, copy=True)


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (used by byte-level BPE)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    mapping, extra = {}, 0
    for b in range(256):
        if b in printable:
            mapping[b] = chr(b)
        else:
            mapping[b] = chr(256 + extra)
            extra += 1
    return mapping


class TokenTable:
    """Raw bytes of every token, for checking tokens against a character grammar.

    Handles byte-level BPE (GPT-2/Qwen style) and SentencePiece-style (``▁`` + ``<0xNN>``)
    vocabularies. Special tokens have no bytes; ids at or beyond ``len(tokenizer)`` (padding
    rows of the LM head) are never produced.
    """

    def __init__(self, tokenizer):
        self.size = len(tokenizer)
        self.special_ids = set(tokenizer.all_special_ids)
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        byte_level = "ByteLevel" in repr(decoder)
        byte_of = {ch: b for b, ch in _bytes_to_unicode().items()}
        pieces = tokenizer.convert_ids_to_tokens(list(range(self.size)))
        self.token_bytes: list[bytes | None] = []
        for tid, piece in enumerate(pieces):
            if tid in self.special_ids or piece is None:
                self.token_bytes.append(None)
            elif byte_level:
                try:
                    self.token_bytes.append(bytes(byte_of[c] for c in piece))
                except KeyError:  # an added (non-byte-level) token: its literal text
                    self.token_bytes.append(piece.encode("utf-8"))
            elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                self.token_bytes.append(bytes([int(piece[3:5], 16)]))
            else:
                self.token_bytes.append(piece.replace("\u2581", " ").encode("utf-8"))

    def characters(self) -> set[str]:
        """Every complete character that appears in some token."""
        chars: set[str] = set()
        for b in self.token_bytes:
            if b:
                chars.update(b.decode("utf-8", errors="ignore"))
        return chars


def split_utf8(data: bytes) -> tuple[str, bytes] | None:
    """Decode the complete characters of ``data``; return (text, incomplete tail) or None if invalid."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(data, final=False)
    except UnicodeDecodeError:
        return None
    tail, _ = decoder.getstate()
    return text, tail


class ConstrainedDecoder:
    """Greedy grammar-constrained decoder for one tokenizer + functional-token layout.

    ``decode(first_logits, step, grammar)`` runs one call: ``first_logits`` (V,) are the logits
    after the prompt; ``step(ids)`` feeds ``ids`` to the LM (continuing its KV cache) and returns
    the logits (V,) after the last of them.
    """

    def __init__(
        self,
        *,
        tokenizer,
        nexa_token_ids: Sequence[int],
        nexa_end_id: int,
        extra_characters: str = "",
        max_cache_entries: int = 200_000,
    ):
        self.tokenizer = tokenizer
        self.table = TokenTable(tokenizer)
        self.nexa_token_ids = list(nexa_token_ids)
        self.nexa_end_id = nexa_end_id
        self.end_text = tokenizer.convert_ids_to_tokens(nexa_end_id)
        self.nexa_texts = tokenizer.convert_ids_to_tokens(self.nexa_token_ids)
        # Characters to probe when a token ends inside a multi-byte character.
        self._prefixes: dict[bytes, list[str]] = {}
        for ch in sorted(self.table.characters() | set(extra_characters)):
            enc = ch.encode("utf-8")
            for k in range(1, len(enc)):
                self._prefixes.setdefault(enc[:k], []).append(ch)
        self._accept_cache: dict[tuple, tuple | None] = {}
        self._tail_cache: dict[tuple, bool] = {}
        self._mask_cache: dict[tuple, np.ndarray | None] = {}
        self._forced_cache: dict[tuple[str, str], list[int] | None] = {}
        self._max_cache = max_cache_entries
        # The vocabulary's byte trie, implicit: token bytes sorted, a node is a range sharing a prefix.
        order = sorted((b, i) for i, b in enumerate(self.table.token_bytes) if b)
        self._keys = [b for b, _ in order]
        self._key_ids = [i for _, i in order]
        # Tokens whose text contains a functional token's literal: a grammar may accept such text
        # whole but not character by character, so they are always checked one by one.
        literals = [t.encode("utf-8") for t in (self.end_text, *self.nexa_texts) if t]
        self._whole_ids = [i for b, i in order if any(lit in b for lit in literals)]
        self.mask_budget = 4096  # trie nodes one mask may visit; past it the state counts as "open"

    # -- token checks --------------------------------------------------------------------------
    @staticmethod
    def _scope(grammar: Grammar, state: Hashable) -> Hashable:
        key_of = getattr(grammar, "cache_key", None)
        return grammar if key_of is None else key_of(state)

    def _tail_feasible(self, grammar: Grammar, state: Hashable, tail: bytes) -> bool:
        scope = self._scope(grammar, state)
        key = (scope, state, tail)
        hit = self._tail_cache.get(key)
        if hit is None:
            chars = list(self._prefixes.get(tail, ()))
            utterance = getattr(grammar, "utterance", None)
            if utterance and scope is grammar:  # copied text: the utterance's characters too
                k = len(tail)
                chars += [
                    c for c in set(utterance) if len(c.encode("utf-8")) > k and c.encode("utf-8")[:k] == tail
                ]
            hit = any(grammar.advance(state, ch) is not None for ch in chars)
            self._tail_cache[key] = hit
        return hit

    def accept(self, grammar: Grammar, state: Hashable, pending: bytes, tid: int) -> tuple | None:
        """(new state, new pending bytes) if token ``tid`` may follow, else None."""
        key = (self._scope(grammar, state), state, pending, tid)
        if key in self._accept_cache:
            return self._accept_cache[key]
        result = self._accept_uncached(grammar, state, pending, tid)
        if len(self._accept_cache) > self._max_cache:
            self._accept_cache.clear()
            self._tail_cache.clear()
            self._mask_cache.clear()
            self._forced_cache.clear()
        self._accept_cache[key] = result
        return result

    def _accept_uncached(self, grammar: Grammar, state: Hashable, pending: bytes, tid: int) -> tuple | None:
        if tid >= self.table.size:
            return None
        if tid == self.nexa_end_id:
            if pending:
                return None
            new = grammar.advance(state, self.end_text)
            return (new, b"") if new is not None and grammar.is_complete(new) else None
        data = self.table.token_bytes[tid]
        if not data:  # other special tokens (<image>, pad, eos, <nexa_i> inside a call)
            return None
        split = split_utf8(pending + data)
        if split is None:
            return None
        text, tail = split
        new = grammar.advance(state, text) if text else state
        if new is None or (tail and not self._tail_feasible(grammar, new, tail)):
            return None
        return new, tail

    def _forced_ids(self, text: str, forced: str) -> list[int] | None:
        """Token ids for ``forced`` if it tokenizes the same after ``text`` as on its own."""
        key = (text, forced)
        if key in self._forced_cache:
            hit = self._forced_cache[key]
            return None if hit is None else list(hit)
        enc = self.tokenizer.encode
        ids = enc(forced, add_special_tokens=False)
        if enc(text + forced, add_special_tokens=False) != enc(text, add_special_tokens=False) + ids:
            ids = None
        self._forced_cache[key] = ids
        return None if ids is None else list(ids)

    # -- token masks ---------------------------------------------------------------------------
    def allowed_ids(self, grammar: Grammar, state: Hashable, pending: bytes = b"") -> np.ndarray | None:
        """Ids (ascending, int64) of every token the grammar accepts after ``state`` with ``pending``
        bytes of an unfinished character, i.e. exactly the ``tid`` with ``accept(...)`` not None;
        None when the set is too large to enumerate cheaply (more than ``mask_budget`` trie nodes:
        free text). Cached per (grammar scope, state, pending)."""
        key = (self._scope(grammar, state), state, pending)
        if key in self._mask_cache:
            return self._mask_cache[key]
        ids = self._walk_trie(grammar, state, pending)
        if ids is not None:
            ids += [t for t in self._whole_ids if self.accept(grammar, state, pending, t) is not None]
            if not pending and self.accept(grammar, state, pending, self.nexa_end_id) is not None:
                ids.append(self.nexa_end_id)
            ids = np.array(sorted(set(ids)), dtype=np.int64)
        self._mask_cache[key] = ids
        return ids

    def _walk_trie(self, grammar: Grammar, state: Hashable, pending: bytes) -> list[int] | None:
        """Depth-first walk of the sorted token bytes from (state, pending): a child byte that
        completes a character the grammar refuses prunes its whole subtree. None past the budget."""
        keys, key_ids = self._keys, self._key_ids
        out: list[int] = []
        visits = 0
        stack = [(0, len(keys), 0, state, pending)]
        while stack:
            lo, hi, depth, st, tail = stack.pop()
            while lo < hi and len(keys[lo]) == depth:  # tokens that end here sort first
                if depth and (not tail or self._tail_feasible(grammar, st, tail)):
                    out.append(key_ids[lo])
                lo += 1
            while lo < hi:
                byte = keys[lo][depth]
                if byte == 255:
                    nxt = hi
                else:
                    nxt = bisect.bisect_left(keys, keys[lo][:depth] + bytes((byte + 1,)), lo, hi)
                visits += 1
                if visits > self.mask_budget:
                    return None
                split = split_utf8(tail + bytes((byte,)))
                if split is not None:
                    text, rest = split
                    new = grammar.advance(st, text) if text else st
                    if new is not None:
                        stack.append((lo, nxt, depth + 1, new, rest))
                lo = nxt
        return out

    # -- decoding ------------------------------------------------------------------------------
    def decode(
        self,
        first_logits: Any,
        step: Callable[[list[int]], Any],
        grammar: Grammar,
        *,
        max_new_tokens: int = 48,
        jump_forward: bool = True,
        temperature: float = 1.0,
        keep_logits: bool = False,
    ) -> DecodeResult:
        """``temperature`` scales the logits of the confidence only (greedy choices are the same at
        any T); ``keep_logits`` records every free token's logits in ``free_logits``."""
        if not temperature > 0.0 or not math.isfinite(temperature):
            raise ValueError(f"temperature must be a finite number > 0, got {temperature!r}")
        res = DecodeResult(text="", free_logits=[] if keep_logits else None)
        allowed = [i for i in grammar.allowed_function_tokens() if 0 <= i < len(self.nexa_token_ids)]
        if not allowed:
            res.error = ("NOT_ALLOWED", "no function is allowed")
            return res
        # 1) the functional token: argmax over the allowed ones
        logits = as_numpy(first_logits)  # masks and token tables live on the CPU
        candidates = np.array([self.nexa_token_ids[i] for i in allowed], dtype=np.int64)
        best = int(np.argmax(logits[candidates]))
        index, tid = allowed[best], int(candidates[best])
        state = grammar.advance(grammar.start(), self.nexa_texts[index])
        if state is None:
            res.error = ("INTERNAL", f"the grammar rejects its own function token {self.nexa_texts[index]}")
            return res
        res.function_index, res.text, res.token_ids = index, self.nexa_texts[index], [tid]
        res.free_tokens = 1
        chosen = [(logits, tid)]  # the free choices; their softmax is taken once, at the end
        spans = [(0, len(res.text))]  # where each free choice's text lies in res.text
        kept = [(_kept(first_logits, logits), tid)] if keep_logits else None
        to_feed, pending = [tid], b""

        # 2) arguments, token by token, jumping over forced text
        while not grammar.is_complete(state):
            if len(res.token_ids) >= max_new_tokens:
                res.error = ("NO_END", f"no complete call within {max_new_tokens} tokens")
                break
            forced = "" if pending else grammar.forced(state)
            if forced and jump_forward:
                ids = self._forced_ids(res.text, forced)
                new_state = grammar.advance(state, forced) if ids else None
                if ids and new_state is not None:
                    state, res.text = new_state, res.text + forced
                    res.token_ids += ids
                    res.forced_tokens += len(ids)
                    to_feed += ids
                    continue
            raw = step(to_feed)
            logits = as_numpy(raw)  # (V,): the one conversion of this pass
            res.forward_passes += 1
            choice = self._best_allowed(grammar, state, pending, logits)
            if choice is None:
                res.error = ("BAD_SYNTAX", f"no token can continue {res.text!r} under the grammar")
                break
            tid, (state, new_pending) = choice
            piece = self.end_text if tid == self.nexa_end_id else None
            if piece is None:
                piece = split_utf8(pending + self.table.token_bytes[tid])[0]
            start = len(res.text)
            res.text += piece
            pending = new_pending
            res.token_ids.append(tid)
            to_feed = [tid]
            if forced:  # the grammar had already fixed this text: not a free choice
                res.forced_tokens += 1
            else:
                res.free_tokens += 1
                chosen.append((logits, tid))
                spans.append((start, len(res.text)))
                if kept is not None:
                    kept.append((_kept(raw, logits), tid))
        res.free_logits = kept
        if res.error is None:
            logps = token_log_probs([row for row, _ in chosen], [t for _, t in chosen], temperature)
            res.free_pieces = [(a, b, float(lp)) for (a, b), lp in zip(spans, logps, strict=True)]
            res.confidence = math.exp(float(logps.sum()))
        return res

    def _best_allowed(self, grammar: Grammar, state: Hashable, pending: bytes, logits: np.ndarray):
        """Highest-logit token the grammar accepts: (id, (state, pending)) or None.

        The state's token mask when it is cached and small: an argmax over those ids. Otherwise the
        top token first (the usual case for a trained model), then the mask (built now), and for
        states that allow most of the vocabulary, the tokens in decreasing logit order."""
        key = (self._scope(grammar, state), state, pending)
        ids = self._mask_cache.get(key, False)
        if ids is False:  # mask not built yet: the top token may do
            top = int(np.argmax(logits))
            ok = self.accept(grammar, state, pending, top)
            if ok is not None:
                return top, ok
            ids = self.allowed_ids(grammar, state, pending)
        if ids is not None:
            if ids.size == 0:
                return None
            tid = int(ids[int(np.argmax(logits[ids]))])
            return tid, self.accept(grammar, state, pending, tid)
        done, k, size = 0, 32, logits.size
        while done < size:
            k = min(k, size)
            for tid in _top_k(logits, k)[done:].tolist():
                ok = self.accept(grammar, state, pending, tid)
                if ok is not None:
                    return tid, ok
            done, k = k, k * 16
        return None


def _top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Ids of the ``k`` highest logits, highest first (ties: lower id first)."""
    if k >= logits.size:
        return np.argsort(-logits, kind="stable")
    top = np.argpartition(-logits, k - 1)[:k]
    return top[np.lexsort((top, -logits[top]))]


def token_log_probs(
    rows: Sequence[np.ndarray], chosen: Sequence[int], temperature: float = 1.0
) -> np.ndarray:
    """log softmax(row / temperature)[chosen] of each free token (float64), the rows (V,) float32
    stacked and softmaxed together in float32 (as the decoder always has)."""
    x = np.stack(rows).astype(np.float32, copy=False) / np.float32(temperature)  # (free tokens, V)
    top = x.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(x - top).sum(axis=1, dtype=np.float32))
    picked = x[np.arange(len(chosen)), np.asarray(chosen, dtype=np.int64)]
    return picked.astype(np.float64) - lse.astype(np.float64)


def log_confidence(rows: Sequence[np.ndarray], chosen: Sequence[int], temperature: float = 1.0) -> float:
    """Sum over the free tokens of :func:`token_log_probs`, in float64."""
    return float(token_log_probs(rows, chosen, temperature).sum())
