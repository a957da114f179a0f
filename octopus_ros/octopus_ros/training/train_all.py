"""Train an Octopus model from scratch, all stages, and write a complete checkpoint.

    python -m octopus_ros.training.train_all --out octopus_ros/models/octopus_tiny

Steps: generate the training pools from the synthetic world (train split only: held-out
phrasings and colour x object pairs never appear), train the tokenizer, build the model
from a named config, run the stages of :mod:`octopus_ros.training.stages` for their step
budgets (seeded; wall-clock only as a guard; a checkpoint after each stage under
``<out>/stages/``; ``--resume`` continues after the last finished stage), save the final
checkpoint with loss curves (PNG + JSON),
train the grounding head on the final vision tower, then evaluate it on the held-out splits and
the natural set into its metrics.json (and the stage-4 model too, to show what stage 5 changed).
``--scale`` multiplies every stage's step budget and guard (``--scale 0.05`` is a smoke run).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import logging
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from octopus_ros.data import (
    caption,
    generate,
    generate_captions,
    generate_vqa,
    instruction_corpus,
    scene_labels,
)
from octopus_ros.data.decline_corpus import load_corpus
from octopus_ros.data.tasks import generate_one, lexicon_corpus
from octopus_ros.functions import load_default_registry
from octopus_ros.functions.answer_format import ANSWER_FORMATS, check_format, convert_answer
from octopus_ros.model import (
    OctopusConfig,
    add_special_tokens,
    attach_tokenizer,
    build_model,
    get_model_config,
    load_checkpoint,
    load_tokenizer,
    resolve_config,
    save_checkpoint,
    train_tokenizer,
)
from octopus_ros.model.checkpoint import read_checkpoint_config
from octopus_ros.paths import config_path
from octopus_ros.training.grounding import STEPS as GROUNDING_STEPS
from octopus_ros.training.novelty_profile import training_texts, write_profiles
from octopus_ros.training.span_copier import DEFAULT_STEPS as COPIER_STEPS
from octopus_ros.training.stages import (
    STAGES,
    Curve,
    TrainConfig,
    Trainer,
    answers_decline,
    curves_to_json,
    plot_curves,
    save_json,
)

log = logging.getLogger("octopus_ros.training")


def _image_record(ex) -> dict:
    """The image of an example with its target's attribute labels and the scene's layout."""
    labels = scene_labels(ex.scene)
    return {
        "image": ex.image,
        "category": int(labels["target_category"]),
        "colour": int(labels["target_colour"]),
        "present": labels["present"],
        "salient": ex.scene.layout == "salient",
        "decoy": getattr(ex, "decoy_kind", ""),
    }


def _record(ex) -> dict:
    """A training record: image, instruction, answer, and the target's attribute labels."""
    return {
        **_image_record(ex),
        "instruction": ex.instruction,
        "answer": ex.answer,
        "function": ex.function,
        "language": ex.language,
        "mode": ex.mode,
    }


def function_doc_corpus(registry, answer_format: str = "functional") -> list[str]:
    """Text lines from the function registry's own documentation, for LM text pretraining.

    Octopus v2 teaches each functional token its function's description; here the stage-2
    LM reads, for every enabled function, its name (``take_photo`` as "take photo"), its
    token, and its English and Chinese descriptions and argument descriptions, as written
    in ``functions.yaml``. That is how a function's name (often a word no instruction
    template of the training split uses) gets a meaning before stage 4. No template text
    is involved, seen or held out. With ``answer_format`` json the function is named as its
    answers write it (``pick_up``) where the functional form has its token.
    """
    lines: list[str] = []
    for spec in registry.enabled():
        words = spec.name.replace("_", " ")
        written = spec.name if answer_format == "json" else spec.token_text
        for lang in ("en", "zh"):
            text = spec.describe(lang)
            lines += [f"{words}: {text}", f"{written} {words}: {text}"]
            for arg in spec.args:
                if arg.description:
                    arg_text = arg.description.get(lang) or arg.description.get("en", "")
                    lines.append(f"{words} {arg.name.replace('_', ' ')}: {arg_text}")
    return lines


