"""Fine-tune an Octopus model for your robot: your functions, your data, real pretrained parts.

    octopus_finetune --base octopus_ros/models/octopus_tiny --functions my_functions.yaml \\
        --data registry synthetic records:my_robot/records.jsonl --lora --merge --out my_model

    octopus_finetune --vision weights/open_clip_vit_b32 --lm weights/Qwen2.5-0.5B \\
        --functions my_functions.yaml --data registry records:data.jsonl --lora --merge --out my_model

The model comes from ``--base`` (an Octopus checkpoint) or from parts: ``--vision`` (an open_clip
model directory with ``open_clip_config.json``, a model-config JSON, or an open_clip model name
with ``--vision-checkpoint``) and ``--lm`` (a local Hugging Face causal-LM directory whose own
tokenizer is kept; see :mod:`octopus_ros.model.pretrained`).

A function of ``--functions`` whose token the model lacks gets the next ``<nexa_i>``; its row starts
from the mean embedding of its name and description (``--init-new random`` for the baseline). The
functions the ``--base`` checkpoint knows must keep their tokens: a token keeps what it learned, so a
registry that gives ``stop``'s token to ``take_photo`` makes a model that takes a photo when told to
stop. Such a registry is refused, naming each token and function, unless ``--allow-token-changes``
says that the tokens are to be retrained to their new meaning.

What trains: the connector (unless ``--freeze-connector``); the rows of the functional tokens and
``<nexa_end>`` in the LM's embeddings (only the new functions' rows with ``--rows new``; the rest of
the vocabulary is unchanged); with ``--lora``, low-rank adapters on the LM
(peft); with ``--full-lm``, all of the LM; the vision tower only with ``--train-vision``. Images of
every source are prepared at the tower's own input size and normalisation. ``--merge`` folds the
adapters into the weights, so ``--out`` is one plain checkpoint the node loads (``model_path``).

Data (``--data``, mixed with ``--mix`` weights): ``synthetic`` (the project's world, for the
bundled functions the registry keeps at their tokens), ``registry`` (phrasings generated from the
registry's ``examples``), ``decline`` (sentences of the natural decline corpus built at setup,
answered with the decline function: negatives), ``records:PATH`` (a JSONL of image-instruction-call records, see
:mod:`octopus_ros.data.records`), ``bag:PATH`` (a run recorded by ``octopus_record``, through its
labels file ``PATH.labels.jsonl``: the lines confirmed ``ok``, images read from the bag). The registry's descriptions are also read as text
(``--doc-weight``). In-context examples (Otter; text-only, see :mod:`octopus_ros.model.prompt`):
a record's own ``context`` is put in its prompt; ``--context-k K`` also gives a share
(``--context-share``) of the other training examples K random examples of the same function
from the same source. A held-out part of the registry phrasings and of the records never trains;
``metrics.json`` has its loss and exact-match accuracy before and after, ``training_curves.png`` the
curves.

Not forgetting (``--distill W``, learning without forgetting): a frozen copy of the starting model
reads the same batch, and every example whose answer calls no new function adds W times the
KL divergence from that copy's next-token distribution (the new functional tokens left out) to the
model's, at the answer's positions. The model then learns the new function from its own examples
and keeps the starting model's whole distribution, not only its top answer, on the rest. It holds
a second copy of the model in memory and costs one more forward pass per step.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from octopus_ros.cli import number
from octopus_ros.functions import FunctionRegistry, RegistryError
from octopus_ros.lean.prompt import IGNORE_INDEX
from octopus_ros.model import (
    CheckpointError,
    ConfigError,
    ConnectorConfig,
    ImagePreprocessor,
    OctopusModel,
    PromptFormat,
    TrainingExample,
    collate,
    load_checkpoint,
    save_checkpoint,
)
from octopus_ros.model.functional_tokens import INITS, extend_functional_tokens, extend_vocabulary
from octopus_ros.model.tokenizer import NEXA_END_TOKEN
from octopus_ros.training.span_copier import DEFAULT_STEPS as COPIER_STEPS
from octopus_ros.training.stages import TrainConfig

log = logging.getLogger("octopus_ros.training.finetune")

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class FinetuneError(ValueError):
    """Bad command-line input or data; the message says what and where."""


@dataclass
class FinetuneConfig:
    """Everything that decides a run (saved in metrics.json)."""

    data: list[str] = field(default_factory=lambda: ["registry"])
    mix: list[float] | None = None  # one weight per --data source (default: equal)
    steps: int = 500
    seconds: float = 1800.0
    batch: int = 8
    lr: float = 5e-4
    warmup: int = 20
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = LORA_TARGETS
    merge: bool = False
    full_lm: bool = False
    train_vision: bool = False
    freeze_connector: bool = False
    rows: str = "all"  # functional-token embedding rows that train: all | new
    extend_vocab: bool = False  # new functions' byte-split characters get tokens of their own
    init_new: str = "mean"
    doc_weight: float = 0.2
    heldout: float = 0.2
    eval_n: int = 200
    eval_every: int = 50
    synthetic_n: int = 600
    registry_n: int = 2000
    decline_n: int = 2000
    context_k: int = 0  # in-context examples of the same function put in a training prompt
    context_share: float = 0.5  # share of training examples (without their own context) that get them
    augment: float = 0.0  # share of training examples whose instruction is varied (see Finetuner.vary)
    counterfactual: bool = False  # registry phrasings that fix a said value also say the others
    contrast: float = 0.0  # sampling weight of replay requests that name a new function's enum values
    value_rows: bool = False  # the rows of the first token of new functions' own argument values train
    said_bool_loss: bool = True  # False: no loss on a narrow bool's value where the request says it
    unsaid_weight: float = 1.0  # how much more often registry phrasings whose fixed value is unsaid are drawn
    asides: float = 0.0  # share of registry requests (not copying ones) said with a remark beside them
    distill: float = 0.0  # weight of the KL to the starting model on answers without a new function
    seed: int = 0
    threads: int | None = None
    allow_token_changes: bool = False  # --base functions may move to other tokens (retrained on purpose)


# ----------------------------------------------------------------------------- data
DECLINES_SOURCE = "decline"  # the source of decline-corpus sentences (--data decline)


@dataclass
class Item:
    """One training/evaluation example: an image source, instruction, canonical answer."""

    image: Callable[[], np.ndarray]  # (H, W, 3) uint8 RGB of any size
    instruction: str
    answer: str
    source: str
    language: str
    function: str
    context: tuple[tuple[str, str], ...] = ()  # in-context (instruction, answer) pairs of its own
    twins: tuple[tuple[str, str], ...] = ()  # (instruction, answer) trained in the same batch
    # the registry request without the remark --asides said beside it (None: none): what the
    # text-novelty vocabulary and the request profile learn from, so a remark's words never become "seen"
    alone: str | None = None


@dataclass
class Source:
    name: str
    train: list[Item]
    heldout: list[Item]
    weight: float = 1.0


def _constant(image: np.ndarray) -> Callable[[], np.ndarray]:
    return lambda: image


def _backgrounds(n: int, size: int, seed: int) -> list[np.ndarray]:
    """Random scenes of the synthetic world, as camera images for registry phrasings (whose
    call does not depend on the image)."""
    from octopus_ros.data import render, sample_scene

    rng = np.random.default_rng([seed, 7])
    return [render(sample_scene(rng, layout="free" if i % 2 else "salient"), size) for i in range(n)]


def aside_lines(registry: FunctionRegistry, cfg: FinetuneConfig) -> dict[str, tuple[str, ...]] | None:
    """The remarks ``--asides`` says beside requests (data/registry_data.aside_lines of the decline
    corpus's conversation lines); None when ``cfg.asides`` is 0."""
    if cfg.asides <= 0:
        return None
    from octopus_ros.data.decline_corpus import conversation_lines
    from octopus_ros.data.registry_data import aside_lines as fit_asides

    try:
        lines = fit_asides(registry, conversation_lines())
    except FileNotFoundError as e:
        raise FinetuneError(f"--asides needs the decline corpus's conversation lines: {e}") from e
    log.info("asides: %s remarks to say beside requests", {k: len(v) for k, v in lines.items()})
    return lines


def synthetic_source(registry: FunctionRegistry, size: int, cfg: FinetuneConfig) -> Source:
    """The project's synthetic world for the bundled functions the registry keeps at their tokens."""
    from octopus_ros.data import FUNCTIONS, generate

    kept, moved = [], []
    for name, (token, _) in FUNCTIONS.items():
        spec = registry.by_name(name)
        if spec is not None and spec.enabled and spec.token == token:
            kept.append(name)
        elif spec is not None and spec.enabled:
            moved.append(f"{name} (token {spec.token}, the synthetic world uses {token})")
    if moved:
        log.warning("synthetic data leaves out functions at other tokens: %s", ", ".join(moved))
    if not kept:
        raise FinetuneError(
            f"--data synthetic: {registry.source} keeps none of the bundled functions at its token "
            f"({', '.join(FUNCTIONS)}); use registry or records data"
        )
    t0 = time.monotonic()
    n_eval = min(cfg.eval_n, max(20, cfg.synthetic_n // 5))

    def items(split: str, n: int, seed: int) -> list[Item]:
        return [
            Item(_constant(ex.image), ex.instruction, ex.answer, "synthetic", ex.language, ex.function)
            for ex in generate(split, n, seed, image_size=size, functions=kept)
        ]

    train = items("train", cfg.synthetic_n, cfg.seed)
    held = items("iid", n_eval, cfg.seed + 1000)
    log.info(
        "synthetic: %d train + %d held-out (iid) examples at %d px (%.0f s)",
        len(train),
        len(held),
        size,
        time.monotonic() - t0,
    )
    return Source("synthetic", train, held)


def registry_source(registry: FunctionRegistry, size: int, cfg: FinetuneConfig) -> Source:
    """Phrasings generated from the registry's examples; a fraction of phrasings held out."""
    from octopus_ros.data import registry_data

    refs = registry_data.phrasings(registry)
    if not refs:
        raise FinetuneError(
            f"--data registry: no function in {registry.source} has 'examples' (see functions/examples.py)"
        )
    without = [s.name for s in registry.enabled() if not s.examples]
    if without:
        log.info("registry: functions without examples (descriptions only): %s", ", ".join(without))
    train_refs, held_refs = registry_data.split_phrasings(refs, cfg.heldout, cfg.seed)
    if cfg.counterfactual:
        n_before = len(train_refs)
        train_refs = registry_data.with_counterfactuals(registry, train_refs)
        log.info("registry: %d counterfactual phrasings added", len(train_refs) - n_before)
    backgrounds = _backgrounds(64, size, cfg.seed)
    rng = np.random.default_rng([cfg.seed, 11])

    def items(examples) -> list[Item]:
        return [
            Item(
                _constant(backgrounds[int(rng.integers(len(backgrounds)))]),
                ex.instruction,
                ex.answer,
                "registry",
                ex.language,
                ex.function,
                twins=ex.twins,
                alone=ex.alone or None,
            )
            for ex in examples
        ]

    asides = aside_lines(registry, cfg)
    train = items(
        registry_data.generate(
            registry,
            train_refs,
            cfg.registry_n,
            cfg.seed,
            twins=cfg.counterfactual,
            unsaid_weight=cfg.unsaid_weight,
            asides=asides,
            aside_share=cfg.asides,
        )
    )
    per_ref = max(1, cfg.eval_n // max(1, len(held_refs)))
    held_rng = np.random.default_rng([cfg.seed, 13])
    held = items([registry_data.realise(registry, r, held_rng) for r in held_refs for _ in range(per_ref)])
    log.info(
        "registry: %d phrasings (%d held out), %d train examples, %d held-out examples",
        len(refs),
        len(held_refs),
        len(train),
        len(held),
    )
    return Source("registry", train, held[: cfg.eval_n])


def records_source(
    path: str | Path, registry: FunctionRegistry, cfg: FinetuneConfig, name: str | None = None
) -> Source:
    """A records JSONL file; ``heldout`` of the records (at least one when there are 5+) held out.
    ``name``: the source's name (default ``records:PATH``)."""
    from octopus_ros.data.records import load_image, read_records

    name = name or f"records:{path}"
    records = read_records(path, registry)
    rng = random.Random(cfg.seed)
    order = list(range(len(records)))
    rng.shuffle(order)
    n_out = int(round(cfg.heldout * len(records))) if len(records) >= 5 else 0
    if len(records) >= 5:
        n_out = max(1, n_out)
    held_idx = set(order[:n_out])
    if any(r.context for r in records):
        log.info(
            "%s: %d records with in-context examples (their instructions and answers go in the prompt; "
            "the examples' images are not used)",
            path,
            sum(1 for r in records if r.context),
        )

    def item(r) -> Item:
        return Item(
            lambda r=r: load_image(r.query.image, r.where),
            r.instruction,
            r.answer,
            name,
            r.language,
            r.function,
            tuple((t.instruction, t.answer) for t in r.context),
        )

    train = [item(r) for i, r in enumerate(records) if i not in held_idx]
    held = [item(r) for i, r in enumerate(records) if i in held_idx]
    log.info("%s: %d train, %d held out", name, len(train), len(held))
    return Source(name, train, held)


def bag_labels_path(bag: str | Path) -> Path:
    """Where ``--data bag:PATH`` reads the run's labels: ``PATH.labels.jsonl`` beside the bag,
    the name the README gives ``octopus_label extract``'s output."""
    bag = Path(bag)
    return bag.with_name(bag.name + ".labels.jsonl")


def bag_source(path: str, registry: FunctionRegistry, cfg: FinetuneConfig) -> Source:
    """A run recorded by ``octopus_record``, through its labels (``bag_labels_path``): the lines
    marked ``ok`` become records whose images are read from the bag, exactly as ``octopus_label
    records`` writes them (bags/labels.py). A line still ``todo`` is an error: a recording is
    not trained on until someone has said what each utterance should have done (``octopus_label
    extract --auto-confirm`` takes the node's own decisions as right, on purpose)."""
    import tempfile

    from octopus_ros.bags.labels import LabelError, to_records

    bag, labels = Path(path), bag_labels_path(path)
    if not bag.is_dir():
        raise FinetuneError(f"--data bag:{path}: no such bag folder (octopus_record writes one)")
    if not labels.is_file():
        raise FinetuneError(
            f"--data bag:{path}: no labels file {labels}: label the run first (octopus_label extract"
            f" {path} --out {labels}, then confirm or correct each line)"
        )
    with tempfile.TemporaryDirectory(prefix="octopus_bag_") as tmp:
        try:
            records = to_records(labels, Path(tmp) / "records.jsonl", registry)
        except LabelError as e:
            raise FinetuneError(f"--data bag:{path}: {e}") from e
        return records_source(records, registry, cfg, name=f"bag:{path}")


def decline_source(registry: FunctionRegistry, size: int, cfg: FinetuneConfig) -> Source:
    """Sentences of the natural decline corpus (:mod:`octopus_ros.data.decline_corpus`, built at
    setup: fortune-file sentences and unsafe requests, EN and ZH) answered with the registry's
    decline function, each with a random scene: negatives, so that a new function does not become
    the answer to every utterance unlike the templates of the other sources. Languages are
    balanced; ``eval_n`` sentences are held out."""
    from octopus_ros.data.decline_corpus import load_corpus
    from octopus_ros.functions import make_call

    corpus = load_corpus()  # FileNotFoundError names the file and how to build it
    decline = registry.decline_function
    answer = make_call(registry, decline.name).to_text()
    languages = sorted(lang for lang, texts in corpus.items() if texts)
    if not languages:
        raise FinetuneError("--data decline: the decline corpus is empty")
    rng = random.Random(cfg.seed + 23)
    backgrounds = _backgrounds(64, size, cfg.seed + 1)
    train, held = [], []
    n_train, n_held = cfg.decline_n // len(languages), max(1, cfg.eval_n // len(languages))
    for lang in languages:
        texts = sorted(set(corpus[lang]))
        rng.shuffle(texts)
        h = max(0, min(n_held, len(texts) - n_train))  # a small corpus trains first
        for k, text in enumerate(texts[: h + n_train]):
            image = _constant(backgrounds[rng.randrange(len(backgrounds))])
            (held if k < h else train).append(Item(image, text, answer, DECLINES_SOURCE, lang, decline.name))
    log.info(
        "decline: %d train + %d held-out corpus sentences (%s) -> %s",
        len(train),
        len(held),
        languages,
        answer,
    )
    return Source(DECLINES_SOURCE, train, held)


def contrast_source(
    registry: FunctionRegistry, new: list[str], sources: list[Source], weight: float
) -> Source | None:
    """The replay's requests (synthetic, decline, records) for other functions that say a value
    of a new function's enum arguments in its language: "go to the kitchen" beside
    set_light(room). These are the requests a new function takes over when they are forgotten
    (the room words of set_light and navigate_to); sampling them more often (``--contrast W``)
    trains the difference. No held-out part of its own:
    its examples are the other sources' training examples. None (and a warning) when no replay
    request says one: there is nothing the new function can take over by its names."""
    from octopus_ros.data.registry_data import value_forms
    from octopus_ros.functions.mentions import says

    specs = [registry.by_name(n) for n in new if registry.by_name(n) is not None]
    replay = [it for s in sources if s.name != "registry" for it in s.train if it.function not in new]
    forms = {
        lang: tuple(sorted({f for spec in specs for f in value_forms(spec, lang)}))
        for lang in {it.language for it in replay}
    }
    pool = [it for it in replay if says(it.instruction, forms[it.language])]
    if not pool:
        log.warning("--contrast: no replay request says a value of %s: nothing to contrast", ", ".join(new))
        return None
    counts: dict[str, int] = {}
    for it in pool:
        counts[it.function] = counts.get(it.function, 0) + 1
    log.info(
        "contrast: %d replay requests say a value of %s (%s), weight %g",
        len(pool),
        ", ".join(new),
        ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1])),
        weight,
    )
    return Source("contrast", pool, [], weight)


def build_sources(registry: FunctionRegistry, size: int, cfg: FinetuneConfig) -> list[Source]:
    if not cfg.data:
        raise FinetuneError(
            "--data needs at least one source: synthetic, registry, decline, records:PATH or bag:PATH"
        )
    weights = cfg.mix or [1.0] * len(cfg.data)
    if len(weights) != len(cfg.data) or any(w <= 0 for w in weights):
        raise FinetuneError(
            f"--mix needs one positive weight per --data source ({len(cfg.data)}), got {weights}"
        )
    sources = []
    for spec, w in zip(cfg.data, weights, strict=True):
        if spec == "synthetic":
            src = synthetic_source(registry, size, cfg)
        elif spec == "registry":
            src = registry_source(registry, size, cfg)
        elif spec == "decline":
            src = decline_source(registry, size, cfg)
        elif spec.startswith("records:") and len(spec) > len("records:"):
            src = records_source(spec.removeprefix("records:"), registry, cfg)
        elif spec.startswith("bag:") and len(spec) > len("bag:"):
            src = bag_source(spec.removeprefix("bag:"), registry, cfg)
        else:
            raise FinetuneError(
                f"--data: unknown source {spec!r} (synthetic, registry, decline, records:PATH or bag:PATH)"
            )
        if not src.train:
            raise FinetuneError(f"--data {spec}: no training examples")
        src.weight = w
        sources.append(src)
    return sources


# ----------------------------------------------------------------------------- model
def _function_texts(registry: FunctionRegistry) -> dict[int, str]:
    from octopus_ros.data.registry_data import warm_start_text

    return {s.token: warm_start_text(s) for s in registry}


def load_model(
    args: argparse.Namespace, registry: FunctionRegistry, cfg: FinetuneConfig
) -> tuple[OctopusModel, Any, list[int], list[int]]:
    """(model, tokenizer, indices of functions that got a new token, ids of the ordinary tokens
    ``--extend-vocab`` added)."""
    texts = _function_texts(registry)
    if args.base is not None:
        ckpt = load_checkpoint(args.base)
        model, tok = ckpt.model, ckpt.tokenizer
        if ckpt.functions_path is not None:
            check_tokens(
                FunctionRegistry.from_yaml(ckpt.functions_path),
                registry,
                free=len(model.config.nexa_token_ids or ()),
                allow=cfg.allow_token_changes,
            )
        new = extend_functional_tokens(
            model, tok, registry.num_tokens, texts=texts, init=cfg.init_new, seed=cfg.seed
        )
        added: list[int] = []
        if cfg.extend_vocab:
            added = list(extend_vocabulary(model, tok, new_function_texts(registry, new)).values())
        return model, tok, new, added
    from octopus_ros.model.pretrained import build_from_parts, resolve_vision

    vision = resolve_vision(
        args.vision,
        args.vision_checkpoint,
        tag=args.vision_tag,
        image_mean=args.image_mean,
        image_std=args.image_std,
    )
    connector = ConnectorConfig(
        type=args.connector, pool_stride=args.pool_stride, num_latents=args.num_latents
    )
    model, tok = build_from_parts(
        vision=vision,
        lm=args.lm,
        num_functions=registry.num_tokens,
        texts=texts,
        connector=connector,
        init=cfg.init_new,
        name=args.name,
    )
    return model, tok, list(range(registry.num_tokens)), []


def token_changes(old: FunctionRegistry, new: FunctionRegistry) -> list[str]:
    """What ``new`` changes of the tokens of the base model's functions ``old``, one line per token
    given to another function (``<nexa_3> was 'stop' in the base model and is 'take_photo'``) and
    per function moved to a token the base model had for no function; empty when every function of
    ``old`` that ``new`` keeps keeps its token and no token of ``old`` names another function."""
    changes = []
    for spec in old:
        now = new.by_token(spec.token)
        if now is not None and now.name != spec.name:
            changes.append(f"<nexa_{spec.token}> was {spec.name!r} in the base model and is {now.name!r}")
    for spec in old:
        now = new.by_name(spec.name)
        if now is not None and now.token != spec.token and old.by_token(now.token) is None:
            changes.append(
                f"{spec.name!r} was <nexa_{spec.token}> in the base model and is <nexa_{now.token}>"
            )
    return changes


def check_tokens(old: FunctionRegistry, new: FunctionRegistry, *, free: int, allow: bool = False) -> None:
    """Refuse (FinetuneError) a registry ``new`` that changes the tokens of the base model's
    functions ``old`` (:func:`token_changes`): a token keeps what it learned, and a swap of two
    tokens makes a model that publishes one function's call when asked for the other, the more
    confidently the less the run trains. ``free``: the model's first token without a function, the
    one a new function takes. With ``allow`` (``--allow-token-changes``) the changes are only
    logged: the user retrains them on purpose."""
    changes = token_changes(old, new)
    added = sorted((spec.token, spec.name) for spec in new if old.by_name(spec.name) is None)
    expected = list(range(free, free + len(added)))
    if [token for token, _ in added] != expected and not any(old.by_token(t) for t, _ in added):
        changes.append(
            "new function(s) "
            + ", ".join(f"{name!r} at <nexa_{token}>" for token, name in added)
            + f" leave a gap: the next free tokens are <nexa_{expected[0]}>"
            + (f"..<nexa_{expected[-1]}>" if len(expected) > 1 else "")
            + " (a token between would be one no function trains)"
        )
    if not changes:
        return
    if allow:
        for change in changes:
            log.warning(
                "%s: %s: --allow-token-changes: it keeps its learned meaning until training retrains it",
                new.source,
                change,
            )
        return
    raise FinetuneError(
        f"--functions {new.source} changes the tokens of the base model's functions: "
        + "; ".join(changes)
        + ". A token keeps what it learned, so the model would make one function's call when asked for "
        f"another. The base model's functions must keep their tokens, and a new function takes the next "
        f"free one (<nexa_{free}>, then <nexa_{free + 1}>, ...); pass --allow-token-changes only to retrain "
        "the tokens to their new meaning on purpose"
    )


def trainable_rows(
    model: OctopusModel, tokenizer, new: Sequence[int] | None = None, added: Sequence[int] = ()
) -> list[int]:
    """Token ids whose embedding rows train: the functional tokens and ``<nexa_end>``; with
    ``new`` (function indices, ``--rows new``) only those functions' tokens; and the ordinary
    tokens ``added`` by ``--extend-vocab``."""
    if new is not None:
        return [model.config.nexa_token_ids[i] for i in new] + list(added)
    vocab = tokenizer.get_vocab()
    return [*model.config.nexa_token_ids, vocab[NEXA_END_TOKEN], *added]


def new_function_texts(registry: FunctionRegistry, new: Sequence[int]) -> list[str]:
    """The words of the functions with token indices ``new``: their phrasings, the spoken forms and
    ``said`` words of their arguments' values and their descriptions, in every language (what ``--extend-vocab``
    reads)."""
    texts: list[str] = []
    for i in new:
        spec = registry.by_token(i)
        if spec is None:
            continue
        texts += [p.say for items in spec.examples.values() for p in items]
        texts += list((spec.description or {}).values())
        for arg in spec.args:
            texts += list((arg.description or {}).values())
            for forms in (*(arg.examples or {}).values(), *(arg.said or {}).values()):
                texts += [f for values in forms.values() for f in values]
    return texts


def _embedding_params(model: OctopusModel) -> list[torch.nn.Parameter]:
    params = [model.lm.get_input_embeddings().weight]
    out = model.lm.get_output_embeddings()
    if out is not None and out.weight is not params[0]:
        params.append(out.weight)
    return params


def value_rows(registry: FunctionRegistry, tokenizer, new: Sequence[int]) -> list[int]:
    """Token ids that begin a value of a new function's bool or enum arguments in a call
    (``True``/``False``, ``'kitchen'``) and begin no value of the other enabled functions' arguments.

    Under the call grammar such a token is where the value is decided, and a base that never
    answered with it has no trained row for it (the bundled model has no bool argument: ``T`` and
    ``F`` were only ever letters of the input). Values that begin like an existing function's
    (every quoted enum value starts with the quote) give nothing."""

    from octopus_ros.functions.calls import format_value

    def first_tokens(specs) -> set[int]:
        out: set[int] = set()
        for spec in specs:
            for arg in spec.args:
                values = (True, False) if arg.type == "bool" else arg.values if arg.type == "enum" else ()
                for value in values:
                    ids = tokenizer(format_value(arg.type, value), add_special_tokens=False)["input_ids"]
                    if ids:
                        out.add(int(ids[0]))
        return out

    new_set = set(new)
    new_specs = [registry.by_token(i) for i in new if registry.by_token(i) is not None]
    others = [s for s in registry.enabled() if s.token not in new_set]
    return sorted(first_tokens(new_specs) - first_tokens(others))


def _rows_of(cfg: FinetuneConfig, new: Sequence[int]) -> Sequence[int] | None:
    return list(new) if cfg.rows == "new" else None


def setup_trainable(
    model: OctopusModel, tokenizer, cfg: FinetuneConfig, new: Sequence[int] = (), added: Sequence[int] = ()
) -> list[dict[str, Any]]:
    """Freeze/unfreeze parts, wrap the LM with LoRA if asked; returns the optimizer groups.
    ``new``: indices of the functions that got a new token (``--rows new`` trains only theirs)."""
    model.set_trainable(
        vision=cfg.train_vision, connector=not cfg.freeze_connector, lm=cfg.full_lm, embeddings=cfg.full_lm
    )
    if cfg.lora:
        from peft import LoraConfig, get_peft_model

        names = {n.rsplit(".", 1)[-1] for n, _ in model.lm.named_modules()}
        targets = [t for t in cfg.lora_targets if t in names]
        if not targets:
            raise FinetuneError(f"--lora-targets {list(cfg.lora_targets)}: none is a module of this LM")
        lora_cfg = LoraConfig(
            r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout, target_modules=targets
        )
        model.lm = get_peft_model(model.lm, lora_cfg)
    emb = _embedding_params(model)
    if not cfg.full_lm:
        rows = torch.tensor(trainable_rows(model, tokenizer, _rows_of(cfg, new), added), dtype=torch.long)
        for p in emb:
            mask = torch.zeros(p.shape[0], 1, dtype=p.dtype)
            mask[rows] = 1.0
            p.requires_grad_(True)
            p.register_hook(lambda g, mask=mask: g * mask)
    emb_ids = {id(p) for p in emb}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in emb_ids]
    # No weight decay on the embeddings: rows without gradient must stay exactly as they are.
    return [
        {"params": rest, "weight_decay": 0.01},
        {"params": [p for p in emb if p.requires_grad], "weight_decay": 0.0},
    ]


