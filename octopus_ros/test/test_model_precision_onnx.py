"""Runtimes: int8 dynamic quantization, bf16 on CPU, ONNX image encoder vs torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from octopus_ros.model import OnnxVisionEncoder, apply_precision, export_vision_onnx
from octopus_ros.model.precision import decode_weight_bytes, resolve_device
from octopus_ros.model.testing import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def model():
    return tiny_model(tiny_tokenizer(num_functions=13), connector="perceiver", seed=1)


def _logits(m, px, dtype=torch.float32):
    ids = torch.tensor([[m.config.image_token_id] * m.config.num_image_tokens + [5, 6, 7]])
    with torch.no_grad():
        return m(ids, pixel_values=px.to(dtype)).logits.float()


def test_int8_quantizes_linears_and_stays_close(model):
    px = torch.randn(1, 3, 32, 32)
    q = apply_precision(model, precision="int8")
    assert q is not model  # a copy; the fp32 model is untouched
    assert "quantized" in type(q.lm.model.layers[0].mlp.up_proj).__module__
    assert type(model.lm.model.layers[0].mlp.up_proj) is torch.nn.Linear
    ref, got = _logits(model, px), _logits(q, px)
    assert (ref - got).abs().max() < 0.1 * ref.abs().max()
    assert decode_weight_bytes(q.lm) < 0.5 * decode_weight_bytes(model.lm)


@pytest.mark.parametrize("tower", ["resnet", "resnet-colour"])
def test_int8_resnet_tower_keeps_attention_pool_fp32(tower):
    """open_clip's AttentionPool2d reads its projections' tensors directly: they stay fp32,
    the LM and connector are quantized, and the int8 model still decides close to fp32."""
    rn = tiny_model(tiny_tokenizer(num_functions=13), tower=tower, image_size=64, seed=3)
    q = apply_precision(rn, precision="int8")
    assert type(q.vision.visual.attnpool.q_proj) is torch.nn.Linear
    assert "quantized" in type(q.lm.model.layers[0].mlp.up_proj).__module__
    px = torch.randn(1, 3, 64, 64)
    ref, got = _logits(rn, px), _logits(q, px)
    assert (ref - got).abs().max() < 0.1 * ref.abs().max()


def test_bf16_on_cpu(model):
    import copy

    px = torch.randn(1, 3, 32, 32)
    b = apply_precision(copy.deepcopy(model), precision="bf16", device="cpu")
    assert b.lm.model.layers[0].mlp.up_proj.weight.dtype == torch.bfloat16
    ref, got = _logits(model, px), _logits(b, px, torch.bfloat16)
    assert torch.isfinite(got).all() and (ref - got).abs().max() < 0.1 * ref.abs().max()


def test_precision_and_device_errors(model):
    with pytest.raises(ValueError, match="precision must be one of"):
        apply_precision(model, precision="int4")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    assert resolve_device("auto").type in ("cpu", "cuda")


def test_onnx_image_encoder_matches_torch(model, tmp_path):
    path = export_vision_onnx(model, tmp_path / "vision.onnx", weights_sha256="abc123")
    enc = OnnxVisionEncoder(path)
    assert enc.weights_sha256 == "abc123"
    for batch in (1, 3):  # dynamic batch axis
        px = torch.randn(batch, 3, 32, 32)
        embeds, pooled = enc(px)
        with torch.no_grad():
            ref_pooled, tokens = model.vision(px)
            ref = model.connector(tokens)
        assert embeds.shape == tuple(ref.shape)
        np.testing.assert_allclose(embeds, ref.numpy(), atol=1e-4, rtol=1e-4)
        np.testing.assert_allclose(pooled, ref_pooled.numpy(), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize(("tower", "n_tokens"), [("resnet", 4), ("resnet-colour", 6)])
def test_onnx_resnet_image_encoder_matches_torch(tmp_path, tower, n_tokens):
    """The CLIP ModifiedResNet tower (plain, or on luma with colour tokens: the bundled model's)
    exports too; BatchNorm runs in eval mode."""
    rn = tiny_model(tiny_tokenizer(num_functions=13), tower=tower, image_size=64, seed=2)
    path = export_vision_onnx(rn, tmp_path / "rn.onnx")
    enc = OnnxVisionEncoder(path)
    px = torch.randn(2, 3, 64, 64)
    embeds, pooled = enc(px)
    with torch.no_grad():
        ref_pooled, tokens = rn.vision(px)
        ref = rn.connector(tokens)
    assert embeds.shape == tuple(ref.shape) == (2, n_tokens, 32)
    np.testing.assert_allclose(embeds, ref.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(pooled, ref_pooled.numpy(), atol=1e-4, rtol=1e-4)
