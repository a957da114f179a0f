"""Procedural drawings of the object categories, in an object-local coordinate frame.

Every category is drawn by one function ``draw(pen, rgb, variant)`` in a local box
``[-1, 1] x [-1, 1]`` (x to the right, y *down*, like image rows). A :class:`Pen` maps local
points to pixels (centre, half-size in pixels, rotation, mirror) and draws anti-aliased,
sub-pixel polygons with OpenCV; everything, ellipses and arcs included, is a polygon, so one
transform serves all primitives and rotation costs nothing extra.

The geometry of a category never depends on its colour or ``variant`` (the variant only picks
secondary colours: the pot of a plant, the cap of a bottle...), so each category has one fixed
convex hull (:func:`category_hull`), computed once by replaying its drawing on a recording pen.
Bounding boxes of placed objects come from that hull.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache

import cv2
import numpy as np

RGB = tuple[int, int, int]

_SHIFT = 4  # fractional bits for cv2 sub-pixel coordinates
_SCALE = float(1 << _SHIFT)
_N_ELLIPSE = 20  # polygon vertices of a full ellipse
_T = np.linspace(0.0, 2.0 * math.pi, _N_ELLIPSE, endpoint=False)
_UNIT_CIRCLE = np.stack([np.cos(_T), np.sin(_T)], axis=1)  # (20, 2)

_EDGE_WIDTH = 0.045  # outline width in local units
METAL: RGB = (172, 174, 180)
DARK: RGB = (30, 30, 34)


# ----------------------------------------------------------------------------- colour helpers
def shade(rgb: RGB, factor: float) -> RGB:
    """``rgb`` scaled by ``factor`` (darker below 1, lighter above), clipped to 0..255."""
    r, g, b = rgb
    return (min(255, int(r * factor)), min(255, int(g * factor)), min(255, int(b * factor)))


def mix(a: RGB, b: RGB, t: float) -> RGB:
    """Linear blend ``(1 - t) * a + t * b``."""
    u = 1.0 - t
    return (int(u * a[0] + t * b[0] + 0.5), int(u * a[1] + t * b[1] + 0.5), int(u * a[2] + t * b[2] + 0.5))


def luminance(rgb: RGB) -> float:
    """Approximate perceived brightness 0..255 (Rec. 601 weights)."""
    r, g, b = rgb
    return 0.299 * r + 0.587 * g + 0.114 * b


def edge_colour(rgb: RGB) -> RGB:
    """Outline colour that stands out from ``rgb``: darker for light colours, lighter for dark ones."""
    return shade(rgb, 0.5) if luminance(rgb) > 70 else mix(rgb, (255, 255, 255), 0.35)


def contrast(rgb: RGB, dark: RGB = DARK, light: RGB = (240, 240, 240)) -> RGB:
    """``dark`` on light colours, ``light`` on dark ones (for details such as seams and laces)."""
    return dark if luminance(rgb) > 140 else light


# ----------------------------------------------------------------------------- local geometry
def _frozen(fn: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """Memoise a point-array constructor; the cached arrays are read-only (drawers reuse them)."""

    @cache
    def wrapper(*args: float) -> np.ndarray:
        out = fn(*args)
        out.setflags(write=False)
        return out

    wrapper.__doc__ = fn.__doc__
    return wrapper


@_frozen
def ellipse_pts(cx: float, cy: float, a: float, b: float, rot_deg: float = 0.0) -> np.ndarray:
    """Polygon (N, 2) of an ellipse with half-axes ``a`` (x) and ``b`` (y), rotated by ``rot_deg``."""
    pts = _UNIT_CIRCLE * (a, b)
    if rot_deg:
        t = math.radians(rot_deg)
        c, s = math.cos(t), math.sin(t)
        pts = pts @ np.array([[c, s], [-s, c]])
    return pts + (cx, cy)


@_frozen
def arc_pts(cx: float, cy: float, a: float, b: float, t0: float, t1: float, n: int = 10) -> np.ndarray:
    """Points (n, 2) along an elliptic arc from angle ``t0`` to ``t1`` (degrees, y down)."""
    t = np.radians(np.linspace(t0, t1, n))
    return np.stack([cx + a * np.cos(t), cy + b * np.sin(t)], axis=1)


@_frozen
def rect_pts(x0: float, y0: float, x1: float, y1: float) -> np.ndarray:
    """Corners (4, 2) of an axis-aligned rectangle in local coordinates."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


