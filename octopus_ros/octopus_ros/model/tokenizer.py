"""Tokenizer: byte-level BPE for from-scratch models, plus the special tokens Octopus needs.

Special tokens: ``<image>`` (placeholder for image embeddings), ``<nexa_0>`` .. ``<nexa_{N-1}>``
(one functional token per robot function), ``<nexa_end>`` (end of a call) and pad/eos.

The call punctuation ``( ) ' ,`` is split into pre-tokens of its own, so text the call grammar
forces (e.g. ``"')"``) is tokenized exactly as it is inside training answers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from octopus_ros.lean.prompt import IMAGE_TOKEN

from .config import OctopusConfig

log = logging.getLogger(__name__)

NEXA_END_TOKEN = "<nexa_end>"
PAD_TOKEN = "<|pad|>"
EOS_TOKEN = "<|endoftext|>"
CALL_PUNCTUATION = "(),'"


def nexa_token(index: int) -> str:
    """The functional token text of function ``index``: ``<nexa_{index}>``."""
    return f"<nexa_{index}>"


@dataclass(frozen=True)
class SpecialTokenIds:
    """Ids of the special tokens in a tokenizer."""

    image: int
    nexa: tuple[int, ...]  # nexa[i] is the id of <nexa_i>
    nexa_end: int
    pad: int
    eos: int


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    *,
    min_frequency: int = 2,
    num_functions: int | None = None,
):
    """Train a byte-level BPE tokenizer on ``texts`` and wrap it as a transformers tokenizer.

    ``vocab_size`` counts the BPE vocabulary (256 byte symbols included), not the special tokens.
    Works for any script (English, Chinese, ...): every byte has a symbol, so nothing is unknown.
    If ``num_functions`` is given, :func:`add_special_tokens` is applied too.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if vocab_size < 260:
        raise ValueError(f"vocab_size must be at least 260 (256 byte symbols + merges), got {vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(
                Regex("[" + "".join("\\" + c for c in CALL_PUNCTUATION) + "]"), behavior="isolated"
            ),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok)
    log.info("trained a byte-level BPE tokenizer with %d tokens", len(tokenizer))
    if num_functions is not None:
        add_special_tokens(tokenizer, num_functions)
    return tokenizer


def add_special_tokens(tokenizer, num_functions: int) -> SpecialTokenIds:
    """Add ``<image>``, ``<nexa_0..N-1>``, ``<nexa_end>`` (and pad/eos if missing) to ``tokenizer``.

    Idempotent: tokens already present keep their ids. Resize the model's embeddings afterwards
    (``OctopusModel.resize_token_embeddings(len(tokenizer))`` or let ``build_model`` do it).
    """
    if num_functions < 1:
        raise ValueError(f"num_functions must be >= 1, got {num_functions}")
    extra = [IMAGE_TOKEN, *(nexa_token(i) for i in range(num_functions)), NEXA_END_TOKEN]
    existing = list(getattr(tokenizer, "extra_special_tokens", None) or [])
    if isinstance(existing, dict):  # some tokenizers keep named extra tokens
        existing = list(existing.values())
    new_extra = existing + [t for t in extra if t not in existing]
    special: dict = {"extra_special_tokens": new_extra}
    if tokenizer.pad_token is None:
        special["pad_token"] = PAD_TOKEN
    if tokenizer.eos_token is None:
        special["eos_token"] = EOS_TOKEN
    added = tokenizer.add_special_tokens(special)
    log.info("added %d special tokens (tokenizer now has %d)", added, len(tokenizer))
    return special_token_ids(tokenizer, num_functions)


def special_token_ids(tokenizer, num_functions: int) -> SpecialTokenIds:
    """Look up the special-token ids; raises ValueError naming any that are missing."""
    names = [IMAGE_TOKEN, *(nexa_token(i) for i in range(num_functions)), NEXA_END_TOKEN]
    vocab = tokenizer.get_vocab()
    missing = [n for n in names if n not in vocab]
    if missing or tokenizer.pad_token_id is None or tokenizer.eos_token_id is None:
        raise ValueError(
            f"tokenizer lacks special tokens {missing or ''} (pad/eos set: "
            f"{tokenizer.pad_token_id is not None}/{tokenizer.eos_token_id is not None})"
        )
    return SpecialTokenIds(
        image=vocab[IMAGE_TOKEN],
        nexa=tuple(vocab[nexa_token(i)] for i in range(num_functions)),
        nexa_end=vocab[NEXA_END_TOKEN],
        pad=tokenizer.pad_token_id,
        eos=tokenizer.eos_token_id,
    )


def attach_tokenizer(config: OctopusConfig, tokenizer, num_functions: int) -> OctopusConfig:
    """Add the special tokens to ``tokenizer`` and return ``config`` with their ids filled in."""
    ids = add_special_tokens(tokenizer, num_functions)
    return config.replace(
        image_token_id=ids.image,
        nexa_token_ids=list(ids.nexa),
        nexa_end_id=ids.nexa_end,
        pad_token_id=ids.pad,
        eos_token_id=ids.eos,
    )


def load_tokenizer(path: str | Path):
    """Load a tokenizer from a local HF directory (ours or a pretrained LM's)."""
    from transformers import AutoTokenizer

    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory not found: {path}")
    return AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def check_tokenizer_matches(tokenizer, config: OctopusConfig) -> list[str]:
    """Problems (as strings) where the tokenizer's special-token ids differ from the config's."""
    vocab = tokenizer.get_vocab()
    expected = {IMAGE_TOKEN: config.image_token_id, NEXA_END_TOKEN: config.nexa_end_id}
    expected.update({nexa_token(i): tid for i, tid in enumerate(config.nexa_token_ids)})
    problems = []
    for name, tid in expected.items():
        if vocab.get(name) != tid:
            problems.append(f"{name} has id {vocab.get(name)} in the tokenizer but {tid} in config.json")
    return problems