def with_connector(model_cfg: OctopusConfig, connector: str | None, num_latents: int | None) -> OctopusConfig:
    """``model_cfg`` with its connector switched to ``connector`` ("mlp" or "perceiver"; None: kept).
    A Perceiver gets ``num_latents`` latents, by default as many as the image tokens the MLP
    connector gives this tower (grid + colour tokens), so the LM reads as many image tokens either way."""
    if connector is None:
        if num_latents is not None and model_cfg.connector.type != "perceiver":
            raise ValueError("num_latents applies to a perceiver connector only")
        if num_latents is not None:
            model_cfg.connector.num_latents = num_latents
        return model_cfg
    if connector not in ("mlp", "perceiver"):
        raise ValueError(f"connector must be 'mlp' or 'perceiver', got {connector!r}")
    if num_latents is not None and connector != "perceiver":
        raise ValueError("num_latents applies to a perceiver connector only")
    if connector == "perceiver" and num_latents is None:
        mlp = dataclasses.replace(model_cfg.connector, type="mlp")
        num_latents = resolve_config(
            dataclasses.replace(model_cfg, connector=mlp, num_image_tokens=None)
        ).num_image_tokens
    conn = dataclasses.replace(model_cfg.connector, type=connector)
    if num_latents is not None:
        conn.num_latents = num_latents
    return dataclasses.replace(model_cfg, connector=conn, num_image_tokens=None)


def build_pools(cfg: TrainConfig) -> dict:
    """Training data, all from the ``train`` split."""
    t0 = time.monotonic()

    def instructions(n: int, seed: int) -> list:  # the training distribution of the call records
        return generate(
            "train",
            n,
            seed,
            image_size=cfg.image_size,
            named_decoy=cfg.named_decoy,
            colour_decoy=cfg.colour_decoy,
            decline_absent=cfg.decline_absent,
            decline_recoloured=cfg.decline_recoloured,
        )

    calls = instructions(cfg.pool_calls, cfg.seed)
    # stage 5: fresh records of the training distribution (another seed) for the model to decide
    refine_on = cfg.steps.get("refine", 0) > 0 and "refine" not in cfg.skip
    refine_seed = cfg.seed + 7
    refine = instructions(cfg.pool_refine if refine_on else 0, refine_seed)
    refine_val = instructions(cfg.pool_refine_val if refine_on and cfg.refine_gate else 0, cfg.seed + 11)
    half = cfg.pool_align // 2
    align = generate_captions("train", half, cfg.seed + 1, image_size=cfg.image_size) + generate_vqa(
        "train", cfg.pool_align - half, cfg.seed + 2, image_size=cfg.image_size
    )
    vision = []
    for ex in calls + align:
        if ex.scene is None or ex.scene.target is None:
            continue
        vision.append({**_image_record(ex), "caption": caption(ex.scene, "en")})
    text = (
        instruction_corpus(seed=cfg.seed)
        + [ex.answer for ex in align if ex.language]
        + [f"User: {ex.instruction}\nGPT:" for ex in calls[:4000]]
        + lexicon_corpus() * cfg.lexicon_repeats
        + function_doc_corpus(load_default_registry(), cfg.answer_format) * cfg.doc_repeats
    )
    log.info(
        "pools: %d call records, %d alignment records, %d vision pairs, %d text lines (%.0f s)",
        len(calls),
        len(align),
        len(vision),
        len(text),
        time.monotonic() - t0,
    )
    pools = (
        {"decline_corpus": load_corpus(chat_share=cfg.decline_chat)}
        if cfg.decline_corpus > 0 or cfg.message_corpus > 0
        else {}
    )
    if cfg.message_corpus > 0:  # short natural sentences as message bodies (stage 4, Trainer._new_message)
        from octopus_ros.data.message_bodies import message_bodies

        pools["message_corpus"] = message_bodies(pools["decline_corpus"])
    return {
        **pools,
        "calls": [_record(e) for e in calls],
        "refine": with_present_twins(refine, cfg, refine_seed)
        if cfg.refine_twins
        else [_record(e) for e in refine],
        "refine_val": [_record(e) for e in refine_val],
        "align": [_record(e) for e in align],
        "vision": vision,
        "text": text,
    }


