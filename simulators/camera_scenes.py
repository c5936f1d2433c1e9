"""Synthetic CCTV frames for the camera simulator and the video-quality bench: scenes and faults.

Pure numpy + cv2, no I/O. A scene is a static background with structure (buildings, a gate,
tiles, fences, textures, vignetting) drawn once, people and cars moving along fixed routes,
sensor noise, day/night lighting and an on-screen display (clock top left, camera label bottom
right), as a school's cameras show them. Faults turn a healthy frame into what the gateway's
video quality checks must notice. The API:

    Scene(seed, width=1920, height=1080, kind="gate")       kind: one of KINDS
        Same seed, size and kind: the same scene. Building one takes ~0.2 s at 1080p.
    Scene.frame(t, light=None, *, label="", offset=0.0) -> np.ndarray   (height, width, 3) BGR uint8
        t: seconds on a local clock whose t % 86400 is the time of day (time.time() plus the UTC
        offset works; 12 * 3600 is noon). The same arguments give the same frame.
        light: 0 (night) .. 1 (full day) instead of the clock's light_at(t, kind). Below IR_LIGHT
        the camera is in infrared mode: grey, darker and noisier.
        label: the camera name in the display. offset: shifts the moving shapes' timeline, so
        cameras sharing one Scene do not show the same people at the same moment.
    light_at(t, kind="gate") -> float
        Daylight of the clock (0 at night, 1 around noon); indoor kinds are lit 06:00-22:00.
    apply_fault(frame, fault, strength=1.0, rng=None, *, variant=0) -> np.ndarray | None
        A new frame with the fault; the input is not changed; None only for "drop". FAULTS, and
        what strength 1.0 does (strength scales it; faults apply to the whole frame, display
        included):
        black         flat black with faint noise (mean < 10)
        freeze        the frame unchanged: freezing is a stream's (Stream repeats its last frame)
        blur          defocus: Gaussian blur of sigma 0.6% of the width (11.5 px at 1080p)
        cover         min(1, strength / 2) of the frame (a half at 1.0) behind a dark, nearly
                      uniform blob, as a hand, bag or paint on the lens; variant: which side
        snow          heavy noise (sigma 45) and 3% salt-and-pepper speckles
        colour_cast   channel gains off by up to 35%; variant: red, green, blue or yellow
        pan           camera moved: shifted 10% of the width and 4% of the height, turned 1.5
                      degrees; variant: direction
        dark          underexposed to 15% (mean < 30), noise amplified
        bright        overexposed: gain 2.2 and +60 (mean > 220 on a daylight frame)
        low_contrast  haze: contrast to 20% around a light grey (std < 25)
        drop          no frame: None
        rng: a numpy Generator for the per-frame noise (default: a fresh one). variant (int):
        the fault's fixed parameters, so a fault lasting many frames stays the same fault.
    Stream(scene, label="", seed=0).next(t, fault=None, strength=1.0, light=None, variant=0)
        -> np.ndarray | None: consecutive frames of one camera. "freeze" repeats the last frame
        exactly (strength < 1: with faint noise, as a re-encoded still); "drop" gives None.
    encode_jpeg(frame, quality=85) -> bytes;  decode_jpeg(data, reduction=1) -> np.ndarray
        reduction 1, 2, 4 or 8 decodes at 1/N size (cv2.IMREAD_REDUCED_COLOR_N).

Speed (`python -m simulators.camera_scenes`, CPU time on one core): a 1080p frame takes about
3 ms (300-400 frames/s by kind); encoding it as JPEG (q85, ~300 KiB) another ~5.5 ms.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from simulators.camera_draw import BUILDERS, ROUTES, Frame, background, draw_movers, movers

__all__ = ["FAULTS", "IR_LIGHT", "KINDS", "Frame", "Scene", "Stream", "apply_fault", "decode_jpeg",
           "encode_jpeg", "light_at"]  # fmt: skip

KINDS = tuple(BUILDERS)  # gate, canteen, corridor, perimeter
FAULTS = ("black", "freeze", "blur", "cover", "snow", "colour_cast", "pan", "dark", "bright",
          "low_contrast", "drop")  # fmt: skip
IR_LIGHT = 0.12  # below this light the camera switches to infrared (grey) mode
_PAD = 64  # the noise bank is this much larger than a frame, to take shifted slices of it
_NOISE: dict[tuple[int, int], tuple[Frame, Frame]] = {}
_INDOOR = ("canteen", "corridor")


def light_at(t: float, kind: str = "gate") -> float:
    """Daylight at clock t: 0 at night, 1 around noon; indoor kinds are lit 06:00-22:00."""
    hour = (t % 86400) / 3600
    if kind in _INDOOR:
        return 0.85 if 6 <= hour < 22 else 0.0
    return min(1.0, max(0.0, 0.1 + 1.1 * math.sin(math.pi * (hour - 6) / 13)))


def _noise_bank(height: int, width: int) -> tuple[Frame, Frame]:
    """Gaussian noise around 128 (std 32), colour and grey, a little larger than a frame."""
    if (height, width) not in _NOISE:
        rng = np.random.default_rng(20261123)
        colour = rng.normal(128, 32, (height + _PAD, width + _PAD, 3)).clip(0, 255)
        _NOISE[height, width] = (colour.astype(np.uint8), colour[..., 1].astype(np.uint8))
    return _NOISE[height, width]


def _noise(shape: tuple[int, ...], rng: np.random.Generator) -> Frame:
    """A random slice of the noise bank in the shape of a frame (grey or colour)."""
    colour, grey = _noise_bank(shape[0], shape[1])
    dy, dx = (int(v) for v in rng.integers(0, _PAD, 2))
    bank = colour if len(shape) == 3 else grey
    return bank[dy : dy + shape[0], dx : dx + shape[1]]


def _add(
    frame: npt.NDArray[Any], gain: float, offset: float, sigma: float, rng: np.random.Generator
) -> Frame:
    """gain * frame + offset + noise of std sigma, saturated: one pass over the frame."""
    beta = sigma / 32
    out = cv2.addWeighted(frame, gain, _noise(frame.shape, rng), beta, offset - 128 * beta)
    return np.asarray(out, np.uint8)


# --- the scene ----------------------------------------------------------------------------------


class Scene:
    """One camera's view: a static background, people and cars moving, noise, day and night."""

    def __init__(
        self, seed: int, width: int = 1920, height: int = 1080, kind: str = "gate"
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
        if width < 64 or height < 64:
            raise ValueError(f"a frame of {width}x{height} is too small (64x64 at least)")
        self.seed, self.width, self.height, self.kind = seed, width, height, kind
        rng = np.random.default_rng([seed % 2**63, KINDS.index(kind)])
        self.background = background(kind, width, height, rng)
        self.horizon = ROUTES[kind][0]
        self.movers = movers(kind, rng)
        _noise_bank(height, width)

    def frame(
        self, t: float, light: float | None = None, *, label: str = "", offset: float = 0.0
    ) -> Frame:
        """The frame at clock t (see the module docstring)."""
        lit = light_at(t, self.kind) if light is None else min(1.0, max(0.0, light))
        img = self.background.copy()
        draw_movers(img, self.movers, t + offset, self.horizon)
        rng = np.random.default_rng(
            [self.seed % 2**63, round(t * 1000) % 2**63, round(offset * 1000) % 2**63]
        )
        if lit >= IR_LIGHT:
            img = _add(img, 0.35 + 0.65 * lit, 0.0, 1.5 + 7.0 * (1.0 - lit), rng)
        else:  # infrared: grey, the illuminator reaching less far than daylight
            grey = _add(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), 0.55, 8.0, 9.0, rng)
            img = np.asarray(cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), np.uint8)
        self._display(img, t, label)
        return img

    def _display(self, img: Frame, t: float, label: str) -> None:
        scale, thick = self.height / 1080, max(1, round(self.height / 400))
        font = cv2.FONT_HERSHEY_SIMPLEX
        texts = [(time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)), (0.02, 0.06))]
        if label:
            size = cv2.getTextSize(label, font, scale * 1.1, thick)[0][0]
            texts.append((label, (0.98 - size / self.width, 0.96)))
        for text, (x, y) in texts:
            at = (round(x * self.width), round(y * self.height))
            cv2.putText(img, text, at, font, scale * 1.1, (0, 0, 0), thick + 2, cv2.LINE_AA)
            cv2.putText(img, text, at, font, scale * 1.1, (255, 255, 255), thick, cv2.LINE_AA)


