"""Temperature calibration of the call confidence (issue 12 item 4)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from octopus_ros.functions import FunctionRegistry
from octopus_ros.model.runtime import Octopus
from octopus_ros.model.testing import make_tiny_checkpoint, tiny_model, tiny_tokenizer
from octopus_ros.paths import config_path
from octopus_ros.training.calibrate import (
    CalibrationRecord,
    confidences,
    correctness,
    ece,
    fit_temperature,
    record_of,
    write_temperature,
)


def overconfident_records(n: int, scale: float, seed: int = 0) -> list[CalibrationRecord]:
    """Records of a model whose logits are ``scale`` x the true ones: right with the true
    probability of its (argmax) choice, reported far more sure than that."""
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    records = []
    for _ in range(n):
        free = int(rng.integers(1, 4))
        true = torch.randn(free, 12, generator=g) * 1.5
        chosen = true.argmax(dim=1)
        p_right = float(torch.softmax(true, dim=1).gather(1, chosen[:, None]).prod())
        records.append(CalibrationRecord(true * scale, chosen, bool(rng.random() < p_right)))
    return records


def test_overconfident_model_gets_temperature_above_one_and_lower_ece():
    records = overconfident_records(600, scale=4.0)
    y = correctness(records)
    t = fit_temperature(records)
    assert 2.5 < t < 6.0  # the true factor is 4
    before, after = ece(confidences(records, 1.0), y), ece(confidences(records, t), y)
    assert after < before / 2 and after < 0.05
    # an under-confident model is sharpened instead
    assert fit_temperature(overconfident_records(600, scale=0.4, seed=1)) < 0.7


def test_the_reliability_diagram_is_written(tmp_path):
    """Done-when of issue 12: "the calibration plot is written" (before and after, one line per group)."""
    from octopus_ros.training.calibrate import plot_reliability

    groups = {"held-out": overconfident_records(200, scale=4.0), "natural": overconfident_records(80, 2.0, 3)}
    path = plot_reliability(
        groups, fit_temperature(groups["held-out"]), tmp_path / "plots" / "calibration.png"
    )
    assert path == tmp_path / "plots" / "calibration.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000
    # each group's line is drawn in both panels (matplotlib's first two colours: blue, orange)
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)
    half = rgb.shape[1] // 2
    for colour in ((31, 119, 180), (255, 127, 14)):
        near = np.abs(rgb - np.array(colour)).sum(-1) < 60
        assert near[:, :half].sum() > 100 and near[:, half:].sum() > 100, colour


def test_ece_of_a_perfectly_calibrated_and_a_wrong_predictor():
    conf = np.array([0.9] * 10 + [0.2] * 10)
    y = np.array([1] * 9 + [0] + [1] * 2 + [0] * 8, dtype=float)
    assert ece(conf, y) == pytest.approx(0.0)
    assert ece(np.ones(10), np.zeros(10)) == pytest.approx(1.0)


@pytest.fixture(scope="module")
def octopus():
    tok = tiny_tokenizer(num_functions=13)
    registry = FunctionRegistry.from_yaml(config_path("functions.yaml"))
    return Octopus(model=tiny_model(tok, seed=3), tokenizer=tok, registry=registry)


def test_temperature_scales_the_confidence_but_not_the_choice(octopus):
    frame = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    enc = octopus.encode(frame)
    try:
        for text in ("pick up the red cup", "go to the kitchen", "把红色的杯子拿起来"):
            octopus.temperature = 1.0
            d1 = octopus.decide(text, enc, keep_logits=True)
            octopus.temperature = 3.0
            d3 = octopus.decide(text, enc, keep_logits=True)
            assert d1.raw_text == d3.raw_text
            if d1.call is None:
                continue
            r = record_of(d1, True)
            assert d1.confidence == pytest.approx(float(confidences([r], 1.0)[0]), rel=1e-4)
            assert d3.confidence == pytest.approx(float(confidences([r], 3.0)[0]), rel=1e-4)
            assert d3.confidence != pytest.approx(d1.confidence, rel=1e-3)
    finally:
        octopus.temperature = 1.0


def test_checkpoint_temperature_is_loaded_and_defaults_to_one(tmp_path):
    path = make_tiny_checkpoint(tmp_path / "m", config_path("functions.yaml"))
    record = json.loads((path / "config.json").read_text())
    record["model"].pop("temperature", None)  # a checkpoint from before calibration
    (path / "config.json").write_text(json.dumps(record))
    assert Octopus.load(path).temperature == 1.0
    write_temperature(path, 2.5)
    assert Octopus.load(path).temperature == 2.5
    assert json.loads((path / "config.json").read_text())["model"]["temperature"] == 2.5


def test_decoder_refuses_a_bad_temperature(octopus):
    frame = np.zeros((32, 32, 3), dtype=np.uint8)
    for bad in (0.0, -1.0, math.inf, math.nan):
        octopus.temperature = bad
        try:
            with pytest.raises(ValueError, match="temperature"):
                octopus.decide("stop", frame)
        finally:
            octopus.temperature = 1.0