def with_present_twins(examples: list, cfg: TrainConfig, seed: int) -> list[dict]:
    """Records of ``examples`` (``generate("train", n, seed)`` with the config's decoys); each
    absent-object record that answers with the decline also carries its present twin: the image
    of the same example drawn without decoys (the decoys' own random stream leaves the request,
    the call and the scene as they were), and that call (``twin_image``, ``twin_answer``;
    stage 5's ``refine_twins``)."""
    registry = load_default_registry()
    out = []
    for i, ex in enumerate(examples):
        rec = _record(ex)
        if ex.decoy_kind == "absent" and answers_decline(ex.answer, registry):
            twin = generate_one("train", seed, i, image_size=cfg.image_size)
            rec["twin_image"], rec["twin_answer"] = twin.image, twin.answer
        out.append(rec)
    return out


def build_tokenizer(pools: dict, cfg: TrainConfig, model_cfg: OctopusConfig):
    """A byte-level BPE tokenizer over the training pools (+ the system prompt), specials added;
    a pretrained LM (``model_cfg.lm_path``) keeps its own tokenizer, specials appended, so the
    ids of ordinary text still mean what the LM learned."""
    registry = load_default_registry()
    if model_cfg.lm_path:
        tok = load_tokenizer(model_cfg.lm_path)
        add_special_tokens(tok, registry.num_tokens)
        return tok, registry
    texts = list(pools["text"])
    texts += [convert_answer(r["answer"], cfg.answer_format, registry) for r in pools["calls"]]
    texts += [r["instruction"] for r in pools["calls"]]
    texts += [r["instruction"] for r in pools["align"]] + [r["caption"] for r in pools["vision"][:5000]]
    texts.append(model_cfg.system_prompt)
    for sentences in pools.get("decline_corpus", {}).values():  # words the decline examples use
        texts += sentences
    return train_tokenizer(texts, cfg.vocab_size, num_functions=registry.num_tokens), registry


