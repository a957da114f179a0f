"""Export the WHOLE Octopus model for the torch-free runtime (octopus_ros/lean/).

    python -m octopus_ros.model.onnx_export_all CKPT [--out CKPT/onnx] [--int8]

writes, into ``CKPT/onnx`` (or ``--out``), and, without ``--out``, the same into the checkpoint's own
second model's folder (``CKPT/second_opinion/onnx``, runtime/second_opinion.py) when it has one:

- ``vision.onnx``: vision tower + connector, pixel_values (1, 3, S, S) -> image_embeds (1, K, D),
  pooled (1, E) and the tower's feature maps (map_0, ...) that the grounding head reads;
- ``grounding.onnx`` (checkpoints with a grounding head): map_0, ..., pixel_values -> the
  category (C,) and (category, colour) pair (C, K) probabilities;
- ``lm.onnx``: one decoder pass with a KV cache, inputs_embeds (1, T, D) + past_keys /
  past_values (L, 1, H_kv, P, hd) -> logits (1, V) of the last position + present_keys /
  present_values (dynamic T and P, P may be 0) + hidden (1, D), the last hidden state of the
  last position (what a request profile reads, model/novelty.py);
- ``embed_tokens.npy``: the LM's input embedding table (V, D) float32, so the runtime builds
  inputs_embeds of text and image tokens itself;
- with ``--int8`` also ``*.int8.onnx`` (onnxruntime dynamic int8 quantization of each graph);
- with ``--int4`` also ``lm.int4.onnx``: the LM with 4-bit weights (onnxruntime MatMulNBits),
  the ``int4`` variant (its image side is the int8 graphs);
- beside every graph its weights, ``NAME.onnx.data`` (mapped by onnxruntime, see below);
- ``manifest.json`` (lean/manifest.py): the weights' sha256, every file's sha256 and size,
  shapes, preprocessing, token ids, the calibrated temperature.

Each graph is checked against the torch model on a probe input after export (max abs difference
printed); an export that disagrees raises.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from octopus_ros.lean import manifest as M

from .checkpoint import WEIGHTS_FILE, load_checkpoint, sha256_file
from .grounding import GroundingHead, GroundingModel
from .modeling import OctopusModel, kv_geometry

log = logging.getLogger(__name__)

TOLERANCE = 1e-3  # max abs difference ONNX vs torch (fp32 graphs) on the probe input
# weights per int4 scale (--int4-block): 32 for accuracy (finer scales; llama.cpp's Q4_0 size);
# 128 (GPTQ/AWQ's usual group) was 1.37x faster per pass at the 0.5B shape, unmeasured on real weights
INT4_BLOCK = 32
# Every graph keeps its weights in a side file, ``NAME.onnx.data``. onnxruntime maps that file
# instead of holding the whole protobuf plus a copy of each tensor: the int8 LM of the 0.5B shape
# (474 MiB) held 1,216 MiB in one graph file and 512 MiB with its side file, at the same speed.
# It is also the only way past protobuf's 2 GiB cap (that LM is 1.9 GiB in fp32).


class VisionExport(nn.Module):
    """pixels -> (image_embeds, pooled, *feature maps)."""

    def __init__(self, model: OctopusModel):
        super().__init__()
        self.vision, self.connector = model.vision, model.connector

    def forward(self, pixel_values: torch.Tensor):
        pooled, tokens, maps = self.vision.forward_features(pixel_values)
        return (self.connector(tokens), pooled, *maps)


class GroundingExport(nn.Module):
    """(*feature maps, pixels) -> (category (C,), pair (C, K)) probabilities of the one frame."""

    def __init__(self, head: GroundingHead, n_maps: int):
        super().__init__()
        self.head, self.n_maps = head, n_maps

    def forward(self, *inputs: torch.Tensor):
        maps, pixels = list(inputs[: self.n_maps]), inputs[self.n_maps]
        cat, pair = self.head(GroundingHead.inputs(maps, pixels))
        return torch.sigmoid(cat[0]), torch.sigmoid(pair[0])


LM_OUTPUTS = ("logits", "present_keys", "present_values", "hidden")


class LMStep(nn.Module):
    """One LM pass continuing a stacked KV cache; logits and last hidden state of the last
    position only."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm
        self.layers = lm.config.num_hidden_layers

    def forward(self, inputs_embeds: torch.Tensor, past_keys: torch.Tensor, past_values: torch.Tensor):
        from transformers import DynamicCache

        past = [(past_keys[i], past_values[i]) for i in range(self.layers)]
        cache = DynamicCache(ddp_cache_data=past, config=self.lm.config)
        pos = torch.arange(inputs_embeds.shape[1]) + past_keys.shape[3]  # (T,) after the P cached
        out = self.lm(
            inputs_embeds=inputs_embeds,
            past_key_values=cache,
            position_ids=pos.unsqueeze(0),
            cache_position=pos,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=True,
        )
        layers = out.past_key_values.layers
        present_keys = torch.stack([layer.keys for layer in layers])
        present_values = torch.stack([layer.values for layer in layers])
        return out.logits[:, -1], present_keys, present_values, out.hidden_states[-1][:, -1]


