"""Device and precision settings: fp32, int8 (dynamic, CPU), fp16 / bf16 (CUDA; bf16 also CPU).

``apply_precision`` turns an fp32 model into the runtime form. ``decode_weight_bytes`` counts
the bytes one decode step must read (the memory-bandwidth floor of batch-1 decoding).
``build_int8`` builds a model directly in int8, one module at a time, so no whole fp32 copy ever
exists: with random weights (benchmarks of real-sized shapes) or with a checkpoint's, read from
its safetensors file tensor by tensor (``load_checkpoint(path, precision="int8")``).

int8 is weight-only int8 for every ``nn.Linear`` (torch's dynamic quantization: fbgemm int8
kernels, activations quantized on the fly) plus the LM's token embedding table as int8 rows
with one scale per row (:class:`Int8Embedding`). When the LM head is tied to that table, the
head is packed from the same int8 rows (per-row scales), so the fp32 table is not kept at all.
"""

from __future__ import annotations

import gc
import logging
import warnings
from pathlib import Path

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


class WeightSource:
    """Where :func:`build_int8` takes weights from: tensors by state-dict name (``vision.…``,
    ``connector.…``, ``lm.…``), one at a time. This base class has none (random weights);
    :class:`SafetensorsWeights` reads a checkpoint's file."""

    def tensor(self, name: str) -> torch.Tensor | None:
        """The whole tensor ``name`` (fp32 if it is floating-point), or None: random weights."""
        return None

    def rows(self, name: str, lo: int, hi: int) -> torch.Tensor | None:
        """Rows ``lo:hi`` of the 2-D tensor ``name`` as fp32 (a table read in chunks), or None."""
        return None


# safetensors dtype codes (the format's header) -> torch dtypes
_SAFETENSORS_DTYPES = {
    "BOOL": torch.bool,
    "U8": torch.uint8,
    "I8": torch.int8,
    "I16": torch.int16,
    "U16": torch.uint16,
    "I32": torch.int32,
    "U32": torch.uint32,
    "I64": torch.int64,
    "U64": torch.uint64,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "F32": torch.float32,
    "F64": torch.float64,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}