def count_trainable(
    model: OctopusModel, tokenizer, cfg: FinetuneConfig, new: Sequence[int] = (), added: Sequence[int] = ()
) -> dict[str, int]:
    seen: set[int] = set()
    out = {"vision": 0, "connector": 0, "lm": 0}
    for part, module in (("vision", model.vision), ("connector", model.connector), ("lm", model.lm)):
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out[part] += p.numel()
    if not cfg.full_lm:  # only the functional rows of the embeddings really train
        emb = _embedding_params(model)
        width = emb[0].shape[1]
        n_rows = len(trainable_rows(model, tokenizer, _rows_of(cfg, new), added))
        out["lm"] -= sum(p.numel() for p in emb) - len(emb) * n_rows * width
    return out


# ----------------------------------------------------------------------------- training
class Finetuner:
    def __init__(
        self,
        model: OctopusModel,
        tokenizer,
        registry: FunctionRegistry,
        sources: list[Source],
        cfg: FinetuneConfig,
    ):
        self.model = model
        self.tok = tokenizer
        self.registry = registry
        self.sources = sources
        self.cfg = cfg
        self.fmt = PromptFormat(tokenizer=tokenizer, config=model.config)
        self.pre = ImagePreprocessor(config=model.config.vision)
        self.rng = random.Random(cfg.seed)
        self.np_rng = np.random.default_rng([cfg.seed, 29])
        self._bodies: dict[str, list[str]] | None = None
        self.teacher: OctopusModel | None = None
        self.new_tokens: list[str] = []
        self.new_token_ids: list[int] = []
        self.docs: list[list[int]] = []
        self.same_function: dict[tuple[str, str], list[Item]] = {}
        for s in sources:
            for it in s.train:
                self.same_function.setdefault((s.name, it.function), []).append(it)

    def set_teacher(self, teacher: OctopusModel, new: Sequence[int]) -> None:
        """``--distill``: the frozen starting model, and the functions whose token is new (their
        tokens are left out of its distribution; answers calling them are not distilled)."""
        self.teacher = teacher.eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        self.new_tokens = [f"<nexa_{i}>" for i in new]
        self.new_token_ids = self.tok.convert_tokens_to_ids(self.new_tokens) if self.new_tokens else []

    def distill_loss(self, items: Sequence[Item], batch: dict[str, torch.Tensor], logits: torch.Tensor):
        """Mean KL(teacher || model) over the answer positions of the examples whose answer calls
        no new function (None when the batch has none)."""
        rows = [i for i, it in enumerate(items) if not any(t in it.answer for t in self.new_tokens)]
        if self.teacher is None or not rows:
            return None
        idx = torch.tensor(rows)
        with torch.no_grad():
            teacher = self.teacher(
                input_ids=batch["input_ids"][idx],
                attention_mask=batch["attention_mask"][idx],
                pixel_values=batch["pixel_values"][idx],
            ).logits
        at = batch["labels"][idx, 1:] != -100  # logits at t predict the token at t + 1
        student = logits[idx, :-1][at].float()
        teacher = teacher[:, :-1][at].float()
        if self.new_token_ids:
            teacher[:, self.new_token_ids] = -1e4  # finite: exp() is 0 and no inf - inf
        t_log = torch.log_softmax(teacher, dim=-1)
        s_log = torch.log_softmax(student, dim=-1)
        return (t_log.exp() * (t_log - s_log)).sum(-1).mean()

    def set_docs(self, lines: Sequence[str]) -> None:
        self.docs = [self.tok.encode(t, add_special_tokens=False)[:96] for t in lines]

    def pixels(self, items: Sequence[Item]) -> torch.Tensor:
        """(B, 3, S, S) at the tower's size and normalisation, whatever each image's size."""
        return torch.cat([self.pre(it.image()) for it in items])

    def context_for(self, item: Item) -> tuple[tuple[str, str], ...]:
        """A training prompt's in-context examples: the item's own (a record's), else, with
        ``--context-k K`` and probability ``--context-share``, K others of the same function
        from the same source's training examples (as many as there are, up to K)."""
        if item.context or self.cfg.context_k <= 0 or self.rng.random() >= self.cfg.context_share:
            return item.context
        pool = [it for it in self.same_function.get((item.source, item.function), ()) if it is not item]
        picks = self.rng.sample(pool, min(self.cfg.context_k, len(pool)))
        return tuple((it.instruction, it.answer) for it in picks)

    def batch(self, items: Sequence[Item], *, sample_context: bool = False) -> dict[str, torch.Tensor]:
        """Tokenized prompts + answers and pixels; ``sample_context`` (training batches) draws
        ``--context-k`` examples, otherwise only an item's own context is used."""
        examples = [
            self.fmt.build_training_example(
                it.instruction, it.answer, self.context_for(it) if sample_context else it.context
            )
            for it in items
        ]
        if not self.cfg.said_bool_loss:
            examples = [self.without_said_bool(it, e) for it, e in zip(items, examples, strict=True)]
        batch = collate(examples, pad_token_id=self.tok.pad_token_id)
        batch["pixel_values"] = self.pixels(items)
        return batch

    def without_said_bool(self, item: Item, example: TrainingExample) -> TrainingExample:
        """``example`` without loss on the value of each ``narrow`` bool argument that the request
        says (``--no-said-bool-loss``): the bound grammar offers only that value
        (:func:`octopus_ros.functions.grammar.said_values`), so the model never chooses it. The
        value's tokens are where the answer's ids differ from those of the same call with the
        other value."""
        from octopus_ros.functions import make_call, parse_plain
        from octopus_ros.functions.grammar import said_values

        spec = self.registry.by_name(item.function)
        bools = [a for a in spec.args if a.type == "bool" and a.narrow] if spec is not None else []
        if not bools:
            return example
        call = parse_plain(item.answer, self.registry)
        values = {a.name: a.value for a in getattr(call, "args", ())}
        labels = list(example.labels)
        # the answer's ids: the labels after the prompt, which carries no loss (build_training_example)
        start = next(k for k, t in enumerate(labels) if t != IGNORE_INDEX)
        ids = labels[start:]
        for arg in bools:
            if arg.name not in values or said_values(arg, item.instruction) != [values[arg.name]]:
                continue
            other = make_call(self.registry, spec.name, **{**values, arg.name: not values[arg.name]})
            alt = self.fmt.encode_answer(other.to_text())
            head = next(
                (k for k, (a, b) in enumerate(zip(ids, alt, strict=False)) if a != b), min(len(ids), len(alt))
            )
            tail = next(
                (k for k, (a, b) in enumerate(zip(reversed(ids), reversed(alt), strict=False)) if a != b),
                min(len(ids), len(alt)),
            )
            for k in range(head, len(ids) - tail):
                labels[start + k] = IGNORE_INDEX
        return TrainingExample(input_ids=example.input_ids, labels=labels)

    def sample(self) -> list[Item]:
        weights = [s.weight for s in self.sources]
        picks = self.rng.choices(self.sources, weights=weights, k=self.cfg.batch)
        batch: list[Item] = []
        for s in picks:
            item = self.rng.choice(s.train)
            # a counterfactual's twins come with it: the pair differs only in the value's word
            batch += [self.vary(item)] + [
                replace(item, instruction=t, answer=a, twins=()) for t, a in item.twins
            ]
            if len(batch) >= self.cfg.batch:
                break
        return batch[: self.cfg.batch]

    def vary(self, item: Item) -> Item:
        """``item`` with its instruction varied as stage 4 varies the bundled model's (with
        probability ``--augment``): in the synthetic world's, a message's body becomes a real
        sentence of the decline corpus (:mod:`octopus_ros.data.message_bodies`), other calls get word
        dropout (the world's slot words are never dropped) and, half of the time, 1-2
        pseudo-words; the registry's and records' are not varied, since their argument words are
        not the world's and dropping one ("off") could change the answer. Speeds and declines
        (``NOT_AUGMENTED``) are never varied. Without it the replay holds only the templates'
        few messages, and the model forgets how to copy a message it never saw."""
        from octopus_ros.data.augment import NOT_AUGMENTED, insert_noise, word_dropout

        if self.cfg.augment <= 0 or item.source != "synthetic" or self.rng.random() >= self.cfg.augment:
            return item
        if item.language not in ("en", "zh"):
            return item
        if item.function not in NOT_AUGMENTED:
            text = word_dropout(item.instruction, item.language, self.np_rng)
            if self.rng.random() < 0.5:
                text = insert_noise(text, item.language, self.np_rng)
            return replace(item, instruction=text)
        bodies = self.bodies().get(item.language)
        if not bodies:
            return item
        from octopus_ros.data.message_bodies import with_body

        varied = with_body(item.instruction, item.answer, self.registry, self.rng.choice(bodies))
        return item if varied is None else replace(item, instruction=varied[0], answer=varied[1])

    def bodies(self) -> dict[str, list[str]]:
        """Message bodies (language -> sentences) from the decline corpus, read once; empty (and
        a warning) when the corpus was not built."""
        if self._bodies is None:
            self._bodies = _message_bodies("--augment: messages keep their template bodies")
        return self._bodies

    def doc_loss(self) -> torch.Tensor | None:
        if not self.docs or self.cfg.doc_weight <= 0:
            return None
        rows = [self.rng.choice(self.docs) for _ in range(max(2, self.cfg.batch // 4))]
        T = max(len(r) for r in rows)
        ids = torch.full((len(rows), T), self.tok.pad_token_id)
        labels = torch.full((len(rows), T), -100)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            labels[i, : len(r)] = torch.tensor(r)
        return self.model.lm(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss

    @torch.no_grad()
    def heldout_loss(self) -> dict[str, float]:
        self.model.eval()
        out = {}
        for s in self.sources:
            if not s.heldout:
                continue
            total, n = 0.0, 0
            for i in range(0, len(s.heldout), 16):
                chunk = s.heldout[i : i + 16]
                total += float(self.model(**self.batch(chunk)).loss) * len(chunk)
                n += len(chunk)
            out[s.name] = total / n
        self._train_mode()
        return out

    def _train_mode(self) -> None:
        self.model.train()
        if not self.cfg.train_vision:
            self.model.vision.eval()  # frozen BatchNorm statistics stay as they are

    def train(self, groups: list[dict[str, Any]]) -> tuple[Any, Any, dict[str, Any]]:
        from tqdm import tqdm

        from octopus_ros.training.stages import Curve

        cfg = self.cfg
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr)
        params = [p for g in groups for p in g["params"]]
        train_curve, held_curve = Curve("finetune"), Curve("heldout")
        start = time.monotonic()
        self._train_mode()
        step, ema, kd_ema, stopped = 0, None, None, "steps"
        bar = tqdm(total=cfg.steps, desc="fine-tune", unit="step", mininterval=1.0)
        while step < cfg.steps:
            elapsed = time.monotonic() - start
            if elapsed >= cfg.seconds:
                stopped = "seconds"
                break
            frac = step / cfg.steps  # the schedule follows steps only: same run, same model, any load
            scale = min(1.0, (step + 1) / max(1, cfg.warmup)) * (
                0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * frac))
            )
            for g in optimizer.param_groups:
                g["lr"] = cfg.lr * scale
            items = self.sample()
            batch = self.batch(items, sample_context=True)
            out = self.model(**batch)
            loss = out.loss
            docs = self.doc_loss()
            total = loss if docs is None else loss + cfg.doc_weight * docs
            kd = self.distill_loss(items, batch, out.logits) if cfg.distill > 0 else None
            if kd is not None:
                total = total + cfg.distill * kd
                kd_value = float(kd.detach())
                kd_ema = kd_value if kd_ema is None else 0.9 * kd_ema + 0.1 * kd_value
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            value = float(loss.detach())
            ema = value if ema is None else 0.9 * ema + 0.1 * value
            train_curve.steps.append(step)
            train_curve.loss.append(value)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{ema:.3f}")
            if cfg.eval_every > 0 and (step % cfg.eval_every == 0 or step == cfg.steps):
                held = self.heldout_loss()
                if held:
                    held_curve.steps.append(step)
                    held_curve.loss.append(float(np.mean(list(held.values()))))
        bar.close()
        seconds = time.monotonic() - start
        train_curve.seconds = held_curve.seconds = seconds
        self.model.eval()
        info = {"steps": step, "seconds": round(seconds, 1), "stopped_by": stopped, "final_loss_ema": ema}
        if kd_ema is not None:
            info["final_distill_kl_ema"] = kd_ema
        log.info("fine-tuned %d steps in %.0f s (stopped by the %s budget)", step, seconds, stopped)
        return train_curve, held_curve, info


@torch.no_grad()
def exact_match(
    model: OctopusModel, tokenizer, registry: FunctionRegistry, sources: list[Source]
) -> dict[str, Any]:
    """Held-out exact match (function and every argument) through the node's runtime and grammar."""
    from octopus_ros.model import Octopus

    octopus = Octopus(model=model, tokenizer=tokenizer, registry=registry)
    out: dict[str, Any] = {}
    for s in sources:
        if not s.heldout:
            continue
        rows = []
        for it in s.heldout:
            d = octopus.decide(it.instruction, it.image(), context=it.context)
            got = d.call.to_text() if d.call is not None else ""
            rows.append((it.language, it.function, got == it.answer))
        by: dict[str, dict[str, list[bool]]] = {"language": {}, "function": {}}
        for lang, fn, ok in rows:
            by["language"].setdefault(lang, []).append(ok)
            by["function"].setdefault(fn, []).append(ok)
        out[s.name] = {
            "n": len(rows),
            "exact_match": round(100 * float(np.mean([ok for *_, ok in rows])), 1),
            **{
                f"by_{k}": {name: round(100 * float(np.mean(v)), 1) for name, v in sorted(groups.items())}
                for k, groups in by.items()
            },
        }
    return out


# ----------------------------------------------------------------------------- command line
class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as epilog, defaults in each flag's help: argparse's, unless the help says
    its own ("(default: registry)" rather than a second "(default: ['registry'])") or there is none
    to say (no "(default: None)" after a flag that is simply not given)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if "(default:" in (action.help or "") or action.default is None:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="octopus_finetune",
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=_Formatter,
    )
    m = p.add_argument_group("model (--base, or --vision with --lm)")
    m.add_argument(
        "--base", type=Path, help="Octopus checkpoint directory to start from (e.g. the bundled model)"
    )
    m.add_argument(
        "--vision",
        help="open_clip tower: a model directory with open_clip_config.json (+ weights), a model-config "
        "JSON file, or an open_clip model name such as ViT-B-32 (then give --vision-checkpoint)",
    )
    m.add_argument("--vision-checkpoint", type=Path, help="local open_clip weights (.safetensors/.bin/.pt)")
    m.add_argument(
        "--vision-tag",
        help="open_clip pretrained tag of those weights (e.g. openai, laion2b_s34b_b79k, webli): "
        "its mean/std are used (table lookup, nothing is downloaded)",
    )
    m.add_argument(
        "--image-mean", type=number(float), nargs=3, metavar=("R", "G", "B"), help="override the tower's mean"
    )
    m.add_argument(
        "--image-std",
        type=number(float, low=0, low_open=True),
        nargs=3,
        metavar=("R", "G", "B"),
        help="override the tower's std",
    )
    m.add_argument(
        "--lm", type=Path, help="local Hugging Face causal-LM directory (Qwen2/Llama), with its tokenizer"
    )
    m.add_argument(
        "--connector", choices=("mlp", "perceiver"), default="mlp", help="new connector type (--lm only)"
    )
    m.add_argument(
        "--pool-stride",
        type=number(int, low=1),
        default=1,
        help="MLP connector: average-pool the patch grid first",
    )
    m.add_argument(
        "--num-latents", type=number(int, low=1), default=16, help="Perceiver connector: image tokens"
    )
    m.add_argument("--name", default="octopus-custom", help="model name stored in config.json (--lm only)")

    d = p.add_argument_group("functions and data")
    d.add_argument(
        "--functions",
        type=Path,
        help="your function registry YAML (default: the --base checkpoint's functions.yaml, else the bundled one)",
    )
    d.add_argument(
        "--data",
        nargs="+",
        default=["registry"],
        metavar="SOURCE",
        help="training sources, mixed: synthetic | registry | decline | records:PATH.jsonl | bag:PATH "
        "(a run recorded by octopus_record, labelled in PATH.labels.jsonl by octopus_label extract: "
        "its lines confirmed ok) (default: registry)",
    )
    d.add_argument(
        "--mix",
        type=number(float, low=0, low_open=True),
        nargs="+",
        help="sampling weight per --data source (default: equal)",
    )
    d.add_argument(
        "--heldout",
        type=number(float, low=0, high=1, high_open=True),
        default=FinetuneConfig.heldout,
        help="fraction of registry phrasings and records held out",
    )
    d.add_argument(
        "--doc-weight",
        type=number(float, low=0),
        default=FinetuneConfig.doc_weight,
        help="loss weight of the registry descriptions read as text (0: off)",
    )
    d.add_argument(
        "--synthetic-n",
        type=number(int, low=1),
        default=FinetuneConfig.synthetic_n,
        help="synthetic training examples",
    )
    d.add_argument(
        "--registry-n",
        type=number(int, low=1),
        default=FinetuneConfig.registry_n,
        help="examples generated from registry phrasings",
    )
    d.add_argument(
        "--decline-n",
        type=number(int, low=1),
        default=FinetuneConfig.decline_n,
        help="decline-corpus sentences (--data decline), half per language",
    )

    d.add_argument(
        "--context-k",
        type=number(int, low=0),
        default=FinetuneConfig.context_k,
        help="in-context examples (Otter): give training prompts K examples of the same function from "
        "the same source (text only: instruction => answer); records' own context is always used",
    )
    d.add_argument(
        "--context-share",
        type=number(float, low=0, high=1, low_open=True),
        default=FinetuneConfig.context_share,
        help="with --context-k: the share of training examples that get them (the rest have none, "
        "so the model still answers without examples)",
    )
    d.add_argument(
        "--augment",
        type=number(float, low=0, high=1),
        default=FinetuneConfig.augment,
        help="share of synthetic-replay examples varied as stage 4 varies the bundled model's: "
        "messages get a real sentence as their body, other calls word dropout (slot words kept) and "
        "pseudo-words (0: off)",
    )
    d.add_argument(
        "--counterfactual",
        action="store_true",
        help="--data registry: a phrasing that fixes an enum/bool argument and says it in one of the "
        "registry's spoken forms ('turn on the {room} light', on: true) also trains with that form as "
        "a slot, so the same words say every value ('turn off the kitchen light' -> on=False); each such "
        "example trains in one batch with its twins (the same request with the other values)",
    )
    d.add_argument(
        "--contrast",
        type=number(float, low=0),
        default=FinetuneConfig.contrast,
        help="sampling weight (beside --mix's) of the replay requests for other functions that say a "
        "value of a new function's enum arguments ('go to the kitchen' beside set_light(room)): "
        "what the new function takes over when it is forgotten (0: off)",
    )
    d.add_argument(
        "--value-rows",
        action="store_true",
        help="with --rows new: the embedding rows of the tokens that begin a new function's own bool/enum "
        "values (True/False when no existing function has a bool) train too: where the value is decided",
    )
    d.add_argument(
        "--said-bool-loss",
        action=argparse.BooleanOptionalAction,
        default=FinetuneConfig.said_bool_loss,
        help="train the value of a `narrow: true` bool argument where the request says it. The grammar "
        "offers only the said value there (functions/grammar.said_values), so the model's choice counts "
        "only where the request says neither ('it is too dark in the kitchen'); --no-said-bool-loss "
        "leaves the said ones out of the loss, so what the value learns is what the node asks of it",
    )
    d.add_argument(
        "--unsaid-weight",
        type=number(float, low=0, low_open=True),
        default=FinetuneConfig.unsaid_weight,
        help="--data registry: draw the phrasings whose fixed `narrow` value their own words do not say "
        "('it is too dark in the {room}' for on) this many times as often as the others. They are the "
        "only ones that teach the value from the rest of the request (where a request says the value, "
        "the grammar offers only that one), and each said phrasing also comes with its --counterfactual",
    )
    d.add_argument(
        "--asides",
        type=number(float, low=0, high=1),
        default=FinetuneConfig.asides,
        help="--data registry: say this share of the requests of functions that copy nothing with a remark "
        "before or after them ('turn the hall light on, I like to chat with people'), a conversation line of "
        "the decline corpus that says no value of any function and calls nothing off "
        "(data/registry_data.aside_lines). The registry's phrasings are bare requests; people say theirs "
        "with a reason or an aside, and a model that never saw one takes it for a message or another request",
    )
    d.add_argument(
        "--distill",
        type=number(float, low=0),
        default=FinetuneConfig.distill,
        help="not forgetting: weight of the KL divergence from the starting model (a frozen copy, kept in "
        "memory) on every training answer that calls no new function (0: off)",
    )

    t = p.add_argument_group("training")
    t.add_argument("--out", type=Path, required=True, help="output checkpoint directory")
    t.add_argument("--lora", action="store_true", help="train low-rank adapters on the LM (peft)")
    t.add_argument(
        "--lora-r",
        type=number(int, low=1),
        default=FinetuneConfig.lora_r,
        help="LoRA rank (size of the low-rank update)",
    )
    t.add_argument(
        "--lora-alpha",
        type=number(int, low=1),
        default=FinetuneConfig.lora_alpha,
        help="LoRA alpha (the update is scaled by alpha / rank)",
    )
    t.add_argument(
        "--lora-dropout",
        type=number(float, low=0, high=1, high_open=True),
        default=FinetuneConfig.lora_dropout,
        help="dropout on the LoRA path while training",
    )
    t.add_argument(
        "--lora-targets", nargs="+", default=list(LORA_TARGETS), help="LM module names that get adapters"
    )
    t.add_argument(
        "--merge",
        action="store_true",
        help="fold the LoRA adapters into the saved weights (one plain checkpoint the node loads); without it "
        "--out gets the base LM weights and the adapters in lora_adapter/ (peft format), which the node ignores",
    )
    t.add_argument("--full-lm", action="store_true", help="train every LM weight (instead of --lora)")
    t.add_argument(
        "--train-vision", action="store_true", help="also train the vision tower (frozen by default)"
    )
    t.add_argument(
        "--freeze-connector",
        action="store_true",
        help="keep the connector as it is (it trains by default); e.g. when only text-side functions are new",
    )
    t.add_argument(
        "--rows",
        choices=("all", "new"),
        default=FinetuneConfig.rows,
        help="functional-token embedding rows that train: every <nexa_i> and <nexa_end>, or only the "
        "new functions' (the existing functions' rows then stay exactly as they were)",
    )
    t.add_argument(
        "--allow-token-changes",
        action="store_true",
        help="accept a --functions registry that gives a --base function's token to another function, or "
        "moves a function to another token (refused otherwise): each such token keeps its learned "
        "meaning until this run retrains it, so the model may make the old call for the new request",
    )
    t.add_argument("--init-new", choices=INITS, default="mean", help="start of new functional-token rows")
    t.add_argument(
        "--extend-vocab",
        action="store_true",
        help="give each letter of the new functions' phrasings, argument forms and descriptions that "
        "the tokenizer splits into several byte pieces (开 and 灯 in the bundled tokenizer) a token of "
        "its own; its row starts as the mean of its pieces' and trains with the new functions' rows. "
        "It changes the ids of every text holding such a letter: for a model's own tokenizer, not "
        "with --lm",
    )
    t.add_argument(
        "--steps",
        type=number(int, low=1),
        default=FinetuneConfig.steps,
        help="step budget (the run stops at --steps or --seconds)",
    )
    t.add_argument(
        "--seconds",
        type=number(float, low=0, low_open=True),
        default=FinetuneConfig.seconds,
        help="wall-clock budget of the training loop",
    )
    t.add_argument(
        "--batch",
        type=number(int, low=1),
        default=FinetuneConfig.batch,
        help="examples per optimisation step",
    )
    t.add_argument(
        "--lr",
        type=number(float, low=0, low_open=True),
        default=FinetuneConfig.lr,
        help="peak learning rate (cosine, warm-up)",
    )
    t.add_argument(
        "--warmup",
        type=number(int, low=0),
        default=FinetuneConfig.warmup,
        help="linear warm-up steps of the learning rate",
    )
    t.add_argument(
        "--eval-n",
        type=number(int, low=1),
        default=FinetuneConfig.eval_n,
        help="max held-out examples per source",
    )
    t.add_argument(
        "--eval-every",
        type=number(int, low=0),
        default=FinetuneConfig.eval_every,
        help="held-out loss every N steps (0: off)",
    )
    t.add_argument(
        "--no-accuracy", action="store_true", help="skip the held-out exact-match runs before and after"
    )
    t.add_argument(
        "--copier-steps",
        type=number(int, low=0),
        default=COPIER_STEPS,
        help="retrain the --base checkpoint's span copier on the result for this many steps (it is tied "
        "to the weights it read; 0: leave it out); the grounding head and novelty profiles are carried "
        "over or refitted (octopus_ros/training/carry.py)",
    )
    t.add_argument(
        "--seed", type=number(int, low=0), default=0, help="random seed (data, sampling, new rows)"
    )
    t.add_argument(
        "--threads",
        type=number(int, low=0),
        help="torch CPU threads (default: torch's choice, one per core; 0: the same)",
    )
    t.add_argument(
        "--carry-threads",
        type=number(int, low=0),
        help="torch CPU threads for refitting the companion files after training (forward passes "
        "only, so the thread count does not change what the training learnt; default: one per core)",
    )
    return p


