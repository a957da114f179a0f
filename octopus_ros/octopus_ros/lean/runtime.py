"""LeanOctopus: the whole Octopus model on onnxruntime, with no torch, transformers or open_clip.

    lean = LeanOctopus.load("models/octopus_tiny")            # reads models/octopus_tiny/onnx
    enc = lean.encode(rgb)                                    # vision + image-token prefill
    d = lean.decide("pick up the red cup", enc, allowlist=("pick_up", "no_action"))

It offers what the node's engine uses of :class:`octopus_ros.model.Octopus` (``encode``,
``decide``, ``ground``, ``set_context``, ``registry``, ``grounding``, ``preprocessor.size``) and
returns the same :class:`~octopus_ros.lean.decision.Decision`. The policy is the torch runtime's
own code, not a copy: the same constrained decoder (lean/decoding.py), prompt format
(lean/prompt.py), grammar (functions/), novelty scores, grounding rules and decision finishing
(lean/decision.py). What differs is only where the numbers come from: the export's graphs
(``python -m octopus_ros.model.onnx_export_all CKPT``; lean/manifest.py) and a numpy image
preprocessor with torch's resampling (lean/preprocess.py).

The latency tricks are the torch runtime's: the system prompt's KV cache is computed once,
``encode`` prefills the image tokens, and the decoder jumps over grammar-forced text. Only the
``constrained`` mode exists here (``generate`` / ``plain`` are transformers' own loops).

Refused at load, with a CheckpointError naming the file: a missing export (the message gives the
export command), a stale one (other weights than config.json records), a damaged or unloadable
graph, a tokenizer whose special-token ids differ from config.json.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import manifest as M
from .copier import SpanCopier, apply_copy, copier_weights_sha, copy_span, encode_with_offsets
from .decision import (
    Decision,
    canonical_context,
    decoded_decision,
    finish_decision,
    named_objects,
    registry_characters,
    request_novelty,
)
from .decoding import ConstrainedDecoder, DecodeResult
from .errors import CONFIG_FILE, CheckpointError
from .grounding import GROUNDING_META, Grounding, GroundingMaps, GroundingRules, read_grounding_meta
from .novelty import (
    IMAGE_PROFILE_FILE,
    REQUEST_PROFILE_FILE,
    TEXT_VOCAB_FILE,
    ImageProfile,
    RequestProfile,
    TextNovelty,
    check_request_profile,
)
from .preprocess import NumpyPreprocessor
from .prompt import ContextExample, PromptFormat, check_prompt_template, model_utterance
from .tokenizer import LeanTokenizer, TokenizerError

log = logging.getLogger(__name__)

KV = tuple[np.ndarray, np.ndarray]  # (keys, values), each (L, 1, H, T, hd)


@dataclass
class ImageEncoding:
    """An encoded camera frame (numpy twin of ``octopus_ros.model.ImageEncoding``)."""

    embeds: np.ndarray  # (1, K, D)
    kv: KV | None = None
    timings: dict[str, float] = field(default_factory=dict)
    owner: int = 0
    novelty: float = float("nan")
    grounding: GroundingMaps | None = None
    prefix: tuple[int, ...] = ()


@dataclass
class PromptConfig:
    """The prompt fields of a checkpoint's config.json that PromptFormat reads."""

    system_prompt: str
    prompt_template: str
    num_image_tokens: int
    image_token_id: int
    nexa_token_ids: list[int]
    nexa_end_id: int
    pad_token_id: int
    eos_token_id: int

    def require_token_ids(self) -> None:  # always set: checked when read
        return None


@dataclass
class NoveltyScores:
    """The checkpoint's novelty scorers (either may be absent: the score is NaN)."""

    text: TextNovelty | None = None
    image: ImageProfile | None = None
    request: RequestProfile | None = None

    def text_score(self, text: str) -> float:
        return self.text.score(text) if self.text is not None else float("nan")

    def image_score(self, embeds: np.ndarray) -> float:
        return self.image.score(embeds) if self.image is not None else float("nan")


@dataclass
class LeanGrounding(GroundingRules):
    """The grounding head: its vocabulary and rules (GroundingRules) and its exported graph."""

    categories: list[dict[str, Any]]
    colours: list[dict[str, Any]]
    threshold: float
    colour_mismatch: tuple[float, float, float, float] | None
    metrics: dict[str, Any]
    meta: dict[str, Any]
    session: Any = None
    inputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        self._index_words()

    def maps(self, feature_maps: Sequence[np.ndarray], pixels: np.ndarray) -> GroundingMaps:
        feeds = dict(zip(self.inputs, (*feature_maps, pixels), strict=True))
        category, pair = self.session.run(None, feeds)
        return GroundingMaps(category=category, pair=pair)