@_frozen
def rounded_rect_pts(x0: float, y0: float, x1: float, y1: float, r: float) -> np.ndarray:
    """Polygon of a rectangle with rounded corners of radius ``r``."""
    corners = (
        (x1 - r, y0 + r, -90, 0),
        (x1 - r, y1 - r, 0, 90),
        (x0 + r, y1 - r, 90, 180),
        (x0 + r, y0 + r, 180, 270),
    )
    return np.concatenate([arc_pts(cx, cy, r, r, a0, a1, 4) for cx, cy, a0, a1 in corners])


# ----------------------------------------------------------------------------- pens
class Pen:
    """Draws local-coordinate shapes onto an RGB uint8 image.

    Local point ``(x, y)`` maps to pixel ``centre + r * R(angle) @ (±x, y)``; ``flip`` mirrors x.
    Widths are in local units (1 = ``r`` pixels); strokes are at least one pixel wide.
    """

    def __init__(self, img: np.ndarray, cx: float, cy: float, r: float, angle_deg: float, flip: bool):
        t = math.radians(angle_deg)
        c, s = math.cos(t), math.sin(t)
        fx = -1.0 if flip else 1.0
        # (x, y) -> (c*fx*x + s*y, -s*fx*x + c*y) * r + (cx, cy); stored transposed for pts @ M
        self._m = np.array([[c * fx, -s * fx], [s, c]]) * r * _SCALE
        self._t = np.array([cx, cy]) * _SCALE
        self._r = r
        self.img = img

    def _px(self, pts: np.ndarray) -> np.ndarray:
        return np.rint(pts @ self._m + self._t).astype(np.int32)

    def _w(self, width: float) -> int:
        return max(1, int(round(width * self._r)))

    def fill(self, pts: np.ndarray, rgb: RGB, edge: RGB | None = None) -> None:
        """Filled polygon, optionally outlined."""
        p = self._px(pts)
        cv2.fillPoly(self.img, [p], rgb, cv2.LINE_AA, _SHIFT)
        if edge is not None:
            cv2.polylines(self.img, [p], True, edge, self._w(_EDGE_WIDTH), cv2.LINE_AA, _SHIFT)

    def stroke(self, pts: np.ndarray, rgb: RGB, width: float, closed: bool = False) -> None:
        """Polyline of ``width`` local units."""
        cv2.polylines(self.img, [self._px(pts)], closed, rgb, self._w(width), cv2.LINE_AA, _SHIFT)

    def ellipse(
        self, cx: float, cy: float, a: float, b: float, rgb: RGB, rot: float = 0.0, edge: RGB | None = None
    ) -> None:
        """Filled ellipse (see :func:`ellipse_pts`)."""
        self.fill(ellipse_pts(cx, cy, a, b, rot), rgb, edge)

    def circle(self, cx: float, cy: float, rad: float, rgb: RGB, edge: RGB | None = None) -> None:
        """Filled circle."""
        self.fill(ellipse_pts(cx, cy, rad, rad), rgb, edge)


class _RecordingPen(Pen):
    """A pen that only collects the local points it is asked to draw (for hulls)."""

    def __init__(self) -> None:
        self.points: list[np.ndarray] = []

    def fill(self, pts: np.ndarray, rgb: RGB, edge: RGB | None = None) -> None:
        pts = np.asarray(pts, dtype=np.float64)
        if edge is None:
            self.points.append(pts)
        else:  # the outline straddles the polygon edge
            self.stroke(pts, rgb, _EDGE_WIDTH)

    def stroke(self, pts: np.ndarray, rgb: RGB, width: float, closed: bool = False) -> None:
        pts = np.asarray(pts, dtype=np.float64)
        h = width / 2.0
        for d in ((h, h), (h, -h), (-h, h), (-h, -h)):
            self.points.append(pts + d)