def _export(module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic=None):
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            args,
            str(path),
            dynamo=True,
            input_names=inputs,
            output_names=outputs,
            dynamic_shapes=dynamic,
            optimize=True,
            external_data=True,  # NAME.onnx.data
            verbose=False,
        )


def _check(path: Path, module: nn.Module, feeds: dict[str, torch.Tensor]) -> float:
    """Max abs difference between the graph and the module on ``feeds``; raises above TOLERANCE."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {k: v.numpy() for k, v in feeds.items()})
    with torch.no_grad():
        want = module(*feeds.values())
    diff = max(float(np.abs(g - w.numpy()).max()) for g, w in zip(got, want, strict=True))
    if not diff <= TOLERANCE:
        raise RuntimeError(f"{path}: the exported graph differs from torch by {diff:.3g} (> {TOLERANCE})")
    return diff


def external_files(path: Path) -> list[str]:
    """The side files (external data) graph ``path`` reads its weights from, by name, sorted."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sorted(
        {
            entry.value
            for t in model.graph.initializer
            if t.data_location == onnx.TensorProto.EXTERNAL
            for entry in t.external_data
            if entry.key == "location"
        }
    )


def _quantize(path: Path) -> Path:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(str(path), str(out), weight_type=QuantType.QInt8, use_external_data_format=True)
    return out


def _quantize_int4(path: Path, block: int = INT4_BLOCK) -> Path:
    """4-bit weight-only LM: every MatMul with a constant weight becomes onnxruntime's MatMulNBits
    (symmetric, blocks of ``block`` weights along the input dimension, accuracy level 4 = int8
    compute on the CPU). Measured at the 0.5B shape: see benchmarks/README.md."""
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    out = path.with_name(path.stem + ".int4.onnx")
    quantizer = MatMulNBitsQuantizer(
        onnx.load(str(path)), bits=4, block_size=block, is_symmetric=True, accuracy_level=4
    )
    level = logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").level
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    try:
        quantizer.process()
    finally:
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(level)
    onnx.save_model(
        quantizer.model.model, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
        location=out.name + ".data",
    )  # fmt: skip
    return out


