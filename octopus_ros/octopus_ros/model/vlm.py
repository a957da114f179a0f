"""Native small VLMs (SmolVLM / Idefics3, Qwen2-VL, Qwen2.5-VL) behind the Octopus interface.

    octopus = Octopus.load("models/smolvlm-256m-octopus")   # a HF VLM directory: this backend
    enc = octopus.encode(rgb)                               # vision tower + projector + image KV
    d = octopus.decide("pick up the red cup", enc, allowlist=("pick_up",))

A directory whose ``config.json`` is a Hugging Face VLM config (``model_type`` idefics3, smolvlm,
qwen2_vl or qwen2_5_vl) loads with ``AutoModelForImageTextToText`` + ``AutoProcessor``, from local
files only. :class:`VLMOctopus` is an :class:`~octopus_ros.model.runtime.Octopus`: deciding
(grammar, allowlist, jump-forward, confidence, in-context examples, parsing) is the Octopus
code; this module only supplies the model side:

- the prompt is the model's own chat template (system prompt, in-context turns, one user turn
  with the image and the instruction, the assistant cue); the answer follows the cue as
  ``<nexa_i>(...)<nexa_end>``;
- ``encode`` runs the processor on the frame (Idefics3 splits it into tiles plus a global view;
  Qwen2-VL picks a patch grid), the vision tower and projector once, and prefills the KV cache of
  system prompt + image segment, so every utterance on that frame only prefills its own words;
- Qwen2-VL's multimodal rotary positions (M-RoPE) are computed here: text after the image
  continues at ``max(image position) + 1``, not at its index, so each cache carries that offset.

The functional tokens ``<nexa_0>`` .. ``<nexa_{N-1}>`` and ``<nexa_end>`` must be in the
tokenizer (special tokens: ordinary text keeps its ids). :func:`add_functional_tokens` adds them
to a pretrained VLM and :func:`prepare_vlm` (``python -m octopus_ros.model.vlm SRC DST``) writes
such a directory, with ``functions.yaml``; a directory without them is refused, naming the file.
The rows start untrained (the mean of their functions' texts): fine-tune before trusting one.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from octopus_ros.lean.preprocess import check_rgb

from .checkpoint import CHECKPOINT_FORMAT, CONFIG_FILE, FUNCTIONS_FILE, CheckpointError, read_config_json
from .config import DEFAULT_SYSTEM_PROMPT
from .decoding import ConstrainedDecoder
from .functional_tokens import init_token_rows
from .novelty import NoveltyProfile
from .precision import activation_dtype, apply_precision, check_precision, resolve_device
from .prompt import as_context, model_utterance
from .runtime import (
    MODES,
    Decision,
    ImageEncoding,
    Octopus,
    _functions,
    _parse,
    _registry_characters,
)
from .tokenizer import NEXA_END_TOKEN, nexa_token

log = logging.getLogger(__name__)

# HF model_type -> family (the way its images enter the prompt and its positions are counted)
VLM_MODEL_TYPES = {
    "idefics3": "idefics3",
    "smolvlm": "idefics3",
    "qwen2_vl": "qwen_vl",
    "qwen2_5_vl": "qwen_vl",
}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILE = "tokenizer.json"
_SENTINEL = "\x00OCTOPUS_INSTRUCTION\x00"
# Used when the processor has no chat template: a plain turn format.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] | capitalize }}: "
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<image>{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}\n"
    "{% endfor %}{% if add_generation_prompt %}Assistant:{% endif %}"
)


# -- directory checks ----------------------------------------------------------------------------
def hf_model_type(path: str | Path) -> str | None:
    """The ``model_type`` of a Hugging Face model directory, or None when ``path`` holds no
    ``config.json``, an unreadable one, or an Octopus checkpoint's (those errors are the Octopus
    loader's to report)."""
    file = Path(path) / CONFIG_FILE
    if not file.is_file():
        return None
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(data, dict) or "format" in data or not isinstance(data.get("model_type"), str):
        return None
    return data["model_type"]


