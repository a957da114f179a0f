"""OctopusModel: open_clip vision tower -> connector -> transformers causal LM.

Image embeddings replace the LM input embeddings at the ``<image>`` token positions of the
prompt (LLaVA style). Building is split in three steps:

  config = resolve_config(config)     # explicit architecture (config.py)
  model = build_modules(config)       # random weights
  load_pretrained_parts(model, config)  # optional external weights (open_clip / HF dir)

``build_model(config)`` runs the three.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError, OctopusConfig, lm_hidden_size, resolve_config
from .connector import build_connector
from .vision import VisionTower

log = logging.getLogger(__name__)

PARTS = ("vision", "connector", "lm", "embeddings")


class OctopusModel(nn.Module):
    """Vision tower + connector + causal LM.

    Attributes: ``vision`` (:class:`VisionTower`), ``connector`` (MLP or Perceiver), ``lm``
    (a transformers ``*ForCausalLM``), ``config`` (the resolved :class:`OctopusConfig`).
    """

    def __init__(self, *, config: OctopusConfig, vision: VisionTower, connector: nn.Module, lm: nn.Module):
        super().__init__()
        self.config = config
        self.vision = vision
        self.connector = connector
        self.lm = lm

    # -- image side ----------------------------------------------------------------------------
    def image_features(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pixels: (B, 3, H, W) normalised -> (pooled (B, E), patch tokens (B, N, W))."""
        return self.vision(pixels)

    def clip_embedding(self, pixels: torch.Tensor, *, normalize: bool = True) -> torch.Tensor:
        """The tower's pooled CLIP image embedding (B, E), L2-normalised by default
        (what open_clip's ``ClipLoss`` expects)."""
        pooled, _ = self.vision(pixels)
        return F.normalize(pooled, dim=-1) if normalize else pooled

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels: (B, 3, H, W) -> image embeddings for the LM (B, K, D)."""
        _, tokens = self.vision(pixels)  # (B, N, W)
        return self.connector(tokens)  # (B, K, D)

    # -- text side -----------------------------------------------------------------------------
    def embed_inputs(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings (B, T, D) with ``image_embeds`` (B_img, K, D) written at the
        ``<image>`` positions of ``input_ids`` (B, T), in order."""
        image_id = self.config.image_token_id
        if image_id is None:
            raise ConfigError("config.image_token_id is not set; attach a tokenizer first")
        embeds = self.lm.get_input_embeddings()(input_ids)  # (B, T, D)
        mask = input_ids == image_id  # (B, T)
        n_positions = int(mask.sum())
        n_embeds = 0 if image_embeds is None else image_embeds.shape[0] * image_embeds.shape[1]
        if n_positions != n_embeds:
            shape = (
                "none"
                if image_embeds is None
                else f"{image_embeds.shape[0]} images x {image_embeds.shape[1]}"
            )
            raise ValueError(
                f"input_ids contain {n_positions} <image> token(s) but {n_embeds} image embedding(s) "
                f"were given ({shape})"
            )
        if n_positions == 0:
            return embeds
        if image_embeds.shape[0] == input_ids.shape[0]:
            per_row = mask.sum(dim=1)
            bad = (per_row != image_embeds.shape[1]).nonzero().flatten().tolist()
            if bad:
                raise ValueError(
                    f"row {bad[0]} of input_ids has {int(per_row[bad[0]])} <image> token(s) but each image "
                    f"has {image_embeds.shape[1]} embeddings"
                )
        return embeds.masked_scatter(mask.unsqueeze(-1), image_embeds.to(embeds.dtype))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.Tensor | None = None,
        image_embeds: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        **lm_kwargs,
    ):
        """Training/scoring forward pass.

        input_ids (B, T) with K ``<image>`` tokens per image; pixel_values (B, 3, H, W) or
        precomputed image_embeds (B, K, D); labels (B, T) with -100 on positions without loss.
        Returns the LM's output (``.loss`` when labels are given, ``.logits`` (B, T, V)).
        """
        if pixel_values is not None and image_embeds is not None:
            raise ValueError("pass pixel_values or image_embeds, not both")
        if pixel_values is not None:
            image_embeds = self.encode_image(pixel_values)  # (B, K, D)
        inputs_embeds = self.embed_inputs(input_ids, image_embeds)  # (B, T, D)
        return self.lm(inputs_embeds=inputs_embeds, attention_mask=attention_mask, labels=labels, **lm_kwargs)

    # -- tokens --------------------------------------------------------------------------------
    def resize_token_embeddings(self, num_tokens: int) -> None:
        """Grow/shrink the LM vocabulary (new rows randomly initialised, ``mean_resizing=False``)."""
        self.lm.resize_token_embeddings(num_tokens, mean_resizing=False)
        self.config.lm["vocab_size"] = num_tokens
        self.sync_lm_token_ids()

    def sync_lm_token_ids(self) -> None:
        """Copy eos/pad ids from the Octopus config onto the LM config and generation config."""
        for cfg in (self.lm.config, getattr(self.lm, "generation_config", None)):
            if cfg is None:
                continue
            if self.config.eos_token_id is not None:
                cfg.eos_token_id = self.config.eos_token_id
            if self.config.pad_token_id is not None:
                cfg.pad_token_id = self.config.pad_token_id

    # -- multi-stage training helpers ----------------------------------------------------------
    def _part_parameters(self, part: str) -> list[nn.Parameter]:
        if part == "vision":
            return list(self.vision.parameters())
        if part == "connector":
            return list(self.connector.parameters())
        if part == "lm":
            return list(self.lm.parameters())
        if part == "embeddings":
            params = list(self.lm.get_input_embeddings().parameters())
            out = self.lm.get_output_embeddings()
            if out is not None:
                params += [p for p in out.parameters() if all(p is not q for q in params)]
            return params
        raise ValueError(f"unknown model part {part!r}; parts are {PARTS}")

    def set_trainable(
        self,
        *,
        vision: bool | None = None,
        connector: bool | None = None,
        lm: bool | None = None,
        embeddings: bool | None = None,
    ) -> None:
        """Set ``requires_grad`` per part (None leaves a part as it is). ``embeddings`` (input
        embeddings + LM head) is applied after ``lm``, so ``lm=False, embeddings=True`` trains
        only the token embeddings of the LM (e.g. to teach new functional tokens)."""
        for part, flag in (
            ("vision", vision),
            ("connector", connector),
            ("lm", lm),
            ("embeddings", embeddings),
        ):
            if flag is None:
                continue
            for p in self._part_parameters(part):
                p.requires_grad_(flag)

    def freeze(self, *parts: str) -> None:
        """Freeze the given parts (any of ``PARTS``)."""
        self.set_trainable(**{p: False for p in self._check_parts(parts)})

    def unfreeze(self, *parts: str) -> None:
        """Unfreeze the given parts (any of ``PARTS``)."""
        self.set_trainable(**{p: True for p in self._check_parts(parts)})

    @staticmethod
    def _check_parts(parts: tuple[str, ...]) -> tuple[str, ...]:
        for p in parts:
            if p not in PARTS:
                raise ValueError(f"unknown model part {p!r}; parts are {PARTS}")
        return parts

    def num_parameters(self, part: str | None = None, *, trainable_only: bool = False) -> int:
        params = self.parameters() if part is None else self._part_parameters(part)
        seen, total = set(), 0
        for p in params:
            if id(p) in seen or (trainable_only and not p.requires_grad):
                continue
            seen.add(id(p))
            total += p.numel()
        return total


