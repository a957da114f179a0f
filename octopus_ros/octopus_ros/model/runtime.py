"""Octopus: the inference runtime (model + tokenizer + function registry + device/precision).

    octopus = Octopus.load("models/octopus_tiny", precision="int8")
    enc = octopus.encode(rgb)                 # ahead of time: vision + image-token prefill
    d = octopus.decide("pick up the red cup", enc, allowlist=("grasp", "no_action"))
    d.call, d.error, d.confidence, d.raw_text, d.timings

Latency tricks:
- the KV cache of the fixed system prompt (with the fixed in-context examples, if any: see
  :meth:`Octopus.set_context`) is computed once and reused by every call;
- ``encode`` also prefills the image tokens (they follow the system prompt), so ``decide`` on
  a pre-encoded frame only prefills the user's words;
- constrained decoding jumps over grammar-forced text (see decoding.py).

``decide`` never raises for bad model output: it returns a Decision with ``error`` set.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from octopus_ros.lean.copier import SpanCopier, apply_copy, copier_weights_sha, copy_span, encode_with_offsets
from octopus_ros.lean.decision import (
    Decision,
    canonical_context,
    decoded_decision,
    finish_decision,
    named_objects,
    request_novelty,
    words_to_understand,
)
from octopus_ros.lean.decision import parse_text as _parse
from octopus_ros.lean.decision import registry_characters as _registry_characters
from octopus_ros.lean.novelty import check_request_profile

from .checkpoint import CONFIG_FILE, CheckpointError, load_checkpoint
from .decoding import ConstrainedDecoder, DecodeResult
from .graph_decode import StaticDecoder, resolve_static_decode
from .grounding import GROUNDING_META, Grounding, GroundingError, GroundingMaps, GroundingModel
from .modeling import OctopusModel
from .novelty import IMAGE_PROFILE_FILE, REQUEST_PROFILE_FILE, NoveltyProfile
from .precision import activation_dtype, apply_precision, resolve_device
from .preprocess import ImagePreprocessor
from .prompt import ContextExample, PromptFormat, check_prompt_template, model_utterance

log = logging.getLogger(__name__)

MODES = ("constrained", "generate", "plain")
VISION_BACKENDS = ("torch", "onnx", "onnx-int8")

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (keys, values), each (1, heads, T, head_dim)


@dataclass
class ImageEncoding:
    """An encoded camera frame, reusable across instructions.

    ``kv`` holds the LM's KV cache of system prompt + image tokens (None if not prefilled);
    ``prefix`` the token ids it covers before the image tokens (the system prompt and the fixed
    in-context examples of that moment), so a prompt that starts otherwise never uses it.
    """

    embeds: torch.Tensor  # (1, K, D)
    kv: KV | None = None
    timings: dict[str, float] = field(default_factory=dict)  # preprocess, encode, image_prefill (s)
    owner: int = 0  # id() of the Octopus that made it; its KV is only valid there
    novelty: float = float("nan")  # image novelty (model/novelty.py); NaN without an image profile
    grounding: GroundingMaps | None = None  # what the grounding head saw (None: no head, or ONNX vision)
    prefix: tuple[int, ...] = ()  # ids before the image tokens that ``kv`` covers


def _functions():
    """The function-registry room, imported lazily (it is optional for model training)."""
    from octopus_ros import functions

    return functions


class _FirstTokenTimer:
    """A transformers streamer that records when the first new token arrives."""

    def __init__(self):
        self.calls = 0
        self.first: float | None = None

    def put(self, value):
        self.calls += 1
        if self.calls == 2 and self.first is None:  # call 1 is the prompt
            self.first = time.perf_counter()

    def end(self):
        pass


class Octopus:
    """Loaded model + tokenizer + function registry + device/precision, ready to decide.

    Not thread-safe: use one Octopus per thread (the node's engine owns it in one worker).
    """

    def __init__(
        self,
        *,
        model: OctopusModel,
        tokenizer,
        registry,
        device: str | torch.device = "cpu",
        precision: str = "fp32",
        vision_encoder=None,
        max_new_tokens: int = 64,
        jump_forward: bool = True,
        prefix_cache: bool = True,
        prefill_on_encode: bool = True,
        inplace: bool = False,
        novelty: NoveltyProfile | None = None,
        grounding: GroundingModel | None = None,
        copier: SpanCopier | None = None,
        context: Sequence = (),
        static_decode: str = "auto",
    ):
        """``vision_encoder``: optional replacement of the torch image side, e.g. an
        :class:`OnnxVisionEncoder` (anything with ``encode_image(pixels) -> (B, K, D)``).

        The model is put in eval mode. Other precisions/devices than fp32 on CPU convert a copy
        of it, unless ``inplace`` (``load`` owns its model and converts in place).
        ``novelty``: the checkpoint's novelty scorers (``load`` reads them; none: scores are NaN).
        ``grounding``: the checkpoint's grounding head (model/grounding.py; ``load`` reads it when
        present). It runs in ``encode`` on the tower's own feature maps (torch vision only).
        ``context``: fixed in-context examples for every decision (see :meth:`set_context`).
        ``static_decode``: how constrained decoding feeds the LM after the prefill: ``"graph"``
        (a static KV cache, one-token passes replayed as a CUDA graph: model/graph_decode.py),
        ``"eager"`` (the same static cache without the graph), ``"off"`` (the dynamic cache), or
        ``"auto"`` (default: graph on CUDA, off elsewhere, where it gains nothing).
        """
        config = model.config
        config.require_token_ids()
        n_functions = len(config.nexa_token_ids)
        if registry.num_tokens > n_functions:
            raise ValueError(
                f"the function registry needs {registry.num_tokens} functional tokens but the model has {n_functions}"
            )
        self.device = resolve_device(device)
        self.precision = precision
        self.dtype = activation_dtype(precision)
        if (precision != "fp32" or self.device.type != "cpu") and not inplace:
            model = copy.deepcopy(model)
        self.model = apply_precision(model, precision=precision, device=self.device, inplace=True)
        self.tokenizer = tokenizer
        self.registry = registry
        self.config = config
        self.vision_encoder = vision_encoder
        self.max_new_tokens = max_new_tokens
        self.jump_forward = jump_forward
        self.prefix_cache = prefix_cache
        self.prefill_on_encode = prefill_on_encode
        self.static_decode = resolve_static_decode(static_decode, self.device)
        self._static: StaticDecoder | None = None
        self.temperature = float(getattr(config, "temperature", 1.0) or 1.0)  # calibrated T, 1 when absent
        self.novelty = novelty or NoveltyProfile()
        self.grounding = grounding
        self.copier = copier  # the span copier of copied arguments (lean/copier.py), or None
        # colourless references ("the cup") take the colour the grounding head sees (see decide)
        self.resolve_colour = True
        self.resolve_colour_min = 0.5  # the head's probability of the colour it would write
        # names_object arguments take only the objects the request names (lean/decision.named_objects)
        self.narrow_objects = True
        if grounding is not None:
            grounding.head.to(self.device)
        self.prompt = PromptFormat(tokenizer=tokenizer, config=config)
        self.preprocessor = ImagePreprocessor(config=config.vision)
        self.decoder = ConstrainedDecoder(
            tokenizer=tokenizer,
            nexa_token_ids=config.nexa_token_ids,
            nexa_end_id=config.nexa_end_id,
            extra_characters=_registry_characters(registry),
        )
        self._grammars: dict[tuple[str, ...] | None, Any] = {}
        self._image_ids = [config.image_token_id] * config.num_image_tokens
        self.context: tuple[ContextExample, ...] = ()
        self.set_context(context)

    # -- in-context examples -------------------------------------------------------------------
    def canonical_context(self, context: Sequence) -> tuple[ContextExample, ...]:
        """``context`` (ContextExamples or (instruction, call text) pairs) with every answer
        checked against the registry and written in the model's ``<nexa_i>(...)<nexa_end>`` form
        (lean/decision.py, both runtimes). ValueError naming the first bad example."""
        return canonical_context(self.registry, context)

    def set_context(self, context: Sequence = ()) -> None:
        """Fix the in-context examples of every later decision (``()``: none). They join the
        cached system prefix; encodings made before keep their own prefix and are prefilled
        again where they no longer match. ValueError (naming the example) for a bad one; the
        previous examples then stay."""
        examples = self.canonical_context(context)
        system_ids = self.prompt.system_prefix_ids(examples)  # ValueError: template without context
        self.context = examples
        self._system_ids = system_ids
        self._system_kv = None
        if self.prefix_cache:
            self.system_kv()  # computed now, so the first decision is not slower than the rest

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
    ) -> Octopus:
        """Load a checkpoint directory.

        ``registry``: a FunctionRegistry or a functions.yaml path (default: the checkpoint's copy).
        ``vision_backend``: "torch", "onnx" or "onnx-int8" (onnxruntime on CPU). The ONNX file is
        ``onnx_path``, else ``vision.onnx`` / ``vision.int8.onnx`` in the checkpoint, else it is
        exported to a temporary directory. ``onnx_providers``: onnxruntime execution providers
        (default CPU; e.g. ``["CUDAExecutionProvider"]`` on a Jetson). ``options`` go to the
        constructor (max_new_tokens, jump_forward, prefix_cache, prefill_on_encode).

        A Hugging Face VLM directory (config.json with a ``model_type``: SmolVLM / Idefics3,
        Qwen2-VL, Qwen2.5-VL) loads the native VLM backend instead (model/vlm.py).
        """
        from .vlm import VLMOctopus, is_vlm_checkpoint

        if cls is Octopus and is_vlm_checkpoint(path):
            return VLMOctopus.load(
                path, device=device, precision=precision, registry=registry, vision_backend=vision_backend,
                onnx_path=onnx_path, onnx_providers=onnx_providers, **options,
            )  # fmt: skip
        # int8 on the CPU is built directly in int8 from the weights file, never as the fp32 model;
        # with an ONNX image side too when its file exists (one that has to be exported first is
        # exported from the fp32 tower)
        direct_int8 = (
            precision == "int8"
            and resolve_device(device).type == "cpu"
            and (vision_backend == "torch" or _onnx_encoder_file(path, vision_backend, onnx_path).is_file())
        )
        ckpt = load_checkpoint(path, precision="int8" if direct_int8 else "fp32")
        if registry is None:
            if ckpt.functions_path is None:
                raise CheckpointError(Path(path) / "functions.yaml", "missing (pass registry= explicitly)")
            registry = ckpt.functions_path
        registry_source = None
        if isinstance(registry, str | Path):
            registry_source = registry
            try:
                registry = _functions().FunctionRegistry.from_yaml(registry)
            except Exception as e:
                raise CheckpointError(registry, f"invalid function registry: {e}") from e
        n_functions = len(ckpt.model.config.nexa_token_ids or ())
        if registry.num_tokens > n_functions:
            where = registry_source or Path(path) / "functions.yaml"
            raise CheckpointError(
                where,
                f"the function registry needs {registry.num_tokens} functional tokens but the model "
                f"{Path(path) / CONFIG_FILE} has {n_functions}: add the new functions' tokens to the model "
                "(octopus_finetune) or disable them",
            )
        try:
            check_prompt_template(ckpt.model.config.prompt_template)
        except ValueError as e:
            raise CheckpointError(Path(path) / CONFIG_FILE, str(e)) from e
        novelty = NoveltyProfile.load(path)
        hidden = ckpt.model.lm.get_input_embeddings().embedding_dim
        if novelty.image is not None and novelty.image.mean.shape[0] != hidden:
            raise CheckpointError(
                Path(path) / IMAGE_PROFILE_FILE,
                f"image profile has {novelty.image.mean.shape[0]} dims but the image tokens {hidden}",
            )
        check_request_profile(novelty.request, hidden, Path(path) / REQUEST_PROFILE_FILE)
        grounding = None
        if GroundingModel.exists(path):
            try:
                grounding = GroundingModel.load(path)
            except GroundingError as e:
                raise CheckpointError(e.path, str(e).removeprefix(f"{e.path}: ")) from e
            size = ckpt.model.vision.image_size
            with torch.no_grad():
                _, _, feature_maps = ckpt.model.vision.forward_features(torch.zeros(1, 3, size, size))
            try:
                grounding.check_maps(feature_maps)
            except ValueError as e:
                raise CheckpointError(
                    Path(path) / GROUNDING_META, f"{e} (trained for another vision tower?)"
                ) from e
        vision_encoder = None
        if vision_backend != "torch":
            vision_encoder = _load_onnx_encoder(ckpt, vision_backend, onnx_path, onnx_providers)
        return cls(
            model=ckpt.model,
            tokenizer=ckpt.tokenizer,
            registry=registry,
            device=device,
            precision=precision,
            vision_encoder=vision_encoder,
            inplace=True,
            novelty=novelty,
            grounding=grounding,
            copier=SpanCopier.load(path, weights_sha256=copier_weights_sha(path)),
            **options,
        )

    # -- image side ----------------------------------------------------------------------------
    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """(H, W, 3) uint8 RGB -> (1, 3, S, S) normalised pixels. ValueError on a bad image."""
        return self.preprocessor(image)

    @torch.no_grad()
    def encode(self, image: np.ndarray | torch.Tensor, *, prefill: bool | None = None) -> ImageEncoding:
        """Encode a frame (RGB uint8 (H, W, 3), or pixels (1, 3, S, S) already preprocessed).

        ``prefill`` (default: the ``prefill_on_encode`` setting) also computes the KV cache of
        system prompt + image tokens, so a later constrained decision only prefills the user's
        words. Raises ValueError for a malformed image.
        """
        prefill = self.prefill_on_encode if prefill is None else prefill
        t0 = time.perf_counter()
        if isinstance(image, torch.Tensor) and image.dtype != torch.uint8:
            pixels = image
        else:
            pixels = self.preprocess(image)
        if pixels.ndim != 4 or pixels.shape[0] != 1:
            raise ValueError(f"encode takes one frame, got pixels of shape {tuple(pixels.shape)}")
        t1 = time.perf_counter()
        maps = None
        if self.vision_encoder is not None:
            embeds = self.vision_encoder.encode_image(pixels)
        elif self.grounding is not None:  # the same pass, keeping the tower's maps for the head
            _, tokens, feature_maps = self.model.vision.forward_features(pixels.to(self.device, self.dtype))
            embeds = self.model.connector(tokens)
        else:
            embeds = self.model.encode_image(pixels.to(self.device, self.dtype))
        embeds = embeds.to(self.device, self.dtype)  # (1, K, D)
        t_ground = time.perf_counter()
        if self.grounding is not None and self.vision_encoder is None:
            maps = self.grounding.maps(feature_maps, pixels)
        t2 = time.perf_counter()
        kv = self._prefill_images(embeds) if prefill and self.prefix_cache else None
        prefix = tuple(self._system_ids) if kv is not None else ()
        t3 = time.perf_counter()
        timings = {
            "preprocess": t1 - t0,
            "encode": t2 - t1,
            "image_prefill": t3 - t2,
            "grounding": t2 - t_ground,
        }
        novelty = self.novelty.image_score(embeds)
        return ImageEncoding(
            embeds=embeds,
            kv=kv,
            timings=timings,
            owner=id(self),
            novelty=novelty,
            grounding=maps,
            prefix=prefix,
        )

    def ground(self, encoding: ImageEncoding, phrase: str) -> Grounding | None:
        """Is the object ``phrase`` names in the encoded frame? None when this model has no
        grounding head or the frame was encoded without it (ONNX vision); see model/grounding.py."""
        if self.grounding is None or encoding.grounding is None:
            return None
        return self.grounding.ground(encoding.grounding, phrase)

    # -- KV prefix -----------------------------------------------------------------------------
    def _lm(self, **kwargs):
        return self.model.lm(use_cache=True, logits_to_keep=1, **kwargs)

    def _cache(self, kv: KV | None):
        from transformers import DynamicCache

        # The stored tensors are never written: the cache concatenates new keys onto copies.
        return (
            DynamicCache(ddp_cache_data=kv, config=self.model.lm.config)
            if kv
            else DynamicCache(config=self.model.lm.config)
        )

    @staticmethod
    def _kv_of(cache) -> KV:
        return [(layer.keys, layer.values) for layer in cache.layers]

    def system_kv(self) -> KV:
        """KV cache of the system prompt and the fixed in-context examples (computed on first use)."""
        if self._system_kv is None:
            ids = torch.tensor([self._system_ids], device=self.device)
            with torch.no_grad():
                out = self._lm(input_ids=ids, past_key_values=self._cache(None))
            self._system_kv = self._kv_of(out.past_key_values)
        return self._system_kv

    def _prefill_images(self, embeds: torch.Tensor) -> KV:
        out = self._lm(inputs_embeds=embeds, past_key_values=self._cache(self.system_kv()))
        return self._kv_of(out.past_key_values)

    def _prefill(self, ids: list[int], enc: ImageEncoding, hidden: bool | None = None):
        """Run the prompt through the LM. Returns (last logits (V,), cache, the LM's last hidden
        state at the last position (D,) as float32 numpy: what the request profile reads; None
        unless ``hidden``, by default whether the model has a request profile).

        A cached KV is used only for the exact ids it was computed on: the encoding's own prefix
        (+ image tokens), else the current system prefix, else nothing.
        """
        hidden = self.novelty.request is not None if hidden is None else hidden
        S, K, P = len(self._system_ids), len(self._image_ids), len(enc.prefix)
        if (
            enc.kv is not None
            and enc.owner == id(self)
            and P > 0
            and tuple(ids[:P]) == enc.prefix
            and ids[P : P + K] == self._image_ids
        ):
            cache = self._cache(enc.kv)
            out = self._lm(
                input_ids=torch.tensor([ids[P + K :]], device=self.device),
                past_key_values=cache,
                output_hidden_states=hidden,
            )
        elif self.prefix_cache and ids[:S] == self._system_ids:
            cache = self._cache(self.system_kv())
            embeds = self.model.embed_inputs(torch.tensor([ids[S:]], device=self.device), enc.embeds)
            out = self._lm(inputs_embeds=embeds, past_key_values=cache, output_hidden_states=hidden)
        else:
            embeds = self.model.embed_inputs(torch.tensor([ids], device=self.device), enc.embeds)
            out = self._lm(
                inputs_embeds=embeds, past_key_values=self._cache(None), output_hidden_states=hidden
            )
        state = out.hidden_states[-1][0, -1].float().cpu().numpy() if hidden else None
        return out.logits[0, -1], out.past_key_values, state

    def request_hidden(self, instruction: str, image: np.ndarray | ImageEncoding) -> np.ndarray:
        """The LM's last hidden state (D,) where it picks the function for ``instruction`` on
        ``image``, exactly as :meth:`decide` computes it (the fixed in-context examples
        included): what a request profile is fitted on (training/novelty_profile.py)."""
        with torch.no_grad():
            enc = image if isinstance(image, ImageEncoding) else self.encode(image)
            ids = self.prompt.encode_prompt(model_utterance(instruction), self.context)
            return self._prefill(ids, enc, hidden=True)[2]

    # -- deciding ------------------------------------------------------------------------------
    def grammar(self, allowlist: Sequence[str] | None = None):
        """The (cached) call grammar for an allowlist of function names (None = all enabled)."""
        key = None if allowlist is None else tuple(sorted(allowlist))
        if key not in self._grammars:
            self._grammars[key] = _functions().CallGrammar(self.registry, allowlist=key)
        return self._grammars[key]

    @torch.no_grad()
    def decide(
        self,
        instruction: str,
        image: np.ndarray | ImageEncoding,
        *,
        allowlist: Sequence[str] | None = None,
        mode: str = "constrained",
        max_new_tokens: int | None = None,
        keep_logits: bool = False,
        context: Sequence | None = None,
    ) -> Decision:
        """Turn an instruction + image (or a pre-computed :class:`ImageEncoding`) into a call.

        ``mode``: "constrained" (functional tokens under the call grammar, jump-forward),
        "generate" (plain ``transformers.generate`` with functional tokens, then parsed) or
        "plain" (the LM writes ``name(args)``/JSON text, parsed by ``parse_plain``).
        The confidence is a softmax at the checkpoint's calibrated ``temperature`` (1 when absent).
        ``keep_logits`` (constrained mode) keeps each free token's logits in ``free_logits``.
        ``context``: in-context examples for this decision only ((instruction, call) pairs or
        ContextExamples, checked like :meth:`set_context`; ``()`` for none); None = the fixed ones.
        Other examples than the fixed ones cannot use the cached prefix (the prompt is prefilled).
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        self.registry.allowed_names(allowlist)  # unknown names: ValueError (a configuration error)
        written, instruction = instruction, model_utterance(instruction)  # what prompt, copier, grammar read
        t0 = time.perf_counter()
        timings = {"preprocess": 0.0, "encode": 0.0}
        if isinstance(image, ImageEncoding):
            enc = image
        else:
            enc = self.encode(image, prefill=None if mode == "constrained" else False)
            timings.update(enc.timings)
        examples = self.context if context is None else self.canonical_context(context)
        ids = self.prompt.encode_prompt(instruction, examples)
        limit = max_new_tokens or self.max_new_tokens
        allow = None if allowlist is None else tuple(allowlist)
        if mode == "constrained":
            decision = self._decide_constrained(ids, enc, allow, limit, timings, instruction, keep_logits)
        else:
            decision = self._decide_generate(ids, enc, allow, limit, timings, mode)
        decision.timings["total"] = time.perf_counter() - t0
        decision.mode = mode
        # novelty, grounding, copies as written (lean/decision.py)
        return finish_decision(self, decision, enc, instruction, written)

    def _words_to_understand(self, instruction: str, decision: Decision) -> str:
        """The utterance without the spans the call copies (lean/decision.py, both runtimes)."""
        return words_to_understand(self.registry, instruction, decision)

    def _decide_constrained(
        self, ids, enc, allowlist, limit, timings, utterance: str, keep_logits: bool = False
    ) -> Decision:
        t0 = time.perf_counter()
        logits, cache, hidden = self._prefill(ids, enc)
        t1 = time.perf_counter()

        static = self._static_decoder(len(ids), limit)
        if static is not None:  # the same passes, on the static cache
            static.load(self._kv_of(cache))
            step = static.step
        else:

            def step(new_ids: list[int]) -> torch.Tensor:
                out = self._lm(input_ids=torch.tensor([new_ids], device=self.device), past_key_values=cache)
                return out.logits[0, -1]

        # copied arguments: spans of these words; with a span copier, the one span it picks
        grammar, span = copy_span(
            self.copier, self.grammar(allowlist), utterance,
            lambda text: encode_with_offsets(self.tokenizer, text), self._copier_embed,
            named_objects(self, utterance),
        )  # fmt: skip
        res: DecodeResult = self.decoder.decode(
            logits,
            step,
            grammar,
            max_new_tokens=limit,
            jump_forward=self.jump_forward,
            temperature=self.temperature,
            keep_logits=keep_logits,
        )
        t2 = time.perf_counter()
        timings.update(prefill=t1 - t0, decode=t2 - t1)
        decision = decoded_decision(res, self.registry, allowlist, timings)
        apply_copy(decision, span, self.registry)  # a decision without a call is left as it is
        decision.request_novelty = request_novelty(self.novelty.request, decision, hidden)
        return decision

    def _static_decoder(self, prompt_len: int, limit: int) -> StaticDecoder | None:
        """The static-cache decoder for a prompt of ``prompt_len`` tokens and up to ``limit`` new
        ones (built on first use); None with ``static_decode`` off or when they do not fit."""
        if self.static_decode == "off":
            return None
        if self._static is None:
            self._static = StaticDecoder(self.model.lm, graph=self.static_decode == "graph")
        return self._static if self._static.fits(prompt_len, limit) else None

    @torch.no_grad()
    def _copier_embed(self, ids: list[int]) -> np.ndarray:
        """The LM's input embeddings of ``ids`` as float32 numpy (what the span copier reads)."""
        table = self.model.lm.get_input_embeddings()
        return table(torch.tensor(ids, device=self.device)).float().cpu().numpy()  # int8: no .weight

    def _decide_generate(self, ids, enc, allowlist, limit, timings, mode) -> Decision:
        """``transformers.generate`` on the same prompt, with the same cached system-prompt KV as
        the constrained path (when the prompt starts with it). ``decode`` runs from the first new
        token to the end, confidence included, and ``forward_passes`` counts the passes after the
        prefill, as in constrained mode."""
        cfg = self.config
        t0 = time.perf_counter()
        embeds = self.model.embed_inputs(torch.tensor([ids], device=self.device), enc.embeds)  # (1, T, D)
        stop = [cfg.eos_token_id] if mode == "plain" else [cfg.nexa_end_id, cfg.eos_token_id]
        timer = _FirstTokenTimer()
        S = len(self._system_ids)
        cache = None
        if self.prefix_cache and ids[:S] == self._system_ids and len(ids) > S:
            cache = self._cache(self.system_kv())  # generate feeds only the positions after it
        out = self.model.lm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long, device=self.device),
            past_key_values=cache,
            max_new_tokens=limit,
            do_sample=False,
            eos_token_id=stop,
            pad_token_id=cfg.pad_token_id,
            return_dict_in_generate=True,
            output_scores=True,
            streamer=timer,
        )
        new = out.sequences[0].tolist()
        n = min(len(new), len(out.scores))
        log_conf = 0.0
        if n:
            rows = torch.stack([row[0].float() for row in out.scores[:n]]).cpu() / self.temperature
            chosen = torch.tensor(new[:n])[:, None]
            log_conf = float(torch.log_softmax(rows, dim=1).gather(1, chosen).double().sum())
        t2 = time.perf_counter()
        while new and new[-1] in (cfg.eos_token_id, cfg.pad_token_id):
            new.pop()
        text = self.tokenizer.decode(new, skip_special_tokens=False)
        t1 = timer.first or t2
        timings.update(
            prefill=t1 - t0,
            decode=t2 - t1,
            tokens=float(len(out.scores)),
            forward_passes=float(max(len(out.scores) - 1, 0)),
        )
        call, error = _parse("call" if mode == "generate" else "plain", text, self.registry, allowlist)
        confidence = float(np.exp(log_conf)) if error is None else 0.0
        return Decision(call, error, confidence, text, timings)