def is_vlm_checkpoint(path: str | Path) -> bool:
    """Whether ``Octopus.load`` should hand ``path`` to this backend: a Hugging Face model
    directory (an unsupported ``model_type`` included, so the error names the family)."""
    return hf_model_type(path) is not None


def _read_config(path: Path) -> tuple[str, dict]:
    file, data = read_config_json(path)
    if not isinstance(data, dict):
        raise CheckpointError(file, "not a JSON object")
    if data.get("format") == CHECKPOINT_FORMAT:
        raise CheckpointError(file, "an Octopus checkpoint, not a Hugging Face VLM directory")
    model_type = data.get("model_type")
    if model_type not in VLM_MODEL_TYPES:
        raise CheckpointError(
            file,
            f"model_type {model_type!r} is not a supported VLM family (supported: "
            f'{", ".join(sorted(VLM_MODEL_TYPES))}; an Octopus checkpoint has "format": '
            f"{CHECKPOINT_FORMAT!r})",
        )
    return model_type, data


def _check_weight_files(path: Path) -> list[Path]:
    """The safetensors files of a HF directory, each with a readable header (a truncated or
    corrupt file is named here, before transformers reads it)."""
    from safetensors import safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as e:
            raise CheckpointError(index, f"not a valid safetensors index ({e})") from e
        files = [path / n for n in names]
    elif (path / "model.safetensors").is_file():
        files = [path / "model.safetensors"]
    else:
        raise CheckpointError(path / "model.safetensors", "missing (no model.safetensors or its index)")
    for file in files:
        if not file.is_file():
            raise CheckpointError(file, "missing (listed in model.safetensors.index.json)")
        try:
            with safe_open(str(file), framework="pt") as f:
                keys = list(f.keys())
                size = file.stat().st_size
                # the header gives every tensor's byte range: the last must end inside the file
                for key in keys:
                    f.get_slice(key)
        except Exception as e:  # safetensors raises its own error types for bad headers
            raise CheckpointError(file, f"unreadable safetensors file ({e})") from e
        if not keys:
            raise CheckpointError(file, f"holds no tensors ({size} bytes)")
    return files


def functional_token_ids(tokenizer, num_functions: int) -> tuple[list[int], int]:
    """(ids of ``<nexa_0..N-1>``, id of ``<nexa_end>``); ValueError naming the missing ones and
    those that are not special tokens (an ordinary-text token could be split by BPE)."""
    vocab = tokenizer.get_vocab()
    names = [nexa_token(i) for i in range(num_functions)] + [NEXA_END_TOKEN]
    missing = [n for n in names if n not in vocab]
    if missing:
        shown = missing if len(missing) <= 4 else [*missing[:3], "...", missing[-1]]
        raise ValueError(f"has no functional token(s) {', '.join(shown)}")
    special = set(tokenizer.all_special_ids)
    plain = [n for n in names if vocab[n] not in special]
    if plain:
        raise ValueError(f"functional token(s) {plain[:3]} are not special tokens")
    return [vocab[n] for n in names[:-1]], vocab[NEXA_END_TOKEN]


def count_functional_tokens(tokenizer) -> int:
    """How many consecutive ``<nexa_i>`` (from 0) the tokenizer has."""
    vocab = tokenizer.get_vocab()
    n = 0
    while nexa_token(n) in vocab:
        n += 1
    return n


# -- adding the functional tokens to a pretrained VLM --------------------------------------------
def _add_special(tokenizer, tokens: Sequence[str]) -> int:
    existing = list(getattr(tokenizer, "extra_special_tokens", None) or [])
    if isinstance(existing, dict):
        existing = list(existing.values())
    new = existing + [t for t in tokens if t not in existing]
    return tokenizer.add_special_tokens({"extra_special_tokens": new})