def _config(args: argparse.Namespace) -> FinetuneConfig:
    return FinetuneConfig(
        data=list(args.data),
        mix=args.mix,
        steps=args.steps,
        seconds=args.seconds,
        batch=args.batch,
        lr=args.lr,
        warmup=args.warmup,
        lora=args.lora,
        lora_r=args.lora_r,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        lora_targets=tuple(args.lora_targets),
        merge=args.merge,
        full_lm=args.full_lm,
        train_vision=args.train_vision,
        freeze_connector=args.freeze_connector,
        rows=args.rows,
        extend_vocab=args.extend_vocab,
        init_new=args.init_new,
        doc_weight=args.doc_weight,
        heldout=args.heldout,
        eval_n=args.eval_n,
        eval_every=args.eval_every,
        synthetic_n=args.synthetic_n,
        registry_n=args.registry_n,
        decline_n=args.decline_n,
        context_k=args.context_k,
        context_share=args.context_share,
        augment=args.augment,
        counterfactual=args.counterfactual,
        contrast=args.contrast,
        value_rows=args.value_rows,
        said_bool_loss=args.said_bool_loss,
        unsaid_weight=args.unsaid_weight,
        asides=args.asides,
        distill=args.distill,
        seed=args.seed,
        threads=args.threads,
        allow_token_changes=args.allow_token_changes,
    )


