"""Image messages -> RGB numpy arrays, with no ROS import (used by the node and by bag readers).

The decoding half of ``octopus_ros.ros.image_convert`` (which re-exports everything here and adds
the message builders and the cv_bridge adapter): a message is read through the usual fields only
(``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``; ``format`` and ``data``
for compressed images), so an rclpy message and a rosbags message alike work. Encodings, checks
and errors: see ``octopus_ros.ros.image_convert``.

Every returned array is a fresh, C-contiguous ``(H, W, 3)`` ``uint8`` RGB array that owns its
memory (it never aliases the message buffer).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

log = logging.getLogger(__name__)

DEFAULT_MAX_SIDE = 8192
"""Images with a width or height above this many pixels are refused (configurable per call)."""


class ImageConversionError(ValueError):
    """An image message that cannot be converted; the message says exactly why."""


@dataclass(frozen=True)
class PixelLayout:
    """How one encoding lays out a pixel: channel count, bytes per channel, channel order."""

    channels: int
    bytes_per_channel: int
    order: str  # "rgb", "bgr", "rgba", "bgra" or "gray"

    @property
    def bytes_per_pixel(self) -> int:
        return self.channels * self.bytes_per_channel


_LAYOUTS: dict[str, PixelLayout] = {
    "rgb8": PixelLayout(3, 1, "rgb"),
    "bgr8": PixelLayout(3, 1, "bgr"),
    "8UC3": PixelLayout(3, 1, "bgr"),
    "rgba8": PixelLayout(4, 1, "rgba"),
    "bgra8": PixelLayout(4, 1, "bgra"),
    "8UC4": PixelLayout(4, 1, "bgra"),
    "mono8": PixelLayout(1, 1, "gray"),
    "8UC1": PixelLayout(1, 1, "gray"),
    "mono16": PixelLayout(1, 2, "gray"),
    "16UC1": PixelLayout(1, 2, "gray"),
}

SUPPORTED_ENCODINGS: tuple[str, ...] = tuple(_LAYOUTS)
"""Encodings :func:`image_msg_to_rgb` reads and :func:`rgb_to_image_msg` writes."""

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- helpers
def _as_bytes_view(data: Any) -> np.ndarray:
    """The message's data as a 1-D uint8 array (a view when the buffer allows it)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except (TypeError, ValueError, BufferError):
        # A plain list of ints, e.g. from a hand-built message.
        try:
            return np.asarray(data, dtype=np.uint8).reshape(-1)
        except (TypeError, ValueError, OverflowError) as e:
            raise ImageConversionError(f"image data is not a byte buffer ({type(data).__name__})") from e


def _check_side(width: int, height: int, max_side: int) -> None:
    if width > max_side or height > max_side:
        raise ImageConversionError(f"image of {width}x{height} px exceeds the maximum side of {max_side} px")