def train(
    cfg: TrainConfig,
    out: Path,
    *,
    resume: bool = False,
    evaluate_n: int = 300,
    model_config: OctopusConfig | None = None,
    init_from: Path | None = None,
    grounding_steps: int = 0,
    copier_steps: int = 0,
) -> Path:
    """Run every stage of ``cfg`` and write the final checkpoint to ``out``; returns ``out``.

    ``model_config`` overrides the named config ``cfg.model`` (tests pass a tiny one).
    ``init_from`` continues training a checkpoint (its architecture and tokenizer) instead.
    ``grounding_steps`` > 0 trains the grounding head (training/grounding.py) on the final vision
    tower and writes it into ``out``. ``copier_steps`` > 0 then trains the span copier
    (training/span_copier.py) into ``out``, last: its file is tied to the sha256 of the weights it
    read, so nothing may rewrite ``model.safetensors`` after it. A JSON-answer model gets none (the
    copier serves the functional-token call grammar, which such a model is not decoded with).
    """
    check_format(cfg.answer_format)
    if cfg.answer_format != "functional" and cfg.steps.get("refine", 0) > 0 and "refine" not in cfg.skip:
        raise ValueError(
            f"answer_format {cfg.answer_format!r}: stage refine decides with the functional-token grammar "
            "and cannot run on this format; skip it (--skip refine)"
        )
    if init_from is not None and (cfg.connector is not None or cfg.num_latents is not None):
        raise ValueError("connector and num_latents set a new model's architecture; init_from keeps its own")
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    out.mkdir(parents=True, exist_ok=True)
    stages_dir = out / "stages"
    start = time.monotonic()
    if cfg.image_size is None:  # the synthetic world is rendered at the tower's own input size
        arch = read_checkpoint_config(init_from)[0] if init_from is not None else None
        arch = arch or resolve_config(
            model_config if model_config is not None else get_model_config(cfg.model)
        )
        cfg.image_size = arch.vision.image_size
    from octopus_ros.functions.lint import decline_only_names

    for finding in decline_only_names(load_default_registry()):
        log.warning("functions.yaml: %s", finding.describe())
    pools = build_pools(cfg)
    if init_from is not None:
        registry = load_default_registry()
        ckpt = load_checkpoint(init_from)
        model, tok = ckpt.model, ckpt.tokenizer
        if model.config.answer_format != cfg.answer_format:
            raise ValueError(
                f"{init_from} answers in {model.config.answer_format} form, this run in {cfg.answer_format}"
            )
        log.info("initialised from %s", init_from)
    else:
        model_cfg = copy.deepcopy(model_config) if model_config is not None else get_model_config(cfg.model)
        tok, registry = build_tokenizer(pools, cfg, model_cfg)
        if cfg.pool_stride is not None:
            model_cfg.connector.pool_stride = cfg.pool_stride
        model_cfg = with_connector(model_cfg, cfg.connector, cfg.num_latents)
        model_cfg.answer_format = cfg.answer_format
        model_cfg = attach_tokenizer(model_cfg, tok, registry.num_tokens)
        model = build_model(model_cfg)
    curves: list[Curve] = []
    done: list[str] = []
    if resume and (stages_dir / "progress.json").exists():
        progress = json.loads((stages_dir / "progress.json").read_text())
        done = progress["done"]
        curves = [Curve(**c) for c in progress["curves"]]
        ckpt = load_checkpoint(stages_dir / done[-1])
        model, tok = ckpt.model, ckpt.tokenizer
        log.info("resuming after stage %s", done[-1])
    log.info(
        "model %s: %.2fM parameters, %d image tokens",
        cfg.model,
        model.num_parameters() / 1e6,
        model.config.num_image_tokens,
    )
    trainer = Trainer(model, tok, cfg, pools)
    for stage in STAGES:
        if stage in done or stage in cfg.skip or cfg.steps.get(stage, 0) <= 0:
            continue
        model.train()
        curves.append(getattr(trainer, stage)(cfg.steps[stage]))
        model.eval()
        save_checkpoint(stages_dir / stage, model, tok, functions=registry, metrics={"stage": stage})
        if stage == "vision" and getattr(trainer, "clip_text", None) is not None:
            from octopus_ros.training.zero_shot import save_text_tower

            save_text_tower(stages_dir / stage, *trainer.clip_text)
        done.append(stage)
        save_json(stages_dir / "progress.json", {"done": done, "curves": curves_to_json(curves)})
    model.eval()
    train_s = time.monotonic() - start
    metrics = {
        "train_config": dataclasses.asdict(cfg) | ({"init_from": str(init_from)} if init_from else {}),
        "stages_run": done,
        "train_seconds": round(train_s, 1),
        "stage_steps": {c.stage: len(c.loss) for c in curves},
        "stages_cut_short": [c.stage for c in curves if c.cut_short],
        "stage_figures": {c.stage: c.info for c in curves if c.info},
        "parameters": model.num_parameters(),
        "num_image_tokens": model.config.num_image_tokens,
    }
    final = out.parent / (out.name + ".tmp")
    if final.exists():
        shutil.rmtree(final)
    save_checkpoint(final, model, tok, functions=config_path("functions.yaml"), metrics=metrics)
    save_json(final / "training_curves.json", curves_to_json(curves))
    # novelty profiles (model/novelty.py): the vocabulary of the requests it acts on, the training
    # scenes' embeddings
    texts = training_texts(pools["calls"], load_default_registry(), cfg)
    write_profiles(final, model, texts, [r["image"] for r in pools["calls"][:3000]])
    plot_curves(
        curves, final / "training_curves.png", title=f"{cfg.model}: {train_s / 60:.1f} min on this CPU"
    )
    # Replace the output's checkpoint files (stage checkpoints stay for --resume).
    for item in final.iterdir():
        target = out / item.name
        if target.is_dir():
            shutil.rmtree(target)
        shutil.move(str(item), target)
    final.rmdir()
    from octopus_ros.runtime.second_opinion import SECOND_OPINION_DIR

    second = out / SECOND_OPINION_DIR
    if (second / "config.json").is_file():  # not this run's: the node would pair it with this model
        metrics["second_opinion_kept"] = str(second)
        log.warning(
            "%s is a model trained apart from this one, and the node (second_opinion auto) and make "
            "evaluate will ask it before publishing this model's calls; train it again for this model "
            "(train_all with another --seed, --out %s) or remove the folder",
            second,
            second,
        )
    if cfg.answer_format == "functional":  # request novelty: the saved model reads its own requests
        from octopus_ros.training.novelty_profile import (
            REQUEST_RECORDS,
            write_request_profile,
        )

        try:
            metrics["request_profile"] = write_request_profile(
                out,
                pools["calls"][:REQUEST_RECORDS],
                pools.get("decline_corpus") or {},
                seed=cfg.seed,
                progress=sys.stderr.isatty(),
                message_bodies=pools.get("message_corpus"),
                message_share=cfg.message_corpus,
            )
        except ValueError as e:  # a pool too small to fit one (tiny test runs)
            metrics["request_profile"] = f"none: {e}"
            log.warning("no request profile for %s: %s", out, e)
    if grounding_steps > 0:  # the grounding head reads this vision tower's maps: trained after it
        from octopus_ros.training.grounding import train as train_grounding

        metrics["grounding"] = train_grounding(out, steps=grounding_steps, seed=cfg.seed).metrics
    if copier_steps > 0 and cfg.answer_format == "functional":  # last: tied to model.safetensors' sha256
        from octopus_ros.training.span_copier import train as train_copier

        # the run's seed, as the grounding head's: a second opinion trained with another --seed
        # gets a copier of its own draws, whose misses the first one's seldom share (stop 33)
        copier = train_copier(out, steps=copier_steps, seed=cfg.seed, progress=sys.stderr.isatty())
        metrics["span_copier"] = {k: copier[k] for k in ("steps", "heldout_phrasing") if k in copier}
    elif copier_steps > 0:
        log.info(
            "no span copier: it serves the functional-token grammar, this model answers in %s",
            cfg.answer_format,
        )
    if evaluate_n > 0:
        from octopus_ros.model import Octopus
        from octopus_ros.training.evaluate import evaluate, format_tables

        metrics["eval_fp32"] = evaluate(Octopus.load(out), n=evaluate_n, natural=True, check=True)
        print(format_tables(metrics["eval_fp32"]))
        if "refine" in done and "calls" in done:  # what stage 5 changed: the stage-4 model, same figures
            before = Octopus.load(stages_dir / "calls")
            if (out / "grounding.safetensors").is_file():
                from octopus_ros.model.grounding import GroundingModel

                before.grounding = GroundingModel.load(out)  # the same head: its vision tower is frozen in 5
            metrics["eval_before_refine"] = evaluate(before, n=evaluate_n, natural=True, check=True)
    save_json(out / "metrics.json", metrics)
    log.info("done in %.1f min: %s", (time.monotonic() - start) / 60, out)
    return out


