"""Image message conversion: exact pixels per encoding, padding, errors, round trips,
equality with an independently built OpenCV reference, and the cv_bridge adapter."""

from __future__ import annotations

import struct
import subprocess
import sys
import types

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from octopus_ros.ros import image_convert as ic
from octopus_ros.ros.image_convert import (
    CvBridgeAdapter,
    ImageConversionError,
    compressed_msg_to_rgb,
    image_msg_to_rgb,
    rgb_to_compressed_msg,
    rgb_to_image_msg,
)

# Bytes per pixel and channels of each encoding, written out here independently of the module.
ENCODINGS = {
    "rgb8": (3, 3),
    "bgr8": (3, 3),
    "8UC3": (3, 3),
    "rgba8": (4, 4),
    "bgra8": (4, 4),
    "8UC4": (4, 4),
    "mono8": (1, 1),
    "8UC1": (1, 1),
    "mono16": (2, 1),
    "16UC1": (2, 1),
}


def raw_msg(
    data: bytes, width: int, height: int, encoding: str, step: int | None = None, bigendian: bool = False
) -> Image:
    """An Image message from raw bytes (no checks: tests build malformed ones too)."""
    bpp = ENCODINGS.get(encoding, (1, 1))[0]
    msg = Image()
    msg.width, msg.height, msg.encoding = width, height, encoding
    msg.step = width * bpp if step is None else step
    msg.is_bigendian = int(bigendian)
    msg.data = bytes(data)
    return msg


def padded(rows: list[bytes], pad: int, fill: int = 0xEE) -> bytes:
    return b"".join(r + bytes([fill]) * pad for r in rows)


# --------------------------------------------------------------------------- exact pixel values
# A 2x1 image: pixel 0 and pixel 1, per encoding, and the RGB the module must give.
EXACT = {
    "rgb8": (bytes([10, 20, 30, 200, 150, 100]), [[10, 20, 30], [200, 150, 100]]),
    "bgr8": (bytes([10, 20, 30, 200, 150, 100]), [[30, 20, 10], [100, 150, 200]]),
    "8UC3": (bytes([10, 20, 30, 200, 150, 100]), [[30, 20, 10], [100, 150, 200]]),
    "rgba8": (bytes([10, 20, 30, 7, 200, 150, 100, 255]), [[10, 20, 30], [200, 150, 100]]),
    "bgra8": (bytes([10, 20, 30, 7, 200, 150, 100, 255]), [[30, 20, 10], [100, 150, 200]]),
    "8UC4": (bytes([10, 20, 30, 7, 200, 150, 100, 255]), [[30, 20, 10], [100, 150, 200]]),
    "mono8": (bytes([0, 77]), [[0, 0, 0], [77, 77, 77]]),
    "8UC1": (bytes([255, 1]), [[255, 255, 255], [1, 1, 1]]),
    # 16 bit little-endian: 65535 -> 255, 257*100 -> 100; 128 -> round(0.498) = 0, 129 -> 1.
    "mono16": (struct.pack("<HH", 65535, 25700), [[255, 255, 255], [100, 100, 100]]),
    "16UC1": (struct.pack("<HH", 128, 129), [[0, 0, 0], [1, 1, 1]]),
}


@pytest.mark.parametrize("encoding", list(EXACT))
def test_exact_pixels_per_encoding(encoding):
    data, expected = EXACT[encoding]
    rgb = image_msg_to_rgb(raw_msg(data, 2, 1, encoding))
    assert rgb.shape == (1, 2, 3) and rgb.dtype == np.uint8
    assert rgb.tolist() == [expected]
    assert rgb.flags.c_contiguous and rgb.flags.owndata


def test_mono16_big_endian_is_honoured():
    data = struct.pack(">HH", 1000, 59395)  # 0x03E8, 0xE803: byte-swapped pairs
    rgb = image_msg_to_rgb(raw_msg(data, 2, 1, "mono16", bigendian=True))
    assert rgb[0, :, 0].tolist() == [4, 231]  # round(1000 / 257), round(59395 / 257)
    # The same bytes read as little-endian are the swapped numbers.
    assert image_msg_to_rgb(raw_msg(data, 2, 1, "mono16"))[0, :, 0].tolist() == [231, 4]