@torch.no_grad()
def add_functional_tokens(
    model, tokenizer, num_functions: int, *, texts: dict[int, str] | None = None, init: str = "mean"
) -> list[int]:
    """Add ``<nexa_0..N-1>`` and ``<nexa_end>`` to a VLM's tokenizer as special tokens (ids of
    existing tokens unchanged), grow the LM's embeddings if it has no spare rows, and start the
    new rows (``texts``: function index -> text to average, see functional_tokens.init_token_rows;
    ``<nexa_end>`` starts from the eos token). Returns the ids of ``<nexa_0..N-1>``."""
    if num_functions < 1:
        raise ValueError(f"num_functions must be >= 1, got {num_functions}")
    before = set(tokenizer.get_vocab())
    names = [nexa_token(i) for i in range(num_functions)] + [NEXA_END_TOKEN]
    _add_special(tokenizer, names)
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    vocab = tokenizer.get_vocab()
    fresh = {vocab[n]: (texts or {}).get(i, "") for i, n in enumerate(names[:-1]) if n not in before}
    if NEXA_END_TOKEN not in before:
        fresh[vocab[NEXA_END_TOKEN]] = tokenizer.eos_token or ""
    if fresh:
        init_token_rows(SimpleNamespace(lm=model), tokenizer, fresh, init=init)
    log.info("functional tokens: %d new of %d (tokenizer now %d)", len(fresh), len(names), len(tokenizer))
    return [vocab[n] for n in names[:-1]]


def prepare_vlm(src: str | Path, dst: str | Path, functions: str | Path) -> Path:
    """Copy a local HF VLM directory to ``dst`` with the functional tokens of the registry
    ``functions`` (a functions.yaml) added and that file beside it: a directory
    ``Octopus.load`` accepts (untrained rows: fine-tune it before use)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from octopus_ros.data.registry_data import warm_start_text

    src, dst = Path(src), Path(dst)
    _read_config(src)
    _check_weight_files(src)
    registry = _functions().FunctionRegistry.from_yaml(functions)
    processor = AutoProcessor.from_pretrained(str(src), local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(str(src), local_files_only=True, dtype=torch.float32)
    texts = {s.token: warm_start_text(s) for s in registry}
    add_functional_tokens(model, processor.tokenizer, registry.num_tokens, texts=texts)
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    processor.save_pretrained(str(dst))
    (dst / FUNCTIONS_FILE).write_bytes(Path(functions).read_bytes())
    return dst


# -- the per-family model side ---------------------------------------------------------------
class _Family:
    """How one VLM family encodes a frame and counts positions."""

    rope_axes = 0  # 0: ordinary 1-D positions; 3: Qwen2-VL's (temporal, height, width) M-RoPE

    def __init__(self, model):
        self.model = model

    def image_features(self, inputs: dict, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    def image_positions(self, start: int, enc: VLMImageEncoding) -> tuple[torch.Tensor | None, int]:
        """(positions of the image segment placed at index ``start`` (None: ordinary), offset of
        the text after it: its position minus its index)."""
        return None, 0

    def text_model(self):
        inner = self.model.model
        return getattr(inner, "language_model", None) or inner.text_model


class _Idefics3(_Family):
    def image_features(self, inputs, dtype, device):
        out = self.model.model.get_image_features(
            inputs["pixel_values"].to(device, dtype), inputs["pixel_attention_mask"].to(device)
        )
        return torch.cat(list(out.pooler_output), dim=0)


class _QwenVL(_Family):
    rope_axes = 3

    def image_features(self, inputs, dtype, device):
        out = self.model.model.get_image_features(
            inputs["pixel_values"].to(device, dtype), inputs["image_grid_thw"].to(device)
        )
        return torch.cat(list(out.pooler_output), dim=0)

    def image_positions(self, start, enc):
        merge = self.model.config.vision_config.spatial_merge_size
        ids = torch.tensor(enc.image_ids)
        image = ids == self.model.config.image_token_id
        grid = enc.grid[0]
        vision = self.model.model.get_vision_position_ids(start, grid, 1, merge)  # (3, n image tokens)
        pos = torch.arange(start, start + len(ids)).view(1, -1).repeat(3, 1)
        # image tokens take the grid's positions; text inside the segment (none for Qwen2-VL's
        # processor) would continue after them
        first = int(image.nonzero()[0]) if image.any() else len(ids)
        pos[:, image] = vision
        after = int(vision.max()) + 1 if image.any() else start + len(ids)
        pos[:, first + int(image.sum()) :] = torch.arange(after, after + len(ids) - first - int(image.sum()))
        return pos, int(pos.max()) + 1 - (start + len(ids))


_FAMILIES = {"idefics3": _Idefics3, "qwen_vl": _QwenVL}


@dataclass
class VLMImageEncoding(ImageEncoding):
    """An encoded frame for :class:`VLMOctopus`: ``embeds`` (1, N, D) are the projected image
    features, ``image_ids`` the frame's image segment as the processor writes it (placeholders,
    tile separators), ``grid`` Qwen2-VL's (t, h, w) patch grid."""

    image_ids: tuple[int, ...] = ()
    grid: torch.Tensor | None = None
    rope_delta: int = 0  # position minus index of the text after the image (M-RoPE), with ``prefix``


