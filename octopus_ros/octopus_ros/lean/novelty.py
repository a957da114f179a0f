"""Novelty scores, torch-free: the text novelty of an utterance and the image novelty of an
encoded frame (what the scores mean: ``octopus_ros.model.novelty``, which re-exports this and adds
the torch fitting and the profile writer). Both runtimes score with these functions.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError

TEXT_VOCAB_FILE = "training_vocab.json"
IMAGE_PROFILE_FILE = "image_profile.safetensors"
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_UNITS = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:'[^\W_{_CJK}]+)*")


def text_units(text: str) -> list[str]:
    """Words (lower-cased, letters/digits, inner apostrophes kept) and single CJK characters."""
    return _UNITS.findall(text.lower())


class TextNovelty:
    """The training vocabulary and the share of an utterance outside it."""

    def __init__(self, vocabulary: Iterable[str]):
        self.vocabulary = frozenset(vocabulary)

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TextNovelty:
        vocab: set[str] = set()
        for text in texts:
            vocab.update(text_units(text))
        return cls(vocab)

    def unseen(self, text: str) -> list[str]:
        """The utterance's units the model never saw, in order."""
        return [u for u in text_units(text) if u not in self.vocabulary]

    def score(self, text: str) -> float:
        units = text_units(text)
        if not units:
            return 1.0
        return sum(u not in self.vocabulary for u in units) / len(units)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        data = {"units": "words (lower-cased) and CJK characters", "vocabulary": sorted(self.vocabulary)}
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False, indent=0) + "\n", encoding="utf-8")
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> TextNovelty:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
            vocab = data["vocabulary"]
            if not isinstance(vocab, list) or not all(isinstance(v, str) for v in vocab):
                raise ValueError("'vocabulary' must be a list of strings")
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(path, f"invalid training vocabulary ({e})") from e
        return cls(vocab)


def mahalanobis_score(pooled: np.ndarray, mean: np.ndarray, precision: np.ndarray, scale: float) -> float:
    """Image novelty of one pooled image embedding (D,): its Mahalanobis distance from ``mean``
    under ``precision`` (the inverse shrunk covariance), divided by ``scale`` (the training scenes'
    99th-percentile distance). Computed in float32, as the profile was fitted to be used."""
    z = np.asarray(pooled, dtype=np.float32) - mean
    return float(np.sqrt(max(float(z @ precision @ z), 0.0))) / scale


@dataclass
class ImageProfile:
    """The image profile (``image_profile.safetensors``) as numpy arrays."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    scale: float

    @classmethod
    def load(cls, path: str | Path) -> ImageProfile:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                meta = f.metadata() or {}
                mean, precision = f.get_tensor("mean"), f.get_tensor("precision")
            scale = float(meta["scale"])
        except Exception as e:  # safetensors raises several types for a bad file
            raise CheckpointError(path, f"invalid image profile ({e})") from e
        d = mean.shape[0] if mean.ndim == 1 else -1
        if precision.shape != (d, d) or not math.isfinite(scale) or scale <= 0:
            raise CheckpointError(
                path, f"invalid image profile (mean {tuple(mean.shape)}, precision {tuple(precision.shape)})"
            )
        return cls(mean.astype(np.float32), precision.astype(np.float32), scale)

    def score(self, embeds: np.ndarray) -> float:
        """Novelty of one encoded frame's image tokens (1, K, D): their mean's score."""
        if embeds.shape[-1] != self.mean.shape[0]:
            raise ValueError(
                f"image profile has {self.mean.shape[0]} dims, the image tokens {embeds.shape[-1]}"
            )
        return mahalanobis_score(
            np.asarray(embeds, dtype=np.float32).reshape(-1, embeds.shape[-1]).mean(0),
            self.mean,
            self.precision,
            self.scale,
        )