@pytest.mark.parametrize("encoding", ["rgb8", "bgra8", "mono8", "mono16"])
def test_row_padding_is_skipped(encoding):
    bpp = ENCODINGS[encoding][0]
    rng = np.random.default_rng(1)
    rows = [rng.integers(0, 256, 3 * bpp, dtype=np.uint8).tobytes() for _ in range(4)]
    tight = image_msg_to_rgb(raw_msg(b"".join(rows), 3, 4, encoding))
    for pad in (1, 5, 16):
        msg = raw_msg(padded(rows, pad), 3, 4, encoding, step=3 * bpp + pad)
        assert np.array_equal(image_msg_to_rgb(msg), tight), pad


def test_result_never_aliases_the_message_buffer():
    msg = raw_msg(bytes(range(12)), 2, 2, "rgb8")
    rgb = image_msg_to_rgb(msg)
    rgb[...] = 0
    assert bytes(msg.data) == bytes(range(12))


def test_plain_list_data_is_accepted():
    msg = types.SimpleNamespace(width=1, height=1, encoding="rgb8", step=3, is_bigendian=0, data=[1, 2, 3])
    assert image_msg_to_rgb(msg).tolist() == [[[1, 2, 3]]]


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (raw_msg(bytes(12), 2, 2, "yuv422"), r"unsupported image encoding 'yuv422'"),
        (raw_msg(b"", 2, 2, "rgb8"), r"image data is empty"),
        (raw_msg(bytes(12), 0, 2, "rgb8"), r"zero size: width 0, height 2"),
        (raw_msg(bytes(12), 2, 0, "rgb8"), r"zero size: width 2, height 0"),
        (raw_msg(bytes(10), 2, 2, "rgb8", step=5), r"step 5 is smaller than one row of 2 px x 3 bytes = 6"),
        (raw_msg(bytes(11), 2, 2, "rgb8"), r"11 bytes but step x height = 6 x 2 = 12 bytes"),
        (raw_msg(bytes(13), 2, 2, "rgb8"), r"13 bytes but step x height = 6 x 2 = 12 bytes"),
        (raw_msg(bytes(8), 2, 2, "mono16", step=2), r"step 2 is smaller than one row of 2 px x 2 bytes = 4"),
    ],
)
def test_malformed_images_raise_with_the_reason(msg, match):
    with pytest.raises(ImageConversionError, match=match):
        image_msg_to_rgb(msg)


def test_absurd_size_is_refused_and_the_limit_is_configurable():
    # The size check comes before the data checks: no need to allocate 8193 px of data.
    with pytest.raises(ImageConversionError, match=r"8193x1 px exceeds the maximum side of 8192"):
        image_msg_to_rgb(raw_msg(b"\0", 8193, 1, "mono8"))
    msg = raw_msg(bytes(64 * 4 * 3), 64, 4, "rgb8")
    assert image_msg_to_rgb(msg).shape == (4, 64, 3)
    with pytest.raises(ImageConversionError, match=r"maximum side of 32 px"):
        image_msg_to_rgb(msg, max_side=32)


def test_a_strip_is_refused_before_it_is_scaled_up():
    # A 4096x1 image within the maximum side would become 64x262144 at a model's input scale.
    with pytest.raises(ImageConversionError, match=r"4096x1 px is a strip, not a camera frame"):
        image_msg_to_rgb(raw_msg(bytes(4096 * 3), 4096, 1, "rgb8"))
    with pytest.raises(ImageConversionError, match=r"1x65 px is a strip"):
        image_msg_to_rgb(raw_msg(bytes(65), 1, 65, "mono8"))
    assert image_msg_to_rgb(raw_msg(bytes(64), 1, 64, "mono8")).shape == (64, 1, 3)  # 64:1 is the limit
    ok, png = cv2.imencode(".png", np.zeros((2, 200), np.uint8))
    with pytest.raises(ImageConversionError, match=r"200x2 px is a strip"):
        compressed_msg_to_rgb(CompressedImage(format="png", data=png.tobytes()))