def _cache_class():
    from transformers import DynamicCache

    class _PositionedCache(DynamicCache):
        """A KV cache that knows the position offset of the next token (M-RoPE)."""

        rope_delta = 0

    return _PositionedCache


class VLMPrompt:
    """The model's chat template, cut around the image and the instruction.

    ``encode_prompt`` gives the ids with ONE placeholder (the image token id) where the frame's
    image segment goes; :class:`VLMOctopus` splices the encoding's segment in.
    """

    def __init__(self, processor, *, system_prompt: str, placeholder_id: int):
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.system_prompt = system_prompt
        self.placeholder_id = placeholder_id
        self.image_token = processor.image_token
        self.template = getattr(processor, "chat_template", None) or FALLBACK_CHAT_TEMPLATE
        self._parts: dict[tuple, tuple[list[int], str, str]] = {}

    def _split(self, context: Sequence) -> tuple[list[int], str, str]:
        key = tuple((c.instruction, c.answer) for c in as_context(context))
        if key not in self._parts:
            messages = []
            if self.system_prompt:
                messages.append({"role": "system", "content": [{"type": "text", "text": self.system_prompt}]})
            for instruction, answer in key:
                messages.append({"role": "user", "content": [{"type": "text", "text": instruction}]})
                messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
            messages.append(
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": _SENTINEL}]}
            )
            text = self.processor.apply_chat_template(
                messages, chat_template=self.template, tokenize=False, add_generation_prompt=True
            )
            if text.count(self.image_token) != 1 or text.count(_SENTINEL) != 1:
                raise ValueError(
                    f"the chat template does not write the image ({self.image_token}) and the "
                    "instruction once each in the user turn"
                )
            before, rest = text.split(self.image_token)
            middle, after = rest.split(_SENTINEL)
            ids = self.tokenizer.encode(before, add_special_tokens=False)
            self._parts[key] = (ids, middle, after)
        return self._parts[key]

    def encode_prompt(self, instruction: str, context: Sequence = ()) -> list[int]:
        before, middle, after = self._split(context)
        rest = self.tokenizer.encode(middle + model_utterance(instruction) + after, add_special_tokens=False)
        return [*before, self.placeholder_id, *rest]

    def system_prefix_ids(self, context: Sequence = ()) -> list[int]:
        """Ids before the image: the part of every prompt with these in-context examples that
        never changes (its KV cache is computed once)."""
        return list(self._split(context)[0])


def _to_pil(image):
    """A uint8 RGB frame (H, W, 3) as a PIL image; ValueError for anything else."""
    from PIL import Image

    if isinstance(image, torch.Tensor):
        image = image.cpu().numpy()
    check_rgb(image)
    return Image.fromarray(np.ascontiguousarray(image))


