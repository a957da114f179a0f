"""Standing instruction policy: act when the decision changes, or when the scene does.

A standing instruction ("if you see a fallen cup, pick it up") is evaluated on camera
frames at a fixed rate. Publishing its call at every tick would repeat the same action
(``pick_up('red cup')`` six times in six seconds). :class:`StandingGate` lets a call
through when it differs from the last one that acted, and lets the same call through
again only when the scene changed since then and a cooldown has passed.

The scene is compared with :func:`scene_signature`, a 16x16 grey thumbnail in 0..1 taken
from the decoded frame (a few hundred sampled pixels: microseconds at any resolution).
"""

from __future__ import annotations

import threading

import numpy as np

SIGNATURE_SIDE = 16


def scene_signature(image: np.ndarray) -> np.ndarray:
    """16x16 grey thumbnail (float32, 0..1) of an (H, W, 3) or (H, W) uint8 image."""
    pixels = np.asarray(image)
    if pixels.ndim == 3:
        pixels = pixels[..., :3]
    h, w = pixels.shape[:2]
    n = SIGNATURE_SIDE * 4  # sample a 64x64 grid, then average 4x4 blocks
    ys = ((np.arange(n) + 0.5) * h / n).astype(np.intp).clip(0, h - 1)
    xs = ((np.arange(n) + 0.5) * w / n).astype(np.intp).clip(0, w - 1)
    grid = pixels[ys][:, xs].astype(np.float32)
    if grid.ndim == 3:
        grid = grid.mean(axis=2)
    blocks = grid.reshape(SIGNATURE_SIDE, 4, SIGNATURE_SIDE, 4).mean(axis=(1, 3))
    return blocks / 255.0


def scene_change(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Mean absolute difference of two signatures (0 = same scene, 1 = black vs white)."""
    if a is None or b is None:
        return 1.0
    return float(np.abs(a - b).mean())


class StandingGate:
    """Remembers the last standing call that acted; see the module docstring. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: tuple[str, np.ndarray | None, float] | None = None  # (call text, signature, time)

    def reset(self) -> None:
        """Forget the last action (after an e-stop, or a new configuration)."""
        with self._lock:
            self._last = None

    def repeat_reason(
        self, call_text: str, signature: np.ndarray | None, now: float, cooldown: float, min_change: float
    ) -> str:
        """Return '' and record the action when the call may act now; else why it may not."""
        with self._lock:
            if self._last is not None and self._last[0] == call_text:
                text, last_signature, last_time = self._last
                since = now - last_time
                if since < cooldown:
                    return f"same call {text} acted {since:.1f} s ago (standing_cooldown {cooldown:g} s)"
                change = scene_change(last_signature, signature)
                if change < min_change:
                    return (
                        f"same call {text}, scene unchanged since it acted "
                        f"(change {change:.3f} < standing_scene_change {min_change:g})"
                    )
            self._last = (call_text, signature, now)
            return ""
