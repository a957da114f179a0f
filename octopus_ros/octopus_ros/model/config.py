"""Model configuration: one dataclass that describes the whole Octopus architecture.

Named configs live as JSON data in ``model/configs/`` (open_clip style): ``list_models()``
lists them and ``get_model_config(name)`` returns an :class:`OctopusConfig`.

A config can point at external weights (a local open_clip checkpoint for the vision tower,
a local Hugging Face directory for the LM). ``resolve_config`` turns those references into a
fully explicit architecture; a saved checkpoint stores the resolved architecture with the
external references dropped, because its weights live in ``model.safetensors``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parent / "configs"

# CLIP's normalisation constants (open_clip.OPENAI_DATASET_MEAN / _STD).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DEFAULT_SYSTEM_PROMPT = (
    "You are the brain of a robot. Look at the camera image and answer the user's request "
    "with exactly one function call.\n"
)
# {system}: system_prompt, {images}: <image> x num_image_tokens, {instruction}: the user's words.
DEFAULT_PROMPT_TEMPLATE = "{system}{images}\nUser: {instruction}\nGPT:"


class ConfigError(ValueError):
    """A model config is malformed or inconsistent."""


RESNET_STRIDE = 32  # ModifiedResNet: stem /4, then layer2..4 /2 each
RESNET_WIDTH_MULT = 32  # ModifiedResNet: layer4 has 8 x width bottleneck channels, expanded 4x


@dataclass
class VisionConfig:
    """The open_clip vision tower.

    Either ``open_clip`` (an open_clip model-config dict, as in open_clip's model_configs/*.json:
    ``embed_dim``, ``vision_cfg``, optional ``quick_gelu``; ``text_cfg`` is ignored) or
    ``model_name`` (a config name known to open_clip, e.g. ``"ViT-B-32"``) gives the architecture.
    """

    open_clip: dict[str, Any] | None = None  # open_clip model config: {"embed_dim", "vision_cfg", ...}
    model_name: str | None = None  # open_clip config name, used when open_clip is None
    checkpoint: str | None = None  # local open_clip checkpoint (.safetensors/.bin/.pt) for the tower weights
    image_mean: tuple[float, float, float] = CLIP_MEAN  # per-channel mean of [0, 1] pixels
    image_std: tuple[float, float, float] = CLIP_STD  # per-channel std
    resize_mode: str = "crop"  # "crop": shorter side to image_size then centre crop; "squash": plain resize
    # Factorised image side (ResNet towers only; see VisionTower): the open_clip tower sees
    # "rgb" or only the "luma" of the image, and ``colour_tokens`` shape-free colour tokens
    # (a per-pixel colour code pooled by attention maps from the tower) are appended to its
    # grid tokens. 0 / "rgb" is the plain open_clip tower (what pretrained checkpoints expect).
    shape_input: str = "rgb"
    colour_tokens: int = 0

    @property
    def image_size(self) -> int:
        """Input side length in pixels (square images)."""
        size = self._vision_cfg().get("image_size", 224)
        if isinstance(size, list | tuple):
            if size[0] != size[1]:
                raise ConfigError(f"only square vision inputs are supported, got image_size={size}")
            size = size[0]
        return int(size)

    @property
    def is_resnet(self) -> bool:
        """True for open_clip's ModifiedResNet (CLIP RN50-style; ``vision_cfg.layers`` is a list)."""
        return isinstance(self._vision_cfg().get("layers"), list | tuple)

    @property
    def patch_size(self) -> int:
        """Pixels per token side: the ViT's patch, or the ResNet's total stride (32)."""
        if self.is_resnet:
            return RESNET_STRIDE
        return int(self._vision_cfg().get("patch_size", 16))

    @property
    def width(self) -> int:
        """Width of the patch tokens (the ViT's hidden size; the ResNet's last stage: 32 x width)."""
        if self.is_resnet:
            return RESNET_WIDTH_MULT * int(self._vision_cfg().get("width", 64))
        return int(self._vision_cfg().get("width", 768))

    @property
    def embed_dim(self) -> int:
        """Width of the pooled CLIP embedding."""
        return int(self._oc()["embed_dim"])

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size

    def _oc(self) -> dict[str, Any]:
        if self.open_clip is None:
            raise ConfigError("vision.open_clip is not resolved yet; call resolve_config() first")
        return self.open_clip

    def _vision_cfg(self) -> dict[str, Any]:
        return self._oc().get("vision_cfg", {})