def _gray16_to_8(gray16: np.ndarray) -> np.ndarray:
    """16-bit gray to 8 bit: round(v * 255 / 65535), computed exactly in integers."""
    return ((gray16.astype(np.uint32) + 128) // 257).astype(np.uint8)


# Source channel feeding R, G, B for each channel order (cv2.mixChannels pairs).
_MIX = {"rgba": (0, 1, 2), "bgr": (2, 1, 0), "bgra": (2, 1, 0)}


def _to_rgb(pixels: np.ndarray, order: str) -> np.ndarray:
    """Fresh (H, W, 3) RGB array from (H, W, C) pixels in ``order`` (gray: (H, W)).

    ``pixels`` may be a row-strided view of the message buffer. ``cv2.mixChannels`` and
    ``cv2.merge`` copy channels in one pass: 3-10x faster than numpy strided assignment
    for 4- and 1-channel input (1080p rgba8 ~1.4 ms instead of ~14 ms, mono8 ~0.3 ms
    instead of ~10 ms, on a 2-core x86 VM).
    """
    height, width = pixels.shape[:2]
    if order == "gray":
        return cv2.merge([pixels, pixels, pixels])
    out = np.empty((height, width, 3), dtype=np.uint8)
    if order == "rgb":
        out[...] = pixels
        return out
    sources = _MIX[order]
    cv2.mixChannels([pixels], [out], [v for dst, src in enumerate(sources) for v in (src, dst)])
    return out


# --------------------------------------------------------------------------- raw images
def check_image_msg(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE) -> PixelLayout:
    """Validate an Image message's header fields against its data; return its layout.

    Raises :class:`ImageConversionError` for an unknown encoding, a zero width or
    height, a side above ``max_side``, empty data, ``step`` smaller than one row of
    pixels, or data whose length is not ``step * height``.
    """
    encoding = str(msg.encoding)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"unsupported image encoding '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    if width <= 0 or height <= 0:
        raise ImageConversionError(f"image has zero size: width {width}, height {height}")
    _check_side(width, height, max_side)
    size = len(msg.data)
    if size == 0:
        raise ImageConversionError(f"image data is empty ({width}x{height} {encoding})")
    row = width * layout.bytes_per_pixel
    if step < row:
        raise ImageConversionError(
            f"step {step} is smaller than one row of {width} px x {layout.bytes_per_pixel} bytes = {row} bytes "
            f"({encoding})"
        )
    if size != step * height:
        raise ImageConversionError(
            f"image data has {size} bytes but step x height = {step} x {height} = {step * height} bytes"
        )
    return layout


def image_msg_to_rgb(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Convert a ``sensor_msgs/Image`` to a fresh ``(H, W, 3)`` uint8 RGB array.

    Row padding (``step`` larger than ``width * bytes_per_pixel``) is skipped, and
    16-bit data is read in the byte order ``is_bigendian`` gives. See the module
    docstring for the encodings; errors raise :class:`ImageConversionError`.
    """
    layout = check_image_msg(msg, max_side=max_side)
    width, height, step = int(msg.width), int(msg.height), int(msg.step)
    raw = _as_bytes_view(msg.data).reshape(height, step)[:, : width * layout.bytes_per_pixel]
    if layout.bytes_per_channel == 1:
        pixels = raw.reshape(height, width, layout.channels) if layout.channels > 1 else raw
        return _to_rgb(pixels, layout.order)
    dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
    # A row slice of a padded buffer is not contiguous; copy the pixel bytes, then view as 16 bit.
    gray16 = np.ascontiguousarray(raw).view(dtype).reshape(height, width)
    return _to_rgb(_gray16_to_8(gray16), "gray")


def _check_rgb(rgb: Any) -> np.ndarray:
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageConversionError(
            f"expected an (H, W, 3) uint8 RGB array, got shape {array.shape} dtype {array.dtype}"
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageConversionError(f"expected a non-empty image, got shape {array.shape}")
    return array


# --------------------------------------------------------------------------- compressed images
def _peek_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or baseline/progressive JPEG header, None if not found."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        width, height = struct.unpack(">II", data[16:24])
        return width, height
    if data.startswith(_JPEG_SOI):
        pos = 2
        while pos + 4 <= len(data):
            if data[pos] != 0xFF:
                return None
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                pos += 2
                continue
            (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
            # Start-of-frame markers C0..CF, except DHT (C4), JPG (C8) and DAC (CC).
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                if pos + 9 > len(data):
                    return None
                height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
                return width, height
            pos += 2 + length
    return None


def _jpeg_has_end(buf: np.ndarray) -> bool:
    """Whether a JPEG ends with its end-of-image marker (trailing zero padding allowed,
    as some UVC cameras pad MJPEG frames)."""
    nonzero = np.flatnonzero(buf[-65536:])
    if nonzero.size == 0:
        return False
    end = int(nonzero[-1]) + 1
    tail = buf[-65536:][max(0, end - 64) : end].tobytes()
    return _JPEG_EOI in tail


def check_compressed_msg(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """The checks that need no decoding (microseconds): format, empty data, the size the
    PNG/JPEG header declares, a JPEG's end marker. Returns the data as a uint8 view;
    raises :class:`ImageConversionError`. Corrupt data past these checks is caught by
    :func:`compressed_msg_to_rgb`."""
    fmt = str(getattr(msg, "format", "") or "")
    if "compresseddepth" in fmt.lower().replace(" ", ""):
        raise ImageConversionError(f"compressed format '{fmt}' (compressedDepth) is not supported")
    buf = _as_bytes_view(msg.data)
    if buf.size == 0:
        raise ImageConversionError(f"compressed image data is empty (format '{fmt}')")
    head = buf[:65536].tobytes()
    size = _peek_size(head)
    if size is not None:
        if size[0] == 0 or size[1] == 0:
            raise ImageConversionError(f"compressed image header declares zero size {size[0]}x{size[1]}")
        _check_side(*size, max_side)
    if head.startswith(_JPEG_SOI) and not _jpeg_has_end(buf):
        # OpenCV 4 decodes a truncated JPEG with a warning and grey rows; refuse it here.
        raise ImageConversionError(
            f"JPEG data of {buf.size} bytes has no end-of-image marker (truncated?) (format '{fmt}')"
        )
    return buf


def compressed_msg_to_rgb(msg: Any, *, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) to ``(H, W, 3)`` uint8 RGB.

    ``format`` may be a bare codec (``"jpeg"``, ``"png"``) or image_transport's
    ``"<encoding>; <codec> compressed <encoding>"``; the codec is recognised from the
    data itself, as image_transport's decoder does. Decoded pixels are in OpenCV's
    BGR(A) order; 16-bit PNGs are scaled as mono16. ``compressedDepth`` (a depth-image
    header before the PNG) is refused. Empty, truncated or corrupt data, and images
    whose header declares a side above ``max_side``, raise :class:`ImageConversionError`.
    Corruption inside JPEG entropy-coded data that the decoder tolerates cannot be
    detected and decodes to wrong pixels, as with any JPEG decoder.
    """
    fmt = str(getattr(msg, "format", "") or "")
    buf = check_compressed_msg(msg, max_side=max_side)
    try:
        decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as e:
        raise ImageConversionError(f"cannot decode {buf.size} bytes (format '{fmt}'): {e}") from e
    if decoded is None or decoded.size == 0:
        raise ImageConversionError(
            f"cannot decode {buf.size} bytes (format '{fmt}'): corrupt, truncated or unknown codec"
        )
    height, width = decoded.shape[:2]
    _check_side(width, height, max_side)
    if decoded.dtype == np.uint16:
        decoded = _gray16_to_8(decoded)
    elif decoded.dtype != np.uint8:
        raise ImageConversionError(
            f"decoded image has unsupported pixel type {decoded.dtype} (format '{fmt}')"
        )
    if decoded.ndim == 2 or decoded.shape[2] == 1:
        return _to_rgb(decoded.reshape(height, width), "gray")
    if decoded.shape[2] == 3:
        return _to_rgb(decoded, "bgr")
    if decoded.shape[2] == 4:
        return _to_rgb(decoded, "bgra")
    raise ImageConversionError(f"decoded image has {decoded.shape[2]} channels (format '{fmt}')")
