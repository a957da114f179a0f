"""Novelty scores: how far a request lies from what the model was trained on.

Two scores, each in its own checkpoint file (a checkpoint without the file has no such score;
the score is then NaN, which no threshold exceeds):

* **text novelty** (``training_vocab.json``): the share of the utterance's units the model never
  saw in training. Units are lower-cased words for alphabetic scripts and single characters for
  Chinese (CJK ideographs), so "把杯子拿起来" is 6 units and "pick up the cup" is 4. An English word
  counts as seen when the model saw another inflection of it ("dogs", "dog's", "fixed":
  ``word_forms``). 0.0 = every unit was seen; 1.0 = none was (also an utterance with no unit at
  all).
* **image novelty** (``image_profile.safetensors``): the Mahalanobis distance of the pooled image
  embedding (the mean of the image tokens the LM sees) from the training scenes' mean, under
  their (shrunk) covariance, divided by the distance of the training scenes' own 99th
  percentile. About 1.0 or below: like the synthetic training world; well above: unlike it
  (e.g. real photographs for a model trained on rendered scenes).
* **request novelty** (``request_profile.safetensors``, :class:`RequestProfile`): for a decided
  call, how much more the LM's hidden state where it picked the function reads like a request it
  was taught to decline (the decline function's requests, the decline corpus) than like one it
  was taught to call that function on, as the share (0..1) of training requests (each read by a profile fitted without it) that
  read more like a call. 0.995 = less typical than 99.5 % of them. It reads the model's own
  understanding of the whole request, where text novelty only counts unseen words. Constrained
  decoding only (other modes: NaN).

Fitting the profiles is the training room's job (``octopus_ros.training.novelty_profile``).
The scoring is torch-free and shared with the onnxruntime runtime (:mod:`octopus_ros.lean.novelty`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from octopus_ros.functions.language import text_units, word_forms  # noqa: F401 - re-exported too
from octopus_ros.lean.novelty import (  # noqa: F401 - re-exported: the model room's API
    DECLINE_CORPUS_CLASS,
    IMAGE_PROFILE_FILE,
    REQUEST_PROFILE_FILE,
    TEXT_VOCAB_FILE,
    RequestProfile,
    TextNovelty,
    mahalanobis_score,
)


def pooled(embeds: torch.Tensor) -> torch.Tensor:
    """(B, K, D) image tokens -> (B, D) their mean, in fp32."""
    return embeds.float().mean(dim=1)


class ImageNovelty:
    """Mahalanobis distance of the pooled image embedding from the training scenes."""

    def __init__(self, mean: torch.Tensor, precision: torch.Tensor, scale: float):
        self.mean = mean.float()  # (D,)
        self.precision = precision.float()  # (D, D) inverse of the shrunk covariance
        self.scale = float(scale)  # the training scenes' 99th-percentile distance

    @classmethod
    def fit(cls, features: torch.Tensor, *, shrinkage: float = 0.1, quantile: float = 0.99) -> ImageNovelty:
        """Fit on (N, D) pooled embeddings of training scenes. The covariance is shrunk towards
        its mean variance (``shrinkage``) so that directions the scenes never vary in still
        count, and stays invertible when N is small."""
        x = features.double()
        n, d = x.shape
        if n < 2:
            raise ValueError(f"need at least 2 training scenes to fit an image profile, got {n}")
        mean = x.mean(0)
        cov = torch.cov(x.T).reshape(d, d)
        target = torch.eye(d, dtype=x.dtype) * cov.diagonal().mean().clamp_min(1e-12)
        precision = torch.linalg.inv((1 - shrinkage) * cov + shrinkage * target)
        profile = cls(mean, precision, 1.0)
        dist = profile.distances(features)
        profile.scale = float(torch.quantile(dist, quantile).clamp_min(1e-12))
        return profile

    def distances(self, features: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N,) Mahalanobis distances (not scaled)."""
        z = features.float() - self.mean
        return torch.einsum("nd,de,ne->n", z, self.precision, z).clamp_min(0).sqrt()

    def score(self, embeds: torch.Tensor) -> float:
        """Novelty of one encoded image ((1, K, D) image tokens): distance / training 99th pct
        (the torch-free scorer the onnxruntime runtime uses too)."""
        return mahalanobis_score(
            pooled(embeds.cpu())[0].numpy(), self.mean.numpy(), self.precision.numpy(), self.scale
        )

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save_file

        path = Path(path)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tensors = {"mean": self.mean.contiguous(), "precision": self.precision.contiguous()}
        save_file(tensors, str(tmp), metadata={"scale": repr(self.scale), "pooling": "mean of image tokens"})
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ImageNovelty:
        """Read a profile written by :meth:`save`; the file's checks are those of the torch-free
        reader (:meth:`octopus_ros.lean.novelty.ImageProfile.load`, CheckpointError naming it)."""
        from octopus_ros.lean.novelty import ImageProfile

        profile = ImageProfile.load(path)
        return cls(torch.from_numpy(profile.mean), torch.from_numpy(profile.precision), profile.scale)


@dataclass
class NoveltyProfile:
    """The novelty scorers a checkpoint carries (either may be absent)."""

    text: TextNovelty | None = None
    image: ImageNovelty | None = None
    request: RequestProfile | None = None

    @classmethod
    def load(cls, checkpoint: str | Path) -> NoveltyProfile:
        path = Path(checkpoint)
        text = TextNovelty.load(path / TEXT_VOCAB_FILE) if (path / TEXT_VOCAB_FILE).is_file() else None
        image = (
            ImageNovelty.load(path / IMAGE_PROFILE_FILE) if (path / IMAGE_PROFILE_FILE).is_file() else None
        )
        request = (
            RequestProfile.load(path / REQUEST_PROFILE_FILE)
            if (path / REQUEST_PROFILE_FILE).is_file()
            else None
        )
        return cls(text, image, request)

    def text_score(self, text: str) -> float:
        return self.text.score(text) if self.text is not None else math.nan

    def image_score(self, embeds: torch.Tensor) -> float:
        if self.image is None:
            return math.nan
        if embeds.shape[-1] != self.image.mean.shape[0]:
            raise ValueError(
                f"image profile has {self.image.mean.shape[0]} dims, the image tokens {embeds.shape[-1]}"
            )
        return self.image.score(embeds)