def _session(path: Path, providers: list[str] | None, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own types for a bad graph
        raise CheckpointError(path, f"onnxruntime cannot load this graph: {e}") from e


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / CONFIG_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        model, weights = data["model"], data["weights"]
        _ = (model["prompt_template"], model["num_image_tokens"], model["nexa_token_ids"], weights["sha256"])
    except FileNotFoundError as e:
        raise CheckpointError(path, "missing (not a checkpoint directory?)") from e
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(path, f"not a readable Octopus checkpoint config: {e!r}") from e
    return data


class LeanOctopus:
    """The onnxruntime model + tokenizer + function registry, ready to decide. Not thread-safe
    (the node's engine owns it in one worker thread, as it does the torch Octopus)."""

    MODES = ("constrained",)

    def __init__(
        self,
        *,
        directory: Path,
        export_dir: Path,
        config: dict[str, Any],
        manifest: dict[str, Any],
        precision: str,
        sessions: dict[str, Any],
        embeddings: np.ndarray,
        tokenizer: LeanTokenizer,
        registry,
        novelty: NoveltyScores,
        grounding: LeanGrounding | None,
        copier: SpanCopier | None = None,
        max_new_tokens: int = 64,
        jump_forward: bool = True,
        prefix_cache: bool = True,
        prefill_on_encode: bool = True,
        context: Sequence = (),
    ):
        m = config["model"]
        self.path, self.export_dir = directory, export_dir
        self.precision = precision
        self.device = "cpu"
        self.manifest = manifest
        self.sessions = sessions
        self.embeddings = embeddings  # (V, D)
        self.tokenizer = tokenizer
        self.registry = registry
        self.novelty = novelty
        self.grounding = grounding
        self.copier = copier  # the span copier of copied arguments (lean/copier.py), or None
        self.resolve_colour = True
        self.resolve_colour_min = 0.5
        self.narrow_objects = True  # lean/decision.named_objects
        self.max_new_tokens = max_new_tokens
        self.jump_forward = jump_forward
        self.prefix_cache = prefix_cache
        self.prefill_on_encode = prefill_on_encode
        self.temperature = float(m.get("temperature", 1.0) or 1.0)
        self.config = PromptConfig(
            system_prompt=m["system_prompt"],
            prompt_template=m["prompt_template"],
            num_image_tokens=int(m["num_image_tokens"]),
            image_token_id=int(m["image_token_id"]),
            nexa_token_ids=[int(i) for i in m["nexa_token_ids"]],
            nexa_end_id=int(m["nexa_end_id"]),
            pad_token_id=int(m["pad_token_id"]),
            eos_token_id=int(m["eos_token_id"]),
        )
        v = manifest["vision"]  # the resolved vision config the graphs were exported with
        self.preprocessor = NumpyPreprocessor(
            size=v["image_size"], mode=v.get("resize_mode", "crop"), mean=v["image_mean"], std=v["image_std"]
        )
        lm = manifest["lm"]
        self._empty_kv: KV = (
            np.zeros((lm["num_layers"], 1, lm["num_kv_heads"], 0, lm["head_dim"]), np.float32),
        ) * 2
        self.prompt = PromptFormat(tokenizer=tokenizer, config=self.config)
        self.decoder = ConstrainedDecoder(
            tokenizer=tokenizer,
            nexa_token_ids=self.config.nexa_token_ids,
            nexa_end_id=self.config.nexa_end_id,
            extra_characters=registry_characters(registry),
        )
        self._grammars: dict[tuple[str, ...] | None, Any] = {}
        self._image_ids = [self.config.image_token_id] * self.config.num_image_tokens
        self.context: tuple[ContextExample, ...] = ()
        self.set_context(context)

    # -- loading -------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        export_dir: str | Path | None = None,
        precision: str = "fp32",
        registry=None,
        providers: list[str] | None = None,
        threads: int = 0,
        **options,
    ) -> LeanOctopus:
        """Load a checkpoint directory's ONNX export (``export_dir``, default ``path/onnx``).

        ``precision``: "fp32", "int8" (the export's ``--int8`` graphs) or "int4" (``--int4``:
        the LM's weights in 4 bits, the image side int8). ``registry``: a
        FunctionRegistry or functions.yaml path (default: the checkpoint's copy). ``providers``:
        onnxruntime execution providers (default CPU; ``["CUDAExecutionProvider",
        "CPUExecutionProvider"]`` with onnxruntime-gpu on a Jetson). ``threads``: onnxruntime's
        intra-op threads (0: its default). ``options``: max_new_tokens, jump_forward,
        prefix_cache, prefill_on_encode, context."""
        from octopus_ros.functions import FunctionRegistry

        directory = Path(path)
        export = Path(export_dir) if export_dir else directory / M.DEFAULT_DIR
        config = _read_config(directory)
        manifest = M.read_manifest(export, directory)
        recorded = config["weights"]["sha256"]
        if manifest["weights_sha256"] != recorded:
            raise CheckpointError(
                export / M.MANIFEST_FILE,
                f"stale ONNX export: made from weights {str(manifest['weights_sha256'])[:16]}... but "
                f"{directory / CONFIG_FILE} records {recorded[:16]}...; re-export with: {M.export_command(directory)}",
            )
        variant = manifest["variants"].get(precision)
        if variant is None:
            raise CheckpointError(
                export / M.MANIFEST_FILE,
                f"has no {precision!r} graphs (it has {sorted(manifest['variants'])}); export them with: "
                f"{M.export_command(directory)}",
            )
        m = config["model"]
        try:
            check_prompt_template(m["prompt_template"])
        except ValueError as e:
            raise CheckpointError(directory / CONFIG_FILE, str(e)) from e
        tokens = manifest.get("tokens", {})
        for key in ("image_token_id", "nexa_token_ids", "nexa_end_id"):
            if key in tokens and tokens[key] != m[key]:
                raise CheckpointError(
                    export / M.MANIFEST_FILE,
                    f"{key} {tokens[key]} differs from config.json's {m[key]} (re-export)",
                )
        try:
            tokenizer = LeanTokenizer.from_dir(directory)
        except TokenizerError as e:
            raise CheckpointError(directory / "tokenizer.json", str(e)) from e
        vocab = tokenizer.get_vocab()
        expected = {"<image>": m["image_token_id"], "<nexa_end>": m["nexa_end_id"]}
        expected.update({f"<nexa_{i}>": t for i, t in enumerate(m["nexa_token_ids"])})
        wrong = [
            f"{k} is {vocab.get(k)} in the tokenizer, {v} in config.json"
            for k, v in expected.items()
            if vocab.get(k) != v
        ]
        if wrong:
            raise CheckpointError(directory / "tokenizer.json", "; ".join(wrong))
        if registry is None:
            registry = directory / "functions.yaml"
            if not registry.is_file():
                raise CheckpointError(registry, "missing (pass registry= explicitly)")
        if isinstance(registry, str | Path):
            source = registry
            try:
                registry = FunctionRegistry.from_yaml(registry)
            except Exception as e:
                raise CheckpointError(source, f"invalid function registry: {e}") from e
        if registry.num_tokens > len(m["nexa_token_ids"]):
            raise CheckpointError(
                directory / CONFIG_FILE,
                f"the function registry needs {registry.num_tokens} functional tokens but the model has "
                f"{len(m['nexa_token_ids'])}: add the new functions' tokens to the model (octopus_finetune) or disable them",
            )
        sessions = {}
        for part in ("vision", "lm", "grounding"):
            if part in variant:
                graph = variant[part]
                for side in manifest.get("external_data", {}).get(graph, ()):  # the weights of a big graph
                    M.check_file(export, manifest, side, directory)
                sessions[part] = _session(
                    M.check_file(export, manifest, graph, directory), providers, threads
                )
        for part in ("vision", "lm"):
            if part not in sessions:
                raise CheckpointError(
                    export / M.MANIFEST_FILE, f"no {part} graph for {precision!r} (re-export)"
                )
        emb_path = M.check_file(export, manifest, manifest["embeddings"]["file"], directory)
        embeddings = np.load(emb_path, mmap_mode="r")
        hidden = int(manifest["lm"]["hidden_size"])
        if embeddings.ndim != 2 or embeddings.shape[1] != hidden or embeddings.shape[0] < len(tokenizer):
            raise CheckpointError(
                emb_path, f"embedding table of shape {embeddings.shape} does not fit the LM"
            )
        novelty = NoveltyScores(
            TextNovelty.load(directory / TEXT_VOCAB_FILE)
            if (directory / TEXT_VOCAB_FILE).is_file()
            else None,
            ImageProfile.load(directory / IMAGE_PROFILE_FILE)
            if (directory / IMAGE_PROFILE_FILE).is_file()
            else None,
            RequestProfile.load(directory / REQUEST_PROFILE_FILE)
            if (directory / REQUEST_PROFILE_FILE).is_file()
            else None,
        )
        check_request_profile(novelty.request, hidden, directory / REQUEST_PROFILE_FILE)
        if novelty.image is not None and novelty.image.mean.shape[0] != hidden:
            raise CheckpointError(
                directory / IMAGE_PROFILE_FILE,
                f"image profile has {novelty.image.mean.shape[0]} dims but the image tokens {hidden}",
            )
        grounding = None
        if (directory / GROUNDING_META).is_file():
            if "grounding" not in sessions:
                raise CheckpointError(
                    export / M.MANIFEST_FILE,
                    f"the checkpoint has a grounding head but the export no grounding graph; re-export with: "
                    f"{M.export_command(directory)}",
                )
            g = read_grounding_meta(directory)
            grounding = LeanGrounding(
                g["categories"], g["colours"], g["threshold"], g["colour_mismatch"], g["metrics"], g["meta"],
                session=sessions["grounding"], inputs=tuple(i.name for i in sessions["grounding"].get_inputs()),
            )  # fmt: skip
        return cls(
            directory=directory,
            export_dir=export,
            config=config,
            manifest=manifest,
            precision=precision,
            sessions=sessions,
            embeddings=embeddings,
            tokenizer=tokenizer,
            registry=registry,
            novelty=novelty,
            grounding=grounding,
            copier=SpanCopier.load(directory, weights_sha256=copier_weights_sha(directory)),
            **options,
        )

    # -- in-context examples -------------------------------------------------------------------
    def canonical_context(self, context: Sequence) -> tuple[ContextExample, ...]:
        """As :meth:`octopus_ros.model.Octopus.canonical_context` (the same function)."""
        return canonical_context(self.registry, context)

    def set_context(self, context: Sequence = ()) -> None:
        """Fix the in-context examples of every later decision (see ``Octopus.set_context``)."""
        examples = self.canonical_context(context)
        system_ids = self.prompt.system_prefix_ids(examples)
        self.context = examples
        self._system_ids = system_ids
        self._system_kv: KV | None = None
        if self.prefix_cache:
            self.system_kv()

    # -- the LM --------------------------------------------------------------------------------
    def _lm(self, embeds: np.ndarray, kv: KV | None) -> tuple[np.ndarray, KV]:
        """One pass: embeds (1, T, D) after the cached ``kv`` -> (logits (V,), new kv)."""
        logits, kv, _ = self._lm_hidden(embeds, kv)
        return logits, kv

    def _lm_hidden(self, embeds: np.ndarray, kv: KV | None) -> tuple[np.ndarray, KV, np.ndarray | None]:
        """:meth:`_lm` plus the last position's last hidden state (D,) (None from a graph exported
        before it had that output: no request novelty)."""
        keys, values = kv if kv is not None else self._empty_kv
        logits, k, v, *hidden = self.sessions["lm"].run(
            None, {"inputs_embeds": embeds, "past_keys": keys, "past_values": values}
        )
        return logits[0], (k, v), (hidden[0][0] if hidden else None)

    def embed_inputs(self, ids: Sequence[int], image_embeds: np.ndarray | None) -> np.ndarray:
        """Token embeddings (1, T, D) with ``image_embeds`` (1, K, D) at the ``<image>`` positions."""
        ids = np.asarray(ids, dtype=np.int64)
        embeds = np.array(self.embeddings[ids], dtype=np.float32)  # (T, D), a copy
        mask = ids == self.config.image_token_id
        n = int(mask.sum())
        given = 0 if image_embeds is None else image_embeds.shape[0] * image_embeds.shape[1]
        if n != given:
            raise ValueError(f"the prompt has {n} <image> token(s) but {given} image embedding(s) were given")
        if n:
            embeds[mask] = image_embeds.reshape(-1, embeds.shape[1])
        return embeds[None]

    def system_kv(self) -> KV:
        if self._system_kv is None:
            _, self._system_kv = self._lm(self.embed_inputs(self._system_ids, None), None)
        return self._system_kv

    def _prefill(self, ids: list[int], enc: ImageEncoding) -> tuple[np.ndarray, KV, np.ndarray | None]:
        """The prompt through the LM, reusing a cached KV only for the exact ids it covers (the
        same rule as ``Octopus._prefill``): (logits, kv, last hidden state or None)."""
        S, K, P = len(self._system_ids), len(self._image_ids), len(enc.prefix)
        if (
            enc.kv is not None
            and enc.owner == id(self)
            and P > 0
            and tuple(ids[:P]) == enc.prefix
            and ids[P : P + K] == self._image_ids
        ):
            return self._lm_hidden(self.embed_inputs(ids[P + K :], None), enc.kv)
        if self.prefix_cache and ids[:S] == self._system_ids:
            return self._lm_hidden(self.embed_inputs(ids[S:], enc.embeds), self.system_kv())
        return self._lm_hidden(self.embed_inputs(ids, enc.embeds), None)

    # -- image side ----------------------------------------------------------------------------
    def encode(self, image: np.ndarray, *, prefill: bool | None = None) -> ImageEncoding:
        """Encode a frame (RGB uint8 (H, W, 3), or pixels (1, 3, S, S) float32 already
        preprocessed); ``prefill`` (default ``prefill_on_encode``) also computes the KV cache of
        system prompt + image tokens. ValueError for a malformed image."""
        prefill = self.prefill_on_encode if prefill is None else prefill
        t0 = time.perf_counter()
        if isinstance(image, np.ndarray) and image.dtype == np.float32 and image.ndim == 4:
            pixels = image
        else:
            pixels = self.preprocessor(image)
        if pixels.ndim != 4 or pixels.shape[0] != 1:
            raise ValueError(f"encode takes one frame, got pixels of shape {tuple(pixels.shape)}")
        t1 = time.perf_counter()
        embeds, _pooled, *maps = self.sessions["vision"].run(None, {"pixel_values": pixels})
        t_ground = time.perf_counter()
        grounding = self.grounding.maps(maps, pixels) if self.grounding is not None else None
        t2 = time.perf_counter()
        kv = None
        if prefill and self.prefix_cache:
            _, kv = self._lm(embeds, self.system_kv())
        t3 = time.perf_counter()
        return ImageEncoding(
            embeds=embeds,
            kv=kv,
            timings={
                "preprocess": t1 - t0,
                "encode": t2 - t1,
                "image_prefill": t3 - t2,
                "grounding": t2 - t_ground,
            },
            owner=id(self),
            novelty=self.novelty.image_score(embeds),
            grounding=grounding,
            prefix=tuple(self._system_ids) if kv is not None else (),
        )

    def ground(self, encoding: ImageEncoding, phrase: str) -> Grounding | None:
        if self.grounding is None or encoding.grounding is None:
            return None
        return self.grounding.ground(encoding.grounding, phrase)

    # -- deciding ------------------------------------------------------------------------------
    def grammar(self, allowlist: Sequence[str] | None = None):
        key = None if allowlist is None else tuple(sorted(allowlist))
        if key not in self._grammars:
            from octopus_ros.functions import CallGrammar

            self._grammars[key] = CallGrammar(self.registry, allowlist=key)
        return self._grammars[key]

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
        """As :meth:`octopus_ros.model.Octopus.decide` in constrained mode (the only one here)."""
        if mode not in self.MODES:
            raise ValueError(f"the onnxruntime backend decodes in mode 'constrained' only, got {mode!r}")
        self.registry.allowed_names(allowlist)
        written, instruction = instruction, model_utterance(instruction)  # what prompt, copier, grammar read
        t0 = time.perf_counter()
        timings = {"preprocess": 0.0, "encode": 0.0}
        if isinstance(image, ImageEncoding):
            enc = image
        else:
            enc = self.encode(image)
            timings.update(enc.timings)
        examples = self.context if context is None else self.canonical_context(context)
        ids = self.prompt.encode_prompt(instruction, examples)
        limit = max_new_tokens or self.max_new_tokens
        allow = None if allowlist is None else tuple(allowlist)
        t1 = time.perf_counter()
        logits, kv, hidden = self._prefill(ids, enc)
        t2 = time.perf_counter()
        cache = [kv]

        def step(new_ids: list[int]) -> np.ndarray:
            out, cache[0] = self._lm(self.embed_inputs(new_ids, None), cache[0])
            return out

        grammar, span = copy_span(
            self.copier, self.grammar(allow), instruction,
            lambda text: encode_with_offsets(self.tokenizer, text), lambda ids: self.embeddings[ids],
            named_objects(self, instruction),
        )  # fmt: skip
        res: DecodeResult = self.decoder.decode(
            logits, step, grammar, max_new_tokens=limit, jump_forward=self.jump_forward,
            temperature=self.temperature, keep_logits=keep_logits,
        )  # fmt: skip
        t3 = time.perf_counter()
        timings.update(prefill=t2 - t1, decode=t3 - t2)
        decision = decoded_decision(res, self.registry, allow, timings)
        apply_copy(decision, span, self.registry)  # a decision without a call is left as it is
        decision.request_novelty = request_novelty(self.novelty.request, decision, hidden)
        decision.timings["total"] = time.perf_counter() - t0
        decision.mode = mode
        return finish_decision(self, decision, enc, instruction, written)
