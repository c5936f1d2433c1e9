"""Drawing of the camera simulator's scenes: the four static backgrounds and the people and cars.

Internal to simulators/camera_scenes.py, which documents the API; pure numpy + cv2. Coordinates are
fractions of the frame's width and height, so a scene looks the same at every size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

Frame = npt.NDArray[np.uint8]
Colour = tuple[int, int, int]

# --- drawing in fractions of the frame ------------------------------------------------------------


class Painter:
    """cv2 drawing with coordinates as fractions of the frame's width and height."""

    def __init__(self, img: Frame, rng: np.random.Generator) -> None:
        self.img, self.rng = img, rng
        self.h, self.w = img.shape[:2]

    def pt(self, x: float, y: float) -> tuple[int, int]:
        return round(x * self.w), round(y * self.h)

    def poly(self, points: list[tuple[float, float]], colour: Colour) -> None:
        pts = np.array([self.pt(x, y) for x, y in points], np.int32)
        cv2.fillPoly(self.img, [pts], colour, cv2.LINE_AA)

    def rect(self, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
        cv2.rectangle(self.img, self.pt(x0, y0), self.pt(x1, y1), colour, -1)

    def line(self, a: tuple[float, float], b: tuple[float, float], colour: Colour, px: int) -> None:
        cv2.line(self.img, self.pt(*a), self.pt(*b), colour, max(1, px), cv2.LINE_AA)

    def gradient(self, y0: float, y1: float, top: Colour, bottom: Colour) -> None:
        rows = self.pt(0, y1)[1] - self.pt(0, y0)[1]
        ramp = np.linspace(top, bottom, max(rows, 1))[:, None, :]
        self.img[self.pt(0, y0)[1] : self.pt(0, y1)[1]] = ramp.astype(np.uint8)

    def jitter(self, colour: Colour, by: int = 18) -> Colour:
        """The colour a little lighter or darker, its hue kept."""
        d = int(self.rng.integers(-by, by + 1))
        b, g, r = (min(255, max(0, c + d)) for c in colour)
        return b, g, r

    def grid(
        self, x0: float, y0: float, x1: float, y1: float, n: tuple[int, int], c: Colour
    ) -> None:
        """Windows or tiles: n[0] columns by n[1] rows of rectangles inside the box."""
        dx, dy = (x1 - x0) / n[0], (y1 - y0) / n[1]
        for i in range(n[0]):
            for j in range(n[1]):
                x, y = x0 + i * dx, y0 + j * dy
                self.rect(
                    x + dx * 0.18, y + dy * 0.2, x + dx * 0.82, y + dy * 0.8, self.jitter(c, 12)
                )

    def tree(self, x: float, y: float, size: float) -> None:
        self.line((x, y), (x, y - size * 0.5), (40, 55, 75), round(size * self.w * 0.05))
        for _ in range(7):
            cx = x + self.rng.uniform(-0.35, 0.35) * size * self.h / self.w
            cy = y - size * self.rng.uniform(0.55, 1.0)
            r = round(size * self.h * self.rng.uniform(0.18, 0.3))
            cv2.circle(self.img, self.pt(cx, cy), r, self.jitter((45, 95, 55), 20), -1, cv2.LINE_AA)

    def fan(self, vp: tuple[float, float], top: float, n: int, c: Colour) -> None:
        """Lines on the ground, from the bottom edge towards the vanishing point, up to row top."""
        reach = (top - vp[1]) / (1 - vp[1])
        for i in range(n + 1):
            x = -1 + 3 * i / n
            self.line((x, 1.0), (vp[0] + (x - vp[0]) * reach, top), c, 2)


# --- the four backgrounds -------------------------------------------------------------------------


def _gate(p: Painter) -> None:
    p.gradient(0, 0.37, (235, 200, 150), (225, 215, 200))
    x = -0.05
    while x < 1.05:  # the street's far side
        width, top = p.rng.uniform(0.1, 0.25), p.rng.uniform(0.06, 0.25)
        p.rect(x, top, x + width, 0.37, p.jitter((150, 165, 180), 30))
        p.grid(x + 0.01, top + 0.02, x + width - 0.01, 0.35, (int(width * 40), 6), (90, 80, 70))
        x += width + p.rng.uniform(0.0, 0.04)
    p.rect(0, 0.37, 1, 0.48, (92, 94, 96))
    for i in range(18):
        p.rect(i * 0.06, 0.423, i * 0.06 + 0.03, 0.429, (225, 230, 230))
    p.rect(0, 0.48, 1, 0.51, (170, 175, 178))
    p.rect(0, 0.51, 1, 1, (135, 150, 160))
    p.fan((0.5, 0.2), 0.51, 24, (110, 120, 128))
    for x0 in (0.17, 0.77):  # pillars, beam with the school's name, half-open retractable gate
        p.rect(x0, 0.18, x0 + 0.06, 0.56, (70, 80, 150))
    p.rect(0.17, 0.16, 0.83, 0.24, (40, 40, 170))
    cv2.putText(p.img, "EXPERIMENTAL PRIMARY SCHOOL", p.pt(0.24, 0.215), cv2.FONT_HERSHEY_DUPLEX,
                p.h / 720, (90, 215, 245), max(1, p.h // 400), cv2.LINE_AA)  # fmt: skip
    for i in range(14):
        x0 = 0.23 + i * 0.02
        p.line((x0, 0.47), (x0 + 0.02, 0.555), (190, 190, 195), p.h // 300)
        p.line((x0 + 0.02, 0.47), (x0, 0.555), (190, 190, 195), p.h // 300)
    p.rect(0.85, 0.3, 1.0, 0.62, (200, 215, 225))
    p.rect(0.87, 0.36, 0.95, 0.46, (110, 90, 70))
    for x0 in (0.03, 0.1, 0.12):
        p.tree(x0, p.rng.uniform(0.62, 0.72), 0.25)


def _canteen(p: Painter) -> None:
    p.img[:] = (212, 218, 222)
    p.grid(0, 0, 1, 0.56, (40, 14), (225, 228, 230))
    p.poly([(0.08, 0.05), (0.92, 0.05), (0.85, 0.22), (0.15, 0.22)], (120, 125, 128))
    p.rect(0.15, 0.21, 0.85, 0.23, (160, 165, 168))
    p.rect(0, 0.56, 1, 1, (70, 85, 140))
    p.fan((0.5, 0.3), 0.56, 30, (95, 110, 160))
    p.rect(0.05, 0.44, 0.95, 0.6, (175, 180, 184))  # the steel counter and its front edge
    p.rect(0.05, 0.44, 0.95, 0.455, (225, 228, 232))
    for i in range(5):
        x = 0.15 + i * 0.17
        cv2.ellipse(p.img, p.pt(x, 0.43), (p.w // 22, p.h // 30), 0, 0, 360, (45, 45, 50), -1)
        p.rect(x - 0.04, 0.3, x + 0.04, 0.43, p.jitter((150, 150, 155)))
    p.rect(0.88, 0.08, 0.99, 0.43, (150, 155, 160))
    p.grid(0.88, 0.08, 0.99, 0.43, (2, 5), (60, 140, 200))
    for x in (0.25, 0.5, 0.75):
        p.rect(x - 0.06, 0.0, x + 0.06, 0.02, (250, 252, 252))


def _corridor(p: Painter) -> None:
    far = (0.42, 0.33, 0.58, 0.53)
    p.poly([(0, 0), (1, 0), (far[2], far[1]), (far[0], far[1])], (215, 220, 222))
    p.poly([(0, 1), (1, 1), (far[2], far[3]), (far[0], far[3])], (150, 160, 165))
    p.fan((0.5, 0.43), far[3], 16, (120, 130, 135))
    p.poly([(0, 0), (far[0], far[1]), (far[0], far[3]), (0, 1)], (200, 210, 215))
    p.poly([(1, 0), (far[2], far[1]), (far[2], far[3]), (1, 1)], (195, 205, 212))
    p.poly([(0, 0.75), (far[0], 0.48), (far[0], far[3]), (0, 1)], (120, 160, 120))  # dado
    p.poly([(1, 0.75), (far[2], 0.48), (far[2], far[3]), (1, 1)], (120, 160, 120))
    p.rect(*far, (245, 240, 230))
    p.grid(far[0], far[1], far[2], far[3], (3, 2), (250, 235, 200))

    def wall(x: float, up: float) -> tuple[float, float]:
        """The point of the left wall at x, `up` of the way from the floor to the ceiling."""
        top, bottom = far[1] * x / far[0], 1 - (1 - far[3]) * x / far[0]
        return x, bottom - up * (bottom - top)

    for d in (0.08, 0.4, 0.68):  # doors on both walls, nearer ones larger
        x0, x1 = d * far[0], (d + 0.12) * far[0]
        door = [wall(x0, 0), wall(x0, 0.7), wall(x1, 0.7), wall(x1, 0)]
        for side in (0, 1):
            p.poly([(1 - x if side else x, y) for x, y in door], p.jitter((60, 90, 140)))
    for d in (0.1, 0.35, 0.55, 0.7, 0.8):
        y, half = d * far[1], 0.12 * (1 - d)
        p.rect(0.5 - half, y, 0.5 + half, y + 0.02 * (1 - d), (252, 252, 250))


def _perimeter(p: Painter) -> None:
    p.gradient(0, 0.3, (230, 195, 150), (220, 215, 205))
    for x in np.arange(0, 1, 0.07):
        p.tree(float(x) + p.rng.uniform(0, 0.04), 0.31, p.rng.uniform(0.12, 0.2))
    p.rect(0, 0.3, 1, 0.46, (120, 140, 115))
    p.rect(0, 0.44, 1, 0.5, (150, 160, 175))  # low wall with a brick pattern
    for j, y in enumerate(np.arange(0.44, 0.5, 0.012)):
        p.line((0, float(y)), (1, float(y)), (120, 128, 140), 1)
        for x in np.arange(0.01 * (j % 2), 1, 0.02):
            p.line((float(x), float(y)), (float(x), float(y) + 0.012), (120, 128, 140), 1)
    for x in np.arange(0, 1, 0.012):  # railings on the wall
        p.line((float(x), 0.28), (float(x), 0.44), (50, 55, 60), p.w // 900)
    for y in (0.3, 0.42):
        p.line((0, y), (1, y), (50, 55, 60), p.h // 300)
    p.rect(0, 0.5, 1, 1, (70, 130, 85))
    p.poly([(0, 0.58), (1, 0.55), (1, 0.66), (0, 0.72)], (140, 145, 150))
    for x in (0.2, 0.6, 0.95):
        p.line((x, 0.56), (x, 0.2), (70, 70, 75), p.w // 300)
        p.rect(x - 0.015, 0.19, x + 0.015, 0.21, (200, 220, 230))


BUILDERS = {"gate": _gate, "canteen": _canteen, "corridor": _corridor, "perimeter": _perimeter}


def background(kind: str, width: int, height: int, rng: np.random.Generator) -> Frame:
    """The static scene: drawing, then blotchy and fine texture, then vignetting."""
    img = np.zeros((height, width, 3), np.uint8)
    BUILDERS[kind](Painter(img, rng))
    texture = np.zeros((height, width), np.float32)
    for cells, amp in ((6, 6.0), (40, 5.0), (240, 4.0)):
        small = rng.normal(0, amp, (cells * height // width + 1, cells)).astype(np.float32)
        texture += cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    texture += rng.normal(0, 4.0, (height, width)).astype(np.float32)
    ys, xs = np.ogrid[-1 : 1 : height * 1j, -1 : 1 : width * 1j]
    vignette = (1 - 0.22 * (xs**2 + ys**2)).astype(np.float32)
    lit = (img.astype(np.float32) + texture[..., None]) * vignette[..., None]
    return np.asarray(lit.clip(0, 255), np.uint8)


# --- moving shapes --------------------------------------------------------------------------------

Route = tuple[bool, tuple[float, float], tuple[float, float]]  # car?, from, to (ground points)
ROUTES: dict[str, tuple[float, list[Route]]] = {  # kind: horizon, routes
    "gate": (0.3, [(True, (-0.3, 0.44), (1.3, 0.44)), (True, (1.3, 0.47), (-0.3, 0.47)),
                   (False, (0.45, 0.52), (0.3, 1.2)), (False, (0.6, 1.2), (0.5, 0.52)),
                   (False, (-0.1, 0.5), (1.1, 0.5))]),
    "canteen": (0.3, [(False, (-0.1, 0.72), (1.1, 0.75)), (False, (1.1, 0.85), (-0.1, 0.8)),
                      (False, (0.3, 0.66), (0.7, 0.68))]),
    "corridor": (0.43, [(False, (0.48, 0.55), (0.3, 1.3)), (False, (0.65, 1.3), (0.53, 0.55)),
                        (False, (0.45, 0.56), (0.8, 0.9))]),
    "perimeter": (0.3, [(False, (1.05, 0.95), (-0.05, 0.6)), (True, (-0.3, 0.64), (1.3, 0.6)),
                        (False, (0.1, 0.75), (0.9, 0.7))]),
}  # fmt: skip


@dataclass(frozen=True)
class Mover:
    """A person or car going along a route once a period, on screen for `share` of it."""

    car: bool
    start: tuple[float, float]
    end: tuple[float, float]
    period: float
    share: float
    phase: float
    colours: tuple[Colour, Colour]

    def at(self, t: float) -> tuple[float, float, float] | None:
        """(x, y, progress 0..1) at time t, or None while off screen."""
        u = (t / self.period + self.phase) % 1.0
        if u >= self.share:
            return None
        f = u / self.share
        return (self.start[0] + (self.end[0] - self.start[0]) * f,
                self.start[1] + (self.end[1] - self.start[1]) * f, f)  # fmt: skip


def movers(kind: str, rng: np.random.Generator) -> list[Mover]:
    """Two people or cars on each of the kind's routes, each with its own pace and colours."""
    out = []
    for car, start, end in ROUTES[kind][1]:
        for _ in range(2):
            shirt, trousers = (tuple(int(c) for c in rng.integers(20, 230, 3)) for _ in range(2))
            period = rng.uniform(25, 70) if car else rng.uniform(20, 45)
            share = rng.uniform(0.15, 0.3) if car else rng.uniform(0.5, 0.9)
            colours: tuple[Colour, Colour] = (shirt, trousers)  # type: ignore[assignment]
            out.append(Mover(car, start, end, period, share, rng.random(), colours))
    return out


def draw_movers(img: Frame, everyone: list[Mover], t: float, horizon: float) -> None:
    """The people and cars on screen at t, farther ones first, sized by their distance."""
    h, w = img.shape[:2]
    placed = [(pos, m) for m in everyone if (pos := m.at(t)) is not None]
    for (x, y, f), m in sorted(placed, key=lambda item: item[0][1]):
        depth = max(0.03, (y - horizon) / (1 - horizon))
        at = np.array([x * w, y * h])
        if m.car:
            _car(img, at, depth * 0.75 * w, m)
        else:
            _person(img, at, depth * 0.6 * h, m.colours, math.sin(f * 2 * math.pi * 14))


def _px(at: Any, size: float, points: list[tuple[float, float]], flip: int = 1) -> Any:
    """Points in units of size around the ground point `at` (up is negative y), as pixels;
    flip -1 mirrors them left to right."""
    return np.round(at + np.array(points) * (size * flip, size)).astype(np.int32)


def _person(img: Frame, at: Any, size: float, colours: tuple[Colour, Colour], swing: float) -> None:
    shirt, trousers = colours
    thick, arm_thick = max(1, round(size / 14)), max(1, round(size / 20))
    for s in (1, -1):
        hip, foot = _px(at, size, [(0, -0.47), (s * swing * 0.13, 0)])
        cv2.line(img, hip, foot, trousers, thick, cv2.LINE_AA)
        shoulder, hand = _px(at, size, [(s * 0.11, -0.8), (s * (0.11 - swing * 0.08), -0.5)])
        cv2.line(img, shoulder, hand, shirt, arm_thick, cv2.LINE_AA)
    torso = [(-0.11, -0.82), (0.11, -0.82), (0.11, -0.45), (-0.11, -0.45)]
    cv2.fillPoly(img, [_px(at, size, torso)], shirt, cv2.LINE_AA)
    head, r = _px(at, size, [(0, -0.9)])[0], max(1, round(size / 13))
    cv2.circle(img, head, r, (120, 160, 205), -1, cv2.LINE_AA)
    cv2.ellipse(img, head, (r, r), 0, 180, 360, (30, 30, 35), -1, cv2.LINE_AA)  # hair


_CAR = [(-0.5, -0.08), (-0.5, -0.28), (-0.35, -0.28), (-0.25, -0.45), (0.15, -0.45),
        (0.3, -0.28), (0.5, -0.25), (0.5, -0.08)]  # fmt: skip
_WINDOWS = [(-0.31, -0.29), (-0.22, -0.42), (0.13, -0.42), (0.25, -0.29)]


def _car(img: Frame, at: Any, size: float, m: Mover) -> None:
    flip = 1 if m.end[0] > m.start[0] else -1
    shadow = (round(size * 0.55), max(1, round(size / 25)))
    cv2.ellipse(img, _px(at, size, [(0, 0)])[0], shadow, 0, 0, 360, (40, 40, 40), -1)
    cv2.fillPoly(img, [_px(at, size, _CAR, flip)], m.colours[0], cv2.LINE_AA)
    cv2.fillPoly(img, [_px(at, size, _WINDOWS, flip)], (70, 55, 45), cv2.LINE_AA)
    for wheel in _px(at, size, [(-0.3, -0.08), (0.3, -0.08)]):
        cv2.circle(img, wheel, max(1, round(size / 12)), (25, 25, 25), -1, cv2.LINE_AA)
    lamp = _px(at, size, [(0.48, -0.2)], flip)[0]
    cv2.circle(img, lamp, max(1, round(size / 40)), (200, 240, 250), -1)