# -- helpers -------------------------------------------------------------------------------------
def _onnx_encoder_name(backend: str) -> str:
    return "vision.int8.onnx" if backend == "onnx-int8" else "vision.onnx"


def _onnx_encoder_file(directory: str | Path, backend: str, onnx_path: str | Path | None) -> Path:
    """The ONNX image encoder a ``vision_backend`` reads: ``onnx_path``, else the checkpoint's own."""
    return Path(onnx_path) if onnx_path else Path(directory) / _onnx_encoder_name(backend)


def _load_onnx_encoder(ckpt, backend: str, onnx_path: str | Path | None, providers: list[str] | None):
    from .checkpoint import WEIGHTS_FILE, sha256_file
    from .onnx_export import OnnxVisionEncoder, export_vision_onnx

    if backend not in VISION_BACKENDS:
        raise ValueError(f"vision_backend must be one of {VISION_BACKENDS}, got {backend!r}")
    sha = sha256_file(ckpt.path / WEIGHTS_FILE)
    name = _onnx_encoder_name(backend)
    path = _onnx_encoder_file(ckpt.path, backend, onnx_path)
    if not path.is_file():
        path = Path(tempfile.mkdtemp(prefix="octopus_onnx_")) / name
        log.warning("no %s in %s: exporting the image encoder to %s", name, ckpt.path, path)
        export_vision_onnx(ckpt.model, path, weights_sha256=sha, quantize_int8=backend == "onnx-int8")
    encoder = OnnxVisionEncoder(path, providers=providers)
    if encoder.weights_sha256 not in (None, sha):
        raise CheckpointError(path, "exported from different weights than model.safetensors (re-export it)")
    return encoder