class SafetensorsWeights(WeightSource):
    """The tensors of a safetensors file, each read on its own with plain file reads into a
    fresh tensor (``safetensors.safe_open`` maps the file instead, and every page it touches
    counts in the process's resident set until it is closed: a whole fp32 model at the peak).

    ``tensors``: name -> (shape, dtype) of every tensor in the file; ``metadata``: its
    ``__metadata__``. ``aliases`` maps a name the file does not hold (a tied tensor stored
    once) to the name it is stored under. ValueError for a malformed file, OSError when a
    read comes up short. Use as a context manager (or call :meth:`close`)."""

    def __init__(self, file: str | Path, aliases: dict[str, str] | None = None):
        import json
        import os
        import sys

        if sys.byteorder != "little":
            raise ValueError("reading safetensors needs a little-endian machine")
        self.file = Path(file)
        self.aliases = dict(aliases or {})
        self._f = open(self.file, "rb")  # noqa: SIM115 (closed by close())
        try:
            size = os.fstat(self._f.fileno()).st_size
            head = self._f.read(8)
            if len(head) != 8:
                raise ValueError("shorter than a safetensors header")
            n = int.from_bytes(head, "little")
            if n > min(size - 8, 100 << 20):
                raise ValueError(f"header length {n} does not fit the file ({size} bytes)")
            try:
                header = json.loads(self._f.read(n).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise ValueError(f"header is not JSON ({e})") from e
            if not isinstance(header, dict):
                raise ValueError("header is not a JSON object")
            self.metadata = header.pop("__metadata__", None) or {}
            self._base, data = 8 + n, size - 8 - n
            self.tensors: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
            self._offsets: dict[str, int] = {}
            for name, entry in header.items():
                try:
                    dtype = _SAFETENSORS_DTYPES[entry["dtype"]]
                    shape = tuple(int(d) for d in entry["shape"])
                    begin, end = (int(x) for x in entry["data_offsets"])
                except (KeyError, TypeError, ValueError) as e:
                    raise ValueError(f"tensor {name!r}: malformed header entry {entry!r}") from e
                numel = 1
                for d in shape:
                    numel *= d
                if min(shape, default=0) < 0 or not 0 <= begin <= end <= data:
                    raise ValueError(
                        f"tensor {name!r}: offsets {begin}..{end} outside the data ({data} bytes)"
                    )
                if end - begin != numel * dtype.itemsize:
                    raise ValueError(f"tensor {name!r}: {end - begin} bytes for shape {shape} {dtype}")
                self.tensors[name] = (shape, dtype)
                self._offsets[name] = begin
        except BaseException:
            self._f.close()
            raise

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> SafetensorsWeights:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _key(self, name: str) -> str:
        return name if name in self.tensors else self.aliases.get(name, name)

    def _read(self, name: str, lo: int, hi: int | None) -> torch.Tensor:
        """Rows ``lo:hi`` (all rows when ``hi`` is None) of ``name`` as its stored dtype."""
        key = self._key(name)
        if key not in self.tensors:
            raise KeyError(f"{self.file}: no tensor {name!r}")
        shape, dtype = self.tensors[key]
        if hi is None:
            lo, hi, row_shape = 0, 1, shape  # the whole tensor as one "row"
        else:
            row_shape = shape[1:]
            shape = (hi - lo, *row_shape)
        row_bytes = dtype.itemsize
        for d in row_shape:
            row_bytes *= d
        buf = torch.empty((hi - lo) * row_bytes, dtype=torch.uint8)
        self._f.seek(self._base + self._offsets[key] + lo * row_bytes)
        if buf.numel() and self._f.readinto(buf.numpy()) != buf.numel():
            raise OSError(f"{self.file}: short read of tensor {key!r}")
        return buf.view(dtype).reshape(shape)

    def tensor(self, name: str) -> torch.Tensor:
        t = self._read(name, 0, None)
        return t.float() if t.is_floating_point() else t

    def rows(self, name: str, lo: int, hi: int) -> torch.Tensor:
        return self._read(name, lo, hi).float()


def build_int8(config, weights: WeightSource | None = None) -> nn.Module:
    """An :class:`OctopusModel` built directly in int8, so the process never holds a whole
    fp32 model: the image side is built in fp32 (small), given its weights and quantized; the
    LM is made on the meta device and each of its modules is materialised and quantized before
    the next one (the token table in chunks of rows).

    ``weights``: the tensors to quantize (a checkpoint's: :class:`SafetensorsWeights`); the
    result is then the same int8 model as loading them in fp32 and calling
    ``apply_precision(…, precision="int8")``. None: random weights initialised as transformers
    would (benchmarks of real-sized shapes); external weights named by the config (``lm_path``,
    a vision checkpoint) are then refused.
    """
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    from .config import lm_hidden_size, resolve_config
    from .connector import build_connector
    from .modeling import OctopusModel, _needed_vocab, build_lm
    from .vision import VisionTower

    config = resolve_config(config)
    if weights is None and (config.lm_path or config.vision.checkpoint):
        raise ValueError(
            "build_int8 builds random weights; load pretrained parts with build_model + apply_precision"
        )
    source = weights if weights is not None else WeightSource()
    vision = VisionTower(config=config.vision)
    connector = build_connector(
        config.connector, vision_width=vision.width, grid_size=vision.grid_size, lm_dim=lm_hidden_size(config)
    )
    image_side = nn.ModuleDict({"vision": vision, "connector": connector})
    if weights is not None:
        _copy_tensors(image_side, "", source)
    image_side = apply_precision(image_side, precision="int8", inplace=True)
    release_memory()
    with torch.device("meta"):
        lm = build_lm(config)
    if _needed_vocab(config) > lm.get_input_embeddings().num_embeddings:
        raise ValueError("build_int8: the config's token ids exceed the LM vocabulary (set lm.vocab_size)")
    names = {id(m): name for name, m in lm.named_modules()}
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    if weights is not None and (type(emb) is not nn.Embedding or type(head) is not nn.Linear):
        # apply_precision keeps such an LM's token table fp32: build_int8 would not be the same model
        raise ValueError("build_int8 with weights needs an nn.Embedding token table and an nn.Linear head")
    tied = head is not None and head.weight is emb.weight
    std = getattr(lm.config, "initializer_range", 0.02) or 0.02
    q, scale = _int8_rows(source, f"lm.{names[id(emb)]}.weight", emb.num_embeddings, emb.embedding_dim, std)
    if weights is None and emb.padding_idx is not None:
        q[emb.padding_idx] = 0  # transformers zeroes the padding row of a random table
    qemb = Int8Embedding(q, scale, emb.padding_idx)
    lm.set_input_embeddings(qemb)
    if type(head) is nn.Linear:  # int8 rows with a scale each, as apply_precision packs the head
        name = f"lm.{names[id(head)]}"
        bias = None
        if head.bias is not None:
            bias = _tensor_or(source, name + ".bias", lambda: torch.zeros(head.out_features))
        if not tied:
            q, scale = _int8_rows(source, name + ".weight", head.out_features, head.in_features, std)
        lm.set_output_embeddings(dynamic_linear_from_rows(q, scale, bias))
    del q, scale
    for name, module in list(lm.named_modules()):
        if isinstance(module, (Int8Embedding, DynamicLinear)):
            continue
        if type(module) is nn.Linear:
            w = _tensor_or(
                source,
                f"lm.{name}.weight",
                lambda m=module: torch.empty(m.out_features, m.in_features).normal_(0.0, std),
            )
            bias = None
            if module.bias is not None:
                bias = _tensor_or(source, f"lm.{name}.bias", lambda m=module: torch.zeros(m.out_features))
            _set_submodule(lm, name, _dynamic_linear(w, bias))
            del w, bias
        elif any(t.is_meta for t in (*module.parameters(recurse=False), *module.buffers(recurse=False))):
            module.to_empty(device="cpu", recurse=False)
            lm._init_weights(module)  # non-persistent buffers (rope frequencies); norms for random weights
            if weights is not None:
                _copy_tensors(module, f"lm.{name}" if name else "lm", source, recurse=False)
    leftover = [n for n, t in (*lm.named_parameters(), *lm.named_buffers()) if t.is_meta]
    if leftover:
        raise RuntimeError(f"build_int8 left tensors unmaterialised: {leftover[:5]}")
    model = OctopusModel(config=config, vision=image_side["vision"], connector=image_side["connector"], lm=lm)
    model.config.lm["vocab_size"] = qemb.num_embeddings
    model.sync_lm_token_ids()
    release_memory()
    return model.eval()


def _tensor_or(source: WeightSource, name: str, default) -> torch.Tensor:
    """``source``'s tensor ``name``, else ``default()`` (random weights)."""
    got = source.tensor(name)
    return default() if got is None else got


def _copy_tensors(module: nn.Module, prefix: str, source: WeightSource, *, recurse: bool = True) -> None:
    """Copy the parameters and persistent buffers of ``module`` (state-dict names
    ``prefix.<name>``) from ``source``, one tensor at a time, cast to the module's dtypes as
    ``load_state_dict`` does; only ``module``'s own tensors unless ``recurse``."""
    prefix = prefix + "." if prefix else ""
    with torch.no_grad():
        for name, t in module.state_dict(keep_vars=True).items():
            if not recurse and "." in name:
                continue
            got = source.tensor(prefix + name)
            if got is None:
                continue
            if got.shape != t.shape:
                raise ValueError(f"{prefix}{name}: shape {tuple(got.shape)}, the model has {tuple(t.shape)}")
            t.copy_(got)
            del got


def _int8_rows(
    source: WeightSource, name: str, rows: int, dim: int, std: float, chunk: int = 16384
) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 rows, fp32 scales) of the (rows, dim) table ``name`` from ``source``, read and
    quantized ``chunk`` rows at a time (random N(0, std) rows where ``source`` has none)."""
    q = torch.empty(rows, dim, dtype=torch.int8)
    scale = torch.empty(rows)
    for lo in range(0, rows, chunk):
        hi = min(lo + chunk, rows)
        w = source.rows(name, lo, hi)
        if w is None:
            w = torch.empty(hi - lo, dim).normal_(0.0, std)
        q[lo:hi], scale[lo:hi] = quantize_rows(w)
    return q, scale


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
    """Collect garbage and hand freed heap back to the OS (``heap.release_free_memory``: glibc's
    ``malloc_trim``; elsewhere a no-op)."""
    from octopus_ros.heap import release_free_memory

    gc.collect()
    release_free_memory()


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
