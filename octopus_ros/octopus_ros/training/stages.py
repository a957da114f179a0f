"""Multi-stage training of an Octopus model on the synthetic world (Octopus v3 recipe).

Stages (each can be skipped, for the ablation):

1. ``vision``  CLIP-style contrastive pretraining of the open_clip tower against a small
   text encoder over the project's tokenizer (open_clip's ``ClipLoss``), plus attribute
   heads on the pooled embedding (target category, target colour, objects present); a
   fraction of the images in greyscale (``grey``, colour label masked) or tile-shuffled
   (``tiles``, shape labels masked).
2. ``text``    LM text pretraining on the bilingual instruction corpus (training phrasings
   only), captions, a bilingual glossary of the world's words (training combos only), and
   the function registry's own descriptions (``doc_repeats``).
3. ``align``   connector + LM on captioning and visual questions, vision frozen.
4. ``calls``   functional-token tuning on image-instruction-call records (all parts, the
   vision tower at a lower learning rate), mixed with some alignment data so the LM keeps
   reading the image; half of the instructions get word dropout (slot words kept,
   :mod:`octopus_ros.data.augment`) so the LM does not memorise whole phrasings, and some
   of those also get inserted pseudo-words (``noise``) so unknown words do not mean
   "decline" (and ``decline_noise`` of the decline examples get them too); named and
   text-only records can be shown in greyscale (``grey``). The call pool's decoys
   (``named_decoy``, ``colour_decoy``) show named instructions with the named category
   absent or in another colour; with ``decline_absent`` a function that must see its object
   (registry ``requires_view``) answers those with the decline (a case to learn), find_item keeps
   its call.
5. ``refine``  Octopus v3's last stage, learning from the model's own mistakes: the stage-4
   model decides fresh training-distribution records (new seed: negatives from the decline
   corpus, absent and recoloured objects, word dropout and pseudo-words as in stage 4) with the
   node's constrained decoding; every wrong output is paired with the right answer and the model
   is trained with DPO (Rafailov et al. 2023) against the frozen stage-4 model, plus the
   chosen answer's NLL and a stage-4 batch so that nothing else drifts. DPO rather than a learnt
   reward model: here the reward is exact (the label says which call is right), and DPO optimises
   exactly that preference under a KL bound to the stage-4 model, with no reward model to fit.
   With ``refine_twins`` each absent-object pair gets its present twin (the same request over the
   scene that holds the object, the call preferred), so that only the image separates them. A
   gate keeps the result only if it makes no more mistakes on fresh validation records.

Budgets are steps per stage (:data:`DEFAULT_STEPS`, those of the bundled model's last run), with a
seeded, deterministic data order, so the same config and seed give the same model on any
machine (given the same torch build and thread count). Wall-clock seconds per stage are only a
guard: a stage that reaches its guard stops early, and the curve, the log and the run's metrics
say so (``cut_short``).
No rclpy; the CLI is ``octopus_ros.training.train_all``.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from octopus_ros.data import CATEGORY_NAMES, COLOUR_NAMES
from octopus_ros.data.augment import (
    NOT_AUGMENTED,
    greyscale,
    insert_noise,
    shuffle_tiles,
    strip_colour_words,
    word_dropout,
)
from octopus_ros.data.decline_corpus import CHAT_SHARE
from octopus_ros.model import OctopusModel, PromptFormat, collate

log = logging.getLogger(__name__)

STAGES = ("vision", "text", "align", "calls", "refine")


# Steps per stage of the bundled model's last run (v7: wall-clock budgets of 480 / 180 / 300 /
# 2280 s made these steps on the 2-core development machine).
DEFAULT_STEPS: dict[str, int] = {"vision": 2302, "text": 746, "align": 908, "calls": 5135, "refine": 300}
REFERENCE_SECONDS: dict[str, float] = {
    "vision": 480.0,
    "text": 180.0,
    "align": 300.0,
    "calls": 2280.0,
    "refine": 600.0,
}


@dataclass
class TrainConfig:
    """Budgets and hyper-parameters of a run (saved with the checkpoint)."""

    model: str = "octopus-tiny-rnc"  # named model config
    pool_stride: int | None = None  # override the config's MLP connector pooling (None: keep it)
    connector: str | None = None  # override the config's connector type, "mlp" or "perceiver" (None: keep it)
    num_latents: int | None = None  # perceiver latents (None: as many as the MLP's image tokens)
    # how call records are answered (functions/answer_format.py): "functional" or "json" (the JSON-text
    # baseline: same records, the answer written as JSON text with no functional token)
    answer_format: str = "functional"
    vocab_size: int = 2048
    image_size: int | None = None  # synthetic images' side; None: the vision tower's own input size
    steps: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_STEPS))  # budget per stage
    # wall-clock guard per stage: a stage that reaches it stops early and is reported cut short
    seconds: dict[str, float] = field(
        default_factory=lambda: {k: 3.0 * v for k, v in REFERENCE_SECONDS.items()}
    )
    skip: tuple[str, ...] = ()  # stages left out (ablation)
    batch: int = 32
    lr: float = 1.5e-3
    vision_lr_scale: float = 0.3  # stage 4: vision tower learning rate relative to lr
    mix_align: float = 0.2  # stage 4: fraction of alignment examples in each batch
    aux_weight: float = 0.3  # stage 4: weight of the attribute-head loss on the vision tower (0: off)
    augment: float = 0.5  # stage 4: fraction of call records whose instruction gets word dropout
    dropout_p: float = 0.12  # word dropout: probability of dropping each unprotected word/character
    noise: float = 0.5  # stage 4: fraction of augmented instructions that also get 1-2 inserted pseudo-words
    flip: bool = True  # random left-right mirroring of training images
    named_decoy: float = 0.3  # call pool: named instructions shown with a scene lacking the named object
    colour_decoy: float = 0.3  # call pool: named instructions shown with the named category in another colour
    # call pool: absent-category decoys of requires_view functions answer with the decline (the
    # object is not in view); the colour decoys too with decline_recoloured (v8 did: it declined
    # unseen colour x object pairs, see docs/training.md)
    decline_absent: bool = True
    decline_recoloured: bool = False
    decline_noise: float = 0.3  # stage 4: fraction of no_action records that get 1-2 inserted pseudo-words
    # stage 4: fraction of no_action records whose instruction is a natural sentence of the same
    # language from the decline corpus (data/decline_corpus.py, built at setup; 0: off)
    decline_corpus: float = 0.5
    # share of those sentences that are conversation lines (chatterbot-corpus; 0: none;
    # data/decline_corpus.py load_corpus)
    decline_chat: float = CHAT_SHARE
    # stage 4: fraction of send_message records whose message body is a short natural sentence of the
    # decline corpus (copied into the call: the model learns to copy a span, not to recall; 0: off)
    message_corpus: float = 0.5
    # stage 4: fraction of the varied English instructions (``augment``) whose verb is replaced by a
    # WordNet synonym first (data/synonyms.py, built at setup; 0: off)
    synonyms: float = 0.0
    # stage 4: fraction of call and decline records (not messages or speeds) said inside chatter: a
    # short statement of the decline corpus before or after the request, set off by a comma ("I'm
    # staying home, pick up the red cup"); the answer is unchanged (0: off; docs/training.md item 45)
    chatter: float = 0.0
    grey: float = 0.2  # stages 1 and 4: fraction of images shown in greyscale (colour label masked)
    tiles: float = 0.0  # stage 1: fraction of salient-scene images tile-shuffled (shape labels masked)
    tile_px: int = 8  # tile side for ``tiles``
    lexicon_repeats: int = 3  # stage 2: copies of the bilingual glossary in the text pool
    doc_repeats: int = 20  # stage 2: copies of the function registry's descriptions in the text pool (0: off)
    pool_calls: int = 40000  # pre-generated training records (recycled across epochs)
    pool_align: int = 16000
    pool_refine: int = 3000  # stage 5: fresh records the stage-4 model decides (its errors become pairs)
    refine_batch: int = 16  # stage 5: preference pairs per step (plus a stage-4 batch of the same size)
    refine_lr: float = 2e-4
    dpo_beta: float = 0.1  # stage 5: DPO temperature (KL strength to the stage-4 model)
    refine_nll: float = 1.0  # stage 5: weight of the chosen answer's NLL (per token)
    # stage 5: draw as many pairs whose right answer is the decline as pairs whose right answer is a
    # call (each step, when both kinds exist), so the stage cannot lean towards whichever error
    # the stage-4 model made more often
    refine_balance: bool = False
    # stage 5: each absent-object mistake (a named request acted on over a scene that lacks the
    # object) is paired with its present twin: the same request over the scene that holds the
    # object, the call preferred to the decline, so that only the image separates the two pairs
    # (docs/training.md item 16: halves the drift towards declining named requests, not all of it)
    refine_twins: bool = True
    # stage 5 keeps its result only if it makes fewer mistakes than the stage-4 model on fresh
    # validation records of the training distribution (another seed); otherwise stage 4's weights stay
    refine_gate: bool = True
    pool_refine_val: int = 1000  # stage 5: validation records of that check
    seed: int = 0
    threads: int = 2


@dataclass
class Curve:
    """Loss (and optional accuracy) per step of one stage, for the plots."""

    stage: str
    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0
    planned_steps: int = 0  # the stage's step budget
    cut_short: bool = False  # the wall-clock guard stopped it before planned_steps
    info: dict[str, Any] = field(default_factory=dict)  # stage figures (refine: its pairs)


def pixels(images: np.ndarray, model: OctopusModel, *, flip: bool = False) -> torch.Tensor:
    """(B, H, W, 3) uint8 -> normalised (B, 3, S, S) at the tower's own size S (resized if needed).

    ``flip``: mirror a random half of the images left-right (training augmentation; no function
    or argument of the world depends on left and right)."""
    v = model.config.vision
    mean = torch.tensor(v.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(v.image_std).view(1, 3, 1, 1)
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    if flip:
        mask = torch.rand(x.shape[0]) < 0.5
        x[mask] = x[mask].flip(-1)
    if x.shape[-2:] != (v.image_size, v.image_size):
        x = F.interpolate(x, size=(v.image_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
    return (x - mean) / std


class TextEncoder(nn.Module):
    """Bag-of-tokens text tower for contrastive pretraining (kept with the stage-1 checkpoint only:
    ``stages/vision/clip_text.safetensors``, for zero-shot scoring, training/zero_shot.py)."""

    def __init__(self, *, vocab: int, dim: int, embed_dim: int) -> None:
        super().__init__()
        self.embed = nn.EmbeddingBag(vocab, dim, mode="mean")
        self.proj = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, embed_dim))

    def forward(self, ids: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(self.embed(ids, offsets)), dim=-1)  # (B, E)


def _run(
    stage: str,
    steps: int,
    params: Sequence[Any],
    step_fn: Callable[[], torch.Tensor],
    lr: float,
    max_seconds: float = math.inf,
) -> Curve:
    """Optimise ``step_fn()``'s loss for ``steps`` steps (cosine lr over them, linear warm-up,
    clipping at 1.0). ``max_seconds`` is a wall-clock guard: reaching it stops the stage early,
    logged as a warning and recorded in the curve (``cut_short``)."""
    if steps < 1:
        raise ValueError(f"stage {stage}: steps must be >= 1, got {steps}")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    curve = Curve(stage, planned_steps=steps)
    start = time.monotonic()
    step = 0
    bar = tqdm(total=steps, desc=f"stage {stage}", unit="step", leave=True, mininterval=1.0)
    ema = None
    while step < steps:
        if time.monotonic() - start >= max_seconds:
            curve.cut_short = True
            log.warning(
                "stage %s cut short by its wall-clock guard (%.0f s) after %d of %d steps",
                stage,
                max_seconds,
                step,
                steps,
            )
            break
        frac = step / steps
        scale = min(1.0, (step + 1) / 30) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac)))
        for group in optimizer.param_groups:
            group["lr"] = group.get("base_lr", lr) * scale
        loss = step_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
        optimizer.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        curve.steps.append(step)
        curve.loss.append(value)
        step += 1
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{ema:.3f}")
    bar.close()
    curve.seconds = time.monotonic() - start
    log.info("stage %s: %d steps in %.0f s, final loss %.4f", stage, step, curve.seconds, ema or float("nan"))
    return curve


def _param_groups(model: OctopusModel, lr: float, vision_scale: float) -> list[dict[str, Any]]:
    vision = [p for p in model.vision.parameters() if p.requires_grad]
    vision_ids = {id(p) for p in vision}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in vision_ids]
    groups = [{"params": rest, "base_lr": lr}]
    if vision:
        groups.append({"params": vision, "base_lr": lr * vision_scale})
    return groups


class Trainer:
    """Holds the model, tokenizer, data pools and the stage procedures."""

    def __init__(self, model: OctopusModel, tokenizer: Any, cfg: TrainConfig, pools: dict[str, Any]) -> None:
        self.model = model
        self.tok = tokenizer
        self.cfg = cfg
        self.fmt = PromptFormat(tokenizer=tokenizer, config=model.config)
        self.pools = pools
        self._chatter: dict[str, list[str]] | None = None  # _chattered's statements, built on first use
        self.rng = random.Random(cfg.seed)
        self.np_rng = np.random.default_rng(cfg.seed)
        self.curves: list[Curve] = []
        self._encoded: dict[tuple[str, int], Any] = {}
        self.heads = attribute_heads(model.config.vision.embed_dim)  # shared by stages 1 and 4
        self.clip_text: tuple[TextEncoder, float] | None = None  # stage 1's text tower and logit scale

    @functools.cached_property
    def registry(self):
        """The bundled function registry (the synthetic world's functions), read once."""
        from octopus_ros.functions import load_default_registry

        return load_default_registry()

    @functools.cached_property
    def _synonyms(self):
        """The English verb synonyms (data/synonyms.py), kept off the held-out phrasings and the
        natural test set."""
        from octopus_ros.data.synonyms import SynonymVariation

        return SynonymVariation.for_training()

    def _varied(self, kind: str, rec: dict) -> tuple[str, str] | None:
        """(instruction, answer) of a record as stage 4 varies it (word dropout, pseudo-words, a
        decline corpus sentence for a decline, a corpus sentence as a message body), or None when
        it is shown unchanged. The answer is written in ``cfg.answer_format``."""
        if kind != "calls":
            return None
        function = rec.get("function", "no_action")
        answer = self._answer(kind, rec["answer"])
        if (
            function == "send_message"
            and self.cfg.message_corpus > 0
            and self.rng.random() < self.cfg.message_corpus
        ):
            return self._new_message(rec)
        if (
            self.cfg.chatter > 0
            and function not in ("send_message", "set_speed")
            and self.rng.random() < self.cfg.chatter
            and (said := self._chattered(rec)) is not None
        ):
            return said, answer
        if self.cfg.augment > 0 and function not in NOT_AUGMENTED and self.rng.random() < self.cfg.augment:
            text = rec["instruction"]
            if self.cfg.synonyms > 0 and rec["language"] == "en" and self.rng.random() < self.cfg.synonyms:
                text = self._synonyms.vary(text, self.np_rng) or text
            text = word_dropout(text, rec["language"], self.np_rng, self.cfg.dropout_p)
            if self.cfg.noise > 0 and self.rng.random() < self.cfg.noise:
                text = insert_noise(text, rec["language"], self.np_rng)
            return text, answer
        if (
            self.cfg.decline_noise > 0
            and function == "no_action"
            and self.rng.random() < self.cfg.decline_noise
        ):
            return insert_noise(rec["instruction"], rec["language"], self.np_rng), answer
        if (
            self.cfg.decline_corpus > 0
            and function == "no_action"
            and self.rng.random() < self.cfg.decline_corpus
        ):
            return self.rng.choice(self.pools["decline_corpus"][rec["language"]]), answer
        return None

    def _chattered(self, rec: dict) -> str | None:
        """The record's instruction with a short statement of the decline corpus (no question, no
        unsafe-request pattern) before or after it, set off by a comma; None without a corpus."""
        language = rec["language"]
        if self._chatter is None:
            from octopus_ros.data.decline_corpus import unsafe_requests

            unsafe = {text for _, text in unsafe_requests()}
            longest = {"en": 60, "zh": 20}
            self._chatter = {
                lang: sorted(
                    {
                        t.strip().rstrip(".。!！")
                        for t in sentences
                        if t not in unsafe
                        and 4 <= len(t.strip()) <= longest.get(lang, 60)
                        and not t.rstrip().endswith(("?", "？"))
                    }
                )
                for lang, sentences in self.pools.get("decline_corpus", {}).items()
            }
        pool = self._chatter.get(language) or []
        if not pool:
            return None
        chatter = self.rng.choice(pool)
        comma = "，" if language == "zh" else ", "
        text = rec["instruction"]
        return f"{chatter}{comma}{text}" if self.rng.random() < 0.5 else f"{text}{comma}{chatter}"

    def _new_message(self, rec: dict) -> tuple[str, str] | None:
        """The record with its copied text (the call's ``source: utterance`` argument, a message
        body) replaced by a short sentence of the same language from the decline corpus (real text
        the templates never say), in the instruction and in the call together, so that the model
        learns to copy a span of the utterance rather than to recall one of the training messages
        (issue 12 item 2; :func:`octopus_ros.data.message_bodies.with_body`). None when the record
        has no such argument in its instruction."""
        from octopus_ros.data.message_bodies import with_body

        sentences = self.pools.get("message_corpus", {}).get(rec["language"], [])
        if not sentences:
            return None
        body = self.rng.choice(sentences)
        return with_body(rec["instruction"], rec["answer"], self.registry, body, self.cfg.answer_format)

    def _answer(self, kind: str, answer: str) -> str:
        """A record's answer as the model is taught to write it: call records (functional text in
        the pools) in ``cfg.answer_format``; captions and VQA answers unchanged."""
        if kind != "calls" or self.cfg.answer_format == "functional":
            return answer
        from octopus_ros.functions.answer_format import convert_answer

        return convert_answer(answer, self.cfg.answer_format, self.registry)

    def _example(self, kind: str, i: int):
        rec = self.pools[kind][i]
        varied = self._varied(kind, rec)
        if varied is not None:
            return self.fmt.build_training_example(*varied)
        key = (kind, i)
        if key not in self._encoded:
            answer = self._answer(kind, rec["answer"])
            self._encoded[key] = self.fmt.build_training_example(rec["instruction"], answer)
        return self._encoded[key]

    def _batch(self, kinds: Sequence[str], n: int) -> tuple[dict[str, torch.Tensor], list[dict], np.ndarray]:
        """A random batch of ``kinds[:n]`` records: (model inputs, the records, which images
        were shown in greyscale)."""
        examples, records = [], []
        for kind in kinds[:n]:
            i = self.rng.randrange(len(self.pools[kind]))
            examples.append(self._example(kind, i))
            records.append(self.pools[kind][i])
        batch = collate(examples, pad_token_id=self.tok.pad_token_id)
        # Greyscale only where the answer does not need the image's colours: call records whose
        # instruction names the object or does not depend on the image (not captions, VQA or
        # deictic instructions).
        grey_ok = [r.get("mode") in ("named", "text") for r in records]
        images, grey, _ = self._factor_augment(records, tiles=0.0, grey_ok=grey_ok)
        batch["pixel_values"] = pixels(images, self.model, flip=self.cfg.flip)
        return batch, records, grey

    def _factor_augment(
        self, records: Sequence[dict], *, tiles: float, grey_ok: Sequence[bool] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Stacked uint8 images of ``records`` with the colour/shape-removing augmentations
        (:func:`~octopus_ros.data.augment.greyscale`, :func:`~octopus_ros.data.augment.shuffle_tiles`)
        applied to random fractions ``cfg.grey`` and ``tiles``; returns (images, greyscale mask,
        tile-shuffled mask). Only salient-layout scenes are tile-shuffled (there the target
        colour is the one covering most of the objects' area); ``grey_ok`` limits greyscale."""
        images = np.stack([r["image"] for r in records])
        n = len(records)
        u = self.np_rng.random(n)
        grey = u < self.cfg.grey
        if grey_ok is not None:
            grey &= np.asarray(grey_ok, dtype=bool)
        salient = np.array([r.get("salient", False) for r in records], dtype=bool)
        tiled = (u >= self.cfg.grey) & (u < self.cfg.grey + tiles) & salient  # never also grey
        if grey.any():
            images[grey] = greyscale(images[grey])
        for j in np.flatnonzero(tiled):
            images[j] = shuffle_tiles(images[j], self.cfg.tile_px, self.np_rng)
        return images, grey, tiled

    # ---------------------------------------------------------------- stage 1
    def vision(self, steps: int) -> Curve:
        m = self.model
        m.set_trainable(vision=True, connector=False, lm=False, embeddings=False)
        embed_dim = m.config.vision.embed_dim
        text = TextEncoder(vocab=len(self.tok), dim=128, embed_dim=embed_dim)
        heads = self.heads
        logit_scale = nn.Parameter(torch.tensor(math.log(10.0)))
        from open_clip import ClipLoss

        clip_loss = ClipLoss()
        pool = self.pools["vision"]
        cap_ids = [self.tok.encode(r["caption"], add_special_tokens=False) for r in pool]
        grey_ids = [self.tok.encode(strip_colour_words(r["caption"]), add_special_tokens=False) for r in pool]

        def step() -> torch.Tensor:
            idx = [self.rng.randrange(len(pool)) for _ in range(self.cfg.batch * 2)]
            records = [pool[i] for i in idx]
            images, grey, tiled = self._factor_augment(records, tiles=self.cfg.tiles)
            x = pixels(images, m, flip=self.cfg.flip)
            pooled, _ = m.image_features(x)
            # Contrastive pairs: every image but the tile-shuffled ones (no caption describes
            # them); a greyscale image is paired with its caption without colour words.
            keep = [j for j in range(len(idx)) if not tiled[j]]
            img = F.normalize(pooled[keep], dim=-1)
            ids = [grey_ids[idx[j]] if grey[j] else cap_ids[idx[j]] for j in keep]
            offsets = torch.tensor([0, *np.cumsum([len(t) for t in ids])[:-1]])
            txt = text(torch.tensor([t for row in ids for t in row]), offsets)
            loss = clip_loss(img, txt, logit_scale.exp().clamp(max=100))
            return loss + attribute_loss(heads, pooled, records, no_colour=grey, no_shape=tiled)

        params = [p for p in m.vision.parameters()] + list(text.parameters()) + list(heads.parameters())
        curve = self._record(
            _run("vision", steps, [*params, logit_scale], step, self.cfg.lr, self._guard("vision"))
        )
        # kept for CLIP zero-shot scoring against this stage's tower (training/zero_shot.py); later
        # stages move the tower away from it, so it is saved with the stage-1 checkpoint only
        self.clip_text = (text.eval(), float(logit_scale.detach().exp().clamp(max=100)))
        return curve

    # ---------------------------------------------------------------- stage 2
    def text(self, steps: int) -> Curve:
        m = self.model
        m.set_trainable(vision=False, connector=False, lm=True, embeddings=True)
        lines = [self.tok.encode(t, add_special_tokens=False)[:96] for t in self.pools["text"]]

        def step() -> torch.Tensor:
            rows = [self.rng.choice(lines) for _ in range(self.cfg.batch * 2)]
            T = max(len(r) for r in rows)
            ids = torch.full((len(rows), T), self.tok.pad_token_id)
            labels = torch.full((len(rows), T), -100)
            for i, r in enumerate(rows):
                ids[i, : len(r)] = torch.tensor(r)
                labels[i, : len(r)] = torch.tensor(r)
            return m.lm(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss

        params = [p for p in m.lm.parameters() if p.requires_grad]
        return self._record(_run("text", steps, params, step, self.cfg.lr, self._guard("text")))

    # ---------------------------------------------------------------- stage 3
    def align(self, steps: int) -> Curve:
        m = self.model
        m.set_trainable(vision=False, connector=True, lm=True, embeddings=True)

        def step() -> torch.Tensor:
            return m(**self._batch(["align"] * self.cfg.batch, self.cfg.batch)[0]).loss

        params = [p for p in m.parameters() if p.requires_grad]
        return self._record(_run("align", steps, params, step, self.cfg.lr, self._guard("align")))

    # ---------------------------------------------------------------- stage 4
    def calls(self, steps: int) -> Curve:
        m = self.model
        m.set_trainable(vision=True, connector=True, lm=True, embeddings=True)
        n_align = int(round(self.cfg.batch * self.cfg.mix_align))
        kinds = ["calls"] * (self.cfg.batch - n_align) + ["align"] * n_align

        aux = self.cfg.aux_weight

        def step() -> torch.Tensor:
            batch, records, grey = self._batch(kinds, self.cfg.batch)
            if aux <= 0:
                return m(**batch).loss
            pooled, tokens = m.image_features(batch.pop("pixel_values"))  # (B, E), (B, N, W)
            loss = m(**batch, image_embeds=m.connector(tokens)).loss
            return loss + aux * attribute_loss(self.heads, pooled, records, no_colour=grey)

        groups = _param_groups(m, self.cfg.lr, self.cfg.vision_lr_scale)
        if aux > 0:
            groups.append({"params": list(self.heads.parameters()), "base_lr": self.cfg.lr})
        return self._record(_run("calls", steps, groups, step, self.cfg.lr, self._guard("calls")))

    # ---------------------------------------------------------------- stage 5
    def preference_pairs(self) -> tuple[list[dict], dict[str, Any]]:
        """The stage-4 model's own mistakes on the ``refine`` pool: each record's instruction (varied
        as in stage 4) is decided with the node's constrained decoding; a wrong output becomes a
        pair ``{image, instruction, chosen, rejected}``. Returns (pairs, figures)."""

        if self.cfg.answer_format != "functional":
            raise ValueError(
                f"stage refine decides with the functional-token call grammar; answer_format "
                f"{self.cfg.answer_format!r} is not supported there (skip the stage)"
            )
        pool = self.pools.get("refine", [])
        pairs, wrong_by = self._mistakes(self._variants(pool), "stage refine: decide")
        figures = {
            "records": len(pool),
            "wrong": sum(wrong_by.values()),
            "error_rate": round(sum(wrong_by.values()) / max(1, len(pool)), 4),
            "wrong_by_kind": wrong_by,
            "pairs": len(pairs),
            "twin_pairs": sum(bool(p.get("twin")) for p in pairs),
        }
        log.info("stage refine: %s", figures)
        return pairs, figures

    def _variants(self, pool: Sequence[dict]) -> list[dict]:
        """The records with their instruction and answer varied as in stage 4 (drawn once)."""
        out = []
        for rec in pool:
            text, answer = self._varied("calls", rec) or (rec["instruction"], rec["answer"])
            out.append({**rec, "instruction": text, "answer": answer})
        return out

    def _mistakes(self, records: Sequence[dict], desc: str) -> tuple[list[dict], dict[str, int]]:
        """The model's wrong decisions on ``records`` (node's constrained decoding): preference
        pairs ``{image, instruction, chosen, rejected}`` (outputs that parse) and counts by kind."""
        from octopus_ros.model.runtime import Octopus

        registry = self.registry
        octopus = Octopus(model=self.model, tokenizer=self.tok, registry=registry, inplace=True)
        pairs: list[dict] = []
        wrong_by: dict[str, int] = {}
        with torch.no_grad():
            for rec in tqdm(records, desc=desc, unit="rec", mininterval=1.0):
                answer = rec["answer"]
                d = octopus.decide(rec["instruction"], rec["image"])
                got = d.call.to_text() if d.call is not None else ""
                if got == answer:
                    continue
                kind = "decline" if answers_decline(answer, registry) else "call"
                key = f"{kind}:{'absent' if rec.get('decoy') else 'plain'}"
                wrong_by[key] = wrong_by.get(key, 0) + 1
                if not got:  # an output that did not parse cannot be a rejected answer
                    continue
                pairs.append({**rec, "chosen": answer, "rejected": got})
                if self.cfg.refine_twins and rec.get("twin_answer") and kind == "decline":
                    pairs.append(present_twin(rec))
        return pairs, wrong_by

    def _answer_logp(self, model: OctopusModel, pairs: Sequence[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """Summed log-probability of the chosen and of the rejected answer of each pair, and the
        chosen answers' token counts: ((2, P) logp, (P,) tokens). No augmentation (the
        reference's figures must be those of the same inputs)."""
        examples = [self.fmt.build_training_example(p["instruction"], p["chosen"]) for p in pairs]
        examples += [self.fmt.build_training_example(p["instruction"], p["rejected"]) for p in pairs]
        batch = collate(examples, pad_token_id=self.tok.pad_token_id)
        images = np.stack([p["image"] for p in pairs] * 2)
        labels = batch.pop("labels")
        logits = model(**batch, pixel_values=pixels(images, self.model)).logits[:, :-1]
        target = labels[:, 1:]
        mask = target != -100
        logp = torch.log_softmax(logits.float(), dim=-1).gather(-1, target.clamp(min=0).unsqueeze(-1))[..., 0]
        seq = (logp * mask).sum(-1).view(2, len(pairs))
        return seq, mask.sum(-1)[: len(pairs)].clamp(min=1)

    def refine(self, steps: int) -> Curve:
        """Stage 5 (see the module docstring): DPO on the model's own mistakes + chosen NLL + a
        stage-4 batch."""
        import copy

        m = self.model
        m.eval()
        pairs, figures = self.preference_pairs()
        val = self._variants(self.pools.get("refine_val", [])) if self.cfg.refine_gate else []
        if val:  # the stage-4 model's mistakes on the validation records, and its weights to go back to
            before_by = self._mistakes(val, "stage refine: validate stage 4")[1]
            before = sum(before_by.values())
            stage4 = {k: v.detach().clone() for k, v in m.state_dict().items()}
        reference = copy.deepcopy(m).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        ref_logp = torch.zeros(2, len(pairs))
        with torch.no_grad():
            for i in range(0, len(pairs), 32):
                ref_logp[:, i : i + 32] = self._answer_logp(reference, pairs[i : i + 32])[0]
        del reference
        m.train()
        # perception stays as stage 4 left it (the grounding head is trained on this tower after)
        m.set_trainable(vision=False, connector=True, lm=True, embeddings=True)
        beta, b = self.cfg.dpo_beta, self.cfg.refine_batch
        n_align = int(round(b * self.cfg.mix_align))
        kinds = ["calls"] * (b - n_align) + ["align"] * n_align
        margins: list[float] = []
        figures["pairs_chosen_decline"] = sum(answers_decline(p["chosen"], self.registry) for p in pairs)

        def draw(k: int) -> list[int]:
            return draw_pairs(pairs, k, self.rng, registry=self.registry, balance=self.cfg.refine_balance)

        def step() -> torch.Tensor:
            loss = m(**self._batch(kinds, b)[0]).loss  # stage-4 data: nothing else drifts
            if not pairs:
                return loss
            idx = draw(min(b, len(pairs)))
            logp, n_tokens = self._answer_logp(m, [pairs[i] for i in idx])
            ref = ref_logp[:, idx]
            margin = beta * ((logp[0] - ref[0]) - (logp[1] - ref[1]))
            margins.append(float(margin.detach().mean()))
            dpo = -F.logsigmoid(margin).mean()
            nll = -(logp[0] / n_tokens).mean()
            return loss + dpo + self.cfg.refine_nll * nll

        groups = _param_groups(m, self.cfg.refine_lr, self.cfg.vision_lr_scale)
        curve = _run("refine", steps, groups, step, self.cfg.refine_lr, self._guard("refine"))
        figures["dpo_margin_first_50"] = round(float(np.mean(margins[:50])), 4) if margins else None
        figures["dpo_margin_last_50"] = round(float(np.mean(margins[-50:])), 4) if margins else None
        if val:
            m.eval()
            after_by = self._mistakes(val, "stage refine: validate")[1]
            after = sum(after_by.values())
            kept = "refined" if after <= before else "stage 4"
            figures["validation"] = {"records": len(val), "wrong_stage4": before, "wrong_refined": after}
            figures["validation_by_kind"] = {"stage4": before_by, "refined": after_by}
            figures["kept"] = kept
            if kept == "stage 4":
                m.load_state_dict(stage4)
                log.warning(
                    "stage refine: %d of %d validation records wrong after it, %d before: the stage-4 "
                    "weights are kept (--no-refine-gate keeps the refined ones)",
                    after,
                    len(val),
                    before,
                )
            else:
                log.info("stage refine: validation records wrong %d -> %d: kept", before, after)
        curve.info = figures
        return self._record(curve)

    def _guard(self, stage: str) -> float:
        return self.cfg.seconds.get(stage, math.inf)

    def _record(self, curve: Curve) -> Curve:
        self.curves.append(curve)
        return curve


def answers_decline(answer: str, registry) -> bool:
    """Whether a functional-token answer is the decline (a call of the registry's decline
    function): the one test stage 5 and its pools use to tell declines from calls."""
    return answer.startswith(registry.decline_function.token_text)


def present_twin(rec: dict) -> dict:
    """The preference pair of an absent-object record's present twin: the same (varied) request
    over the scene that holds the named object (``twin_image``, rendered from the record's own
    scene before the decoy replaced it), its call (``twin_answer``) preferred to the decline that
    is right for the record itself (``rec["answer"]``)."""
    return {
        **rec,
        "image": rec["twin_image"],
        "chosen": rec["twin_answer"],
        "rejected": rec["answer"],
        "twin": True,
    }


def draw_pairs(pairs: Sequence[dict], k: int, rng: random.Random, *, registry, balance: bool) -> list[int]:
    """Indices of ``k`` preference pairs for one stage-5 step. ``balance``: alternately a pair whose
    right answer is the decline (:func:`answers_decline` with ``registry``) and one whose right
    answer is a call, whatever their counts, when both kinds exist; otherwise uniform."""
    if balance:
        declines = [answers_decline(p["chosen"], registry) for p in pairs]
        kinds = (
            [i for i, d in enumerate(declines) if d],
            [i for i, d in enumerate(declines) if not d],
        )
        if all(kinds):
            return [rng.choice(kinds[j % 2]) for j in range(k)]
    return [rng.randrange(len(pairs)) for _ in range(k)]


def attribute_heads(embed_dim: int) -> nn.ModuleDict:
    """Linear heads on the pooled CLIP embedding: target category, target colour, objects present."""
    return nn.ModuleDict(
        {
            "category": nn.Linear(embed_dim, len(CATEGORY_NAMES)),
            "colour": nn.Linear(embed_dim, len(COLOUR_NAMES)),
            "present": nn.Linear(embed_dim, len(CATEGORY_NAMES)),
        }
    )


def attribute_loss(
    heads: nn.ModuleDict,
    pooled: torch.Tensor,
    records: Sequence[dict],
    *,
    no_colour: Sequence[bool] | None = None,
    no_shape: Sequence[bool] | None = None,
) -> torch.Tensor:
    """Cross-entropy of the target's category and colour + BCE of the present objects.

    ``pooled`` (B, E); each record has ``category``, ``colour`` (ints) and ``present``
    (multi-hot), as :func:`octopus_ros.data.scene_labels` gives them. ``no_colour`` masks the
    colour label of images that show no colour (greyscale), ``no_shape`` the category and
    present labels of images that show no shapes (tile-shuffled).
    """
    n = len(records)
    no_colour = np.zeros(n, bool) if no_colour is None else np.asarray(no_colour, bool)
    no_shape = np.zeros(n, bool) if no_shape is None else np.asarray(no_shape, bool)
    cat = torch.tensor([-100 if no_shape[i] else r["category"] for i, r in enumerate(records)])
    col = torch.tensor([-100 if no_colour[i] else r["colour"] for i, r in enumerate(records)])
    loss = pooled.new_zeros(())
    if (cat >= 0).any():
        loss = loss + F.cross_entropy(heads["category"](pooled), cat, ignore_index=-100)
    if (col >= 0).any():
        loss = loss + F.cross_entropy(heads["colour"](pooled), col, ignore_index=-100)
    shape_ok = torch.from_numpy(~no_shape)
    if shape_ok.any():
        present = torch.tensor(np.stack([r["present"] for r in records]), dtype=torch.float32)
        loss = loss + F.binary_cross_entropy_with_logits(
            heads["present"](pooled[shape_ok]), present[shape_ok]
        )
    return loss


def plot_curves(curves: Sequence[Curve], path: Path, title: str = "") -> Path:
    """One panel per stage: loss per step (raw and smoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(curves)), figsize=(4 * max(1, len(curves)), 3.2))
    axes = np.atleast_1d(axes)
    for ax, c in zip(axes, curves, strict=False):
        ax.plot(c.steps, c.loss, alpha=0.3, lw=0.8)
        if len(c.loss) > 20:
            k = max(5, len(c.loss) // 50)
            smooth = np.convolve(c.loss, np.ones(k) / k, mode="valid")
            ax.plot(c.steps[k - 1 :], smooth, lw=1.5)
        ax.set_title(f"stage {c.stage} ({c.seconds / 60:.1f} min)")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def curves_to_json(curves: Sequence[Curve]) -> list[dict[str, Any]]:
    out = []
    for c in curves:
        d = asdict(c)
        stride = max(1, len(c.loss) // 400)  # keep the file small
        d["steps"], d["loss"] = c.steps[::stride], [round(v, 5) for v in c.loss[::stride]]
        out.append(d)
    return out


def save_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
