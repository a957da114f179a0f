"""Device and precision settings: fp32, int8 (dynamic, CPU), fp16 / bf16 (CUDA; bf16 also CPU).

``apply_precision`` turns an fp32 model into the runtime form. ``decode_weight_bytes`` counts
the bytes one decode step must read (the memory-bandwidth floor of batch-1 decoding).
``build_int8`` builds a model with random weights directly in int8, one module at a time, so
no whole fp32 copy ever exists (benchmarks of real-sized shapes).

int8 is weight-only int8 for every ``nn.Linear`` (torch's dynamic quantization: fbgemm int8
kernels, activations quantized on the fly) plus the LM's token embedding table as int8 rows
with one scale per row (:class:`Int8Embedding`). When the LM head is tied to that table, the
head is packed from the same int8 rows (per-row scales), so the fp32 table is not kept at all.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
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
    directly) and the LM's token embeddings (and a head tied to them) per row, on a copy unless
    ``inplace``. A model that is already int8 (``build_int8``) is left as it is.
    """
    device = resolve_device(device)
    check_precision(precision, device)
    model = model.eval()
    if precision == "int8":
        from torch.ao.quantization import quantize_dynamic

        lm = getattr(model, "lm", None)
        head = None if lm is None else _int8_lm_head(lm)  # before the Linears are replaced
        with warnings.catch_warnings():  # torch.ao dynamic quantization is deprecated upstream (torchao)
            warnings.simplefilter("ignore")
            model = quantize_dynamic(
                model, _int8_spec(model, skip_head=head is not None), dtype=torch.qint8, inplace=inplace
            )
        if head is not None:
            emb, head = head
            model.lm.set_input_embeddings(emb)
            model.lm.set_output_embeddings(head)
        return model
    return model.to(device=device, dtype=_DTYPES[precision])


class Int8Embedding(nn.Module):
    """A token embedding table as int8 rows, each with its own fp32 scale (symmetric, round to
    nearest): ``table[i] ~= qweight[i] * scale[i]``. A lookup reads one int8 row per token."""

    def __init__(self, qweight: torch.Tensor, scale: torch.Tensor, padding_idx: int | None = None):
        super().__init__()
        if qweight.dtype != torch.int8 or qweight.ndim != 2 or scale.shape != qweight.shape[:1]:
            raise ValueError(
                f"need int8 (V, D) rows and (V,) scales, got {qweight.dtype} {tuple(qweight.shape)}, {tuple(scale.shape)}"
            )
        self.register_buffer("qweight", qweight)
        self.register_buffer("scale", scale.float())
        self.num_embeddings, self.embedding_dim = qweight.shape
        self.padding_idx = padding_idx

    @classmethod
    def from_float(
        cls, weight: torch.Tensor, padding_idx: int | None = None, chunk: int = 16384
    ) -> Int8Embedding:
        """Quantize an fp32 (V, D) table, ``chunk`` rows at a time (no second fp32 copy)."""
        q = torch.empty(weight.shape, dtype=torch.int8)
        scale = torch.empty(weight.shape[0], dtype=torch.float32)
        with torch.no_grad():
            for lo in range(0, weight.shape[0], chunk):
                q[lo : lo + chunk], scale[lo : lo + chunk] = quantize_rows(weight[lo : lo + chunk])
        return cls(q, scale, padding_idx)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.qweight[input_ids].float() * self.scale[input_ids].unsqueeze(-1)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, int8 rows"


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8: (int8 rows, fp32 scales) with ``w ~= q * scale[:, None]``."""
    w = w.detach().float()
    scale = (w.abs().amax(dim=1) / 127.0).clamp_min(1e-12)
    q = torch.round(w / scale[:, None]).clamp_(-127, 127).to(torch.int8)
    return q, scale


def dynamic_linear_from_rows(
    q: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor | None = None
) -> nn.Module:
    """A dynamically quantized Linear (fbgemm) whose weight is the int8 rows ``q`` (out, in)
    with per-row (per output channel) ``scale``."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    out_features, in_features = q.shape
    layer = DynamicLinear(in_features, out_features, bias_=bias is not None, dtype=torch.qint8)
    qw = torch._make_per_channel_quantized_tensor(
        q, scale.double(), torch.zeros(out_features, dtype=torch.long), 0
    )
    layer.set_weight_bias(qw, None if bias is None else bias.detach().float())
    return layer


