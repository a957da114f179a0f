"""sensor_msgs/Image and CompressedImage <-> RGB numpy arrays, without cv_bridge.

Robots have ``cv_bridge``; development machines with the PyPI ROS 2 wheels do not.
This module is the conversion the node uses where cv_bridge is missing, and the
checks it applies everywhere. It needs numpy and cv2 only: the ROS message classes
are imported lazily by the functions that build messages, and messages read by
:func:`image_msg_to_rgb` / :func:`compressed_msg_to_rgb` only need the usual fields
(``height``, ``width``, ``encoding``, ``is_bigendian``, ``step``, ``data``; ``format``
and ``data`` for compressed images), so any object shaped like a message works.

Every returned array is a fresh, C-contiguous ``(H, W, 3)`` ``uint8`` RGB array that
owns its memory (it never aliases the message buffer).

Camera frames are not converted where they arrive: :meth:`CvBridgeAdapter.view` checks the
header and keeps a zero-copy view of the buffer (:class:`RawImage`,
:class:`CompressedImageData`); ``view.rgb(min_side)`` later converts the one frame that is
used, shrunk to the model's input scale first (:func:`shrink`: 2x2 box averages, then one
``cv2.INTER_AREA`` step), so a 1080p frame costs about what a 640x480 one does.

Encodings read (``sensor_msgs/image_encodings``):

==============  ===============================================================
rgb8, bgr8      3 x 8 bit; ``8UC3`` is read as bgr8 (OpenCV's channel order)
rgba8, bgra8    4 x 8 bit, alpha dropped; ``8UC4`` is read as bgra8
mono8, 8UC1     gray, replicated to three channels
mono16, 16UC1   16-bit gray, scaled to 8 bit by 255/65535 with rounding (the
                scaling cv_bridge applies between 16- and 8-bit images), honouring
                ``is_bigendian``
==============  ===============================================================

Errors are :class:`ImageConversionError` (a ``ValueError``) naming the problem.
"""

from __future__ import annotations

import logging
from functools import cache
from typing import Any

import cv2
import numpy as np

from octopus_ros.images.decode import (  # noqa: F401 - re-exported: this module is the node's API
    _LAYOUTS,
    DEFAULT_MAX_SIDE,
    SUPPORTED_ENCODINGS,
    CompressedImageData,
    ImageConversionError,
    PixelLayout,
    RawImage,
    _check_rgb,
    _peek_size,
    check_compressed_msg,
    check_image_msg,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    shrink,
)

log = logging.getLogger(__name__)


def rgb_to_image_msg(rgb: np.ndarray, *, encoding: str = "rgb8", header: Any = None) -> Any:
    """Build a ``sensor_msgs/Image`` from an ``(H, W, 3)`` uint8 RGB array.

    ``encoding`` is any of :data:`SUPPORTED_ENCODINGS`: colour encodings keep the
    pixels (alpha is 255), gray ones store BT.601 luma (``cv2.COLOR_RGB2GRAY``), mono16
    and 16UC1 as ``luma * 257`` little-endian. Rows are not padded (``step`` is the
    row size). ``header`` (a ``std_msgs/Header``) is copied into the message.
    """
    from sensor_msgs.msg import Image

    rgb = _check_rgb(rgb)
    layout = _LAYOUTS.get(encoding)
    if layout is None:
        raise ImageConversionError(
            f"cannot encode as '{encoding}' (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    height, width = rgb.shape[:2]
    if layout.order == "rgb":
        pixels = rgb
    elif layout.order == "bgr":
        pixels = rgb[..., ::-1]
    elif layout.order in ("rgba", "bgra"):
        pixels = np.empty((height, width, 4), dtype=np.uint8)
        pixels[..., :3] = rgb if layout.order == "rgba" else rgb[..., ::-1]
        pixels[..., 3] = 255
    else:
        gray = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)
        pixels = (
            gray if layout.bytes_per_channel == 1 else (gray.astype(np.uint16) * np.uint16(257)).astype("<u2")
        )
    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = height, width
    msg.encoding = encoding
    msg.is_bigendian = 0
    msg.step = width * layout.bytes_per_pixel
    msg.data = np.ascontiguousarray(pixels).tobytes()
    return msg


def rgb_to_compressed_msg(
    rgb: np.ndarray, *, fmt: str = "jpeg", quality: int = 90, header: Any = None
) -> Any:
    """Encode an ``(H, W, 3)`` uint8 RGB array as a ``sensor_msgs/CompressedImage``.

    ``fmt`` is ``"jpeg"`` (``quality`` 1..100) or ``"png"`` (lossless; ``quality`` is
    ignored). The message's ``format`` is image_transport's ``"rgb8; jpeg compressed
    bgr8"`` form. ``header`` (a ``std_msgs/Header``) is copied into the message.
    """
    from sensor_msgs.msg import CompressedImage

    rgb = _check_rgb(rgb)
    codec = fmt.lower()
    if codec in ("jpeg", "jpg"):
        if not 1 <= int(quality) <= 100:
            raise ImageConversionError(f"JPEG quality must be in 1..100, got {quality}")
        ext, params, codec = ".jpg", [cv2.IMWRITE_JPEG_QUALITY, int(quality)], "jpeg"
    elif codec == "png":
        ext, params = ".png", []
    else:
        raise ImageConversionError(f"cannot compress as '{fmt}' (supported: jpeg, png)")
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    ok, encoded = cv2.imencode(ext, bgr, params)
    if not ok:
        raise ImageConversionError(
            f"OpenCV could not encode a {rgb.shape[1]}x{rgb.shape[0]} image as {codec}"
        )
    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = f"rgb8; {codec} compressed bgr8"
    msg.data = encoded.tobytes()
    return msg