# ----------------------------------------------------------------------------- drawings
def _cup(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    # handle: a thick arc on the right, drawn first so the body covers its ends
    handle = arc_pts(0.42, 0.0, 0.36, 0.4, -80, 80, 9)
    pen.stroke(handle, e, 0.24)
    pen.stroke(handle, rgb, 0.14)
    pen.fill(np.array([[-0.78, -0.68], [0.5, -0.68], [0.38, 0.86], [-0.66, 0.86]]), rgb, e)
    pen.ellipse(-0.14, -0.68, 0.64, 0.14, shade(rgb, 0.55), edge=e)  # opening
    if variant % 2:  # a stripe
        pen.fill(
            np.array([[-0.74, -0.2], [0.46, -0.2], [0.44, -0.05], [-0.73, -0.05]]),
            contrast(rgb, (90, 90, 90), (235, 235, 235)),
        )


def _bottle(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    body = np.array(
        [
            [-0.15, -0.82],
            [0.15, -0.82],
            [0.15, -0.58],
            [0.38, -0.3],
            [0.38, 0.92],
            [-0.38, 0.92],
            [-0.38, -0.3],
            [-0.15, -0.58],
        ]
    )
    pen.fill(body, rgb, e)
    cap = ((235, 235, 235), (40, 40, 40), (200, 40, 40), (40, 90, 200))[variant % 4]
    if cap == rgb or abs(luminance(cap) - luminance(rgb)) < 30:
        cap = contrast(rgb, (40, 40, 40), (235, 235, 235))
    pen.fill(rect_pts(-0.19, -1.0, 0.19, -0.8), cap, edge_colour(cap))
    pen.fill(rect_pts(-0.38, 0.12, 0.38, 0.52), mix(rgb, (255, 255, 255), 0.55))  # label
    pen.stroke(np.array([[-0.24, -0.2], [-0.24, 0.0]]), mix(rgb, (255, 255, 255), 0.5), 0.08)  # gloss


def _can(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.ellipse(0.0, 0.72, 0.52, 0.15, shade(rgb, 0.8), edge=e)
    pen.fill(rect_pts(-0.52, -0.58, 0.52, 0.72), rgb)
    pen.stroke(np.array([[-0.52, -0.58], [-0.52, 0.72]]), e, 0.045)
    pen.stroke(np.array([[0.52, -0.58], [0.52, 0.72]]), e, 0.045)
    band = contrast(rgb, (60, 60, 60), (240, 240, 240)) if variant % 2 else mix(rgb, (255, 255, 255), 0.6)
    pen.fill(rect_pts(-0.52, -0.05, 0.52, 0.2), band)
    pen.ellipse(0.0, -0.58, 0.52, 0.15, METAL, edge=shade(METAL, 0.55))  # lid
    pen.ellipse(0.0, -0.58, 0.38, 0.09, shade(METAL, 0.8))
    pen.ellipse(0.12, -0.6, 0.1, 0.04, (90, 90, 95))  # tab


def _book(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pages = (238, 232, 210)
    pen.fill(
        np.array([[-0.56, -0.82], [0.72, -0.82], [0.78, -0.74], [0.78, 0.92], [-0.5, 0.92], [-0.56, 0.84]]),
        pages,
        (150, 140, 120),
    )
    for y in (-0.5, -0.1, 0.3, 0.7):  # page lines on the fore-edge
        pen.stroke(np.array([[0.66, y], [0.76, y + 0.04]]), (175, 165, 140), 0.03)
    pen.fill(rect_pts(-0.68, -0.92, 0.64, 0.84), rgb, e)  # cover
    pen.fill(rect_pts(-0.68, -0.92, -0.5, 0.84), shade(rgb, 0.7))  # spine
    title = contrast(rgb, (50, 50, 50), (245, 235, 200)) if variant % 2 else (245, 235, 200)
    pen.fill(rect_pts(-0.3, -0.6, 0.42, -0.38), title)
    pen.stroke(np.array([[-0.2, -0.15], [0.32, -0.15]]), title, 0.06)


def _shoe(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    sole = (240, 240, 240) if luminance(rgb) < 200 else (60, 60, 60)
    if variant % 2:
        sole = (150, 95, 50) if rgb != (150, 95, 50) else sole
    pen.fill(
        np.array([[-0.98, 0.28], [0.98, 0.3], [1.0, 0.44], [0.92, 0.54], [-0.95, 0.54], [-1.0, 0.42]]),
        sole,
        edge_colour(sole),
    )
    upper = np.array(
        [
            [-0.96, 0.3],
            [-0.92, -0.3],
            [-0.8, -0.46],
            [-0.52, -0.36],
            [-0.22, -0.32],
            [0.08, -0.12],
            [0.5, 0.0],
            [0.86, 0.1],
            [0.98, 0.3],
        ]
    )
    pen.fill(upper, rgb, e)
    pen.ellipse(-0.6, -0.4, 0.22, 0.07, shade(rgb, 0.4))  # ankle opening
    lace = contrast(rgb, (40, 40, 40), (245, 245, 245))
    for x in (-0.12, 0.06, 0.24):
        pen.stroke(
            np.array([[x - 0.08, -0.22 + (x + 0.12) * 0.5], [x + 0.08, -0.1 + (x + 0.12) * 0.5]]), lace, 0.07
        )
    pen.stroke(np.array([[-0.9, 0.2], [0.9, 0.22]]), shade(rgb, 0.7), 0.05)


_POTS: tuple[RGB, ...] = ((190, 95, 60), (230, 230, 225), (120, 120, 125), (60, 90, 160))


def _plant(pen: Pen, rgb: RGB, variant: int) -> None:
    dark = shade(rgb, 0.65)
    for i, ang in enumerate((-62, -36, -12, 12, 36, 62, 0)):
        t = math.radians(ang)
        d = 0.5 if i < 6 else 0.62
        cx, cy = 0.05 + d * math.sin(t) * 1.05, 0.15 - d * math.cos(t)
        leaf = rgb if i % 2 else dark
        pen.ellipse(cx, cy, 0.16, 0.48 if i < 6 else 0.5, leaf, rot=ang, edge=shade(rgb, 0.45))
    pot = _POTS[variant % len(_POTS)]
    pe = edge_colour(pot)
    pen.fill(np.array([[-0.46, 0.3], [0.46, 0.3], [0.34, 0.98], [-0.34, 0.98]]), pot, pe)
    pen.fill(rect_pts(-0.54, 0.2, 0.54, 0.38), shade(pot, 0.85), pe)


def _dog(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    dark = shade(rgb, 0.6) if luminance(rgb) > 60 else mix(rgb, (255, 255, 255), 0.25)
    pen.stroke(np.array([[-0.66, 0.0], [-0.86, -0.2], [-0.94, -0.42]]), rgb, 0.12)  # tail
    for x in (-0.58, -0.38, 0.16, 0.34):  # legs
        pen.fill(rect_pts(x - 0.07, 0.1, x + 0.07, 0.7), dark if x in (-0.38, 0.34) else rgb, e)
    pen.ellipse(-0.14, 0.1, 0.6, 0.28, rgb, edge=e)  # body
    pen.circle(0.56, -0.3, 0.26, rgb, edge=e)  # head
    pen.ellipse(0.8, -0.2, 0.2, 0.12, mix(rgb, (230, 210, 190), 0.35), edge=e)  # snout
    pen.circle(0.97, -0.24, 0.06, (20, 20, 20))  # nose
    pen.ellipse(0.43, -0.22, 0.1, 0.24, dark, rot=-15, edge=e)  # floppy ear
    pen.circle(0.64, -0.38, 0.045, (15, 15, 15) if luminance(rgb) > 60 else (230, 230, 230))  # eye


def _cat(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.stroke(np.array([[0.35, 0.8], [0.72, 0.7], [0.85, 0.4], [0.76, 0.1]]), rgb, 0.13)  # tail
    pen.stroke(np.array([[0.35, 0.8], [0.72, 0.7], [0.85, 0.4], [0.76, 0.1]]), e, 0.03)
    pen.ellipse(0.0, 0.42, 0.44, 0.5, rgb, edge=e)  # body
    paw = mix(rgb, (255, 255, 255), 0.3)
    pen.ellipse(-0.17, 0.88, 0.13, 0.08, paw, edge=e)
    pen.ellipse(0.17, 0.88, 0.13, 0.08, paw, edge=e)
    pink = (235, 150, 160)
    for s in (-1.0, 1.0):  # pointed ears
        pen.fill(np.array([[0.38 * s, -0.5], [0.3 * s, -0.98], [0.06 * s, -0.68]]), rgb, e)
        pen.fill(np.array([[0.31 * s, -0.58], [0.27 * s, -0.86], [0.13 * s, -0.68]]), pink)
    pen.circle(0.0, -0.36, 0.38, rgb, edge=e)  # head
    for s in (-1.0, 1.0):
        pen.ellipse(0.15 * s, -0.42, 0.08, 0.07, (120, 200, 90))
        pen.ellipse(0.15 * s, -0.42, 0.025, 0.065, (15, 15, 15))
    pen.fill(np.array([[-0.06, -0.28], [0.06, -0.28], [0.0, -0.21]]), pink)
    wh = contrast(rgb, (60, 60, 60), (235, 235, 235))
    for s in (-1.0, 1.0):
        for dy in (-0.06, 0.04):
            pen.stroke(np.array([[0.1 * s, -0.22], [0.56 * s, -0.22 + dy * 2]]), wh, 0.025)


def _phone(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.fill(rounded_rect_pts(-0.5, -0.96, 0.5, 0.96, 0.16), rgb, e)
    screen = ((110, 180, 230), (150, 210, 200), (40, 50, 70), (200, 180, 240))[variant % 4]
    pen.fill(rect_pts(-0.4, -0.76, 0.4, 0.72), screen, (20, 20, 25))
    icon = (240, 240, 240) if luminance(screen) < 120 else (70, 90, 130)
    for row in range(3):
        for col in range(2):
            x, y = -0.2 + 0.4 * col, -0.5 + 0.4 * row
            pen.fill(rect_pts(x - 0.1, y - 0.1, x + 0.1, y + 0.1), icon)
    pen.circle(0.0, 0.84, 0.07, contrast(rgb, (40, 40, 40), (220, 220, 220)))
    pen.circle(0.0, -0.86, 0.035, (20, 20, 20))


def _key(pen: Pen, bow: RGB, x0: float, y0: float, x1: float, y1: float) -> None:
    dx, dy = x1 - x0, y1 - y0
    n = math.hypot(dx, dy)
    ux, uy = dx / n, dy / n
    px, py = -uy, ux
    pen.stroke(np.array([[x0, y0], [x1, y1]]), shade(METAL, 0.55), 0.2)
    pen.stroke(np.array([[x0, y0], [x1, y1]]), METAL, 0.13)
    for k in (0.55, 0.7, 0.85):  # teeth
        tx, ty = x0 + dx * k, y0 + dy * k
        pen.stroke(np.array([[tx, ty], [tx + px * 0.14, ty + py * 0.14]]), METAL, 0.08)
    pen.circle(x0, y0, 0.36, bow, edge=edge_colour(bow))
    pen.circle(x0 - ux * 0.16, y0 - uy * 0.16, 0.08, (235, 235, 230))


def _keys(pen: Pen, rgb: RGB, variant: int) -> None:
    ring = arc_pts(-0.62, -0.62, 0.3, 0.3, 0, 360, 16)
    pen.stroke(ring, shade(METAL, 0.6), 0.1, closed=True)
    pen.stroke(ring, METAL, 0.06, closed=True)
    _key(pen, shade(rgb, 0.82), -0.3, -0.18, 0.98, 0.18)
    _key(pen, rgb, -0.22, -0.34, 0.36, 0.96)


def _apple(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.stroke(np.array([[0.0, -0.5], [0.04, -0.74], [0.12, -0.92]]), (110, 70, 35), 0.1)  # stem
    pen.ellipse(0.33, -0.74, 0.25, 0.1, (60, 140, 45), rot=-25, edge=(30, 80, 25))  # leaf
    left = ellipse_pts(-0.24, 0.12, 0.6, 0.7)
    right = ellipse_pts(0.24, 0.12, 0.6, 0.7)
    pen.fill(left, rgb, e)
    pen.fill(right, rgb, e)
    pen.ellipse(0.0, 0.2, 0.6, 0.55, rgb)  # hide inner outline
    pen.ellipse(-0.3, -0.15, 0.12, 0.2, mix(rgb, (255, 255, 255), 0.5), rot=20)  # highlight


@_frozen
def _banana_outline() -> np.ndarray:
    t = np.linspace(-1.0, 1.0, 15)
    x, yc = 0.9 * t, 0.62 * t**2 - 0.22
    h = 0.26 * np.sqrt(np.clip(1.0 - t**2, 0.0, 1.0)) + 0.04
    top = np.stack([x, yc - h], axis=1)
    bottom = np.stack([x, yc + h * 0.7], axis=1)[::-1]
    return np.concatenate([top, bottom])


@_frozen
def _banana_ridge() -> np.ndarray:
    t = np.linspace(-1.0, 1.0, 15)[2:-2]
    return np.stack([0.9 * t, 0.62 * t**2 - 0.2], axis=1)


def _banana(pen: Pen, rgb: RGB, variant: int) -> None:
    pen.fill(_banana_outline(), rgb, shade(rgb, 0.55))
    pen.stroke(_banana_ridge(), shade(rgb, 0.8), 0.04)  # ridge
    tip = (90, 60, 30)
    pen.fill(np.array([[-0.9, 0.42], [-1.0, 0.26], [-0.84, 0.26]]), tip)
    pen.fill(np.array([[0.82, 0.3], [0.98, 0.26], [1.0, 0.44]]), tip)


def _ball(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.circle(0.0, 0.0, 0.86, rgb, edge=e)
    seam = (
        contrast(rgb, (60, 60, 60), (245, 245, 245)) if variant % 2 == 0 else mix(rgb, (255, 255, 255), 0.7)
    )
    pen.stroke(arc_pts(-1.3, 0.0, 0.92, 0.92, -42, 42, 9), seam, 0.08)
    pen.stroke(arc_pts(1.3, 0.0, 0.92, 0.92, 138, 222, 9), seam, 0.08)
    pen.ellipse(-0.35, -0.42, 0.16, 0.1, mix(rgb, (255, 255, 255), 0.55), rot=-35)


def _bowl(pen: Pen, rgb: RGB, variant: int) -> None:
    e = edge_colour(rgb)
    pen.fill(np.array([[-0.3, 0.52], [0.3, 0.52], [0.36, 0.72], [-0.36, 0.72]]), shade(rgb, 0.8), e)  # foot
    body = arc_pts(0.0, -0.2, 0.98, 0.78, 0, 180, 14)
    pen.fill(body, rgb, e)
    pen.ellipse(0.0, -0.2, 0.98, 0.26, rgb, edge=e)  # rim
    pen.ellipse(0.0, -0.18, 0.84, 0.18, shade(rgb, 0.62))  # inside
    if variant % 2:
        pen.stroke(
            arc_pts(0.0, -0.2, 0.9, 0.45, 20, 160, 10), contrast(rgb, (70, 70, 70), (240, 240, 240)), 0.06
        )


DRAWERS: dict[str, Callable[[Pen, RGB, int], None]] = {
    "cup": _cup,
    "bottle": _bottle,
    "can": _can,
    "book": _book,
    "shoe": _shoe,
    "plant": _plant,
    "dog": _dog,
    "cat": _cat,
    "phone": _phone,
    "keys": _keys,
    "apple": _apple,
    "banana": _banana,
    "ball": _ball,
    "bowl": _bowl,
}


@cache
def category_hull(category: str) -> np.ndarray:
    """Convex hull (K, 2) of everything a category draws, in local coordinates (read-only)."""
    try:
        drawer = DRAWERS[category]
    except KeyError:
        raise ValueError(f"unknown object category {category!r}; known: {sorted(DRAWERS)}") from None
    pen = _RecordingPen()
    drawer(pen, (128, 128, 128), 0)
    pts = np.concatenate(pen.points).astype(np.float32)
    hull = cv2.convexHull(pts).reshape(-1, 2).astype(np.float64)
    hull.setflags(write=False)
    return hull


def transformed_hull(category: str, angle_deg: float, flip: bool) -> np.ndarray:
    """The category hull rotated/mirrored like :class:`Pen` does, still in local units (K, 2)."""
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    fx = -1.0 if flip else 1.0
    return category_hull(category) @ np.array([[c * fx, -s * fx], [s, c]])
