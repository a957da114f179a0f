"""A checkpoint's tokenizer (``tokenizer.json``) through the ``tokenizers`` library alone.

:class:`LeanTokenizer` offers the part of a transformers tokenizer that decoding and prompt
building use (``encode``, ``decode``, ``convert_ids_to_tokens``, ``all_special_ids``, ``len``,
``backend_tokenizer``), so the torch-free runtime tokenizes exactly as the torch one does without
importing transformers. Which tokens are special comes from ``tokenizer_config.json`` (eos, pad,
bos, unk and ``extra_special_tokens``, as transformers reads it).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_NAMED_SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")


class TokenizerError(ValueError):
    """A missing or unreadable tokenizer file; the message names it."""


class LeanTokenizer:
    """``tokenizers.Tokenizer`` with the transformers-style methods the runtime needs."""

    def __init__(self, backend, special_tokens: Sequence[str] = (), named: dict[str, str] | None = None):
        self.backend_tokenizer = backend
        self._vocab = backend.get_vocab(with_added_tokens=True)
        self._size = backend.get_vocab_size(with_added_tokens=True)
        named = named or {}
        missing = [t for t in (*named.values(), *special_tokens) if t not in self._vocab]
        if missing:
            raise TokenizerError(f"special token(s) {missing} are not in the tokenizer's vocabulary")
        self.eos_token_id = self._vocab.get(named.get("eos_token", ""))
        self.pad_token_id = self._vocab.get(named.get("pad_token", ""))
        ordered = dict.fromkeys([*named.values(), *special_tokens])
        self.all_special_ids = [self._vocab[t] for t in ordered]

    @classmethod
    def from_dir(cls, directory: str | Path) -> LeanTokenizer:
        """Read ``tokenizer.json`` and ``tokenizer_config.json`` of a checkpoint directory."""
        from tokenizers import Tokenizer

        directory = Path(directory)
        path, cfg_path = directory / TOKENIZER_FILE, directory / TOKENIZER_CONFIG_FILE
        try:
            backend = Tokenizer.from_file(str(path))
        except Exception as e:  # tokenizers raises its own exception type for a bad file
            raise TokenizerError(f"{path}: cannot load the tokenizer: {e}") from e
        named: dict[str, str] = {}
        extra: list[str] = []
        if cfg_path.is_file():
            try:
                cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise TokenizerError(f"{cfg_path}: cannot read: {e}") from e
            for key in _NAMED_SPECIAL:
                value = cfg.get(key)
                if isinstance(value, dict):  # an AddedToken written out
                    value = value.get("content")
                if isinstance(value, str):
                    named[key] = value
            listed = cfg.get("extra_special_tokens") or cfg.get("additional_special_tokens") or []
            if isinstance(listed, dict):
                listed = list(listed.values())
            extra = [t.get("content") if isinstance(t, dict) else t for t in listed]
        try:
            return cls(backend, extra, named)
        except TokenizerError as e:
            raise TokenizerError(f"{cfg_path}: {e}") from e

    def __len__(self) -> int:
        return self._size

    def get_vocab(self) -> dict[str, int]:
        return dict(self._vocab)

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.backend_tokenizer.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = False) -> str:
        return self.backend_tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def convert_ids_to_tokens(self, ids: int | Sequence[int]):
        if isinstance(ids, int):
            return self.backend_tokenizer.id_to_token(ids)
        return [self.backend_tokenizer.id_to_token(int(i)) for i in ids]

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._vocab.get(token)
