"""An Octopus model from real pretrained parts: a local open_clip tower and a local HF causal LM.

    model, tok = build_from_parts(
        vision="ViT-B-32", vision_checkpoint="weights/vit_b32.safetensors", vision_tag="openai",
        lm="weights/Qwen2.5-0.5B", num_functions=registry.num_tokens,
        texts={i: "pick up: Pick up an object.", ...},
    )

The LM keeps **its own tokenizer**: ``<image>``, ``<nexa_0..N-1>`` and ``<nexa_end>`` are added
to it as special tokens, so every ordinary text keeps the ids the LM was pretrained on (a new
BPE would give those ids other meanings). The functional tokens' rows start from the mean
embedding of their functions' texts (:mod:`.functional_tokens`).

The image side keeps **the tower's own input size and normalisation**: the size comes from
its open_clip config (224, 256, 384 ...); mean/std come from, in order, explicit arguments,
the ``preprocess_cfg`` of an ``open_clip_config.json`` (the layout of open_clip models on the
HF hub), open_clip's table for ``vision_tag`` (e.g. ``openai``, ``webli``; a table lookup, no
download), else CLIP's constants (logged as an assumption).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import CLIP_MEAN, CLIP_STD, ConfigError, ConnectorConfig, OctopusConfig, VisionConfig
from .functional_tokens import init_token_rows
from .modeling import OctopusModel, build_model
from .tokenizer import NEXA_END_TOKEN, attach_tokenizer, load_tokenizer, nexa_token

log = logging.getLogger(__name__)

OPEN_CLIP_CONFIG = "open_clip_config.json"
OPEN_CLIP_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
_RESIZE_MODES = {"shortest": "crop", "squash": "squash", "longest": "crop"}


@dataclass
class VisionSource:
    """Where the tower comes from, resolved: open_clip config dict or name, weights, preprocessing."""

    open_clip: dict[str, Any] | None
    model_name: str | None
    checkpoint: str | None
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    resize_mode: str
    normalisation_from: str


def resolve_vision(
    vision: str | Path,
    checkpoint: str | Path | None = None,
    *,
    tag: str | None = None,
    image_mean: Sequence[float] | None = None,
    image_std: Sequence[float] | None = None,
) -> VisionSource:
    """``vision``: an open_clip model name (``ViT-B-32``), a model-config JSON file, an
    ``open_clip_config.json``, or a directory holding one (and, optionally, the weights)."""
    path = Path(vision)
    oc, name, pre, ckpt = None, None, {}, checkpoint
    if path.is_dir():
        if not (path / OPEN_CLIP_CONFIG).is_file():
            raise ConfigError(f"{path}: no {OPEN_CLIP_CONFIG} in this open_clip model directory")
        if ckpt is None:
            found = [path / f for f in OPEN_CLIP_WEIGHTS if (path / f).is_file()]
            if not found:
                raise ConfigError(f"{path}: no weights ({' or '.join(OPEN_CLIP_WEIGHTS)})")
            ckpt = found[0]
        path = path / OPEN_CLIP_CONFIG
    if path.suffix == ".json":
        if not path.is_file():
            raise ConfigError(f"{path}: open_clip config not found")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: not a readable JSON file ({e})") from e
        if "model_cfg" in data:  # open_clip_config.json (HF hub layout)
            oc, pre = data["model_cfg"], data.get("preprocess_cfg") or {}
        else:
            oc = data
        if not isinstance(oc, dict) or "vision_cfg" not in oc:
            raise ConfigError(f"{path}: not an open_clip model config (no 'vision_cfg')")
    else:
        name = str(vision)
    source = "CLIP's default mean/std (assumed: give --vision-tag or --image-mean/--image-std)"
    mean, std, mode = CLIP_MEAN, CLIP_STD, "crop"
    if tag is not None:
        import open_clip

        cfg = open_clip.get_pretrained_cfg(name or "", tag) if name else {}
        if not cfg:
            raise ConfigError(f"open_clip has no pretrained tag {tag!r} for {name or path}")
        pre = {**cfg, **pre}
    if pre.get("mean") is not None:
        mean, std = tuple(pre["mean"]), tuple(pre["std"])
        source = f"{'the pretrained tag ' + tag if tag else path.name}'s preprocess_cfg"
    mode = _RESIZE_MODES.get(pre.get("resize_mode", "shortest"), "crop")
    if image_mean is not None or image_std is not None:
        if image_mean is None or image_std is None:
            raise ConfigError("give both image_mean and image_std")
        mean, std, source = tuple(image_mean), tuple(image_std), "explicit mean/std"
    for what, v in (("image_mean", mean), ("image_std", std)):
        if len(v) != 3 or not all(isinstance(x, int | float) for x in v):
            raise ConfigError(f"{what} must be 3 numbers, got {v!r}")
    if min(std) <= 0:
        raise ConfigError(f"image_std must be positive, got {std!r}")
    if ckpt is not None and not Path(ckpt).is_file():
        raise ConfigError(f"open_clip checkpoint not found: {ckpt}")
    return VisionSource(
        open_clip=oc,
        model_name=name,
        checkpoint=None if ckpt is None else str(ckpt),
        image_mean=tuple(float(x) for x in mean),
        image_std=tuple(float(x) for x in std),
        resize_mode=mode,
        normalisation_from=source,
    )


def build_from_parts(
    *,
    vision: VisionSource,
    lm: str | Path,
    num_functions: int,
    texts: Mapping[int, str] | None = None,
    connector: ConnectorConfig | None = None,
    init: str = "mean",
    name: str = "octopus-custom",
) -> tuple[OctopusModel, Any]:
    """Build (model, tokenizer) from a resolved tower and a local HF LM directory.

    The tokenizer is the LM's, with the special tokens added; the LM's vocabulary grows only if
    it has no spare rows for them. ``texts`` (function index -> text) warm-start the functional
    tokens (see :func:`~octopus_ros.model.functional_tokens.init_token_rows`).
    """
    lm = Path(lm)
    if not (lm / "config.json").is_file():
        raise ConfigError(f"{lm}: not a Hugging Face model directory (no config.json)")
    tokenizer = load_tokenizer(lm)
    vcfg = VisionConfig(
        open_clip=vision.open_clip,
        model_name=vision.model_name,
        checkpoint=vision.checkpoint,
        image_mean=vision.image_mean,
        image_std=vision.image_std,
        resize_mode=vision.resize_mode,
    )
    config = OctopusConfig(name=name, vision=vcfg, connector=connector or ConnectorConfig(), lm_path=str(lm))
    config = attach_tokenizer(config, tokenizer, num_functions)
    model = build_model(config)
    vocab = tokenizer.get_vocab()
    rows = {vocab[nexa_token(i)]: (texts or {}).get(i, "") for i in range(num_functions)}
    rows[vocab[NEXA_END_TOKEN]] = tokenizer.eos_token or ""
    init_token_rows(model, tokenizer, rows, init=init)
    log.info(
        "built %s from %s + %s: %.1fM parameters, %d image tokens at %d px, normalisation from %s",
        name,
        vision.model_name or "an open_clip config",
        lm,
        model.num_parameters() / 1e6,
        model.config.num_image_tokens,
        model.config.vision.image_size,
        vision.normalisation_from,
    )
    return model, tokenizer
