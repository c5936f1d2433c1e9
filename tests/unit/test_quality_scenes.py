"""Generated camera pictures for the video quality tests: a street scene and the faults.

A scene is a static background (sky gradient, buildings with windows, striped and tiled ground,
a textured hedge) with shapes moving across it, sensor noise and a light level (1 day, 0.4
dusk, 0.12 night). Faults turn one of its frames into what a check must notice.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
WIDTH, HEIGHT = 640, 360
PAD = 96  # the background is this much wider on each side, for pans


class Scene:
    """One camera's view; `frame(i)` is its i-th snapshot (same seed, same frames)."""

    def __init__(self, seed: int = 0, light: float = 1.0, noise: float = 2.0) -> None:
        self.seed, self.light, self.noise = seed, light, noise
        self.background = _background(np.random.default_rng(seed))

    def frame(self, i: int, shift: int = 0) -> U8:
        """Snapshot i: moving shapes, light and fresh sensor noise; `shift` pans right."""
        x0 = PAD + shift
        img = self.background[:, x0 : x0 + WIDTH].copy()
        rng = np.random.default_rng((self.seed, i))
        for k in range(3):
            x = int((i * (23 + 11 * k) + 150 * k) % (WIDTH + 80)) - 40
            y = 200 + 40 * k
            colour = (40 + 60 * k, 90, 200 - 50 * k)
            cv2.ellipse(img, (x, y), (18, 38), 0, 0, 360, colour, -1, cv2.LINE_AA)
        sigma = self.noise / max(self.light, 0.2) ** 0.5
        lit = img.astype(np.float32) * self.light + rng.normal(0, sigma, img.shape)
        if self.light < 0.2:  # infrared: a grey picture
            lit[:] = lit.mean(axis=2, keepdims=True)
        return np.clip(lit, 0, 255).astype(np.uint8)


def _background(rng: np.random.Generator) -> U8:
    width = WIDTH + 2 * PAD
    img = np.zeros((HEIGHT, width, 3), np.uint8)
    ramp = np.linspace((230, 190, 150), (215, 210, 200), 120)
    img[:120] = ramp[:, None, :].astype(np.uint8)
    x = 0
    while x < width:
        w, top = int(rng.integers(50, 140)), int(rng.integers(20, 100))
        grey = int(rng.integers(110, 190))
        cv2.rectangle(img, (x, top), (x + w, 170), (grey, grey + 10, grey + 20), -1)
        for wx in range(x + 8, x + w - 10, 18):
            for wy in range(top + 10, 160, 22):
                cv2.rectangle(img, (wx, wy), (wx + 9, wy + 12), (70, 60, 50), -1)
        x += w + int(rng.integers(0, 20))
    img[170:] = (120, 135, 145)
    for y in range(180, HEIGHT, 24):  # paving
        cv2.line(img, (0, y), (width, y), (90, 100, 110), 2)
    for xx in range(0, width, 40):
        cv2.line(img, (xx, 180), (xx + 60, HEIGHT), (95, 105, 115), 2)
    hedge = rng.integers(30, 120, (40, width)).astype(np.uint8)
    img[300:340, :, 1] = cv2.GaussianBlur(hedge, (0, 0), 1.5) + 60
    img[300:340, :, 0] = img[300:340, :, 1] // 2
    return img


def black(frame: U8) -> U8:
    """The camera sends black (a few grey levels of noise)."""
    rng = np.random.default_rng(int(frame[0, 0, 0]))
    return np.clip(rng.normal(4, 1.0, frame.shape), 0, 255).astype(np.uint8)


def blur(frame: U8, sigma: float = 5.0) -> U8:
    """Defocus."""
    return np.asarray(cv2.GaussianBlur(frame, (0, 0), sigma), np.uint8)


def cover(frame: U8, side: str = "left", level: int = 25) -> U8:
    """Half the lens behind something dark and featureless (a hand, a bag, paint)."""
    out = frame.copy()
    h, w = frame.shape[:2]
    region: dict[str, Any] = {
        "left": np.s_[:, : w // 2], "right": np.s_[:, w // 2 :], "bottom": np.s_[h // 2 :]
    }  # fmt: skip
    rng = np.random.default_rng(1)
    patch = out[region[side]]
    out[region[side]] = np.clip(level + rng.normal(0, 1.0, patch.shape), 0, 255).astype(np.uint8)
    return out


def snow(frame: U8, sigma: float = 40.0, salt: float = 0.05) -> U8:
    """Interference: heavy Gaussian noise with salt-and-pepper speckles."""
    rng = np.random.default_rng(2)
    out = frame.astype(np.float32) + rng.normal(0, sigma, frame.shape)
    speckles = rng.random(frame.shape[:2]) < salt
    out[speckles] = rng.choice([0.0, 255.0], size=(int(speckles.sum()), 1))
    return np.clip(out, 0, 255).astype(np.uint8)


def cast(frame: U8, gains: tuple[float, float, float] = (0.7, 1.0, 1.4)) -> U8:
    """Colour cast: blue, green, red gains (the default turns the picture red)."""
    return _level(frame, np.array(gains, np.float32), 0.0)


def dark(frame: U8) -> U8:
    """Underexposure (an iris stuck closed): by day, a mean of about 28."""
    return _level(frame, 0.2, 0.0)


def bright(frame: U8) -> U8:
    """Overexposure (sun in the lens, iris stuck open)."""
    return _level(frame, 1.5, 150.0)


def haze(frame: U8) -> U8:
    """Low contrast: fog, a dirty dome."""
    return _level(frame, 0.2, 150.0)


def _level(frame: U8, gain: float | npt.NDArray[np.float32], offset: float) -> U8:
    out: U8 = np.clip(frame.astype(np.float32) * gain + offset, 0, 255).astype(np.uint8)
    return out


def test_scene_is_repeatable_and_moves() -> None:
    scene = Scene(3)
    assert np.array_equal(scene.frame(5), Scene(3).frame(5))
    assert not np.array_equal(scene.frame(5), scene.frame(6))
    assert scene.frame(0).shape == (HEIGHT, WIDTH, 3)


def test_night_is_dark_and_grey() -> None:
    frame = Scene(3, light=0.12).frame(0)
    assert frame.mean() < 30
    assert np.array_equal(frame[..., 0], frame[..., 2])