def export_all(
    checkpoint: str | Path,
    out: str | Path | None = None,
    *,
    int8: bool = False,
    int4: bool = False,
    int4_block: int = INT4_BLOCK,
) -> Path:
    """Write the export of ``checkpoint`` (see the module docstring); returns the manifest's path."""
    checkpoint = Path(checkpoint)
    ckpt = load_checkpoint(checkpoint)  # verifies the weights' sha256
    model = ckpt.model.float().eval()
    cfg = model.config
    out = Path(out) if out else checkpoint / M.DEFAULT_DIR
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    torch.manual_seed(0)
    S = cfg.vision.image_size
    pixels = torch.randn(1, 3, S, S)
    variants: dict[str, dict[str, str]] = {"fp32": {}}
    report: dict[str, float] = {}

    # vision tower + connector (+ the maps the grounding head reads)
    vision = VisionExport(model)
    with torch.no_grad():
        embeds, pooled, *maps = vision(pixels)
    map_names = [f"map_{i}" for i in range(len(maps))]
    _export(vision, (pixels,), out / "vision.onnx", ["pixel_values"], ["image_embeds", "pooled", *map_names])
    report["vision"] = _check(out / "vision.onnx", vision, {"pixel_values": pixels})
    variants["fp32"]["vision"] = "vision.onnx"

    # grounding head
    grounding_meta = None
    if GroundingModel.exists(checkpoint):
        head = GroundingModel.load(checkpoint)
        head.check_maps(maps)
        module = GroundingExport(head.head.float(), len(maps))
        names = [*map_names, "pixel_values"]
        _export(module, (*maps, pixels), out / "grounding.onnx", names, ["category", "pair"])
        report["grounding"] = _check(
            out / "grounding.onnx", module, dict(zip(names, (*maps, pixels), strict=True))
        )
        variants["fp32"]["grounding"] = "grounding.onnx"
        grounding_meta = {"inputs": names, "categories": len(head.categories), "colours": len(head.colours)}

    # the LM: one pass with a KV cache
    lm = model.lm
    L, H, hd = kv_geometry(lm.config)
    D = lm.get_input_embeddings().embedding_dim
    step = LMStep(lm)
    x, pk, pv = torch.randn(1, 5, D), torch.randn(L, 1, H, 7, hd), torch.randn(L, 1, H, 7, hd)
    seq, past = torch.export.Dim("seq", min=1, max=8192), torch.export.Dim("past", min=1, max=8192)
    lm_inputs = ["inputs_embeds", "past_keys", "past_values"]
    _export(
        step, (x, pk, pv), out / "lm.onnx", lm_inputs, list(LM_OUTPUTS),
        ({1: seq}, {3: past}, {3: past}),
    )  # fmt: skip
    empty = torch.zeros(L, 1, H, 0, hd)
    report["lm"] = max(
        _check(out / "lm.onnx", step, dict(zip(lm_inputs, (x, pk, pv), strict=True))),
        _check(
            out / "lm.onnx", step, dict(zip(lm_inputs, (torch.randn(1, 9, D), empty, empty), strict=True))
        ),
    )
    variants["fp32"]["lm"] = "lm.onnx"

    table = lm.get_input_embeddings().weight.detach().float().numpy()
    np.save(out / M.EMBEDDINGS_FILE, np.ascontiguousarray(table))

    if int8 or int4:
        variants["int8"] = {part: _quantize(out / name).name for part, name in variants["fp32"].items()}
    if int4:  # the LM in 4 bits; the image side (vision, grounding) stays int8
        variants["int4"] = {
            **variants["int8"],
            "lm": _quantize_int4(out / variants["fp32"]["lm"], int4_block).name,
        }

    graphs = sorted({n for v in variants.values() for n in v.values()})
    external = {g: names for g in graphs if (names := external_files(out / g))}
    files = sorted({*graphs, *(n for names in external.values() for n in names), M.EMBEDDINGS_FILE})
    manifest = {
        "format": M.FORMAT,
        "format_version": M.FORMAT_VERSION,
        "checkpoint": str(checkpoint),
        "weights_sha256": sha256_file(checkpoint / WEIGHTS_FILE),
        "files": {n: {"sha256": M.sha256_file(out / n), "bytes": (out / n).stat().st_size} for n in files},
        "variants": variants,
        "external_data": external,
        "int4_block": int4_block if int4 else None,
        "embeddings": {"file": M.EMBEDDINGS_FILE, "shape": list(table.shape), "dtype": "float32"},
        "lm": {
            "inputs": lm_inputs,
            "outputs": list(LM_OUTPUTS),
            "num_layers": L,
            "num_kv_heads": H,
            "head_dim": hd,
            "hidden_size": D,
            "vocab_size": int(table.shape[0]),
        },
        "vision": {
            "image_size": S,
            "image_mean": list(cfg.vision.image_mean),
            "image_std": list(cfg.vision.image_std),
            "resize_mode": cfg.vision.resize_mode,
            "num_image_tokens": cfg.num_image_tokens,
            "outputs": ["image_embeds", "pooled", *map_names],
            "map_shapes": [list(m.shape) for m in maps],
        },
        "grounding": grounding_meta,
        "tokens": {
            "image_token_id": cfg.image_token_id,
            "nexa_token_ids": list(cfg.nexa_token_ids),
            "nexa_end_id": cfg.nexa_end_id,
            "pad_token_id": cfg.pad_token_id,
            "eos_token_id": cfg.eos_token_id,
        },
        "temperature": float(getattr(cfg, "temperature", 1.0) or 1.0),
        "max_abs_diff_vs_torch": report,
    }
    path = out / M.MANIFEST_FILE
    path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info(
        "exported %s to %s in %.1f s (max |onnx - torch|: %s)",
        checkpoint,
        out,
        time.perf_counter() - t0,
        report,
    )
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "checkpoint", help="checkpoint directory (config.json, model.safetensors, tokenizer.json)"
    )
    parser.add_argument("--out", default=None, help="output directory (default: CHECKPOINT/onnx)")
    parser.add_argument("--int8", action="store_true", help="also write onnxruntime dynamic-int8 graphs")
    parser.add_argument(
        "--int4",
        action="store_true",
        help="also write a 4-bit weight-only LM (MatMulNBits; precision int4 of the lean runtime; implies --int8 "
        "for the image side)",
    )
    parser.add_argument(
        "--int4-block",
        type=int,
        default=INT4_BLOCK,
        choices=(16, 32, 64, 128, 256),
        help=f"weights per 4-bit scale (default {INT4_BLOCK}: accuracy; 128 is faster)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("torch").setLevel(logging.ERROR)
    from octopus_ros.runtime.second_opinion import second_opinion_dir

    # the checkpoint's own second opinion (the node's second_opinion "auto") is exported with it
    second = second_opinion_dir(args.checkpoint) if args.out is None else None
    for checkpoint in [Path(args.checkpoint)] + ([second] if second is not None else []):
        try:
            path = export_all(
                checkpoint, args.out, int8=args.int8, int4=args.int4, int4_block=args.int4_block
            )
        except Exception as e:
            print(f"export of {checkpoint} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
