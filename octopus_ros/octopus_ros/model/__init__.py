"""The Octopus multimodal model: open_clip vision tower + connector + causal LM with
functional tokens, constrained decoding, checkpoints, quantization and ONNX.

Torch only; never imports rclpy. Typical flows::

    # training side
    tok = train_tokenizer(texts, vocab_size=2000)                 # byte-level BPE (EN + ZH)
    cfg = attach_tokenizer(get_model_config("octopus-tiny"), tok, registry.num_tokens)
    model = build_model(cfg)                                      # OctopusModel, random weights
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    batch = collate([fmt.build_training_example(instr, call.to_text()), ...], pad_token_id=...)
    loss = model(**batch, pixel_values=pixels).loss
    save_checkpoint("models/octopus_tiny", model, tok, functions=registry, metrics={...})

    # robot side
    octopus = Octopus.load("models/octopus_tiny", precision="int8")
    decision = octopus.decide("pick up the red cup", octopus.encode(rgb), allowlist=("pick_up",))
"""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from .config import (
    ConfigError,
    ConnectorConfig,
    OctopusConfig,
    VisionConfig,
    get_model_config,
    list_models,
    resolve_config,
)
from .connector import MLPProjector, PerceiverResampler
from .modeling import OctopusModel, build_model, build_modules, load_pretrained_parts
from .onnx_export import OnnxVisionEncoder, export_vision_onnx
from .precision import PRECISIONS, apply_precision
from .preprocess import ImagePreprocessor
from .prompt import ContextExample, PromptFormat, TrainingExample, collate
from .runtime import Decision, ImageEncoding, Octopus
from .tokenizer import (
    SpecialTokenIds,
    add_special_tokens,
    attach_tokenizer,
    load_tokenizer,
    train_tokenizer,
)

__all__ = [
    "PRECISIONS",
    "Checkpoint",
    "CheckpointError",
    "ConfigError",
    "ConnectorConfig",
    "ContextExample",
    "Decision",
    "ImageEncoding",
    "ImagePreprocessor",
    "MLPProjector",
    "Octopus",
    "OctopusConfig",
    "OctopusModel",
    "OnnxVisionEncoder",
    "PerceiverResampler",
    "PromptFormat",
    "SpecialTokenIds",
    "TrainingExample",
    "VisionConfig",
    "add_special_tokens",
    "apply_precision",
    "attach_tokenizer",
    "build_model",
    "build_modules",
    "collate",
    "export_vision_onnx",
    "get_model_config",
    "list_models",
    "load_checkpoint",
    "load_pretrained_parts",
    "load_tokenizer",
    "resolve_config",
    "save_checkpoint",
    "train_tokenizer",
]
