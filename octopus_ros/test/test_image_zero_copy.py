"""Camera frames held as zero-copy views and converted once, at the model's input scale.

The callback side (RawImage / CompressedImageData via CvBridgeAdapter.view, the node's
_camera_frame) only checks headers and keeps a view of the message buffer; the engine converts
the frame it uses through Frame.shrink at the side the model's preprocessor works at.
"""

from __future__ import annotations

import functools
import itertools
import time
import types

import cv2
import numpy as np
import pytest
import torch
from sensor_msgs.msg import CompressedImage, Image

from octopus_ros.images import decode as dec
from octopus_ros.model.config import VisionConfig
from octopus_ros.model.preprocess import ImagePreprocessor
from octopus_ros.ros.image_convert import (
    CompressedImageData,
    CvBridgeAdapter,
    ImageConversionError,
    RawImage,
    image_msg_to_rgb,
    rgb_to_compressed_msg,
    shrink,
)
from octopus_ros.runtime.engine import input_side
from octopus_ros.runtime.outcomes import Frame, OutcomeCode

# (bytes per pixel, channels, where R, G, B sit among the channels; None = gray), written out here
# independently of the module.
LAYOUT = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, None),
}


def smooth_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth random RGB image (blurred noise): box averages of it are well defined."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(img, (0, 0), 3)