def test_mono16_rows_at_odd_byte_offsets_are_read():
    # step 667 for 333 px of 2 bytes: every other row starts at an odd byte; shrinking reads them
    width, height, step = 333, 240, 667
    values = (np.arange(height * width, dtype=np.uint32) * 7 % 65536).astype("<u2").reshape(height, width)
    data = bytearray(step * height)
    for r in range(height):
        data[r * step : r * step + 2 * width] = values[r].tobytes()
    msg = raw_msg(bytes(data), width, height, "mono16", step=step)
    full = image_msg_to_rgb(msg)
    assert np.array_equal(full[..., 0], ((values.astype(np.uint32) + 128) // 257).astype(np.uint8))
    assert image_msg_to_rgb(msg, min_side=64).shape == (64, round(333 * 64 / 240), 3)


def test_conversion_error_is_a_value_error():
    assert issubclass(ImageConversionError, ValueError)


# --------------------------------------------------------------------------- message builders
@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_rgb_to_image_msg_fields(encoding):
    rgb = np.arange(5 * 4 * 3, dtype=np.uint8).reshape(5, 4, 3)
    header = Header(frame_id="camera_optical")
    msg = rgb_to_image_msg(rgb, encoding=encoding, header=header)
    bpp = ENCODINGS[encoding][0]
    assert (msg.height, msg.width, msg.encoding, msg.step) == (5, 4, encoding, 4 * bpp)
    assert len(msg.data) == 5 * 4 * bpp and msg.is_bigendian == 0
    assert msg.header.frame_id == "camera_optical"


def test_rgb_to_image_msg_rejects_non_rgb_arrays():
    with pytest.raises(ImageConversionError, match=r"\(H, W, 3\) uint8"):
        rgb_to_image_msg(np.zeros((4, 4), np.uint8))
    with pytest.raises(ImageConversionError, match=r"\(H, W, 3\) uint8"):
        rgb_to_image_msg(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ImageConversionError, match=r"cannot encode as 'yuv422'"):
        rgb_to_image_msg(np.zeros((4, 4, 3), np.uint8), encoding="yuv422")


COLOUR = ["rgb8", "bgr8", "8UC3", "rgba8", "bgra8", "8UC4"]
GRAY = ["mono8", "8UC1", "mono16", "16UC1"]


@settings(max_examples=60, deadline=None)
@given(
    height=st.integers(1, 24),
    width=st.integers(1, 24),
    encoding=st.sampled_from(COLOUR + GRAY),
    seed=st.integers(0, 2**32 - 1),
)
def test_round_trip_random_sizes_and_encodings(height, width, encoding, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    back = image_msg_to_rgb(rgb_to_image_msg(rgb, encoding=encoding))
    if encoding in COLOUR:
        assert np.array_equal(back, rgb)
    else:
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        assert np.array_equal(back, np.stack([gray] * 3, axis=-1))


# --------------------------------------------------------------------------- independent reference
_REFERENCE_CODES = {
    "rgb": None,
    "bgr": cv2.COLOR_BGR2RGB,
    "rgba": cv2.COLOR_RGBA2RGB,
    "bgra": cv2.COLOR_BGRA2RGB,
}
_ORDER = {
    "rgb8": "rgb",
    "bgr8": "bgr",
    "8UC3": "bgr",
    "rgba8": "rgba",
    "bgra8": "bgra",
    "8UC4": "bgra",
}


def reference_rgb(
    data: bytes, width: int, height: int, step: int, encoding: str, bigendian: bool
) -> np.ndarray:
    """RGB built with numpy reshapes and OpenCV (cvtColor, convertScaleAbs) only."""
    bpp, channels = ENCODINGS[encoding]
    rows = np.frombuffer(data, np.uint8).reshape(height, step)[:, : width * bpp]
    if bpp == 2:
        gray16 = rows.copy().view(">u2" if bigendian else "<u2").reshape(height, width).astype(np.uint16)
        gray8 = cv2.convertScaleAbs(gray16, alpha=255.0 / 65535.0)
        return cv2.cvtColor(gray8, cv2.COLOR_GRAY2RGB)
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(rows), cv2.COLOR_GRAY2RGB)
    pixels = np.ascontiguousarray(rows.reshape(height, width, channels))
    code = _REFERENCE_CODES[_ORDER[encoding]]
    return pixels.copy() if code is None else cv2.cvtColor(pixels, code)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_conversion_equals_opencv_reference(encoding):
    rng = np.random.default_rng(abs(hash(encoding)) % 2**32)
    bpp = ENCODINGS[encoding][0]
    for width, height, pad, bigendian in [
        (1, 1, 0, False),
        (7, 5, 3, False),
        (33, 17, 0, True),
        (64, 48, 8, True),
    ]:
        step = width * bpp + pad
        data = rng.integers(0, 256, step * height, dtype=np.uint8).tobytes()
        ours = image_msg_to_rgb(raw_msg(data, width, height, encoding, step=step, bigendian=bigendian))
        ref = reference_rgb(data, width, height, step, encoding, bigendian)
        assert ref.shape == ours.shape == (height, width, 3)
        assert np.array_equal(ours, ref), (encoding, width, height, pad, bigendian)


def test_mono16_reference_agrees_on_every_16_bit_value():
    values = np.arange(65536, dtype="<u2")
    msg = raw_msg(values.tobytes(), 256, 256, "mono16")
    ours = image_msg_to_rgb(msg)[..., 0].reshape(-1)
    ref = cv2.convertScaleAbs(values.astype(np.uint16), alpha=255.0 / 65535.0).reshape(-1)
    assert np.array_equal(ours, ref)


# --------------------------------------------------------------------------- compressed
def _scene(height: int = 48, width: int = 64) -> np.ndarray:
    """A smooth test image (compresses well, JPEG error stays small)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) * 255 // (width + height)], -1).astype(
        np.uint8
    )


def compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage()
    msg.format = fmt
    msg.data = data
    return msg


def test_png_round_trip_is_exact_and_jpeg_close():
    rgb = _scene()
    header = Header(frame_id="cam")
    png = rgb_to_compressed_msg(rgb, fmt="png", header=header)
    assert png.format == "rgb8; png compressed bgr8" and png.header.frame_id == "cam"
    assert np.array_equal(compressed_msg_to_rgb(png), rgb)
    jpg = rgb_to_compressed_msg(rgb, fmt="jpeg", quality=95)
    assert jpg.format == "rgb8; jpeg compressed bgr8"
    back = compressed_msg_to_rgb(jpg)
    assert back.shape == rgb.shape
    assert np.abs(back.astype(int) - rgb.astype(int)).mean() < 3.0
    # Red stays red: channel order is right.
    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    out = compressed_msg_to_rgb(rgb_to_compressed_msg(red, fmt="jpeg"))
    assert out[..., 0].min() > 200 and out[..., 2].max() < 50


@pytest.mark.parametrize(
    "fmt", ["jpeg", "png", "", "bgr8; jpeg compressed bgr8", "mono8; png compressed mono8"]
)
def test_format_string_variants_decode(fmt):
    rgb = _scene()
    codec = ".png" if "png" in fmt else ".jpg"
    ok, enc = cv2.imencode(codec, rgb[..., ::-1].copy())
    assert ok
    assert compressed_msg_to_rgb(compressed(enc.tobytes(), fmt)).shape == rgb.shape


def test_gray_rgba_and_16_bit_pngs():
    gray = np.array([[0, 128, 255]], np.uint8)
    ok, enc = cv2.imencode(".png", gray)
    assert compressed_msg_to_rgb(compressed(enc.tobytes(), "png")).tolist() == [
        [[v] * 3 for v in (0, 128, 255)]
    ]
    bgra = np.array([[[1, 2, 3, 4]]], np.uint8)
    ok, enc = cv2.imencode(".png", bgra)
    assert compressed_msg_to_rgb(compressed(enc.tobytes(), "png")).tolist() == [[[3, 2, 1]]]
    g16 = np.array([[65535, 25700]], np.uint16)
    ok, enc = cv2.imencode(".png", g16)
    assert compressed_msg_to_rgb(compressed(enc.tobytes(), "png"))[0, :, 0].tolist() == [255, 100]


def test_jpeg_with_trailing_zero_padding_decodes():
    ok, enc = cv2.imencode(".jpg", _scene())
    assert compressed_msg_to_rgb(compressed(enc.tobytes() + bytes(1000), "jpeg")).shape == (48, 64, 3)


def _padded_jpeg(width: int, height: int, segments: int = 2) -> bytes:
    """A real JPEG whose frame header declares ``width`` x ``height``, behind ``segments`` APP15
    segments of 64 KiB each (a size check that reads only the first 64 KiB never sees it)."""
    ok, enc = cv2.imencode(".jpg", _scene())
    jpg = bytearray(enc.tobytes())
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    pad = b"".join(b"\xff\xef" + struct.pack(">H", 65535) + bytes(65533) for _ in range(segments))
    return bytes(jpg[:2]) + pad + bytes(jpg[2:])


def test_a_jpeg_size_behind_padding_segments_is_read_before_decoding():
    data = _padded_jpeg(20000, 20000)
    assert len(data) > 2 * 65536
    assert ic._peek_size(data) == (20000, 20000)
    with pytest.raises(ImageConversionError, match=r"20000x20000 px exceeds the maximum side of 8192"):
        ic.check_compressed_msg(compressed(data, "jpeg"))
    # the same padding around the true size decodes as before
    assert compressed_msg_to_rgb(compressed(_padded_jpeg(64, 48), "jpeg")).shape == (48, 64, 3)
    # a header of nothing but fill bytes ends the walk, not the process
    assert ic._peek_size(b"\xff\xd8" + b"\xff" * 100_000) is None


def _png_header_only(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + b"\0\0\0\0"


def test_corrupt_truncated_empty_and_unsupported_compressed_images():
    ok, jpg = cv2.imencode(".jpg", _scene())
    ok, png = cv2.imencode(".png", _scene())
    jpg, png = jpg.tobytes(), png.tobytes()
    cases = [
        (compressed(b"", "jpeg"), r"compressed image data is empty"),
        (compressed(jpg[: len(jpg) // 2], "jpeg"), r"no end-of-image marker"),
        (compressed(png[: len(png) - 30], "png"), r"cannot decode \d+ bytes \(format 'png'\)"),
        (compressed(np.random.default_rng(0).bytes(500), "jpeg"), r"cannot decode 500 bytes"),
        (compressed(jpg[:2] + b"\x00" * 200 + jpg[-2:], "jpeg"), r"no readable frame header \(SOF\)"),
        (compressed(png, "16UC1; compressedDepth png"), r"compressedDepth\) is not supported"),
        (compressed(_png_header_only(100000, 10), "png"), r"100000x10 px exceeds the maximum side of 8192"),
        (compressed(_png_header_only(0, 10), "png"), r"declares zero size 0x10"),
    ]
    for msg, match in cases:
        with pytest.raises(ImageConversionError, match=match):
            compressed_msg_to_rgb(msg)
    with pytest.raises(ImageConversionError, match=r"64x48 px exceeds the maximum side of 32"):
        compressed_msg_to_rgb(compressed(jpg, "jpeg"), max_side=32)


def test_jpeg_header_size_is_read_before_decoding():
    ok, jpg = cv2.imencode(".jpg", _scene(30, 70))
    assert ic._peek_size(jpg.tobytes()) == (70, 30)
    ok, png = cv2.imencode(".png", _scene(30, 70))
    assert ic._peek_size(png.tobytes()) == (70, 30)
    assert ic._peek_size(b"GIF89a") is None


def test_rgb_to_compressed_msg_rejects_bad_arguments():
    with pytest.raises(ImageConversionError, match=r"supported: jpeg, png"):
        rgb_to_compressed_msg(_scene(), fmt="webp2")
    with pytest.raises(ImageConversionError, match=r"quality must be in 1..100"):
        rgb_to_compressed_msg(_scene(), quality=0)


# --------------------------------------------------------------------------- adapter and backend
def test_module_imports_without_rclpy_or_message_packages():
    code = (
        "import sys; import octopus_ros.ros.image_convert as m; "
        "bad = [k for k in ('rclpy', 'sensor_msgs', 'cv_bridge') if k in sys.modules]; "
        "assert not bad, bad; print(m.conversion_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "builtin"  # no cv_bridge on this machine


@pytest.fixture
def fake_cv_bridge(monkeypatch):
    """Install a stand-in ``cv_bridge`` module; yields a function choosing its behaviour."""

    calls = []

    class FakeBridge:
        broken = False

        def cv2_to_imgmsg(self, array, encoding="passthrough"):
            if FakeBridge.broken:
                raise AttributeError("'numpy.ndarray' object has no attribute 'tostring'")
            return rgb_to_image_msg(array, encoding=encoding)

        def imgmsg_to_cv2(self, msg, desired_encoding="passthrough"):
            calls.append((msg.encoding, desired_encoding))
            if msg.encoding == "16UC1":
                raise RuntimeError("[16UC1] is not a color format. but [rgb8] is.")
            # Returns a view into the message, as the real cv_bridge does.
            return np.frombuffer(image_msg_to_rgb(msg).tobytes(), np.uint8).reshape(msg.height, msg.width, 3)

    module = types.ModuleType("cv_bridge")
    module.CvBridge = FakeBridge
    monkeypatch.setitem(sys.modules, "cv_bridge", module)
    ic._working_cv_bridge.cache_clear()
    yield FakeBridge, calls
    ic._working_cv_bridge.cache_clear()


def test_builtin_backend_here():
    ic._working_cv_bridge.cache_clear()
    assert ic.conversion_backend() == "builtin"
    adapter = CvBridgeAdapter()
    assert adapter.backend == "builtin"
    rgb = _scene()
    assert np.array_equal(adapter.to_rgb(rgb_to_image_msg(rgb, encoding="bgr8")), rgb)
    assert np.array_equal(adapter.to_rgb(rgb_to_compressed_msg(rgb, fmt="png")), rgb)
    with pytest.raises(ImportError, match="cv_bridge"):
        CvBridgeAdapter(backend="cv_bridge")
    with pytest.raises(ValueError, match="backend must be"):
        CvBridgeAdapter(backend="opencv")


def test_adapter_uses_a_working_cv_bridge(fake_cv_bridge):
    bridge, calls = fake_cv_bridge
    assert ic.conversion_backend() == "cv_bridge"
    adapter = CvBridgeAdapter(max_side=100)
    assert adapter.backend == "cv_bridge"
    rgb = _scene()
    out = adapter.image_to_rgb(rgb_to_image_msg(rgb, encoding="bgra8"))
    assert np.array_equal(out, rgb) and out.flags.writeable and out.flags.owndata
    assert calls[-1] == ("bgra8", "rgb8")
    # Our checks run first, whichever backend converts: same errors on both.
    n = len(calls)
    with pytest.raises(ImageConversionError, match=r"11 bytes but step x height"):
        adapter.image_to_rgb(raw_msg(bytes(11), 2, 2, "rgb8"))
    with pytest.raises(ImageConversionError, match=r"maximum side of 100"):
        adapter.image_to_rgb(raw_msg(bytes(101 * 3), 101, 1, "rgb8"))
    assert len(calls) == n
    # cv_bridge's own errors become ImageConversionError.
    with pytest.raises(ImageConversionError, match=r"cv_bridge could not convert 16UC1"):
        adapter.image_to_rgb(raw_msg(bytes(4), 2, 1, "16UC1"))
    assert CvBridgeAdapter(backend="builtin").backend == "builtin"


def test_a_broken_cv_bridge_falls_back_to_builtin(fake_cv_bridge, caplog):
    bridge, _ = fake_cv_bridge
    bridge.broken = True
    assert ic.conversion_backend() == "builtin"
    assert "does not work" in caplog.text and "tostring" in caplog.text
    assert CvBridgeAdapter().backend == "builtin"
