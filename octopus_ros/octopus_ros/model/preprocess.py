"""Image preprocessing: RGB uint8 (H, W, 3) -> normalised float tensor (1, 3, S, S)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import VisionConfig


class ImagePreprocessor:
    """Resize (shorter side + centre crop, or squash), scale to [0, 1], normalise (CLIP)."""

    def __init__(self, *, config: VisionConfig):
        if config.resize_mode not in ("crop", "squash"):
            raise ValueError(f"vision.resize_mode must be 'crop' or 'squash', got {config.resize_mode!r}")
        self.size = config.image_size
        self.mode = config.resize_mode
        self.mean = torch.tensor(config.image_mean, dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(config.image_std, dtype=torch.float32).view(1, 3, 1, 1)

    def __call__(self, image: np.ndarray | torch.Tensor) -> torch.Tensor:
        """image: (H, W, 3) uint8 RGB (or a batch (B, H, W, 3)) -> (B, 3, S, S) float32."""
        if isinstance(image, np.ndarray):
            x = torch.as_tensor(np.ascontiguousarray(image))
        elif isinstance(image, torch.Tensor):
            x = image.cpu()
        else:
            raise ValueError(f"expected a numpy uint8 RGB image, got {type(image).__name__}")
        if x.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 RGB image, got dtype {x.dtype}")
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected an (H, W, 3) RGB image, got shape {tuple(image.shape)}")
        if x.shape[1] == 0 or x.shape[2] == 0:
            raise ValueError(f"empty image of shape {tuple(image.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)
        H, W = x.shape[-2:]
        S = self.size
        if (H, W) != (S, S):
            if self.mode == "squash":
                x = F.interpolate(x, size=(S, S), mode="bilinear", antialias=True, align_corners=False)
            else:
                scale = S / min(H, W)
                h, w = max(S, round(H * scale)), max(S, round(W * scale))
                x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
                top, left = (h - S) // 2, (w - S) // 2
                x = x[:, :, top : top + S, left : left + S]
        return ((x - self.mean) / self.std).contiguous()  # (B, 3, S, S)
