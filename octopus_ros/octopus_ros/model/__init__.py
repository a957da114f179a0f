"""The Octopus multimodal model: open_clip vision tower + connector + causal LM with
functional tokens, constrained decoding, checkpoints, quantization and ONNX.

Torch only; never imports rclpy.
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
from .prompt import PromptFormat, TrainingExample, collate
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
