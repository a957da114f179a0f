"""Real-camera-like degradations of rendered frames: the natural set's camera items and the
grounding head's training both use them (one implementation).

- :func:`degrade`: given degradations (dim exposure, sensor noise, JPEG), applied in capture order;
- :func:`random_camera`: a random draw of them, for training augmentation.

No torch, no rclpy.
"""

from __future__ import annotations

import io

import numpy as np

FRAME_SIZE: tuple[int, int] = (320, 240)  # a camera-like frame; the stage is its central square

# random_camera's ranges: an underexposed indoor sensor down to a 0.3 gain, noise up to 25 grey
# levels, JPEG down to quality 5 (a starved link); each kind drawn with probability 1/2
DIM_RANGE = (0.3, 0.9)
NOISE_RANGE = (3.0, 25.0)
JPEG_RANGE = (5, 60)


def degrade(
    image: np.ndarray,
    *,
    jpeg: int | None = None,
    noise: float | None = None,
    dim: float | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Real-camera-like degradations of an RGB uint8 frame, applied in capture order:
    ``dim`` (exposure gain in (0, 1], with gamma 1.5 as underexposed sensors show), ``noise``
    (Gaussian sensor noise, sigma in grey levels), then ``jpeg`` (encode + decode at that quality).
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"expected a (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    out = image.astype(np.float32) / 255.0
    if dim is not None:
        if not 0.0 < dim <= 1.0:
            raise ValueError(f"dim must be in (0, 1], got {dim}")
        out = dim * out**1.5
    if noise is not None:
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        rng = rng or np.random.default_rng(0)
        out = out + rng.normal(0.0, noise / 255.0, size=out.shape).astype(np.float32)
    result = np.clip(np.rint(out * 255.0), 0, 255).astype(np.uint8)
    if jpeg is not None:
        if not 1 <= int(jpeg) <= 95:
            raise ValueError(f"jpeg quality must be in 1..95, got {jpeg}")
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(result).save(buf, format="JPEG", quality=int(jpeg))
        buf.seek(0)
        result = np.array(Image.open(buf).convert("RGB"), dtype=np.uint8)
    return result


def random_camera(rng: np.random.Generator, p: float = 0.5) -> dict[str, float]:
    """Degradations for one frame: none with probability ``1 - p``; otherwise each of dim, noise
    and JPEG with probability 1/2 (at least one), its strength uniform in its range above. The
    result is ``degrade``'s keyword arguments."""
    if not rng.random() < p:
        return {}
    while True:
        out: dict[str, float] = {}
        if rng.random() < 0.5:
            out["dim"] = float(rng.uniform(*DIM_RANGE))
        if rng.random() < 0.5:
            out["noise"] = float(rng.uniform(*NOISE_RANGE))
        if rng.random() < 0.5:
            out["jpeg"] = int(rng.integers(JPEG_RANGE[0], JPEG_RANGE[1] + 1))
        if out:
            return out
