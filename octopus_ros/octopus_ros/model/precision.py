"""Device and precision settings: fp32, int8 (dynamic, CPU), fp16 / bf16 (CUDA; bf16 also CPU).

``apply_precision`` turns an fp32 model into the runtime form. ``decode_weight_bytes`` counts
the bytes one decode step must read (the memory-bandwidth floor of batch-1 decoding).
"""

from __future__ import annotations

import logging
import warnings

import torch
from torch import nn

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "int8", "fp16", "bf16")
_DTYPES = {"fp32": torch.float32, "int8": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but CUDA is not available")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device}; use 'cpu', 'cuda' or 'auto'")
    return device


def activation_dtype(precision: str) -> torch.dtype:
    """dtype of activations (and of non-quantized weights) for a precision."""
    check_precision(precision)
    return _DTYPES[precision]


def check_precision(precision: str, device: torch.device | None = None) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if device is not None:
        if precision == "int8" and device.type != "cpu":
            raise ValueError("int8 dynamic quantization runs on CPU only; use fp16/bf16 on CUDA")
        if precision == "fp16" and device.type == "cpu":
            log.warning("fp16 on CPU is slow and not recommended; prefer bf16 or int8")


def apply_precision(
    model: nn.Module, *, precision: str = "fp32", device: str | torch.device = "cpu", inplace: bool = False
) -> nn.Module:
    """Return ``model`` ready for inference at ``precision`` on ``device`` (eval mode).

    fp32/fp16/bf16 convert the model in place; int8 quantizes every ``nn.Linear`` dynamically
    (``MultiheadAttention.out_proj`` stays fp32, a torch limitation, and so do the projections
    of open_clip's ``AttentionPool2d``, which reads their ``.weight``/``.bias`` tensors
    directly), on a copy unless ``inplace``.
    """
    device = resolve_device(device)
    check_precision(precision, device)
    model = model.eval()
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        with warnings.catch_warnings():  # torch.ao dynamic quantization is deprecated upstream (torchao)
            warnings.simplefilter("ignore")
            model = quantize_dynamic(model, _int8_spec(model), dtype=torch.qint8, inplace=inplace)
        return model
    return model.to(device=device, dtype=_DTYPES[precision])


def _int8_spec(model: nn.Module) -> dict[str, object]:
    """Dynamic-quantization spec by module name: every plain ``nn.Linear`` except those inside
    modules that use their weights as tensors (open_clip's ``AttentionPool2d``)."""
    from torch.ao.quantization import default_dynamic_qconfig

    raw = tuple(name + "." for name, m in model.named_modules() if type(m).__name__ == "AttentionPool2d")
    return {
        name: default_dynamic_qconfig
        for name, m in model.named_modules()
        if type(m) is nn.Linear and not name.startswith(raw)
    }


def _is_dynamic_quantized_linear(module: nn.Module) -> bool:
    return type(module).__module__.startswith("torch.ao.nn.quantized") and hasattr(module, "weight")


def module_weight_bytes(module: nn.Module, *, skip: tuple[nn.Module, ...] = ()) -> int:
    """Bytes of the weights of ``module`` (quantized int8 weights counted at 1 byte each)."""
    total, seen = 0, set()
    skip_ids = {id(m) for m in skip}
    for sub in module.modules():
        if id(sub) in skip_ids:
            continue
        if _is_dynamic_quantized_linear(sub):
            w = sub.weight()
            total += w.numel() * w.element_size()
            b = sub.bias()
            if b is not None:
                total += b.numel() * b.element_size()
            continue
        for p in sub.parameters(recurse=False):
            if id(p) not in seen:
                seen.add(id(p))
                total += p.numel() * p.element_size()
    return total


def decode_weight_bytes(lm: nn.Module) -> int:
    """Bytes one batch-1 decode step reads: all LM weights except the input embedding table
    (only one row of it is read). A tied LM head still counts once, through the head."""
    return module_weight_bytes(lm, skip=(lm.get_input_embeddings(),))
