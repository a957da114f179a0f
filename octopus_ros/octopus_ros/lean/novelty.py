"""Novelty scores, torch-free: the text novelty of an utterance, the image novelty of an
encoded frame and the request novelty of a decided call (what the scores mean:
``octopus_ros.model.novelty``, which re-exports this and adds the torch fitting and the profile
writer). Both runtimes score with these functions.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from octopus_ros.functions.language import text_units, word_forms

from .errors import CheckpointError

TEXT_VOCAB_FILE = "training_vocab.json"
IMAGE_PROFILE_FILE = "image_profile.safetensors"
REQUEST_PROFILE_FILE = "request_profile.safetensors"
DECLINE_CORPUS_CLASS = "(decline corpus)"  # the request profile's class of decline-corpus sentences


class TextNovelty:
    """The training vocabulary and the share of an utterance outside it.

    A unit counts as seen when the vocabulary has it or another inflection of it
    (:func:`word_forms`): "feed the dogs" is as familiar as "feed the dog". Without that, the
    score is unfair between the languages: an English word is a new unit in each of its forms,
    while a Chinese character (Chinese does not inflect) is the same unit in every sentence."""

    def __init__(self, vocabulary: Iterable[str]):
        self.vocabulary = frozenset(vocabulary)
        self._forms = frozenset(f for unit in self.vocabulary for f in word_forms(unit))

    @classmethod
    def from_texts(cls, texts: Iterable[str]) -> TextNovelty:
        vocab: set[str] = set()
        for text in texts:
            vocab.update(text_units(text))
        return cls(vocab)

    def seen(self, unit: str) -> bool:
        """Whether the model saw ``unit`` (a :func:`text_units` unit) or another form of it."""
        return unit in self.vocabulary or not word_forms(unit).isdisjoint(self._forms)

    def unseen(self, text: str) -> list[str]:
        """The utterance's units the model never saw in any form, in order."""
        return [u for u in text_units(text) if not self.seen(u)]

    def score(self, text: str) -> float:
        units = text_units(text)
        if not units:
            return 1.0
        return sum(not self.seen(u) for u in units) / len(units)

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