class VLMOctopus(Octopus):
    """A Hugging Face VLM (SmolVLM / Idefics3, Qwen2-VL, Qwen2.5-VL) as an Octopus: same
    ``encode`` / ``decide`` / ``set_context`` and Decision; see the module docstring.

    Not thread-safe (one per thread), like Octopus. No grounding head and no novelty profile:
    their scores are None / NaN.
    """

    def __init__(
        self,
        *,
        model,
        processor,
        registry,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        max_new_tokens: int = 64,
        jump_forward: bool = True,
        prefix_cache: bool = True,
        prefill_on_encode: bool = True,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT,
        temperature: float = 1.0,
        context: Sequence = (),
        source: str | Path = "<model>",
    ):
        model_type = model.config.model_type
        if model_type not in VLM_MODEL_TYPES:
            raise ValueError(f"model_type {model_type!r} is not a supported VLM family")
        tokenizer = processor.tokenizer
        try:
            nexa_ids, nexa_end = functional_token_ids(tokenizer, registry.num_tokens)
        except ValueError as e:
            raise ValueError(f"the tokenizer {e}") from e
        self.device = resolve_device(device)
        check_precision(precision, self.device)
        self.precision = precision
        self.dtype = activation_dtype(precision)
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.registry = registry
        self.config = model.config
        self.model_type = model_type
        self.source = str(source)
        self.family = _FAMILIES[VLM_MODEL_TYPES[model_type]](model)
        self.vision_encoder = None
        self.max_new_tokens = max_new_tokens
        self.jump_forward = jump_forward
        self.prefix_cache = prefix_cache
        self.prefill_on_encode = prefill_on_encode
        # the static-cache / CUDA-graph decode (model/graph_decode.py) is built for the Octopus LM's
        # 1-D positions; Qwen2-VL's M-RoPE and Idefics3's text model keep the dynamic cache
        self.static_decode, self._static = "off", None
        self.temperature = float(temperature)
        self.novelty = NoveltyProfile()
        self.grounding = None
        self.copier = None  # no span copier trained for these (copied arguments: any span)
        self.resolve_colour = False
        self.resolve_colour_min = 0.5
        self.nexa_token_ids, self.nexa_end_id = nexa_ids, nexa_end
        image_id = processor.image_token_id
        if image_id != model.config.image_token_id:
            raise ValueError(
                f"the processor's image token {processor.image_token!r} has id {image_id} but the "
                f"model's config.json says image_token_id {model.config.image_token_id}"
            )
        self._placeholder = image_id
        self.prompt = VLMPrompt(processor, system_prompt=system_prompt, placeholder_id=image_id)
        self.decoder = ConstrainedDecoder(
            tokenizer=tokenizer,
            nexa_token_ids=nexa_ids,
            nexa_end_id=nexa_end,
            extra_characters=_registry_characters(registry),
        )
        eos = [nexa_end, tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)]
        self._stop_ids = sorted({int(i) for e in eos if e is not None for i in np.atleast_1d(e)})
        self._grammars: dict = {}
        self._cache_cls = _cache_class()
        self.context = ()
        self.set_context(context)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        registry=None,
        vision_backend: str = "torch",
        onnx_path: str | Path | None = None,
        onnx_providers: list[str] | None = None,
        **options,
    ) -> VLMOctopus:
        """Load a HF VLM directory (local files only). Every problem is a CheckpointError naming
        the file: a missing or unreadable config.json, weights, tokenizer or processor file, an
        unsupported model_type, weights that do not fit the config, a tokenizer without the
        functional tokens or with fewer than the registry needs. ``registry``: a
        FunctionRegistry or functions.yaml path (default: the directory's functions.yaml).
        Only the torch vision backend exists for these models."""
        from transformers import AutoModelForImageTextToText, AutoProcessor

        path = Path(path)
        model_type, _ = _read_config(path)
        if vision_backend != "torch" or onnx_path is not None:
            raise ValueError(f"the {model_type} backend runs its vision tower in torch only (vision_backend)")
        weight_files = _check_weight_files(path)
        tok_file = path / TOKENIZER_FILE
        if not tok_file.is_file():
            raise CheckpointError(tok_file, "missing")
        if registry is None:
            if not (path / FUNCTIONS_FILE).is_file():
                raise CheckpointError(path / FUNCTIONS_FILE, "missing (pass registry= explicitly)")
            registry = path / FUNCTIONS_FILE
        registry_file = path / FUNCTIONS_FILE
        if isinstance(registry, str | Path):
            registry_file = Path(registry)
            try:
                registry = _functions().FunctionRegistry.from_yaml(registry)
            except Exception as e:
                raise CheckpointError(registry_file, f"invalid function registry: {e}") from e
        elif getattr(registry, "source", None):
            registry_file = Path(registry.source)
        try:
            processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except Exception as e:
            raise CheckpointError(_bad_processor_file(path, tok_file), f"unreadable processor ({e})") from e
        tokenizer = processor.tokenizer
        have = count_functional_tokens(tokenizer)
        if have == 0 or NEXA_END_TOKEN not in tokenizer.get_vocab():
            raise CheckpointError(
                tok_file,
                "the tokenizer has no functional tokens (<nexa_0>.., <nexa_end>): add them with "
                f"python -m octopus_ros.model.vlm {path} OUT_DIR --functions functions.yaml",
            )
        # a processor may reset the tokenizer's special-token list when it is built (Idefics3's
        # does): the functional tokens are special again (same ids; nothing is added)
        _add_special(tokenizer, [nexa_token(i) for i in range(have)] + [NEXA_END_TOKEN])
        if registry.num_tokens > have:
            raise CheckpointError(
                registry_file,
                f"the function registry needs {registry.num_tokens} functional tokens but {tok_file} has "
                f"{have}: add the new functions' tokens (python -m octopus_ros.model.vlm) or disable them",
            )
        try:
            functional_token_ids(tokenizer, registry.num_tokens)
        except ValueError as e:
            raise CheckpointError(tok_file, str(e)) from e
        check_precision(precision, resolve_device(device))  # ValueError: a configuration error
        dtype = torch.float32 if precision == "int8" else activation_dtype(precision)
        try:
            model, info = AutoModelForImageTextToText.from_pretrained(
                str(path), local_files_only=True, dtype=dtype, output_loading_info=True
            )
        except Exception as e:
            raise CheckpointError(weight_files[0], f"weights do not load ({e})") from e
        problems = [
            f"{len(info[k])} {k.replace('_', ' ')} e.g. {sorted(map(str, info[k]))[:3]}"
            for k in ("missing_keys", "unexpected_keys", "mismatched_keys")
            if info.get(k)
        ]
        if problems:
            raise CheckpointError(weight_files[0], "weights do not match config.json: " + "; ".join(problems))
        rows = model.get_input_embeddings().num_embeddings
        if len(tokenizer) > rows:
            raise CheckpointError(
                tok_file, f"the tokenizer has {len(tokenizer)} tokens but the LM only {rows} embeddings"
            )
        if precision == "int8":
            model = apply_precision(model, precision="int8", device=device, inplace=True)
        else:
            model = model.to(resolve_device(device))
        try:
            return cls(
                model=model, processor=processor, registry=registry, device=device, precision=precision,
                source=path, **options,
            )  # fmt: skip
        except ValueError as e:
            if "chat template" in str(e) or "image token" in str(e):
                raise CheckpointError(_bad_processor_file(path, tok_file, default_only=True), str(e)) from e
            raise

    # -- image side ----------------------------------------------------------------------------
    def preprocess(self, image) -> dict:
        """The processor's tensors for one frame, its image segment's ids included."""
        pil = _to_pil(image)
        return self.processor(
            images=[pil], text=[self.processor.image_token], return_tensors="pt", add_special_tokens=False
        )

    @torch.no_grad()
    def encode(self, image, *, prefill: bool | None = None) -> VLMImageEncoding:
        """Encode a uint8 RGB frame (H, W, 3): the processor, the vision tower and projector, and
        (``prefill``, default ``prefill_on_encode``) the KV cache of system prompt + image
        segment. Raises ValueError for a malformed image."""
        prefill = self.prefill_on_encode if prefill is None else prefill
        t0 = time.perf_counter()
        inputs = self.preprocess(image)
        t1 = time.perf_counter()
        feats = self.family.image_features(inputs, self.dtype, self.device)
        t2 = time.perf_counter()
        enc = VLMImageEncoding(
            embeds=feats.unsqueeze(0).to(self.device, self.dtype),
            owner=id(self),
            image_ids=tuple(inputs["input_ids"][0].tolist()),
            grid=inputs.get("image_grid_thw"),
        )
        if prefill and self.prefix_cache:
            enc.kv, enc.rope_delta = self._prefill_images(enc)
            enc.prefix = tuple(self._system_ids)
        t3 = time.perf_counter()
        enc.timings = {"preprocess": t1 - t0, "encode": t2 - t1, "image_prefill": t3 - t2, "grounding": 0.0}
        return enc

    # -- LM side -------------------------------------------------------------------------------
    def _cache(self, kv=None, rope_delta: int = 0):
        text_config = self.config.get_text_config()
        cache = (
            self._cache_cls(ddp_cache_data=kv, config=text_config)
            if kv
            else self._cache_cls(config=text_config)
        )
        cache.rope_delta = rope_delta
        return cache

    def _positions(self, start: int, n: int, delta: int) -> torch.Tensor:
        pos = torch.arange(start + delta, start + delta + n, device=self.device).view(1, -1)
        return pos.expand(self.family.rope_axes, 1, n) if self.family.rope_axes else pos

    def _lm(self, *, input_ids=None, inputs_embeds=None, past_key_values=None, position_ids=None):
        """One LM pass continuing ``past_key_values``; positions follow its offset."""
        if past_key_values is None:
            past_key_values = self._cache()
        n = (input_ids if input_ids is not None else inputs_embeds).shape[1]
        if position_ids is None:
            position_ids = self._positions(past_key_values.get_seq_length(), n, past_key_values.rope_delta)
        return self.model(
            input_ids=input_ids,
            inputs_embeds=inputs_embeds,
            position_ids=position_ids,
            past_key_values=past_key_values,
            use_cache=True,
            logits_to_keep=1,
        )

    def system_kv(self):
        if self._system_kv is None:
            ids = torch.tensor([self._system_ids], device=self.device)
            with torch.no_grad():
                out = self._lm(input_ids=ids, past_key_values=self._cache())
            self._system_kv = self._kv_of(out.past_key_values)
        return self._system_kv

    def _segment(self, ids_after: list[int], enc: VLMImageEncoding, start: int):
        """(embeddings, positions, offset after) of the image segment + ``ids_after`` placed at
        index ``start``."""
        ids = torch.tensor([list(enc.image_ids) + list(ids_after)], device=self.device)
        embeds = self.model.get_input_embeddings()(ids).to(self.dtype)
        mask = (ids == self._placeholder).unsqueeze(-1)
        feats = enc.embeds.reshape(-1, embeds.shape[-1]).to(embeds.dtype)
        if int(mask.sum()) != feats.shape[0]:
            raise ValueError(
                f"{int(mask.sum())} image tokens in the prompt but {feats.shape[0]} image features"
            )
        embeds = embeds.masked_scatter(mask, feats)
        image_pos, delta = self.family.image_positions(start, enc)
        n_img = len(enc.image_ids)
        if image_pos is None:
            positions = self._positions(start, ids.shape[1], 0)
        else:
            after = self._positions(start + n_img, len(ids_after), delta)
            positions = torch.cat([image_pos.to(self.device).unsqueeze(1), after], dim=-1)
        return embeds, positions, delta

    def _prefill_images(self, enc: VLMImageEncoding):
        cache = self._cache(self.system_kv())
        embeds, positions, delta = self._segment([], enc, len(self._system_ids))
        out = self._lm(inputs_embeds=embeds, position_ids=positions, past_key_values=cache)
        return self._kv_of(out.past_key_values), delta

    def _prefill(self, ids: list[int], enc: ImageEncoding, hidden: bool | None = None):
        """Prefill the prompt (``ids`` with one image placeholder): from the encoding's KV when
        it was made here on the same prefix, else from the system prefix's, else from nothing.
        No hidden state (``hidden`` is ignored): a VLM has no request profile."""
        if not isinstance(enc, VLMImageEncoding):
            raise ValueError(f"expected an encoding made by this VLM backend, got {type(enc).__name__}")
        cut = ids.index(self._placeholder)
        prefix, suffix = ids[:cut], ids[cut + 1 :]
        if enc.kv is not None and enc.owner == id(self) and tuple(prefix) == enc.prefix:
            cache = self._cache(enc.kv, enc.rope_delta)
            out = self._lm(input_ids=torch.tensor([suffix], device=self.device), past_key_values=cache)
        else:
            if self.prefix_cache and prefix == self._system_ids:
                cache = self._cache(self.system_kv())
            else:
                cache = self._cache()
                if prefix:
                    self._lm(input_ids=torch.tensor([prefix], device=self.device), past_key_values=cache)
            embeds, positions, delta = self._segment(suffix, enc, len(prefix))
            out = self._lm(inputs_embeds=embeds, position_ids=positions, past_key_values=cache)
            cache.rope_delta = delta
        return out.logits[0, -1], out.past_key_values, None  # no request profile for a VLM

    def _decide_generate(self, ids, enc, allowlist, limit, timings, mode) -> Decision:
        """Unconstrained greedy decoding (modes "generate" and "plain"): the same prefill, then one
        token per pass with no grammar until ``<nexa_end>`` (generate) or eos, parsed afterwards.
        The baseline the constrained decoder is measured against."""
        t0 = time.perf_counter()
        logits, cache, _ = self._prefill(ids, enc)
        stop = set(self._stop_ids) if mode == "generate" else set(self._stop_ids) - {self.nexa_end_id}
        t1 = time.perf_counter()
        new, scores = [int(torch.argmax(logits))], [logits.float()]
        while new[-1] not in stop and len(new) < limit:
            out = self._lm(input_ids=torch.tensor([[new[-1]]], device=self.device), past_key_values=cache)
            scores.append(out.logits[0, -1].float())
            new.append(int(torch.argmax(scores[-1])))
        t2 = time.perf_counter()
        log_conf = sum(
            float(torch.log_softmax(s / self.temperature, dim=-1)[t])
            for t, s in zip(new, scores, strict=True)
        )
        while new and new[-1] in stop and new[-1] != self.nexa_end_id:
            new.pop()
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        timings.update(
            prefill=t1 - t0, decode=t2 - t1, tokens=float(len(scores)), forward_passes=float(len(scores) - 1)
        )
        call, error = _parse("call" if mode == "generate" else "plain", text, self.registry, allowlist)
        confidence = float(np.exp(log_conf)) if error is None else 0.0
        return Decision(call, error, confidence, text, timings)


