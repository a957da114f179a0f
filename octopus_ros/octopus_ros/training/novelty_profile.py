"""Fit the novelty profiles of a checkpoint (see ``octopus_ros.model.novelty``).

* ``training_vocab.json``: every word / CJK character of the requests the model was trained to
  act on (the call records' instructions for its functions, without the message bodies they copy:
  :func:`action_texts`), not of the declines, captions or text corpus it also read;
* ``image_profile.safetensors``: mean and shrunk covariance of the pooled image tokens of
  synthetic training scenes.

``train_all`` writes both for every model it trains. For a checkpoint trained before that (the
bundled model), this command regenerates its training pools from the generators with the
checkpoint's own training config (``metrics.json`` ``train_config``: seed, pool sizes, image size)
and fits both:

usage: python -m octopus_ros.training.novelty_profile CHECKPOINT [--fraction 1.0] [--scenes 3000]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from octopus_ros.model.novelty import IMAGE_PROFILE_FILE, TEXT_VOCAB_FILE, ImageNovelty, TextNovelty, pooled

log = logging.getLogger(__name__)


def action_text(instruction: str, answer: str, registry: Any, answer_format: str = "functional") -> str:
    """The words of a training request that the model learnt to act on: ``instruction`` without the
    values its call copies from it (``source: utterance``: a message body is the user's words, not
    a request's; :func:`octopus_ros.lean.decision.without_copied`, as the runtime scores it)."""
    from octopus_ros.functions import ParseError
    from octopus_ros.functions.answer_format import parse_answer
    from octopus_ros.lean.decision import without_copied

    call = parse_answer(answer, answer_format, registry)
    return instruction if isinstance(call, ParseError) else without_copied(registry, instruction, call)


def action_texts(records: Iterable[dict], registry: Any, answer_format: str = "functional") -> list[str]:
    """The text of the text-novelty profile: every call record's request made for a function the
    model acts on (``record["function"]``, the function the request was written for; an absent
    object's request answered with the decline counts, the decline function's own requests do
    not), without its copied values (:func:`action_text`).

    Why only these: the vocabulary of everything the model read (the decline corpus of fortunes and
    conversation lines, captions, the text corpus: 27,226 units for the bundled model) holds
    nearly every everyday word, so a chit-chat request scored 0.0 and the limit never fired. Against
    the 552-odd units of the requests it acts on, the natural set's out-of-scope and unsafe requests
    score a median 0.44 and its actionable requests 0.00 (docs/training.md item 20)."""
    decline = registry.decline_function
    skip = {decline.name} if decline is not None else set()
    return [
        action_text(r["instruction"], r["answer"], registry, answer_format)
        for r in records
        if r.get("function") not in skip
    ]


@torch.no_grad()
def image_features(model, images: Sequence[np.ndarray], batch: int = 64) -> torch.Tensor:
    """(N, D) pooled image tokens of ``images`` (RGB uint8), as the runtime encodes them."""
    from octopus_ros.model.preprocess import ImagePreprocessor

    pre = ImagePreprocessor(config=model.config.vision)
    was_training = model.training
    model.eval()
    feats = []
    for i in range(0, len(images), batch):
        pixels = torch.cat([pre(img) for img in images[i : i + batch]])
        feats.append(pooled(model.encode_image(pixels)))
    model.train(was_training)
    return torch.cat(feats)


def write_profiles(checkpoint: str | Path, model, texts: Iterable[str], images: Sequence[np.ndarray]) -> dict:
    """Fit and write both profiles into ``checkpoint``; returns a short summary."""
    path = Path(checkpoint)
    text = TextNovelty.from_texts(texts)
    text.save(path / TEXT_VOCAB_FILE)
    image = ImageNovelty.fit(image_features(model, images))
    image.save(path / IMAGE_PROFILE_FILE)
    summary = {"vocabulary": len(text.vocabulary), "scenes": len(images), "image_scale": image.scale}
    log.info("novelty profiles: %s", summary)
    return summary


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.functions import FunctionRegistry, load_default_registry
    from octopus_ros.model import load_checkpoint
    from octopus_ros.training.stages import TrainConfig
    from octopus_ros.training.train_all import build_pools

    parser = argparse.ArgumentParser(
        description="Fit a checkpoint's novelty profiles from its training generators."
    )
    parser.add_argument("checkpoint")
    parser.add_argument(
        "--fraction", type=float, default=1.0, help="share of the training pools to regenerate"
    )
    parser.add_argument("--scenes", type=int, default=3000, help="training scenes for the image profile")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(2)

    ckpt = load_checkpoint(args.checkpoint)
    saved = ckpt.metrics.get("train_config", {})
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    cfg = TrainConfig(**{k: v for k, v in saved.items() if k in known and k not in ("steps", "seconds")})
    if cfg.image_size is None:
        cfg.image_size = ckpt.config.vision.image_size
    cfg.pool_calls = max(1, int(cfg.pool_calls * args.fraction))
    cfg.pool_align = max(2, int(cfg.pool_align * args.fraction))
    pools = build_pools(cfg)
    images = [r["image"] for r in pools["calls"][: args.scenes]]
    registry = (
        FunctionRegistry.from_yaml(ckpt.functions_path) if ckpt.functions_path else load_default_registry()
    )
    texts = action_texts(pools["calls"], registry, cfg.answer_format)
    summary = write_profiles(args.checkpoint, ckpt.model, texts, images)
    print(f"wrote {TEXT_VOCAB_FILE} and {IMAGE_PROFILE_FILE} in {args.checkpoint}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
