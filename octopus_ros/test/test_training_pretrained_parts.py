"""train_all with real-format parts: a 224 px open_clip tower and an HF LM with its own tokenizer.

Before issue 11, stage 1 crashed on the 64 px synthetic images with a real tower, and train_all
trained a new BPE whose ids meant other things to the pretrained LM.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from octopus_ros.model import OctopusConfig, load_checkpoint, load_tokenizer
from octopus_ros.model.testing import make_real_format_parts
from octopus_ros.training.stages import TrainConfig, pixels
from octopus_ros.training.train_all import train

ORDINARY = ["open the front door please", "what is on the table?", "请关上厨房的窗户", "把客厅的灯打开"]


def test_train_all_keeps_the_lms_tokenizer_and_the_towers_size(tmp_path):
    vision_dir, lm_dir = make_real_format_parts(tmp_path / "parts", image_size=224)
    oc = json.loads((vision_dir / "open_clip_config.json").read_text())
    config = OctopusConfig.from_dict(
        {
            "name": "real-format",
            "vision": {
                "open_clip": oc["model_cfg"],
                "checkpoint": str(vision_dir / "open_clip_model.safetensors"),
                "image_mean": oc["preprocess_cfg"]["mean"],
                "image_std": oc["preprocess_cfg"]["std"],
            },
            "lm": str(lm_dir),
        }
    )
    cfg = TrainConfig(
        steps={"vision": 2, "text": 2, "align": 2, "calls": 2},
        pool_calls=24,
        pool_align=16,
        batch=4,
        doc_repeats=1,
        lexicon_repeats=1,
        threads=1,
    )
    out = train(cfg, tmp_path / "ckpt", evaluate_n=0, model_config=config)
    assert cfg.image_size == 224  # the synthetic world was rendered at the tower's size
    ckpt = load_checkpoint(out)
    original = load_tokenizer(lm_dir)
    assert [ckpt.tokenizer.encode(t, add_special_tokens=False) for t in ORDINARY] == [
        original.encode(t, add_special_tokens=False) for t in ORDINARY
    ]
    assert len(ckpt.tokenizer) == len(original) + 15  # <image>, 13 x <nexa_i>, <nexa_end> (pad = eos)
    assert ckpt.config.vision.image_size == 224


def test_pixels_resize_any_image_to_the_towers_size():
    class _Model:
        class config:  # noqa: N801 - a stand-in with the attribute path pixels() reads
            class vision:  # noqa: N801
                image_size = 224
                image_mean = (0.5, 0.5, 0.5)
                image_std = (0.25, 0.25, 0.25)

    x = pixels(np.full((2, 64, 64, 3), 255, np.uint8), _Model())
    assert x.shape == (2, 3, 224, 224)
    assert torch.allclose(x, torch.full_like(x, 2.0))