# --------------------------------------------------------------------------- cv_bridge adapter


@cache
def _working_cv_bridge() -> Any:
    """cv_bridge's CvBridge class if it imports and converts a probe image, else None.

    The probe matters: the PyPI ``cv-bridge`` is an old ROS 1 copy that imports but
    fails on numpy 2 (``ndarray.tostring``).
    """
    try:
        from cv_bridge import CvBridge
    except ImportError:
        return None
    try:
        bridge = CvBridge()
        probe = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
        back = bridge.imgmsg_to_cv2(bridge.cv2_to_imgmsg(probe, encoding="rgb8"), desired_encoding="rgb8")
        if not np.array_equal(np.asarray(back), probe):
            raise ValueError("probe image changed in a round trip")
    except Exception as e:  # any failure means: do not use it
        log.warning(
            "cv_bridge imports but does not work (%s: %s); using the built-in conversion", type(e).__name__, e
        )
        return None
    return CvBridge


def conversion_backend() -> str:
    """``"cv_bridge"`` when a working cv_bridge is importable (robots), else ``"builtin"``."""
    return "cv_bridge" if _working_cv_bridge() is not None else "builtin"


class CvBridgeAdapter:
    """Image messages to RGB arrays through cv_bridge when it works, else this module.

    Both backends first apply :func:`check_image_msg`, so malformed messages fail the
    same way (:class:`ImageConversionError`) whichever backend runs. Compressed images
    always use :func:`compressed_msg_to_rgb`: cv_bridge's compressed path is the same
    ``cv2.imdecode`` without the truncation and size checks.

    Args:
        backend: ``"auto"`` (cv_bridge if it works), ``"cv_bridge"`` (required; raises
            ``ImportError`` if unusable) or ``"builtin"``.
        max_side: largest accepted width or height in pixels.
    """

    def __init__(self, *, backend: str = "auto", max_side: int = DEFAULT_MAX_SIDE) -> None:
        if backend not in ("auto", "cv_bridge", "builtin"):
            raise ValueError(f"backend must be 'auto', 'cv_bridge' or 'builtin', got {backend!r}")
        if int(max_side) < 1:
            raise ValueError(f"max_side must be positive, got {max_side}")
        self.max_side = int(max_side)
        bridge_cls = None if backend == "builtin" else _working_cv_bridge()
        if backend == "cv_bridge" and bridge_cls is None:
            raise ImportError(
                "backend 'cv_bridge' requested but cv_bridge is not importable or does not work"
            )
        self._bridge = bridge_cls() if bridge_cls is not None else None
        self.backend = "cv_bridge" if self._bridge is not None else "builtin"

    def image_to_rgb(self, msg: Any) -> np.ndarray:
        """``sensor_msgs/Image`` to a fresh ``(H, W, 3)`` uint8 RGB array."""
        if self._bridge is None:
            return image_msg_to_rgb(msg, max_side=self.max_side)
        check_image_msg(msg, max_side=self.max_side)
        try:
            rgb = self._bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
        except Exception as e:  # cv_bridge raises CvBridgeError, TypeError, cv2.error ...
            raise ImageConversionError(f"cv_bridge could not convert {msg.encoding} to rgb8: {e}") from e
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ImageConversionError(f"cv_bridge returned shape {rgb.shape} dtype {rgb.dtype}, not RGB8")
        return np.array(rgb, dtype=np.uint8, order="C", copy=True)

    def compressed_to_rgb(self, msg: Any) -> np.ndarray:
        """``sensor_msgs/CompressedImage`` to a fresh ``(H, W, 3)`` uint8 RGB array."""
        return compressed_msg_to_rgb(msg, max_side=self.max_side)

    def check(self, msg: Any) -> str:
        """Cheap validity check of either message type without decoding: "" or the problem."""
        try:
            if hasattr(msg, "format") and not hasattr(msg, "encoding"):
                check_compressed_msg(msg, max_side=self.max_side)
            else:
                check_image_msg(msg, max_side=self.max_side)
        except ImageConversionError as e:
            return str(e)
        return ""

    def view(self, msg: Any) -> RawImage | CompressedImageData:
        """Either message type, checked and held as a zero-copy view of its buffer, not converted.

        What the camera callbacks call: microseconds at any resolution (header checks and a
        ``numpy.frombuffer``). The pixels are converted later, by the view's ``rgb(min_side)``, for
        the frame that is used only, with this module's OpenCV conversion whichever backend this
        adapter has (cv_bridge reads no encoding that :func:`check_image_msg` lets through, and
        cannot shrink before converting). Raises :class:`ImageConversionError`.
        """
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):
            return CompressedImageData(msg, max_side=self.max_side)
        return RawImage(msg, max_side=self.max_side)

    def to_rgb(self, msg: Any) -> np.ndarray:
        """Either message type: CompressedImage (has ``format``) or Image."""
        if hasattr(msg, "format") and not hasattr(msg, "encoding"):
            return self.compressed_to_rgb(msg)
        return self.image_to_rgb(msg)