@dataclass
class ConnectorConfig:
    """Maps the vision tower's patch tokens (B, N, W) to LM input embeddings (B, K, D)."""

    type: str = "mlp"  # "mlp" (LLaVA projector) or "perceiver" (Flamingo resampler)
    # mlp
    hidden_dim: int | None = None  # MLP hidden width; None = LM hidden size
    pool_stride: int = 1  # average-pool the patch grid by this stride first (cuts image tokens by stride^2)
    # perceiver
    num_latents: int = 16  # learned queries = number of image tokens given to the LM
    depth: int = 2  # cross-attention + feed-forward blocks
    heads: int = 4
    dim_head: int = 32
    ff_mult: int = 2

    def num_tokens(self, grid_size: int) -> int:
        """Image tokens produced for a ``grid_size`` x ``grid_size`` patch grid."""
        if self.type == "mlp":
            return (grid_size // self.pool_stride) ** 2
        if self.type == "perceiver":
            return self.num_latents
        raise ConfigError(f"connector.type must be 'mlp' or 'perceiver', got {self.type!r}")


@dataclass
class OctopusConfig:
    """Whole-model config: vision tower + connector + causal LM + functional tokens + prompt."""

    name: str = "octopus"
    vision: VisionConfig = field(default_factory=VisionConfig)
    connector: ConnectorConfig = field(default_factory=ConnectorConfig)
    # transformers config dict (needs "model_type": "qwen2" or "llama"). Built with random weights
    # unless lm_path is set.
    lm: dict[str, Any] = field(default_factory=dict)
    lm_path: str | None = None  # local HF directory: its config.json and weights are used
    num_image_tokens: int | None = None  # derived from vision + connector; checked if given
    # Special-token ids, filled in by attach_tokenizer() once a tokenizer exists.
    image_token_id: int | None = None
    nexa_token_ids: list[int] = field(default_factory=list)  # nexa_token_ids[i] is <nexa_i>
    nexa_end_id: int | None = None
    pad_token_id: int | None = None
    eos_token_id: int | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    prompt_template: str = DEFAULT_PROMPT_TEMPLATE
    # Softmax temperature of the call confidence, fitted after training on validation records
    # (python -m octopus_ros.training.calibrate); 1.0 = uncalibrated. Greedy choices ignore it.
    temperature: float = 1.0
    # How the model writes its answer (functions/answer_format.py): "functional" (<nexa_i>(...)<nexa_end>)
    # or "json" (the JSON-text baseline, decoded freely as decode_mode plain).
    answer_format: str = "functional"

    # -- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OctopusConfig:
        data = copy.deepcopy(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown OctopusConfig field(s): {sorted(unknown)}")
        lm = data.get("lm", {})
        if isinstance(lm, str):  # "lm": "/path/to/hf_dir" is shorthand for lm_path
            data["lm"], data["lm_path"] = {}, lm
        vision = _sub(VisionConfig, data.pop("vision", {}), "vision")
        if isinstance(vision.image_mean, list):
            vision.image_mean = tuple(vision.image_mean)
            vision.image_std = tuple(vision.image_std)
        connector = _sub(ConnectorConfig, data.pop("connector", {}), "connector")
        return cls(vision=vision, connector=connector, **data)

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    @classmethod
    def from_json(cls, path_or_text: str | Path) -> OctopusConfig:
        """Load from a JSON file path or a JSON string."""
        text = str(path_or_text)
        if not text.lstrip().startswith("{"):
            text = Path(path_or_text).read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    def replace(self, **changes: Any) -> OctopusConfig:
        """A copy with some top-level fields changed (sub-configs may be passed as dicts)."""
        data = self.to_dict()
        for key, value in changes.items():
            if dataclasses.is_dataclass(value):
                value = dataclasses.asdict(value)
            if key in ("vision", "connector") and isinstance(value, dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return OctopusConfig.from_dict(data)

    # -- derived -------------------------------------------------------------------------------
    @property
    def num_functions(self) -> int:
        return len(self.nexa_token_ids)

    @property
    def has_token_ids(self) -> bool:
        return self.image_token_id is not None and self.nexa_end_id is not None and bool(self.nexa_token_ids)

    def require_token_ids(self) -> None:
        if not self.has_token_ids:
            raise ConfigError(
                "the config has no special-token ids yet (image_token_id, nexa_token_ids, nexa_end_id); "
                "call attach_tokenizer(config, tokenizer, num_functions) first"
            )


def _sub(cls, data: dict[str, Any], where: str):
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown {where} field(s): {sorted(unknown)}")
    return cls(**data)


# -- named configs ------------------------------------------------------------------------------
def list_models() -> list[str]:
    """Names of the bundled model configs (files in model/configs/)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


def get_model_config(name: str) -> OctopusConfig:
    """A bundled config by name (e.g. ``"octopus-tiny"``), or a path to a config JSON file."""
    path = CONFIG_DIR / f"{name}.json"
    if not path.is_file():
        candidate = Path(name)
        if candidate.is_file():
            path = candidate
        else:
            raise ConfigError(f"unknown model config {name!r}; known: {', '.join(list_models())}")
    return OctopusConfig.from_json(path)


# -- resolution ---------------------------------------------------------------------------------
def resolve_config(config: OctopusConfig) -> OctopusConfig:
    """Make the architecture explicit: fill in the open_clip dict and the LM config dict.

    Returns a new config; raises :class:`ConfigError` on inconsistencies.
    """
    vision = dataclasses.replace(config.vision)
    if vision.open_clip is None:
        if not vision.model_name:
            raise ConfigError("vision needs either an open_clip config dict or a model_name")
        import open_clip

        oc = open_clip.get_model_config(vision.model_name)
        if oc is None:
            raise ConfigError(f"open_clip knows no model config named {vision.model_name!r}")
        vision.open_clip = copy.deepcopy(oc)
    oc = dict(vision.open_clip)
    oc.pop("text_cfg", None)  # only the vision tower is built
    if "embed_dim" not in oc or "vision_cfg" not in oc:
        raise ConfigError("vision.open_clip must have 'embed_dim' and 'vision_cfg'")
    vcfg = oc["vision_cfg"]
    if vcfg.get("timm_model_name"):
        raise ConfigError(
            "only open_clip VisionTransformer and ModifiedResNet towers are supported (not timm)"
        )
    vision.open_clip = oc
    if vision.image_size % vision.patch_size:
        raise ConfigError(
            f"image_size {vision.image_size} is not a multiple of patch_size {vision.patch_size}"
        )

    lm = dict(config.lm)
    if config.lm_path is not None:
        lm_json = Path(config.lm_path) / "config.json"
        if not lm_json.is_file():
            raise ConfigError(f"lm_path {config.lm_path!r} has no config.json")
        lm = {**json.loads(lm_json.read_text(encoding="utf-8")), **lm}
    if lm.get("model_type") not in ("qwen2", "llama"):
        raise ConfigError(f"lm.model_type must be 'qwen2' or 'llama', got {lm.get('model_type')!r}")

    conn = config.connector
    if conn.type not in ("mlp", "perceiver"):
        raise ConfigError(f"connector.type must be 'mlp' or 'perceiver', got {conn.type!r}")
    if conn.type == "mlp" and vision.grid_size % conn.pool_stride:
        raise ConfigError(
            f"connector.pool_stride {conn.pool_stride} does not divide the {vision.grid_size} patch grid"
        )
    if vision.shape_input not in ("rgb", "luma"):
        raise ConfigError(f"vision.shape_input must be 'rgb' or 'luma', got {vision.shape_input!r}")
    if vision.colour_tokens < 0 or (vision.colour_tokens and not vision.is_resnet):
        raise ConfigError("vision.colour_tokens needs a ResNet tower and must be >= 0")
    if vision.shape_input == "luma" and not vision.colour_tokens:
        raise ConfigError("vision.shape_input 'luma' without colour_tokens would make the model colour-blind")
    num_image_tokens = conn.num_tokens(vision.grid_size)
    if conn.type == "mlp":  # the MLP maps every tower token; a Perceiver resamples them all
        num_image_tokens += vision.colour_tokens
    if config.num_image_tokens is not None and config.num_image_tokens != num_image_tokens:
        raise ConfigError(
            f"num_image_tokens is {config.num_image_tokens} but vision + connector produce {num_image_tokens}"
        )
    from octopus_ros.functions.answer_format import AnswerFormatError, check_format

    try:
        check_format(config.answer_format)
    except AnswerFormatError as e:
        raise ConfigError(str(e)) from None
    if "{images}" not in config.prompt_template or "{instruction}" not in config.prompt_template:
        raise ConfigError("prompt_template must contain {images} and {instruction}")
    return dataclasses.replace(config, vision=vision, lm=lm, num_image_tokens=num_image_tokens)


def lm_hidden_size(config: OctopusConfig) -> int:
    try:
        return int(config.lm["hidden_size"])
    except KeyError as e:
        raise ConfigError("lm config has no hidden_size (resolve_config first?)") from e
