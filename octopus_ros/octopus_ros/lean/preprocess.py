"""Image preprocessing in numpy: RGB uint8 (H, W, 3) -> normalised float32 (1, 3, S, S).

The same transform as the torch runtime's ``model/preprocess.py`` (shorter side to S and a centre
crop, or a squash to S x S; [0, 1]; CLIP mean/std), with the same resampling: torch's
``interpolate(mode="bilinear", antialias=True, align_corners=False)``, a separable triangle
filter stretched by the scale when shrinking (PIL's), written as two small weight matrices per
input size (cached), so a resize is two matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=32)
def _weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float32 resampling matrix of the antialiased bilinear filter."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0
    inv = 1.0 / scale if scale >= 1.0 else 1.0
    w = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), in_size)
        j = np.arange(lo, hi)
        row = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
        total = row.sum()
        if total > 0:
            w[i, lo:hi] = row / total
    return w.astype(np.float32)


def check_rgb(image) -> None:
    """ValueError unless ``image`` is a non-empty (H, W, 3) uint8 numpy array."""
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected a numpy uint8 RGB image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image, got dtype {image.dtype}")
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(image.shape)}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"empty image of shape {tuple(image.shape)}")


class NumpyPreprocessor:
    """``size``, ``mode`` ("crop" | "squash"), ``mean`` and ``std`` as in the model's VisionConfig."""

    def __init__(self, *, size: int, mode: str, mean, std):
        if mode not in ("crop", "squash"):
            raise ValueError(f"vision.resize_mode must be 'crop' or 'squash', got {mode!r}")
        self.size, self.mode = int(size), mode
        self.mean = np.asarray(mean, dtype=np.float32).reshape(1, 3, 1, 1)
        self.std = np.asarray(std, dtype=np.float32).reshape(1, 3, 1, 1)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        check_rgb(image)
        H, W = image.shape[:2]
        x = image.astype(np.float32).transpose(2, 0, 1) / np.float32(255.0)  # (3, H, W)
        S = self.size
        if (H, W) != (S, S):
            if self.mode == "squash":
                h, w = S, S
            else:
                scale = S / min(H, W)
                h, w = max(S, round(H * scale)), max(S, round(W * scale))
            x = _weights(H, h) @ x @ _weights(W, w).T  # (3, h, w)
            if self.mode == "crop":
                top, left = (h - S) // 2, (w - S) // 2
                x = x[:, top : top + S, left : left + S]
        return np.ascontiguousarray((x[None] - self.mean) / self.std, dtype=np.float32)
