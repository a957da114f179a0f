"""Render a :class:`~octopus_ros.data.world.Scene` to an RGB image of any size, and contact sheets.

The scene's square stage maps to the central ``S x S`` square of a ``W x H`` frame
(``S = min(W, H)``); wall and floor continue to the sides. All lengths scale with ``S``, so the
content is the same at 64x64, 224x224 or 320x240 (only the per-pixel sensor noise differs).

Pipeline: two-tone wall/floor with optional texture -> objects back to front (anti-aliased
polygons) -> defocus blur -> brightness, vertical gradient and colour cast -> sensor noise.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from .shapes import DRAWERS, Pen, shade
from .world import Scene

log = logging.getLogger(__name__)

Size = int | tuple[int, int]


def frame_size(size: Size) -> tuple[int, int]:
    """``(width, height)`` from an int (square) or a ``(width, height)`` pair; ValueError if bad."""
    if isinstance(size, int | np.integer) and not isinstance(size, bool):
        w = h = int(size)
    elif (
        isinstance(size, tuple | list)
        and len(size) == 2
        and all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in size)
    ):
        w, h = int(size[0]), int(size[1])
    else:
        raise ValueError(f"size must be an int or (width, height), got {size!r}")
    if w < 16 or h < 16 or w > 4096 or h > 4096:
        raise ValueError(f"image size must be 16..4096 pixels per side, got {w}x{h}")
    return w, h


def _background(scene: Scene, w: int, h: int, s: int, ox: float, oy: float) -> np.ndarray:
    st = scene.style
    img = np.empty((h, w, 3), dtype=np.uint8)
    hz = int(round(oy + st.horizon * s))
    hz = min(max(hz, 1), h - 1)
    img[:hz] = st.wall
    img[hz:] = st.floor
    period = max(2.0, st.texture_scale * s)
    xs = np.arange(w, dtype=np.float32) - ox
    if st.wall_texture == "stripes":
        cols = (np.floor(xs / (period / 2.0)) % 2).astype(bool)
        img[:hz, cols] = shade(st.wall, 0.9)
    elif st.wall_texture == "window":
        x0 = ox + (0.1 + st.texture_scale) * s
        x1 = x0 + 0.32 * s
        y0, y1 = oy + 0.05 * s, oy + max(0.1, st.horizon - 0.06) * s
        if y1 - y0 > 3:
            frame = shade(st.wall, 0.6)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), (185, 215, 240), -1)
            t = max(1, int(round(0.015 * s)))
            cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), frame, t)
            xm, ym = int((x0 + x1) / 2), int((y0 + y1) / 2)
            cv2.line(img, (xm, int(y0)), (xm, int(y1)), frame, t)
            cv2.line(img, (int(x0), ym), (int(x1), ym), frame, t)
    if st.floor_texture == "tiles":
        line = shade(st.floor, 0.78)
        cols = np.mod(xs, period) < max(1.0, 0.08 * period)
        img[hz:, cols] = line
        ys = np.arange(hz, h, dtype=np.float32) - oy
        rows = np.mod(ys, period * 0.6) < max(1.0, 0.08 * period)
        img[hz:][rows] = line
    elif st.floor_texture == "planks":
        ys = np.arange(hz, h, dtype=np.float32) - oy
        band = np.floor(ys / (period * 0.5)).astype(np.int64)
        img[hz:][band % 2 == 1] = shade(st.floor, 0.92)
        img[hz:][np.mod(ys, period * 0.5) < 1.0] = shade(st.floor, 0.75)
    t = max(1, int(round(0.02 * s)))
    img[max(0, hz - t) : hz] = shade(st.wall, 0.7)  # skirting board
    return img


_MIN_DRAW = 128  # frames smaller than this are drawn larger and downsampled (same look at any size)


def _draw(scene: Scene, w: int, h: int) -> np.ndarray:
    """Background and objects, without camera effects."""
    s = min(w, h)
    ox, oy = (w - s) / 2.0, (h - s) / 2.0
    img = _background(scene, w, h, s, ox, oy)
    for obj in scene.objects:
        pen = Pen(img, ox + obj.cx * s, oy + obj.cy * s, obj.size * s / 2.0, obj.angle, obj.flip)
        DRAWERS[obj.category](pen, obj.rgb, obj.variant)
    return img


def render(scene: Scene, size: Size = 64, rng: np.random.Generator | None = None) -> np.ndarray:
    """Draw ``scene`` as an ``(H, W, 3)`` uint8 RGB image.

    ``size``: an int for a square image, or ``(width, height)`` (e.g. ``(320, 240)``, the
    convention of ROS images and demo scenarios). ``rng`` draws the sensor noise; None uses the
    scene's own ``style.noise_seed``, so the same scene and size always give the same bytes.
    """
    w, h = frame_size(size)
    k = max(1, min(4, math.ceil(_MIN_DRAW / min(w, h))))  # supersampling factor for small frames
    img = _draw(scene, w * k, h * k)
    if k > 1:
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
    s = min(w, h)
    st = scene.style
    sigma = st.blur * s / 64.0
    if sigma >= 0.25:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    cast = np.asarray(st.cast, dtype=np.float32) * np.float32(st.brightness)
    gain = (1.0 + np.float32(st.gradient) * _rows(h)) * cast  # (H, 1, 3)
    out = img.astype(np.float32)
    out *= gain
    if st.noise > 0.0:
        out += _noise(h, w, st.noise_seed, rng) * np.float32(st.noise)
    np.clip(out, 0.0, 255.0, out=out)
    return out.astype(np.uint8)


@cache
def _rows(h: int) -> np.ndarray:
    rows = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None, None]
    rows.setflags(write=False)
    return rows


_BANK_H, _BANK_W = 480, 640  # the precomputed standard-normal noise bank (3.7 MB, made once)


@cache
def _noise_bank() -> np.ndarray:
    bank = np.random.default_rng(0x0C70).standard_normal((_BANK_H, _BANK_W, 3), dtype=np.float32)
    bank.setflags(write=False)
    return bank


def _noise(h: int, w: int, seed: int, rng: np.random.Generator | None) -> np.ndarray:
    """Unit Gaussian noise (H, W, 3): from ``rng`` if given, else a seed-chosen window of a fixed
    bank (much faster than drawing fresh normals, and still a pure function of the seed)."""
    if rng is not None or h > _BANK_H or w > _BANK_W:
        src = rng if rng is not None else np.random.default_rng(seed)
        return src.standard_normal((h, w, 3), dtype=np.float32)
    y = seed % (_BANK_H - h + 1)
    x = (seed // (_BANK_H - h + 1)) % (_BANK_W - w + 1)
    return _noise_bank()[y : y + h, x : x + w]


def stage_box_pixels(box: tuple[float, float, float, float], size: Size) -> tuple[int, int, int, int]:
    """A stage-fraction box ``(x0, y0, x1, y1)`` (e.g. ``SceneObject.bbox``) in pixels of a frame."""
    w, h = frame_size(size)
    s = min(w, h)
    ox, oy = (w - s) / 2.0, (h - s) / 2.0
    x0, y0, x1, y1 = box
    return (
        int(math.floor(ox + x0 * s)),
        int(math.floor(oy + y0 * s)),
        int(math.ceil(ox + x1 * s)),
        int(math.ceil(oy + y1 * s)),
    )


# ----------------------------------------------------------------------------- contact sheet
def _ascii(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else "?" for c in text)


def _font(px: int) -> Any:
    from PIL import ImageFont

    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, px)
        except OSError:
            continue
    return ImageFont.load_default()


def contact_sheet(examples: Sequence[Any], path: str | Path, *, columns: int = 8, cell: int = 160) -> Path:
    """Save a PNG grid of ``examples`` (anything with ``.image``; ``.answer``, ``.instruction``,
    ``.language`` label the cell when present) and return its path.

    Images are upscaled without smoothing; labels are ASCII (the bundled font has no CJK glyphs),
    so Chinese instructions show as their function name and language.
    """
    from PIL import Image, ImageDraw

    if not examples:
        raise ValueError("contact_sheet needs at least one example")
    if columns < 1 or cell < 32:
        raise ValueError(f"columns must be >= 1 and cell >= 32, got {columns}, {cell}")
    rows = math.ceil(len(examples) / columns)
    label_h = 30
    sheet = Image.new("RGB", (columns * cell, rows * (cell + label_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = _font(10)
    for i, ex in enumerate(examples):
        img = np.asarray(ex.image)
        ih, iw = img.shape[:2]
        scale = cell / max(ih, iw)
        tile = cv2.resize(
            img, (max(1, round(iw * scale)), max(1, round(ih * scale))), interpolation=cv2.INTER_NEAREST
        )
        x, y = (i % columns) * cell, (i // columns) * (cell + label_h)
        sheet.paste(Image.fromarray(tile), (x, y))
        lang = getattr(ex, "language", "en")
        instruction = getattr(ex, "instruction", "")
        first = _ascii(instruction) if lang == "en" else f"[zh] {getattr(ex, 'function', '')}"
        second = _ascii(getattr(ex, "answer", ""))
        draw.text((x + 2, y + cell + 1), first[:30], fill=(0, 0, 0), font=font)
        draw.text((x + 2, y + cell + 14), second[:30], fill=(0, 0, 150), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    log.info("wrote contact sheet of %d examples to %s", len(examples), path)
    return path
