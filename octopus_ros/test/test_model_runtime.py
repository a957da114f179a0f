"""Octopus runtime from a checkpoint: load with precisions and the ONNX image side, decide,
and the agreement report of each runtime path against fp32."""

from __future__ import annotations

import numpy as np
import pytest

from octopus_ros.model import CheckpointError
from octopus_ros.model.agreement import compare_runtimes, format_report
from octopus_ros.model.runtime import ImageEncoding, Octopus
from octopus_ros.model.testing import make_tiny_checkpoint
from octopus_ros.paths import config_path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny checkpoint with its ONNX image encoder exported next to the weights."""
    from octopus_ros.model import export_vision_onnx, load_checkpoint
    from octopus_ros.model.checkpoint import sha256_file

    path = make_tiny_checkpoint(tmp_path_factory.mktemp("rt") / "tiny", config_path("functions.yaml"), seed=7)
    sha = sha256_file(path / "model.safetensors")
    export_vision_onnx(load_checkpoint(path).model, path / "vision.onnx", weights_sha256=sha)
    return path


@pytest.fixture(scope="module")
def frames():
    rng = np.random.default_rng(3)
    return [rng.integers(0, 255, (30 + 4 * i, 40, 3), dtype=np.uint8) for i in range(3)]


def test_load_encode_decide(ckpt, frames):
    octopus = Octopus.load(ckpt)
    assert octopus.registry.by_name("pick_up").token == 0
    enc = octopus.encode(frames[0])
    assert isinstance(enc, ImageEncoding) and enc.embeds.shape == (1, 16, 32) and enc.kv is not None
    d = octopus.decide("pick up the red cup", enc, allowlist=("pick_up", "stop"))
    assert d.ok and d.call.function in ("pick_up", "stop", "no_action")
    assert d.timings["encode"] == 0.0  # pre-encoded frame: the decision pays only the LM
    raw = octopus.decide("pick up the red cup", frames[0], allowlist=("pick_up", "stop"))
    assert raw.raw_text == d.raw_text and raw.timings["encode"] > 0.0


def test_checkpoint_without_registry_needs_one(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "noreg")
    with pytest.raises(CheckpointError, match=r"functions\.yaml: missing"):
        Octopus.load(path)
    assert Octopus.load(path, registry=config_path("functions.yaml")).registry.num_tokens == 13


def test_agreement_of_runtime_paths(ckpt, frames):
    samples = [(f, "pick up the red cup", "<nexa_0>('red cup')<nexa_end>") for f in frames]
    paths = (
        ("int8", {"precision": "int8"}),
        ("bf16", {"precision": "bf16"}),
        ("onnx", {"vision_backend": "onnx"}),
    )
    report = compare_runtimes(ckpt, samples, paths=paths)
    assert set(report) == {"fp32", "int8", "bf16", "onnx"}
    assert report["fp32"].call_agreement == 1.0 and report["fp32"].max_embed_rel_error == 0.0
    assert report["onnx"].max_embed_rel_error < 1e-4 and report["onnx"].call_agreement == 1.0
    assert report["int8"].max_embed_rel_error < 0.2 and report["bf16"].max_embed_rel_error < 0.1
    assert all(r.accuracy is not None for r in report.values())
    assert "same call" in format_report(report)


def test_stale_onnx_file_is_rejected(ckpt, tmp_path):
    import onnx

    proto = onnx.load(str(ckpt / "vision.onnx"))
    for entry in proto.metadata_props:
        if entry.key == "octopus_weights_sha256":
            entry.value = "0" * 64  # as if exported from other weights
    onnx.save(proto, str(tmp_path / "stale.onnx"))
    with pytest.raises(CheckpointError, match="different weights"):
        Octopus.load(ckpt, vision_backend="onnx", onnx_path=tmp_path / "stale.onnx")
