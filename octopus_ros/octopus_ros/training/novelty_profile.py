"""Fit the novelty profiles of a checkpoint (see ``octopus_ros.model.novelty``).

* ``training_vocab.json``: every word / CJK character of the requests the model was trained to
  act on (the call records' instructions for its functions, without the message bodies they copy:
  :func:`action_texts`), not of the declines, captions or text corpus it also read;
* ``image_profile.safetensors``: mean and shrunk covariance of the pooled image tokens of
  synthetic training scenes;
* ``request_profile.safetensors``: the LM's last hidden state where it picks the function, one
  Gaussian per answer class (each function, the decline function, the decline corpus's sentences)
  with a shared covariance, fitted on training call records and corpus sentences read by the
  saved checkpoint exactly as the runtime reads a request (:func:`fit_request_profile`), and the
  margins of other training records as its scale.

``train_all`` writes both for every model it trains. For a checkpoint trained before that (the
bundled model), this command regenerates its training pools from the generators with the
checkpoint's own training config (``metrics.json`` ``train_config``: seed, pool sizes, image size)
and fits both:

usage: python -m octopus_ros.training.novelty_profile CHECKPOINT [--fraction 1.0] [--scenes 3000]
       [--only {text,image,request}] [--request-records 5500]
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

from octopus_ros.model.novelty import (
    IMAGE_PROFILE_FILE,
    REQUEST_PROFILE_FILE,
    TEXT_VOCAB_FILE,
    ImageNovelty,
    TextNovelty,
    pooled,
)

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


def training_texts(records: Sequence[dict], registry: Any, cfg: Any) -> list[str]:
    """:func:`action_texts`, and with ``cfg.synonyms`` > 0 every synonym variant stage 4 could have
    trained on (data/synonyms.py: the English records it varies, each verb span with each synonym):
    a verb the model learnt from a synonym is a word it acts on, not a novel one."""
    texts = action_texts(records, registry, cfg.answer_format)
    if getattr(cfg, "synonyms", 0) > 0 and getattr(cfg, "augment", 0) > 0:
        from octopus_ros.data.augment import NOT_AUGMENTED
        from octopus_ros.data.synonyms import SynonymVariation

        variation = SynonymVariation.for_training()
        for r in records:
            if r.get("language") == "en" and r.get("function", "no_action") not in NOT_AUGMENTED:
                texts += variation.variants(r["instruction"])
    return texts


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


REQUEST_RECORDS = 5500  # training call records the request profile is fitted on, and scaled by
REQUEST_FOLDS = 5  # the scale's out-of-fold reading (lean/novelty.py RequestProfile.cross_fit)
REQUEST_CORPUS_SENTENCES = 500  # decline-corpus sentences per language (their own class)
MIN_REFERENCE = 20  # call requests (answered with a function) a request profile needs at least


def answer_function(answer: str, registry: Any) -> str | None:
    """The function a functional-token answer calls (None: not a functional-token answer)."""
    import re

    m = re.match(r"<nexa_(\d+)>", answer or "")
    spec = registry.by_token(int(m.group(1))) if m else None
    return spec.name if spec is not None else None


def with_new_bodies(
    records: Sequence[dict], registry: Any, bodies: dict[str, Sequence[str]], share: float, seed: int = 0
) -> list[dict]:
    """``records`` with ``share`` of them given a sentence of ``bodies`` (of their ``language``) as the
    message their call copies (:func:`octopus_ros.data.message_bodies.with_body`, the variation
    stage 4 trains with); records without a copied message are kept as they are. Deterministic in
    ``seed``."""
    import random

    from octopus_ros.data.message_bodies import with_body

    rng = random.Random(f"request-profile-bodies-{seed}")
    out = []
    for r in records:
        sentences = bodies.get(r.get("language", ""), ())
        if sentences and rng.random() < share:
            new = with_body(r["instruction"], r["answer"], registry, rng.choice(sentences))
            if new is not None:
                r = {**r, "instruction": new[0], "answer": new[1]}
        out.append(r)
    return out


def fit_request_profile(
    octopus: Any,
    records: Sequence[dict],
    corpus: dict[str, Sequence[str]],
    *,
    folds: int = REQUEST_FOLDS,
    corpus_sentences: int = REQUEST_CORPUS_SENTENCES,
    seed: int = 0,
    progress: bool = True,
    message_bodies: dict[str, Sequence[str]] | None = None,
    message_share: float = 0.0,
) -> Any:
    """Fit a request profile (lean/novelty.py :class:`RequestProfile`) for the runtime model
    ``octopus`` (``model.runtime.Octopus``) on all call records (``instruction``, ``answer`` in
    functional tokens, ``image``; each the class of the function it answers, the decline
    function's included, or its ``class`` when it has one) and ``corpus_sentences`` sentences per
    language of the decline ``corpus`` (shown over the records' images; class
    :data:`DECLINE_CORPUS_CLASS`), each read as :meth:`Octopus.request_hidden` reads a request.
    Its scale is every call record's margin read out of fold (``folds``,
    :meth:`RequestProfile.cross_fit`). ValueError when there are too few records
    (:data:`MIN_REFERENCE` answered with a function) or classes.

    ``message_bodies`` (language -> sentences: the pools' ``message_corpus``) with
    ``message_share`` (the training config's ``message_corpus``): that share of the records whose
    call copies a message gets a corpus sentence as its body, as stage 4 trains them
    (:func:`with_new_bodies`). Without it the profile knows send_message only with the templates'
    few bodies, and a real message reads as new: in stop 33, 28 of the message set's 120 requests
    that the bundled model decoded right were declined "not understood" by this score."""
    import random

    from tqdm import tqdm

    from octopus_ros.model.novelty import DECLINE_CORPUS_CLASS, RequestProfile

    registry = octopus.registry
    decline = registry.decline_function
    if decline is None:
        raise ValueError("a request profile needs the registry's decline function")
    if message_bodies and message_share > 0:
        records = with_new_bodies(records, registry, message_bodies, message_share, seed)
    labelled = [(r, r.get("class") or answer_function(r["answer"], registry)) for r in records]
    labelled = [(r, f) for r, f in labelled if f is not None]
    calls = sum(not r.get("class") and f != decline.name for r, f in labelled)
    if calls < MIN_REFERENCE:
        raise ValueError(
            f"{calls} requests answered with a function are too few for a request profile "
            f"(at least {MIN_REFERENCE} give its scale)"
        )
    rng = random.Random(seed)
    sentences = [
        (s, rng.choice(labelled)[0]["image"])
        for lang in sorted(corpus)
        for s in rng.sample(list(corpus[lang]), min(corpus_sentences, len(corpus[lang])))
    ]
    items = [(r["instruction"], r["image"], f) for r, f in labelled]
    items += [(s, image, DECLINE_CORPUS_CLASS) for s, image in sentences]
    feats = [
        octopus.request_hidden(text, image)
        for text, image, _ in tqdm(items, desc="request profile", disable=not progress, leave=False)
    ]
    return RequestProfile.cross_fit(
        np.stack(feats),
        [label for _, _, label in items],
        (decline.name, DECLINE_CORPUS_CLASS),
        folds=folds,
        seed=seed,
    )


def write_request_profile(checkpoint: str | Path, records: Sequence[dict], corpus: dict, **kw) -> dict:
    """Fit and write ``checkpoint``'s request profile (loads the saved checkpoint as the node
    does); returns a short summary. ``records``/``corpus``/``kw``: see :func:`fit_request_profile`."""
    from octopus_ros.model import Octopus
    from octopus_ros.model.checkpoint import CheckpointError
    from octopus_ros.model.novelty import REQUEST_PROFILE_FILE

    old = Path(checkpoint) / REQUEST_PROFILE_FILE
    try:
        octopus = Octopus.load(checkpoint)
    except CheckpointError as e:  # a damaged or mismatched profile must not block its own refit
        if not old.is_file() or Path(e.file).name != REQUEST_PROFILE_FILE:
            raise
        log.warning("replacing %s: %s", old, e)
        old.unlink()
        octopus = Octopus.load(checkpoint)
    profile = fit_request_profile(octopus, records, corpus, **kw)
    profile.save(Path(checkpoint) / REQUEST_PROFILE_FILE)
    summary = {
        "classes": len(profile.classes),
        "reference_calls": len(profile.reference),
        "margin_p50_p99": [round(float(np.percentile(profile.reference, q)), 2) for q in (50, 99)],
    }
    log.info("request profile: %s", summary)
    return summary


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
    parser.add_argument(
        "--only",
        choices=("text", "image", "request"),
        default=None,
        help="fit and write only this profile (for 'request' alone, --fraction 0.15 regenerates the "
        "5,500 call records it reads for the bundled model's 40,000-record pool)",
    )
    parser.add_argument(
        "--request-records",
        type=int,
        default=REQUEST_RECORDS,
        help="training call records the request profile is fitted on, each also read out of fold "
        f"({REQUEST_FOLDS} folds) for its scale (plus {REQUEST_CORPUS_SENTENCES} decline-corpus "
        "sentences per language)",
    )
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
    texts = training_texts(pools["calls"], registry, cfg)
    path = Path(args.checkpoint)
    if args.only in (None, "text"):
        TextNovelty.from_texts(texts).save(path / TEXT_VOCAB_FILE)
        print(f"wrote {TEXT_VOCAB_FILE} in {path}")
    if args.only in (None, "image"):
        ImageNovelty.fit(image_features(ckpt.model, images)).save(path / IMAGE_PROFILE_FILE)
        print(f"wrote {IMAGE_PROFILE_FILE} in {path}")
    if args.only in (None, "request") and cfg.answer_format == "functional":
        records = pools["calls"][: args.request_records]
        summary = write_request_profile(
            path,
            records,
            pools.get("decline_corpus") or {},
            seed=cfg.seed,
            message_bodies=pools.get("message_corpus"),
            message_share=cfg.message_corpus,
        )
        print(f"wrote {REQUEST_PROFILE_FILE} in {path}: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