def _check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if (args.base is None) == (args.vision is None and args.lm is None):
        p.error("give --base, or --vision with --lm")
    if args.base is None and (args.vision is None or args.lm is None):
        p.error("--vision and --lm go together")
    if args.lora and args.full_lm:
        p.error("--lora and --full-lm exclude each other")
    if args.merge and not args.lora:
        p.error("--merge folds LoRA adapters: it needs --lora")
    if args.extend_vocab and args.lm is not None:
        p.error("--extend-vocab changes the token ids of ordinary text: not for a pretrained --lm")
    if args.base is not None and args.out.resolve() == args.base.resolve():
        p.error("--out must not be the --base checkpoint")
    # the numbers' ranges are their argparse types' (evaluate.number): refused as they are read
    if args.mix is not None and len(args.mix) != len(args.data):
        p.error(f"--mix needs one weight per --data source ({len(args.data)}), got {len(args.mix)}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run a fine-tune from parsed arguments; returns the metrics written to ``--out``."""
    from octopus_ros.data.registry_data import doc_lines
    from octopus_ros.training.stages import curves_to_json, plot_curves, save_json

    cfg = _config(args)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    t0 = time.monotonic()
    functions = args.functions
    if functions is None:
        base_fn = None if args.base is None else Path(args.base) / "functions.yaml"
        if base_fn is not None and base_fn.is_file():
            functions = base_fn
        else:
            from octopus_ros.paths import config_path

            functions = config_path("functions.yaml")
    registry = FunctionRegistry.from_yaml(functions)
    from octopus_ros.functions.lint import decline_only_names

    for finding in decline_only_names(registry):
        log.warning("%s: %s", functions, finding.describe())
    model, tok, new, added = load_model(args, registry, cfg)
    size = model.config.vision.image_size
    log.info(
        "model: %d functions (%s new), %d image tokens at %d px, mean %s std %s",
        model.config.num_functions,
        [registry.by_token(i).name if registry.by_token(i) else f"<nexa_{i}>" for i in new],
        model.config.num_image_tokens,
        size,
        model.config.vision.image_mean,
        model.config.vision.image_std,
    )
    sources = build_sources(registry, size, cfg)
    if cfg.contrast > 0:
        new_names = [registry.by_token(i).name for i in new if registry.by_token(i) is not None]
        if not new_names:
            raise FinetuneError("--contrast: the registry adds no function to the base model")
        contrast = contrast_source(registry, new_names, sources, cfg.contrast)
        sources += [contrast] if contrast is not None else []
    tuner = Finetuner(model, tok, registry, sources, cfg)
    tuner.set_docs(doc_lines(registry) if cfg.doc_weight > 0 else [])
    accuracy_before = None if args.no_accuracy else exact_match(model, tok, registry, sources)
    if cfg.distill > 0:
        import copy

        tuner.set_teacher(copy.deepcopy(model), new)
    if cfg.value_rows:
        extra = [i for i in value_rows(registry, tok, new) if i not in added]
        log.info("value rows: %s train with the new functions' rows", [tok.decode([i]) for i in extra])
        added = [*added, *extra]
    groups = setup_trainable(model, tok, cfg, new, added)
    trainable = count_trainable(model, tok, cfg, new, added)
    log.info("trainable parameters: %s", trainable)
    loss_before = tuner.heldout_loss()
    train_curve, held_curve, info = tuner.train(groups)
    tuner.teacher = None  # the frozen copy's memory goes back before saving and evaluating
    loss_after = tuner.heldout_loss()
    adapter_dir, accuracy_lora = None, None
    if cfg.lora:
        if cfg.merge:
            model.lm = model.lm.merge_and_unload()
        else:
            adapter_dir = args.out / "lora_adapter"
            model.lm.save_pretrained(str(adapter_dir))
            accuracy_lora = None if args.no_accuracy else exact_match(model, tok, registry, sources)
            model.lm = model.lm.unload()
            log.warning(
                "adapters saved to %s and NOT in the checkpoint (the node ignores them): use --merge",
                adapter_dir,
            )
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    accuracy_after = None if args.no_accuracy else exact_match(model, tok, registry, sources)
    if adapter_dir is not None and accuracy_lora is not None:
        accuracy_after = {"with_adapters": accuracy_lora, "checkpoint_without_adapters": accuracy_after}
    metrics = {
        "finetune": {
            **asdict(cfg),
            "base": None if args.base is None else str(args.base),
            "vision": args.vision,
            "lm": None if args.lm is None else str(args.lm),
            "functions": str(functions),
        },
        "new_functions": {f"<nexa_{i}>": registry.by_token(i).name for i in new if registry.by_token(i)},
        "image_size": size,
        "image_mean": list(model.config.vision.image_mean),
        "image_std": list(model.config.vision.image_std),
        "trainable_parameters": trainable,
        "data": {
            s.name: {"train": len(s.train), "heldout": len(s.heldout), "weight": s.weight} for s in sources
        },
        **info,
        "heldout_loss": {"before": loss_before, "after": loss_after},
        "heldout_exact_match": {"before": accuracy_before, "after": accuracy_after},
        "total_seconds": round(time.monotonic() - t0, 1),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out, model, tok, functions=functions, metrics=metrics)
    t_carry = time.monotonic()
    torch.set_num_threads(args.carry_threads or os.cpu_count() or 1)
    metrics["carried_over"] = _carry_over(args, cfg, model, registry, sources)
    # the command's whole time: what a user waits for (the training loop, data, merge, and the
    # companion files refitted or retrained for the result)
    metrics["carry_seconds"] = round(time.monotonic() - t_carry, 1)
    metrics["command_seconds"] = round(time.monotonic() - t0, 1)
    save_json(args.out / "metrics.json", metrics)
    curves = [train_curve] + ([held_curve] if held_curve.loss else [])
    save_json(args.out / "training_curves.json", curves_to_json(curves))
    plot_curves(curves, args.out / "training_curves.png", title=f"octopus_finetune: {info['steps']} steps")
    _print_summary(metrics, args.out)
    return metrics


def _carry_over(
    args: argparse.Namespace,
    cfg: FinetuneConfig,
    model: OctopusModel,
    registry: FunctionRegistry,
    sources: list[Source],
) -> dict[str, str]:
    """The base checkpoint's grounding head, novelty profiles and span copier, carried into
    ``--out`` as far as they still hold (:mod:`octopus_ros.training.carry`). They learn from the
    requests without the remarks ``--asides`` said beside them (``Item.alone``)."""
    from octopus_ros.training.carry import carry_over
    from octopus_ros.training.novelty_profile import action_texts

    # the text-novelty vocabulary grows by the fine-tuning requests the model learns to act on
    records = [
        {"instruction": it.alone or it.instruction, "answer": it.answer, "function": it.function}
        for s in sources
        for it in s.train
    ]
    texts = action_texts(records, registry)

    def images() -> list[np.ndarray]:
        items = [it for s in sources for it in s.train]
        rng = random.Random(cfg.seed + 31)
        return [it.image() for it in rng.sample(items, min(1000, len(items)))]

    def requests() -> list[dict]:
        """A shuffled sample of the fine-tuning requests (at most REQUEST_RECORDS), each source
        in its share; decline-corpus sentences are their own class, as in the base's profile."""
        from octopus_ros.model.novelty import DECLINE_CORPUS_CLASS
        from octopus_ros.training.novelty_profile import REQUEST_RECORDS

        items = [it for s in sources for it in s.train if not it.context]
        rng = random.Random(cfg.seed + 37)
        picked = rng.sample(items, min(REQUEST_RECORDS, len(items)))
        return [
            {
                "instruction": it.alone or it.instruction,
                "answer": it.answer,
                "image": it.image(),
                "language": it.language,
                **({"class": DECLINE_CORPUS_CLASS} if it.source == DECLINES_SOURCE else {}),
            }
            for it in picked
        ]

    return carry_over(
        args.base,
        args.out,
        model=model,
        registry=registry,
        texts=texts,
        images=images,
        vision_trained=cfg.train_vision,
        connector_trained=not cfg.freeze_connector,
        copier_steps=args.copier_steps,
        requests=requests,
        message_bodies=lambda: _message_bodies(
            "the request profile reads messages with their template bodies"
        ),
        message_share=TrainConfig.message_corpus,  # stage 4's share, which the base was trained with
        seed=cfg.seed,
    )


def _message_bodies(without: str) -> dict[str, list[str]]:
    """Message bodies (language -> sentences) from the decline corpus (data/message_bodies.py);
    empty when the corpus was not built, with a warning that says ``without`` and why."""
    from octopus_ros.data.decline_corpus import load_corpus
    from octopus_ros.data.message_bodies import message_bodies

    try:
        return message_bodies(load_corpus())
    except FileNotFoundError as e:
        log.warning("%s: %s", without, e)
        return {}


def _print_summary(m: dict[str, Any], out: Path) -> None:
    print(
        f"fine-tuned {m['steps']} steps in {m['seconds']} s ({m['command_seconds']} s in all, with the"
        f" companion files) -> {out}"
    )
    if m["new_functions"]:
        print("new functions: " + ", ".join(f"{k} {v}" for k, v in m["new_functions"].items()))
    for name, loss in m["heldout_loss"]["after"].items():
        before = m["heldout_loss"]["before"].get(name, float("nan"))
        print(f"  held-out {name}: loss {before:.3f} -> {loss:.3f}")
    acc = m["heldout_exact_match"]
    if acc["after"]:
        after = acc["after"].get("with_adapters", acc["after"])
        for name, a in after.items():
            b = (acc["before"] or {}).get(name, {}).get("exact_match", float("nan"))
            print(
                f"  held-out {name}: exact match {b:.1f} % -> {a['exact_match']:.1f} % (n={a['n']}) {a['by_language']}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        run(args)
    except (FinetuneError, RegistryError, ConfigError, FileNotFoundError) as e:
        log.error("%s: error: %s", parser.prog, e)
        return 2
    except (ValueError, CheckpointError) as e:  # RecordError and other input problems
        log.error("%s: error: %s", parser.prog, e)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