def _int8_lm_head(lm: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """(int8 input embeddings, int8 head) for an LM with an ``nn.Embedding`` input table and an
    ``nn.Linear`` head; a tied head is packed from the embedding's int8 rows. None otherwise."""
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    if type(emb) is not nn.Embedding or type(head) is not nn.Linear:
        return None
    qemb = Int8Embedding.from_float(emb.weight, emb.padding_idx)
    if head.weight is emb.weight:
        qhead = dynamic_linear_from_rows(qemb.qweight, qemb.scale, head.bias)
    else:
        qhead = dynamic_linear_from_rows(*quantize_rows(head.weight), head.bias)
    return qemb, qhead


def build_int8(config) -> nn.Module:
    """An :class:`OctopusModel` with random weights built directly in int8: the image side is
    built in fp32 (small) and quantized, the LM is made on the meta device and each of its
    modules is materialised, initialised as transformers would, and quantized before the next
    one (embedding rows in chunks), so the process never holds a whole fp32 LM. Random weights
    only: external weights named by the config (``lm_path``, a vision checkpoint) are refused."""
    from .config import lm_hidden_size, resolve_config
    from .connector import build_connector
    from .modeling import OctopusModel, _needed_vocab, build_lm
    from .vision import VisionTower

    config = resolve_config(config)
    if config.lm_path or config.vision.checkpoint:
        raise ValueError(
            "build_int8 builds random weights; load pretrained parts with build_model + apply_precision"
        )
    vision = VisionTower(config=config.vision)
    connector = build_connector(
        config.connector, vision_width=vision.width, grid_size=vision.grid_size, lm_dim=lm_hidden_size(config)
    )
    image_side = apply_precision(
        nn.ModuleDict({"vision": vision, "connector": connector}), precision="int8", inplace=True
    )
    release_memory()
    with torch.device("meta"):
        lm = build_lm(config)
    if _needed_vocab(config) > lm.get_input_embeddings().num_embeddings:
        raise ValueError("build_int8: the config's token ids exceed the LM vocabulary (set lm.vocab_size)")
    tied = (
        lm.get_output_embeddings() is not None
        and lm.get_output_embeddings().weight is lm.get_input_embeddings().weight
    )
    std = getattr(lm.config, "initializer_range", 0.02) or 0.02
    emb = lm.get_input_embeddings()
    qemb = _random_int8_embedding(emb.num_embeddings, emb.embedding_dim, std, emb.padding_idx)
    lm.set_input_embeddings(qemb)
    if tied:
        lm.set_output_embeddings(dynamic_linear_from_rows(qemb.qweight, qemb.scale))
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    for name, module in list(lm.named_modules()):
        if isinstance(module, (Int8Embedding, DynamicLinear)):
            continue
        if type(module) is nn.Linear:
            w = torch.empty(module.out_features, module.in_features).normal_(0.0, std)
            bias = None if module.bias is None else torch.zeros(module.out_features)
            _set_submodule(lm, name, _dynamic_linear(w, bias))
            del w
        elif any(t.is_meta for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))):
            module.to_empty(device="cpu", recurse=False)
            lm._init_weights(module)
    leftover = [n for n, t in (*lm.named_parameters(), *lm.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"build_int8 left tensors unmaterialised: {leftover[:5]}")
    model = OctopusModel(config=config, vision=image_side["vision"], connector=image_side["connector"], lm=lm)
    model.config.lm["vocab_size"] = qemb.num_embeddings
    model.sync_lm_token_ids()
    release_memory()
    return model.eval()


def _random_int8_embedding(
    rows: int, dim: int, std: float, padding_idx: int | None, chunk: int = 16384
) -> Int8Embedding:
    q = torch.empty(rows, dim, dtype=torch.int8)
    scale = torch.empty(rows)
    for lo in range(0, rows, chunk):
        w = torch.empty(min(chunk, rows - lo), dim).normal_(0.0, std)
        q[lo : lo + chunk], scale[lo : lo + chunk] = quantize_rows(w)
    if padding_idx is not None:
        q[padding_idx] = 0
    return Int8Embedding(q, scale, padding_idx)


def _dynamic_linear(weight: torch.Tensor, bias: torch.Tensor | None) -> nn.Module:
    """The same int8 layer ``apply_precision`` makes of an ``nn.Linear`` with these tensors."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear
    from torch.ao.quantization import default_dynamic_qconfig

    with torch.device("meta"):  # no weights of its own: ours are set below
        layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = nn.Parameter(weight, requires_grad=False)
    if bias is not None:
        layer.bias = nn.Parameter(bias, requires_grad=False)
    layer.qconfig = default_dynamic_qconfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return DynamicLinear.from_float(layer)


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, module)


def release_memory() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``; elsewhere a no-op)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _int8_spec(model: nn.Module, *, skip_head: bool = False) -> dict[str, object]:
    """Dynamic-quantization spec by module name: every plain ``nn.Linear`` except those inside
    modules that use their weights as tensors (open_clip's ``AttentionPool2d``), and the LM head
    when ``skip_head`` (it is packed from the int8 embedding rows instead)."""
    from torch.ao.quantization import default_dynamic_qconfig

    raw = tuple(name + "." for name, m in model.named_modules() if type(m).__name__ == "AttentionPool2d")
    head = model.lm.get_output_embeddings() if skip_head else None
    return {
        name: default_dynamic_qconfig
        for name, m in model.named_modules()
        if type(m) is nn.Linear and not name.startswith(raw) and m is not head
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
        if isinstance(sub, Int8Embedding):
            total += sub.qweight.numel() + sub.scale.numel() * sub.scale.element_size()
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
    release_memory()  # the unpacked int8 copies above are garbage now: do not keep their heap
    return total


def decode_weight_bytes(lm: nn.Module) -> int:
    """Bytes one batch-1 decode step reads: all LM weights except the input embedding table
    (only one row of it is read). A tied LM head still counts once, through the head."""
    return module_weight_bytes(lm, skip=(lm.get_input_embeddings(),))
