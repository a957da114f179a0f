"""Functional tokens of an existing model: add the next ``<nexa_i>`` and start its embedding well.

A model trained for N functions has ``<nexa_0>`` .. ``<nexa_{N-1}>``. A registry with a new
function at token N needs one more: :func:`extend_functional_tokens` adds it to the tokenizer as
a special token (the ids of every existing token, ordinary text included, are unchanged), grows
the LM's embeddings if the vocabulary has no spare row, and records the new id in the config.

The new row's start matters on a short fine-tune. ``init="mean"`` (warm start) sets the input
embedding (and, when untied, the LM-head row) to the mean of the rows of the tokens of a text
that says what the function does (its name and description); ``init="random"`` draws it like
a fresh row (normal, std of the existing rows). Torch only; no registry import (callers pass
the texts).
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Iterable, Mapping

import torch

from .modeling import OctopusModel
from .tokenizer import add_special_tokens

log = logging.getLogger(__name__)

INITS = ("mean", "random")


def _embedding_matrices(model: OctopusModel) -> list[torch.Tensor]:
    """The input embedding weight and, if it is a separate tensor, the LM head's weight."""
    inp = model.lm.get_input_embeddings().weight
    out = model.lm.get_output_embeddings()
    mats = [inp]
    if out is not None and out.weight is not inp and out.weight.shape == inp.shape:
        mats.append(out.weight)
    return mats


@torch.no_grad()
def init_token_rows(
    model: OctopusModel,
    tokenizer,
    texts: Mapping[int, str],
    *,
    init: str = "mean",
    generator: torch.Generator | None = None,
) -> dict[int, int]:
    """Set the embedding rows of token ids ``texts`` keys; returns {token id: tokens averaged}.

    ``init="mean"``: each row becomes the mean of the rows of ``texts[id]``'s tokens (the tokens
    being initialised are never part of an average); ``"random"``: normal with the standard
    deviation of the other rows. Applied to the input embeddings and to an untied LM head.
    """
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    targets = set(texts)
    used: dict[int, int] = {}
    for mat in _embedding_matrices(model):
        keep = torch.ones(mat.shape[0], dtype=torch.bool)
        keep[list(targets)] = False
        std = float(mat[keep].std())
        for tid, text in texts.items():
            ids = [i for i in tokenizer.encode(text, add_special_tokens=False) if i not in targets]
            ids = [i for i in ids if i < mat.shape[0]]
            if init == "mean" and ids:
                mat[tid] = mat[ids].mean(dim=0)
            else:
                if init == "mean":
                    log.warning("no tokens to average for token id %d (%r): random start", tid, text)
                mat[tid] = torch.randn(mat.shape[1], generator=generator) * std
            used[tid] = len(ids) if init == "mean" else 0
    return used


def extend_vocabulary(model: OctopusModel, tokenizer, texts: Iterable[str]) -> dict[str, int]:
    """Give every letter of ``texts`` that ``tokenizer`` splits into several tokens a token of its
    own, as an ordinary (not special) added token; returns {character: new token id}.

    A byte-level BPE learns merges only for the characters of its training text: the bundled
    tokenizer writes 开 and 灯 as two byte pieces each, and shares those pieces with other
    characters, so a model fine-tuned on "开灯" must learn a meaning for a pair of pieces that also
    spell other words. With a token of its own the character gets one embedding row, which starts
    as the mean of its pieces' rows (input embeddings and an untied LM head) and can train.
    Every text that holds the character is then tokenized differently, so this is for a model's
    own tokenizer, not for a pretrained LM whose ids must stay (``octopus_finetune --extend-vocab``
    refuses ``--lm``)."""
    letters = sorted({c for t in texts for c in t if unicodedata.category(c).startswith("L")})
    pieces: dict[str, list[int]] = {}
    for c in letters:
        ids = tokenizer.encode(c, add_special_tokens=False)
        if len(ids) > 1:
            pieces[c] = ids
    if not pieces:
        return {}
    tokenizer.add_tokens(list(pieces))
    emb = model.lm.get_input_embeddings()
    if len(tokenizer) > emb.num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    vocab = tokenizer.get_vocab()
    added = {c: vocab[c] for c in pieces}
    with torch.no_grad():
        for mat in _embedding_matrices(model):
            for c, tid in added.items():
                mat[tid] = mat[pieces[c]].mean(dim=0)
    log.info("added %d ordinary tokens for characters split into byte pieces: %s", len(added), "".join(added))
    return added


def extend_functional_tokens(
    model: OctopusModel,
    tokenizer,
    num_functions: int,
    *,
    texts: Mapping[int, str] | None = None,
    init: str = "mean",
    seed: int = 0,
) -> list[int]:
    """Give ``model`` and ``tokenizer`` functional tokens up to ``<nexa_{num_functions-1}>``.

    Returns the function indices that are new (empty when the model had them all). ``texts``
    maps a function index to the text its row is averaged from (indices without a text fall
    back to a random start). Existing rows and token ids never change. ``model.config`` gets the
    new ids (``nexa_token_ids``), so a saved checkpoint records them.
    """
    have = model.config.num_functions
    if num_functions <= have:
        return []
    ids = add_special_tokens(tokenizer, num_functions)
    emb = model.lm.get_input_embeddings()
    if len(tokenizer) > emb.num_embeddings:
        model.resize_token_embeddings(len(tokenizer))
    model.config = model.config.replace(nexa_token_ids=list(ids.nexa))
    model.sync_lm_token_ids()
    new = list(range(have, num_functions))
    gen = torch.Generator().manual_seed(seed)
    texts = texts or {}
    by_id = {ids.nexa[i]: texts.get(i, "") for i in new}
    init_token_rows(model, tokenizer, by_id, init=init, generator=gen)
    log.info(
        "added functional token(s) %s (ids %s, %s start)",
        [f"<nexa_{i}>" for i in new],
        [ids.nexa[i] for i in new],
        init,
    )
    return new