def _bad_processor_file(path: Path, default: Path, *, default_only: bool = False) -> Path:
    """The tokenizer/processor file that is not valid JSON (the one to name), else ``default``."""
    if default_only:
        for name in ("chat_template.jinja", "chat_template.json", "processor_config.json"):
            if (path / name).is_file():
                return path / name
        return default
    for file in sorted(path.glob("*.json")):
        if file.name == CONFIG_FILE or not any(k in file.name for k in ("token", "processor", "chat")):
            continue
        try:
            json.loads(file.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, OSError):
            return file
    return default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m octopus_ros.model.vlm",
        description="Add the functional tokens of a function registry to a local Hugging Face VLM "
        "(SmolVLM/Idefics3, Qwen2-VL, Qwen2.5-VL) and write a directory Octopus.load accepts.",
    )
    parser.add_argument("src", help="the pretrained VLM directory (config.json, weights, processor)")
    parser.add_argument("dst", help="output directory")
    parser.add_argument("--functions", required=True, help="the functions.yaml to add tokens for")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        out = prepare_vlm(args.src, args.dst, args.functions)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (functional-token rows untrained: fine-tune before use)")
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = [
    "VLM_MODEL_TYPES",
    "MODES",
    "VLMImageEncoding",
    "VLMOctopus",
    "VLMPrompt",
    "add_functional_tokens",
    "count_functional_tokens",
    "functional_token_ids",
    "hf_model_type",
    "is_vlm_checkpoint",
    "prepare_vlm",
]