def read_profile(path: str | Path, what: str, names: tuple[str, ...], parse: Callable[[dict], Any]):
    """The tensors ``names`` of a profile file (safetensors) and ``parse`` of its metadata;
    CheckpointError "invalid {what}" naming the file for any unreadable file, missing tensor or
    metadata ``parse`` cannot read."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = f.metadata() or {}
            tensors = [f.get_tensor(name) for name in names]
        return tensors, parse(meta)
    except Exception as e:  # safetensors raises several types for a bad file
        raise CheckpointError(path, f"invalid {what} ({e})") from e


@dataclass
class ImageProfile:
    """The image profile (``image_profile.safetensors``) as numpy arrays."""

    mean: np.ndarray  # (D,)
    precision: np.ndarray  # (D, D)
    scale: float

    @classmethod
    def load(cls, path: str | Path) -> ImageProfile:
        (mean, precision), scale = read_profile(
            path, "image profile", ("mean", "precision"), lambda meta: float(meta["scale"])
        )
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


@dataclass
class RequestProfile:
    """The request profile (``request_profile.safetensors``): where the LM's last hidden state
    lies when it picks the function, as one Gaussian per answer class with a shared covariance
    (a linear discriminant, as in Lee et al. 2018's Mahalanobis detector).

    The classes are the functions the model was trained to call, the decline function, and the
    sentences of the decline corpus (:data:`DECLINE_CORPUS_CLASS`). For a call of function ``f``
    the *margin* is d²(f) − min over the decline classes of d², the squared Mahalanobis distances
    of the hidden state from each class mean: below 0 the request reads more like what the model
    was taught to call ``f`` on than like anything it was taught to decline. The *score* is the
    share of training requests not fitted on (``reference``: their margins, sorted; read out of
    fold since stop 51, :meth:`cross_fit`) whose margin is
    lower: 0.995 = less typical of a call than 99.5 % of the requests the model was trained on.
    """

    classes: tuple[str, ...]
    means: np.ndarray  # (C, D)
    precision: np.ndarray  # (D, D) inverse of the shrunk shared covariance
    declines: tuple[str, ...]  # the decline classes
    reference: np.ndarray  # (R,) sorted margins of training requests read by a profile without them

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.classes)}
        self._declines = [self._index[c] for c in self.declines]

    @classmethod
    def _stats(
        cls, x: np.ndarray, y: np.ndarray, names: tuple[str, ...], declines: tuple[str, ...], shrinkage: float
    ) -> RequestProfile:
        """The classes' means and the shrunk shared precision of (N, D) ``x`` with classes ``y``
        (every class of ``names`` present), without a reference yet."""
        means = np.stack([x[y == c].mean(0) for c in names])
        resid = x - means[np.searchsorted(names, y)]
        d = x.shape[1]
        cov = resid.T @ resid / max(len(x) - len(names), 1)
        target = np.eye(d) * max(float(np.trace(cov)) / d, 1e-12)
        precision = np.linalg.inv((1 - shrinkage) * cov + shrinkage * target)
        return cls(names, means.astype(np.float32), precision.astype(np.float32), declines, np.zeros(0))

    @staticmethod
    def _names(labels: Iterable[str], declines: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
        names = tuple(sorted(set(labels)))
        wanted = set(declines)
        found = tuple(d for d in names if d in wanted)
        if not found or len(found) == len(names):
            raise ValueError(f"a request profile needs decline and call classes, got {names}")
        return names, found

    def _margins(self, features: np.ndarray, labels: Iterable[str]) -> list[float]:
        """The finite margins of the call requests among (N, D) ``features`` (declines skipped)."""
        ms = (
            self.margin(h, label)
            for h, label in zip(features, labels, strict=True)
            if label not in self.declines
        )
        return [m for m in ms if math.isfinite(m)]

    def _with_reference(self, margins: Iterable[float]) -> RequestProfile:
        ref = np.sort(np.asarray(list(margins), dtype=np.float64))
        if len(ref) < 2:
            raise ValueError(f"a request profile needs reference calls, got {len(ref)}")
        self.reference = ref
        return self

    @classmethod
    def fit(
        cls,
        features: np.ndarray,
        labels: list[str],
        declines: Iterable[str],
        reference: np.ndarray,
        reference_labels: list[str],
        *,
        shrinkage: float = 0.1,
    ) -> RequestProfile:
        """Fit on (N, D) hidden states with their answer classes; ``reference`` (R, D) hidden
        states of other training requests (calls only count) give the score's scale. The
        covariance is shrunk towards its mean variance (``shrinkage``) so that it stays
        invertible. ValueError when a decline class or any call class is missing."""
        x = np.asarray(features, dtype=np.float64)
        names, found = cls._names(labels, declines)
        profile = cls._stats(x, np.array(labels), names, found, shrinkage)
        return profile._with_reference(profile._margins(reference, reference_labels))

    @classmethod
    def cross_fit(
        cls,
        features: np.ndarray,
        labels: list[str],
        declines: Iterable[str],
        *,
        folds: int = 5,
        seed: int = 0,
        shrinkage: float = 0.1,
    ) -> RequestProfile:
        """Fit on all (N, D) hidden states with their answer classes, and take the score's scale
        from every call request, each read out of fold: the requests are dealt into ``folds``
        (seeded), and a request's margin is read by a profile fitted without its fold.

        Why: with a quarter of the requests held out for the scale (:meth:`fit`), the limit of
        0.99 rested on the ten-odd highest margins of under a thousand requests, and refits of one
        fine-tuned model on two draws of the same mix put it 12 apart (p99 margin −15.6 vs −3.3),
        which moved the natural set's calls right by a point (docs/training.md item 52). ValueError
        as :meth:`fit`, or when ``folds`` < 2."""
        if folds < 2:
            raise ValueError(f"cross-fitting needs at least 2 folds, got {folds}")
        x = np.asarray(features, dtype=np.float64)
        y = np.array(labels)
        names, found = cls._names(labels, declines)
        fold = np.random.default_rng(seed).permutation(len(x)) % folds
        margins: list[float] = []
        for k in range(folds):
            inside, held = fold != k, fold == k
            kept = tuple(c for c in names if np.any(y[inside] == c))
            if not set(found) & set(kept) or set(kept) <= set(found):
                continue  # a fold that leaves no decline or no call class: its requests give no margin
            part = cls._stats(x[inside], y[inside], kept, tuple(d for d in found if d in kept), shrinkage)
            margins += part._margins(x[held], y[held])
        return cls._stats(x, y, names, found, shrinkage)._with_reference(margins)

    def margin(self, hidden: np.ndarray, function: str) -> float:
        """d²(function) − min d²(declines) of one hidden state (D,); NaN for a function the
        profile has no class of (a function added after it was fitted) or a decline class."""
        i = self._index.get(function)
        if i is None or function in self.declines:
            return math.nan
        z = np.asarray(hidden, dtype=np.float32).reshape(-1)[None] - self.means
        d2 = np.einsum("cd,de,ce->c", z, self.precision, z)
        return float(d2[i] - d2[self._declines].min())

    def score(self, hidden: np.ndarray, function: str) -> float:
        """The share (0..1) of the reference requests with a lower margin; NaN as :meth:`margin`."""
        m = self.margin(hidden, function)
        if not math.isfinite(m):
            return math.nan
        return float(np.searchsorted(self.reference, m, side="left")) / len(self.reference)

    def save(self, path: str | Path) -> Path:
        from safetensors.numpy import save_file

        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tensors = {
            "means": np.ascontiguousarray(self.means, dtype=np.float32),
            "precision": np.ascontiguousarray(self.precision, dtype=np.float32),
            "reference": np.ascontiguousarray(self.reference, dtype=np.float64),
        }
        meta = {
            "classes": json.dumps(list(self.classes), ensure_ascii=False),
            "declines": json.dumps(list(self.declines), ensure_ascii=False),
            "features": "the LM's last hidden state at the last prompt position",
        }
        save_file(tensors, str(tmp), metadata=meta)
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RequestProfile:
        (means, precision, reference), (classes, declines) = read_profile(
            path,
            "request profile",
            ("means", "precision", "reference"),
            lambda meta: (json.loads(meta["classes"]), json.loads(meta["declines"])),
        )
        c, d = means.shape if means.ndim == 2 else (-1, -1)
        if (
            not isinstance(classes, list)
            or len(classes) != c
            or not isinstance(declines, list)
            or not declines
            or not set(declines) < set(classes)
            or precision.shape != (d, d)
            or reference.ndim != 1
            or len(reference) < 2
            or not np.all(np.isfinite(reference))
        ):
            raise CheckpointError(
                path,
                f"invalid request profile (means {tuple(means.shape)}, precision {tuple(precision.shape)},"
                f" {len(reference)} reference margins)",
            )
        return cls(
            tuple(classes),
            means.astype(np.float32),
            precision.astype(np.float32),
            tuple(declines),
            np.sort(reference.astype(np.float64)),
        )


def check_request_profile(profile: RequestProfile | None, hidden_size: int, path: str | Path) -> None:
    """CheckpointError when a loaded request profile does not fit an LM of ``hidden_size``."""
    if profile is not None and profile.means.shape[1] != hidden_size:
        raise CheckpointError(
            path, f"request profile has {profile.means.shape[1]} dims but the LM's hidden state {hidden_size}"
        )