def message(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image message of ``pixels`` ((H, W, C) in the encoding's channel order, or (H, W)),
    each row followed by ``pad`` bytes of 0xEE."""
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1).view(np.uint8).reshape(height, -1)
    if pad:
        rows = np.concatenate([rows, np.full((height, pad), 0xEE, np.uint8)], axis=1)
    msg = Image()
    msg.height, msg.width, msg.encoding = height, width, encoding
    msg.step = rows.shape[1]
    msg.is_bigendian = int(bigendian)
    msg.data = rows.tobytes()
    return msg


def encoded(rgb: np.ndarray, encoding: str) -> np.ndarray:
    """``rgb`` laid out as ``encoding`` (alpha 255; gray = the mean of the channels)."""
    bpp, order = LAYOUT[encoding]
    if order is None:
        return rgb.mean(axis=2).round().astype(np.uint8)
    out = np.full(rgb.shape[:2] + (bpp,), 255, np.uint8)
    for channel, src in zip(order, range(3), strict=True):
        out[..., channel] = rgb[..., src]
    return out


def block_mean(rgb: np.ndarray, k: int) -> np.ndarray:
    h, w = rgb.shape[0] // k, rgb.shape[1] // k
    return rgb[: h * k, : w * k].reshape(h, k, w, k, -1).astype(np.float64).mean(axis=(1, 3))


# --------------------------------------------------------------------------- zero copy
def test_rclpy_gives_uint8_arrays_and_the_view_shares_their_memory():
    rgb = smooth_rgb(6, 5)
    msg = message(rgb, "rgb8", pad=3)
    view = RawImage(msg)
    assert view.data.dtype == np.uint8 and view.data.size == len(msg.data)
    # The view is the message's buffer: writing the message shows through it, nothing was copied.
    msg.data[0] = 7
    assert view.data[0] == 7
    msg.data[0] = 9
    assert view.data[0] == 9
    assert view.rgb()[0, 0, 0] == 9


def test_view_outlives_the_message():
    msg = message(smooth_rgb(4, 4), "rgb8")
    expected = image_msg_to_rgb(msg)
    view = RawImage(msg)
    del msg
    assert np.array_equal(view.rgb(), expected)


# --------------------------------------------------------------------------- shrink per encoding
@pytest.mark.parametrize("encoding", list(LAYOUT))
@pytest.mark.parametrize("pad", [0, 5])
def test_shrink_is_a_box_average_per_encoding(encoding, pad):
    rgb = smooth_rgb(96, 128, seed=len(encoding) + pad)
    msg = message(encoded(rgb, encoding), encoding, pad=pad)
    small = RawImage(msg).rgb(24)  # 96 -> 24: two exact halvings
    assert small.shape == (24, 32, 3) and small.dtype == np.uint8 and small.flags.c_contiguous
    full = RawImage(msg).rgb()
    reference = block_mean(full, 4)
    assert np.abs(small.astype(np.float64) - reference).max() <= 1.0  # rounding at each halving


@pytest.mark.parametrize("bigendian", [False, True])
def test_shrink_mono16_in_either_byte_order(bigendian):
    rng = np.random.default_rng(1)
    gray = cv2.GaussianBlur(rng.integers(0, 65536, (64, 48)).astype(np.uint16), (0, 0), 3)
    msg = message(gray.astype(">u2" if bigendian else "<u2"), "mono16", pad=2, bigendian=bigendian)
    small = RawImage(msg).rgb(12)
    assert small.shape == (16, 12, 3)
    reference = block_mean(gray[..., None].astype(np.float64), 4)[..., 0] * 255 / 65535
    assert np.abs(small[..., 0] - reference).max() <= 1.0
    assert np.array_equal(small[..., 0], small[..., 2])


def test_shrink_to_a_non_integer_factor_matches_opencv_area():
    rgb = smooth_rgb(1080 // 4, 1920 // 4)  # 270x480 -> shorter side 64: one halving, then 135 -> 64
    small = RawImage(message(rgb[..., ::-1], "bgr8", pad=1)).rgb(64)
    assert small.shape == (64, 114, 3)
    direct = cv2.resize(rgb, (114, 64), interpolation=cv2.INTER_AREA)
    # The same box filter, up to where the box edges fall inside a pixel (the halving aligns them
    # to even pixels): measured 1.4 grey levels on average on this image.
    assert np.abs(small.astype(int) - direct.astype(int)).mean() < 2.0
    assert np.abs(small.mean(axis=(0, 1)) - direct.mean(axis=(0, 1))).max() < 0.5


def test_images_no_larger_than_the_side_are_converted_whole():
    rgb = smooth_rgb(20, 30)
    msg = message(rgb[..., ::-1], "bgr8")
    assert np.array_equal(RawImage(msg).rgb(20), rgb)
    assert np.array_equal(RawImage(msg).rgb(64), rgb)  # never enlarged: the model's resize does that


@pytest.mark.parametrize(
    ("height", "width", "side"), [(1080, 1920, 64), (1080, 1920, 224), (480, 640, 64), (333, 97, 50)]
)
def test_shrunk_size_is_the_one_the_model_preprocessor_resizes_to(height, width, side):
    """Frame.shrink and ImagePreprocessor agree: the preprocessor only crops, never resamples again."""
    pre = ImagePreprocessor(
        config=VisionConfig(open_clip={"vision_cfg": {"image_size": side}}, resize_mode="crop")
    )
    small = shrink(np.zeros((height, width, 3), np.uint8), side)
    assert min(small.shape[:2]) == side
    x = torch.rand(1, 3, *small.shape[:2])
    image = (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1)[0].numpy()
    out = pre(image)
    h, w = small.shape[:2]
    top, left = (h - side) // 2, (w - side) // 2
    crop = (
        torch.as_tensor(image)
        .permute(2, 0, 1)[None]
        .float()
        .div(255.0)[:, :, top : top + side, left : left + side]
    )
    assert torch.allclose(out, (crop - pre.mean) / pre.std, atol=1e-6)


def test_shrink_refuses_a_nonpositive_side():
    with pytest.raises(ValueError, match="min_side"):
        shrink(np.zeros((4, 4), np.uint8), 0)


# --------------------------------------------------------------------------- errors at arrival
@pytest.mark.parametrize(
    ("change", "match"),
    [
        (dict(encoding="yuv422"), "unsupported image encoding 'yuv422'"),
        (dict(data=b"\0" * 10), "image data has 10 bytes but step x height"),
        (dict(step=5), "step 5 is smaller than one row"),
        (dict(width=0), "zero size"),
        (dict(data=b""), "empty"),
    ],
)
def test_a_wrong_message_is_refused_with_its_reason_at_arrival(change, match):
    msg = message(smooth_rgb(4, 4), "rgb8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageConversionError, match=match):
        CvBridgeAdapter(backend="builtin").view(msg)


def test_a_side_above_max_side_is_refused():
    msg = message(np.zeros((2, 70), np.uint8), "mono8")
    with pytest.raises(ImageConversionError, match="exceeds the maximum side of 64"):
        CvBridgeAdapter(backend="builtin", max_side=64).view(msg)


# --------------------------------------------------------------------------- compressed
def test_compressed_jpeg_is_decoded_at_reduced_scale_then_shrunk():
    rgb = smooth_rgb(480, 640)
    msg = rgb_to_compressed_msg(rgb, fmt="jpeg", quality=95)
    view = CvBridgeAdapter(backend="builtin").view(msg)
    assert isinstance(view, CompressedImageData) and view.size == (640, 480)
    assert view._reduction(64)[0] == 4 and view._reduction(200)[0] == 2 and view._reduction(None)[0] == 1
    small = view.rgb(64)
    assert small.shape == (64, 85, 3)
    reference = cv2.resize(rgb, (85, 64), interpolation=cv2.INTER_AREA)
    assert np.abs(small.astype(int) - reference.astype(int)).mean() < 3.0
    assert view.rgb().shape == (480, 640, 3)


def test_compressed_png_shrinks_too():
    rgb = smooth_rgb(64, 96)
    small = CvBridgeAdapter(backend="builtin").view(rgb_to_compressed_msg(rgb, fmt="png")).rgb(16)
    assert small.shape == (16, 24, 3)
    assert np.abs(small - block_mean(rgb, 4)).max() <= 1.0


def test_truncated_jpeg_is_refused_at_arrival():
    msg = rgb_to_compressed_msg(smooth_rgb(32, 32), fmt="jpeg")
    cut = CompressedImage(format=msg.format, data=bytes(msg.data)[:-40])
    with pytest.raises(ImageConversionError, match="no end-of-image marker"):
        CvBridgeAdapter(backend="builtin").view(cut)


# --------------------------------------------------------------------------- the callback converts nothing
@pytest.fixture
def conversions(monkeypatch):
    """Counts every pixel conversion the decode module makes (channel conversion and resizes)."""
    counts = {"to_rgb": 0, "resize": 0}
    to_rgb, resize = dec._to_rgb, cv2.resize

    def counting_to_rgb(*args, **kwargs):
        counts["to_rgb"] += 1
        return to_rgb(*args, **kwargs)

    def counting_resize(*args, **kwargs):
        counts["resize"] += 1
        return resize(*args, **kwargs)

    monkeypatch.setattr(dec, "_to_rgb", counting_to_rgb)
    monkeypatch.setattr(dec.cv2, "resize", counting_resize)
    return counts


def camera_frame_maker():
    """OctopusNode._camera_frame bound to the little state it reads (no ROS context needed)."""
    from octopus_ros.ros.octopus_node import OctopusNode

    node = types.SimpleNamespace(
        _bridge=CvBridgeAdapter(backend="builtin"),
        _params=types.SimpleNamespace(max_future_stamp=1.0, image_age_source="stamp"),
        _now=time.time,
        _frame_seq=itertools.count(1),
    )
    node._frame = functools.partial(OctopusNode._frame, node)
    return functools.partial(OctopusNode._camera_frame, node)


def stamped(msg):
    now = time.time()
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
    return msg


def test_the_camera_callback_converts_no_pixel(conversions):
    camera_frame = camera_frame_maker()
    msg = stamped(message(np.tile(smooth_rgb(108, 192), (10, 10, 1))[..., ::-1], "bgr8"))
    frame = camera_frame(msg)
    assert frame.problem == "" and conversions == {"to_rgb": 0, "resize": 0}
    # The frame holds the message buffer itself, not a copy of it.
    assert np.shares_memory(frame.shrink.__self__.data, np.frombuffer(msg.data, np.uint8))
    small = frame.shrink(64)  # the engine's side: converted here, once
    assert small.shape == (64, 114, 3) and conversions["to_rgb"] == 1 and conversions["resize"] >= 1
    jpeg = stamped(rgb_to_compressed_msg(smooth_rgb(240, 320), fmt="jpeg"))
    before = dict(conversions)
    compressed = camera_frame(jpeg)
    assert compressed.problem == "" and conversions == before


def test_the_camera_callback_marks_a_bad_message_malformed_without_raising():
    camera_frame = camera_frame_maker()
    msg = stamped(message(smooth_rgb(4, 4), "rgb8"))
    msg.data = b"\0" * 10
    frame = camera_frame(msg)
    assert "image data has 10 bytes" in frame.problem and frame.shrink is None
    with pytest.raises(ImageConversionError, match="image data has 10 bytes"):
        frame.decode()


# --------------------------------------------------------------------------- engine: convert once, small
class SizedModel:
    """A model whose preprocessor works at ``side``; records the shapes it is given."""

    def __init__(self, side: int):
        self.preprocessor = types.SimpleNamespace(size=side)
        self.shapes = []

    def encode(self, image):
        self.shapes.append(np.asarray(image).shape)
        return float(np.asarray(image).mean())

    def decide(self, text, encoding, *, allowlist=None, mode="constrained"):
        from test_runtime_engine import FakeCall, FakeDecision

        return FakeDecision(FakeCall("stop", 3), None, 0.99, "<nexa_3>()<nexa_end>")


def test_input_side_is_read_from_the_model_preprocessor():
    assert input_side(SizedModel(64)) == 64
    assert input_side(types.SimpleNamespace()) is None
    assert input_side(types.SimpleNamespace(preprocessor=types.SimpleNamespace(size=0))) is None


def frame_of(msg, seq, clock, shrink=True):
    view = RawImage(msg)
    return Frame(seq, clock, clock, "cam", view.rgb, shrink=view.rgb if shrink else None)


def test_engine_encodes_the_frame_shrunk_to_the_model_side(harness):
    model = SizedModel(32)
    h = harness(model=model, prefetch_rate=0)
    msg = message(smooth_rgb(480, 640)[..., ::-1], "bgr8")
    h.engine.on_frame(frame_of(msg, 1, h.clock))
    h.say("please stop")
    assert h.wait(1)[0].code == OutcomeCode.OK
    assert model.shapes == [(32, 43, 3)]
    # A frame source that cannot shrink is decoded whole, as before (another scene: encoded afresh).
    h.engine.on_frame(
        frame_of(message(np.full((480, 640, 3), 250, np.uint8), "rgb8"), 2, h.clock, shrink=False)
    )
    h.say("please stop")
    assert h.wait(2)[1].code == OutcomeCode.OK
    assert model.shapes[-1] == (480, 640, 3)


def test_engine_prefetch_and_frame_check_use_the_shrunk_pixels(harness):
    """The prefetch encodes the shrunk frame; the scene check of a newer frame converts it shrunk
    once, and those pixels are the ones encoded if it is used."""
    model = SizedModel(16)
    h = harness(model=model, prefetch_rate=100.0, prefetch_max_lag=10.0)
    calls = []

    def counted(view):
        def shrink_(side):
            calls.append(side)
            return view.rgb(side)

        return shrink_

    first = RawImage(message(np.full((64, 64, 3), 20, np.uint8), "rgb8"))
    h.engine.on_frame(Frame(1, h.clock, h.clock, "cam", first.rgb, shrink=counted(first)))
    deadline = time.monotonic() + 5
    while h.engine.counts["frames_prefetched"] < 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert model.shapes == [(16, 16, 3)] and calls == [16]
    # A new, different scene: checked (shrunk once), found changed, encoded from those same pixels.
    h.engine.config.prefetch_rate = 0.0
    second = RawImage(message(np.full((64, 64, 3), 230, np.uint8), "rgb8"))
    h.engine.on_frame(Frame(2, h.clock, h.clock, "cam", second.rgb, shrink=counted(second)))
    h.say("please stop")
    res = h.wait(1)[0]
    assert res.code == OutcomeCode.OK and res.frame.seq == 2
    assert calls == [16, 16] and model.shapes[-1] == (16, 16, 3)
    assert h.engine.counts["prefetch_scene_changed"] == 1


def test_engine_answers_invalid_input_when_shrinking_fails(harness):
    h = harness(model=SizedModel(16), prefetch_rate=0)

    def broken(side):
        raise ImageConversionError("image data has 10 bytes but step x height = 12 x 4 = 48 bytes")

    h.engine.on_frame(Frame(1, h.clock, h.clock, "cam", broken, shrink=broken))
    h.say("please stop")
    res = h.wait(1)[0]
    assert res.code == OutcomeCode.INVALID_INPUT and "image data has 10 bytes" in res.reason


def test_frames_wake_the_engine_worker_only_when_they_make_a_prefetch_pending():
    """At 30 Hz a wake-up per frame is 30 worker turns a second for nothing: a frame wakes the
    worker only when it makes a prefetch pending (none was); a pending one is already timed."""
    from test_runtime_engine import Harness, good_image

    def counting(h):
        wakes = []
        notify = h.engine._cond.notify_all

        def spy():
            wakes.append(1)
            notify()

        h.engine._cond.notify_all = spy
        return wakes

    off = Harness(prefetch_rate=0)  # never started: the calls below run on this thread
    wakes = counting(off)
    for _ in range(5):
        off.frame(decode=good_image)
    assert wakes == [] and off.engine.counts["frames_received"] == 5

    on = Harness(prefetch_rate=5.0)
    wakes = counting(on)
    for _ in range(5):
        on.frame(decode=good_image)
    assert len(wakes) == 1  # the first frame made a prefetch pending; the next four replaced it
    on.engine._prefetch(on.engine._latest)  # the worker's prefetch: nothing is pending now
    on.frame(decode=good_image)
    assert len(wakes) == 2
