"""ONNX export of the image side (vision tower + connector) and onnxruntime inference.

The exported graph maps ``pixel_values`` (B, 3, S, S) to ``image_embeds`` (B, K, D) and
``pooled`` (B, E). Its metadata records the sha256 of the checkpoint weights it came from, so
a stale ONNX file next to a retrained checkpoint is detected.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .modeling import OctopusModel

log = logging.getLogger(__name__)

WEIGHTS_SHA_KEY = "octopus_weights_sha256"
NUM_TOKENS_KEY = "octopus_num_image_tokens"


class ImageEncoderModule(nn.Module):
    """Vision tower + connector as one module: pixels -> (image_embeds, pooled)."""

    def __init__(self, *, model: OctopusModel):
        super().__init__()
        self.vision = model.vision
        self.connector = model.connector

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled, tokens = self.vision(pixel_values)  # (B, E), (B, N, W)
        return self.connector(tokens), pooled  # (B, K, D), (B, E)


def export_vision_onnx(
    model: OctopusModel,
    path: str | Path,
    *,
    weights_sha256: str | None = None,
    quantize_int8: bool = False,
) -> Path:
    """Export vision tower + connector of an fp32 model to ``path`` (dynamic batch size).

    With ``quantize_int8`` the written file is onnxruntime's dynamic int8 quantization of it.
    """
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ImageEncoderModule(model=model).eval()
    size = model.config.vision.image_size
    example = torch.zeros(2, 3, size, size)
    batch = torch.export.Dim("batch", min=1, max=256)
    fp32_path = path.with_name(path.stem + ".fp32.onnx") if quantize_int8 else path
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(fp32_path),
            dynamo=True,
            input_names=["pixel_values"],
            output_names=["image_embeds", "pooled"],
            dynamic_shapes=({0: batch},),
            optimize=True,
            external_data=False,
        )
    if quantize_int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        quantize_dynamic(str(fp32_path), str(path), weight_type=QuantType.QInt8)
        fp32_path.unlink()
    proto = onnx.load(str(path))
    meta = {NUM_TOKENS_KEY: str(model.config.num_image_tokens)}
    if weights_sha256:
        meta[WEIGHTS_SHA_KEY] = weights_sha256
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(path))
    log.info("exported the image encoder to %s%s", path, " (int8)" if quantize_int8 else "")
    return path


class OnnxVisionEncoder:
    """onnxruntime session for an exported image encoder.

    ``encode_image(pixels)`` mirrors :meth:`OctopusModel.encode_image` (returns a torch
    tensor); ``__call__`` returns both outputs as numpy arrays.
    """

    def __init__(
        self, path: str | Path, *, num_threads: int | None = None, providers: list[str] | None = None
    ):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"ONNX image encoder not found: {self.path}")
        options = ort.SessionOptions()
        if num_threads:
            options.intra_op_num_threads = num_threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(self.path), options, providers=providers or ["CPUExecutionProvider"]
        )
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    @property
    def weights_sha256(self) -> str | None:
        return self.metadata.get(WEIGHTS_SHA_KEY)

    def __call__(self, pixels: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """pixels (B, 3, S, S) -> (image_embeds (B, K, D), pooled (B, E)) as float32 numpy."""
        if isinstance(pixels, torch.Tensor):
            pixels = pixels.detach().to("cpu", torch.float32).numpy()
        embeds, pooled = self.session.run(
            None, {"pixel_values": np.ascontiguousarray(pixels, dtype=np.float32)}
        )
        return embeds, pooled

    def encode_image(self, pixels: torch.Tensor | np.ndarray) -> torch.Tensor:
        embeds, _ = self(pixels)
        return torch.from_numpy(embeds)  # (B, K, D)
