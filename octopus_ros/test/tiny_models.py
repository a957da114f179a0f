"""Tiny checkpoints taught, in a few seconds, to give one answer to every request.

A random model would mostly decline; these decide, so that the node's guarantees (allowlist,
routing, e-stop, confidence threshold) are exercised on real model output whose answer is known.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

TEXTS = ["stop", "pick up the red cup", "take a photo", "把杯子拿起来", "go to the kitchen", "hello"]


def train_always(path: Path, answer: str, *, steps: int = 60, seed: int = 0) -> Path:
    """Save a tiny checkpoint at ``path`` that answers ``answer`` (call text) to every request."""
    import torch

    from octopus_ros.model import ImagePreprocessor, PromptFormat, collate, save_checkpoint
    from octopus_ros.model.testing import tiny_model, tiny_tokenizer
    from octopus_ros.paths import config_path

    torch.manual_seed(seed)
    tok = tiny_tokenizer()
    model = tiny_model(tok)
    fmt = PromptFormat(tokenizer=tok, config=model.config)
    pre = ImagePreprocessor(config=model.config.vision)
    batch = collate([fmt.build_training_example(t, answer) for t in TEXTS], pad_token_id=tok.pad_token_id)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        pixels = torch.cat([pre(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in TEXTS])
        loss = model(**batch, pixel_values=pixels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return save_checkpoint(
        path, model, tok, functions=config_path("functions.yaml"), metrics={"note": f"always {answer}"}
    )