# float TrainConfig fields settable from the command line (--named-decoy sets named_decoy, ...)
# and their ranges: a fraction is in [0, 1]; those of _FLOAT_RANGES otherwise
_FLOAT_FLAGS = {
    "augment": "fraction of stage-4 instructions with word dropout (0: off)",
    "named_decoy": "fraction of named call instructions shown with a scene lacking the named object (0: off)",
    "grey": "fraction of images shown in greyscale (stage 1; stage 4: named/text-only records only)",
    "tiles": "stage 1: fraction of salient-scene images tile-shuffled (0: off)",
    "noise": "fraction of word-dropout instructions that also get 1-2 inserted pseudo-words (0: off)",
    "colour_decoy": "fraction of named object instructions shown with the named category in another colour (0: off)",
    "decline_noise": "fraction of no_action instructions that get 1-2 inserted pseudo-words (0: off)",
    "decline_corpus": "fraction of no_action instructions replaced by natural sentences of the decline corpus "
    "(python -m octopus_ros.data.decline_corpus, built at setup; 0: off)",
    "decline_chat": "share of the decline corpus's sentences drawn from conversation lines (chatterbot-corpus; "
    "0: none)",
    "synonyms": "stage 4: fraction of varied English instructions whose verb is replaced by a WordNet synonym "
    "(python -m octopus_ros.data.synonyms, built at setup; 0: off)",
    "chatter": "stage 4: fraction of call and decline instructions said inside a short statement of the decline "
    "corpus, before or after, set off by a comma (0: off)",
    "dpo_beta": "stage 5: DPO temperature (KL to stage 4)",
    "refine_nll": "stage 5: weight of the chosen answer's NLL",
    "refine_lr": "stage 5: peak learning rate",
}
_FLOAT_RANGES = {
    "dpo_beta": {"low": 0, "low_open": True},
    "refine_nll": {"low": 0},
    "refine_lr": {"low": 0, "low_open": True},
}