# -- building ------------------------------------------------------------------------------------
def kv_geometry(lm_config) -> tuple[int, int, int]:
    """(layers, KV heads, head dim) of a transformers causal LM's config: the shape of its KV cache
    per position (grouped-query LMs have fewer KV heads than attention heads)."""
    heads = lm_config.num_attention_heads
    head_dim = getattr(lm_config, "head_dim", None) or lm_config.hidden_size // heads
    kv_heads = getattr(lm_config, "num_key_value_heads", None) or heads
    return lm_config.num_hidden_layers, kv_heads, head_dim


def build_lm(config: OctopusConfig) -> nn.Module:
    """A transformers causal LM with random weights from the (resolved) ``config.lm`` dict."""
    from transformers import AutoConfig, AutoModelForCausalLM

    lm_cfg = dict(config.lm)
    model_type = lm_cfg.pop("model_type")
    for key in ("transformers_version", "architectures", "dtype", "torch_dtype"):
        lm_cfg.pop(key, None)
    hf_config = AutoConfig.for_model(model_type, **lm_cfg)
    return AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32)


def build_modules(config: OctopusConfig) -> OctopusModel:
    """Instantiate all parts with random weights from a resolved config."""
    if config.num_image_tokens is None:
        raise ConfigError("build_modules needs a resolved config (call resolve_config first)")
    vision = VisionTower(config=config.vision)
    connector = build_connector(
        config.connector, vision_width=vision.width, grid_size=vision.grid_size, lm_dim=lm_hidden_size(config)
    )
    lm = build_lm(config)
    model = OctopusModel(config=config, vision=vision, connector=connector, lm=lm)
    needed = _needed_vocab(config)
    if needed > lm.get_input_embeddings().num_embeddings:
        log.info("resizing LM vocabulary %d -> %d", lm.get_input_embeddings().num_embeddings, needed)
        model.resize_token_embeddings(needed)
    model.config.lm["vocab_size"] = lm.get_input_embeddings().num_embeddings
    model.sync_lm_token_ids()
    return model


def _needed_vocab(config: OctopusConfig) -> int:
    ids = [
        config.image_token_id,
        config.nexa_end_id,
        config.pad_token_id,
        config.eos_token_id,
        *config.nexa_token_ids,
    ]
    ids = [i for i in ids if i is not None]
    return max(ids) + 1 if ids else 0


def load_pretrained_parts(model: OctopusModel, config: OctopusConfig) -> None:
    """Load external weights named by the config: an open_clip checkpoint for the tower and a
    local HF directory for the LM (resized to the model's vocabulary if tokens were added)."""
    if config.vision.checkpoint:
        model.vision.load_open_clip_checkpoint(config.vision.checkpoint)
    if config.lm_path:
        from transformers import AutoModelForCausalLM

        lm = AutoModelForCausalLM.from_pretrained(config.lm_path, local_files_only=True, dtype=torch.float32)
        vocab = model.lm.get_input_embeddings().num_embeddings
        if lm.get_input_embeddings().num_embeddings != vocab:
            lm.resize_token_embeddings(vocab, mean_resizing=False)
        model.lm = lm
        model.sync_lm_token_ids()
        log.info("loaded LM weights from %s", config.lm_path)


def build_model(config: OctopusConfig, *, load_weights: bool = True) -> OctopusModel:
    """Resolve, build and (optionally) load external weights. The model is returned in eval mode."""
    config = resolve_config(config)
    model = build_modules(config)
    if load_weights:
        load_pretrained_parts(model, config)
    return model.eval()