# --- faults ------------------------------------------------------------------------------------


def _unchanged(frame: Frame, s: float, rng: np.random.Generator, _: int) -> Frame:
    return frame.copy()  # freezing is the stream's: it repeats its previous frame


def _black(frame: Frame, s: float, rng: np.random.Generator, _: int) -> Frame:
    return _add(frame, max(0.0, 1.0 - s), 2.0 * min(s, 1.0), 1.5, rng)


def _blur(frame: Frame, s: float, rng: np.random.Generator, _: int) -> Frame:
    sigma = 0.006 * frame.shape[1] * s
    if sigma <= 0:
        return frame.copy()
    step = max(1, int(sigma // 3))  # blur a smaller copy: same look, a fraction of the work
    h, w = frame.shape[:2]
    small = cv2.resize(frame, (w // step, h // step), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), sigma / step)
    return _add(cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR), 1.0, 0.0, 1.0, rng)


def _cover(frame: Frame, s: float, rng: np.random.Generator, variant: int) -> Frame:
    h, w = frame.shape[:2]
    sh, sw, share = h // 8, w // 8, min(1.0, s / 2)
    mask = np.zeros((sh, sw), np.float32)
    side = variant % 4  # left, right, top, bottom
    edge = round((sw if side < 2 else sh) * share)
    if side < 2:
        x0, x1 = (0, edge) if side == 0 else (sw - edge, sw)
        mask[:, x0:x1] = 1.0
        cv2.ellipse(
            mask, ((x1 if side == 0 else x0), sh // 2), (sw // 12, sh // 3), 0, 0, 360, 1.0, -1
        )
    else:
        y0, y1 = (0, edge) if side == 2 else (sh - edge, sh)
        mask[y0:y1] = 1.0
        cv2.ellipse(
            mask, (sw // 2, (y1 if side == 2 else y0)), (sw // 3, sh // 12), 0, 0, 360, 1.0, -1
        )
    mask = cv2.resize(cv2.GaussianBlur(mask, (0, 0), 1.5), (w, h)) * (share > 0)
    blob = _add(np.full_like(frame, (26, 30, 36)), 1.0, 0.0, 1.5, rng)
    out = cv2.blendLinear(blob, frame, mask, np.ascontiguousarray(1.0 - mask))
    return np.asarray(out, np.uint8)


def _snow(frame: Frame, s: float, rng: np.random.Generator, _: int) -> Frame:
    out = _add(frame, 1.0, 0.0, 45.0 * s, rng)
    speckle = rng.random(frame.shape[:2], np.float32)
    out[speckle < 0.015 * s] = 255
    out[speckle > 1 - 0.015 * s] = 0
    return out


_CASTS = ((0.7, 0.85, 1.35), (0.8, 1.3, 0.75), (1.35, 0.9, 0.7), (0.6, 1.15, 1.2))  # B, G, R gains


def _colour_cast(frame: Frame, s: float, rng: np.random.Generator, variant: int) -> Frame:
    gains = [1.0 + (g - 1.0) * s for g in _CASTS[variant % 4]]
    return np.asarray(cv2.transform(frame, np.diag(gains).astype(np.float32)), np.uint8)


def _pan(frame: Frame, s: float, rng: np.random.Generator, variant: int) -> Frame:
    h, w = frame.shape[:2]
    sx, sy = (1, -1)[variant % 2], (1, -1)[variant // 2 % 2]
    turn = cv2.getRotationMatrix2D((w / 2, h / 2), 1.5 * s * sx, 1.0)
    turn[:, 2] += (0.10 * w * s * sx, 0.04 * h * s * sy)
    out = cv2.warpAffine(
        frame, turn, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101
    )
    return np.asarray(out, np.uint8)


_Fault = Callable[[Frame, float, np.random.Generator, int], Frame]


def _level(gain: float, offset: float, sigma: float) -> _Fault:
    """A fault that changes gain and offset and amplifies the noise, scaled by strength."""

    def fault(frame: Frame, s: float, rng: np.random.Generator, _: int) -> Frame:
        return _add(frame, 1 + (gain - 1) * s, offset * s, 1.5 + sigma * s, rng)

    return fault


_FAULTS: dict[str, _Fault] = {"black": _black, "freeze": _unchanged, "blur": _blur, "cover": _cover,
           "snow": _snow, "colour_cast": _colour_cast, "pan": _pan, "dark": _level(0.15, 0, 3),
           "bright": _level(2.2, 60, 0), "low_contrast": _level(0.2, 0.8 * 165, 0)}  # fmt: skip


def apply_fault(
    frame: Frame,
    fault: str,
    strength: float = 1.0,
    rng: np.random.Generator | None = None,
    *,
    variant: int = 0,
) -> Frame | None:
    """The frame with a fault (see the module docstring); None for "drop"."""
    if fault not in FAULTS:
        raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
    if fault == "drop":
        return None
    return _fault(frame, fault, strength, rng or np.random.default_rng(), variant)


def _fault(
    frame: Frame, fault: str, strength: float, rng: np.random.Generator, variant: int
) -> Frame:
    if fault not in _FAULTS:
        raise ValueError(f"fault {fault!r} is not one of {', '.join(FAULTS)}")
    return _FAULTS[fault](frame, max(0.0, strength), rng, variant)


class Stream:
    """Consecutive frames of one camera, faults included: freeze repeats, drop skips."""

    def __init__(self, scene: Scene, label: str = "", seed: int = 0) -> None:
        self.scene, self.label, self.rng = scene, label, np.random.default_rng(seed)
        self.last: Frame | None = None

    def next(self, t: float, fault: str | None = None, strength: float = 1.0,
             light: float | None = None, variant: int = 0) -> Frame | None:  # fmt: skip
        """The frame at t, or None when dropped."""
        if fault == "freeze" and self.last is not None:
            return self.last.copy() if strength >= 1 else _add(self.last, 1.0, 0.0, 1.0, self.rng)
        if fault == "drop":
            return None
        frame = self.scene.frame(t, light, label=self.label)
        if fault is not None:
            frame = _fault(frame, fault, strength, self.rng, variant)
        self.last = frame
        return frame


def encode_jpeg(frame: Frame, quality: int = 85) -> bytes:
    """The frame as JPEG bytes."""
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("cv2 could not encode the frame as JPEG")
    return data.tobytes()


_REDUCED = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}  # fmt: skip


def decode_jpeg(data: bytes, reduction: int = 1) -> Frame:
    """A BGR frame from JPEG bytes, at 1/reduction size; ValueError when not an image."""
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), _REDUCED[reduction])
    if frame is None:
        raise ValueError("not a decodable image")
    return np.asarray(frame, np.uint8)


def _bench(seconds: float = 4.0) -> None:
    """Frames per CPU second at 1080p on one core, per kind, and what JPEG encoding takes.

    CPU time, not wall time, so that other work on a shared machine does not count."""
    cv2.setNumThreads(1)
    for kind in KINDS:
        built = time.process_time()
        scene = Scene(1, kind=kind)
        built, n, started = time.process_time() - built, 0, time.process_time()
        while time.process_time() - started < seconds / len(KINDS):
            frame = scene.frame(12 * 3600 + n * 0.04, label="s1/c1")
            n += 1
        rate, encode = n / (time.process_time() - started), time.process_time()
        size = sum(len(encode_jpeg(frame)) for _ in range(10)) // 10
        encode = (time.process_time() - encode) / 10
        print(f"{kind:10} {rate:4.0f} frames/s at 1920x1080 on one core (built in {built:.2f} s); "
              f"JPEG q85 {size // 1024} KiB in {encode * 1000:.1f} ms")  # fmt: skip


if __name__ == "__main__":
    _bench()