def main(argv: list[str] | None = None) -> int:
    from octopus_ros.cli import number
    from octopus_ros.training.evaluate import EVAL_N

    parser = argparse.ArgumentParser(
        prog="python -m octopus_ros.training.train_all", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="the checkpoint directory to write (the model, its loss curves and metrics.json; a "
        "checkpoint after each stage under OUT/stages/)",
    )
    parser.add_argument("--model", default=TrainConfig.model, help="named model config")
    parser.add_argument(
        "--scale",
        type=number(float, low=0, low_open=True),
        default=1.0,
        help="multiply every stage's step budget (and guard); 0.05 is a smoke run",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=STAGES, help="leave stages out (ablation)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue after the last stage finished in OUT/stages/ (same flags as the run it continues)",
    )
    parser.add_argument(
        "--eval-n",
        type=number(int, low=0),
        default=EVAL_N,
        help="held-out examples per split, as make evaluate draws them (0: no evaluation)",
    )
    parser.add_argument(
        "--pool-calls",
        type=number(int, low=1),
        default=None,
        help=f"pre-generated call records of the training pool, recycled across epochs (default "
        f"{TrainConfig.pool_calls}); the align and refine pools are scaled with it",
    )
    parser.add_argument(
        "--seed",
        type=number(int, low=0),
        default=0,
        help="random seed of the data, the model's start and the data order (the same seed and flags "
        "give the same model)",
    )
    parser.add_argument("--init-from", type=Path, default=None, help="continue training this checkpoint")
    parser.add_argument("--steps", nargs="*", default=[], help="stage=steps overrides, e.g. calls=2000")
    parser.add_argument(
        "--seconds", nargs="*", default=[], help="stage=seconds wall-clock guard overrides, e.g. calls=900"
    )
    for name, help_text in _FLOAT_FLAGS.items():
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=number(float, **_FLOAT_RANGES.get(name, {"low": 0, "high": 1})),
            default=getattr(TrainConfig, name),
            help=help_text,
        )
    parser.add_argument(
        "--keep-absent-calls",
        action="store_true",
        help="decoys of requires_view functions keep their call instead of the decline (the old recipe)",
    )
    parser.add_argument(
        "--decline-recoloured",
        action="store_true",
        help="the colour decoys of requires_view functions answer with the decline too",
    )
    parser.add_argument(
        "--grounding-steps",
        type=number(int, low=0),
        default=GROUNDING_STEPS,
        help="train the grounding head on the final vision tower for this many steps "
        f"(0: none; default {GROUNDING_STEPS}, on training/grounding.py's scenes and width)",
    )
    parser.add_argument(
        "--copier-steps",
        type=number(int, low=0),
        default=COPIER_STEPS,
        help="then train the span copier (training/span_copier.py) for this many steps, last "
        "(0: none; never for --answer-format json)",
    )
    parser.add_argument(
        "--threads", type=number(int, low=1), default=TrainConfig.threads, help="torch CPU threads"
    )
    parser.add_argument(
        "--answer-format",
        default=TrainConfig.answer_format,
        choices=ANSWER_FORMATS,
        help="how call records are answered: functional tokens, or JSON text (the baseline; needs --skip refine)",
    )
    parser.add_argument(
        "--connector",
        default=None,
        choices=("mlp", "perceiver"),
        help="connector type (default: the model config's, mlp for the bundled model)",
    )
    parser.add_argument(
        "--perceiver-latents",
        type=number(int, low=1),
        default=None,
        help="perceiver latents = image tokens (default: as many as the MLP connector gives)",
    )
    parser.add_argument(
        "--refine-balance",
        action=argparse.BooleanOptionalAction,
        default=TrainConfig.refine_balance,
        help="stage 5: draw pairs whose right answer is the decline and pairs whose right answer is a call "
        "equally often",
    )
    parser.add_argument(
        "--refine-twins",
        action=argparse.BooleanOptionalAction,
        default=TrainConfig.refine_twins,
        help="stage 5: pair each absent-object mistake with its present twin (the same request over "
        "the scene that holds the object, the call preferred), so that only the image separates them",
    )
    parser.add_argument(
        "--refine-gate",
        action=argparse.BooleanOptionalAction,
        default=TrainConfig.refine_gate,
        help="stage 5 keeps its result only if it makes fewer mistakes than the stage-4 model on fresh "
        "validation records (otherwise the stage-4 weights stay; metrics.json says which)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = TrainConfig(
        model=args.model,
        skip=tuple(args.skip),
        seed=args.seed,
        threads=args.threads,
        decline_absent=not args.keep_absent_calls,
        decline_recoloured=args.decline_recoloured,
        answer_format=args.answer_format,
        connector=args.connector,
        num_latents=args.perceiver_latents,
        refine_balance=args.refine_balance,
        refine_twins=args.refine_twins,
        refine_gate=args.refine_gate,
        **{name: getattr(args, name) for name in _FLOAT_FLAGS},
    )
    budgets = (
        ("--steps", cfg.steps, number(int, low=1), "use --skip to leave a stage out"),
        ("--seconds", cfg.seconds, number(float, low=0, low_open=True), "a wall-clock guard"),
    )
    for flag, target, kind, why in budgets:
        for item in getattr(args, flag[2:]):
            stage, _, value = item.partition("=")
            if stage not in STAGES:
                parser.error(f"{flag}: unknown stage {stage!r}")
            try:
                target[stage] = kind(value)
            except argparse.ArgumentTypeError as e:
                parser.error(f"{flag} {item}: {e} ({why})")
    if args.answer_format != "functional" and "refine" not in cfg.skip and cfg.steps.get("refine", 0) > 0:
        parser.error(
            f"--answer-format {args.answer_format}: stage refine decides with the functional-token grammar; "
            "add --skip refine"
        )
    if args.perceiver_latents is not None and args.connector != "perceiver":
        parser.error("--perceiver-latents needs --connector perceiver")
    cfg.steps = {k: max(1, round(v * args.scale)) for k, v in cfg.steps.items()}
    cfg.seconds = {k: v * args.scale for k, v in cfg.seconds.items()}
    if args.pool_calls:
        cfg.pool_calls = args.pool_calls
        cfg.pool_align = max(200, args.pool_calls // 2)
        cfg.pool_refine = max(100, args.pool_calls // 12)
        cfg.pool_refine_val = max(50, args.pool_calls // 40)
    train(
        cfg,
        args.out,
        resume=args.resume,
        evaluate_n=args.eval_n,
        init_from=args.init_from,
        grounding_steps=round(args.grounding_steps * min(1.0, args.scale)),
        copier_steps=args.copier_steps,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
