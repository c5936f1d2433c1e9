"""Per-frame video quality scores, computed on small thumbnails of one decoded snapshot.

Pure functions: JPEG bytes or a BGR array in, numbers out; no clock, no state. `thumbnail`
shrinks a frame once (grey 320x180, grey 160x90 for frame comparisons, the mean colour) and
`measure` scores it, against the previous frame (frozen) and the camera's reference frame
(scene change) when given. docs/video-quality.md describes every score.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

U8 = npt.NDArray[np.uint8]
F32 = npt.NDArray[np.float32]

GREY_SIZE = (320, 180)  # width, height: where brightness, blur, noise and occlusion are scored
PHASE_SIZE = (160, 90)  # frozen and scene change compare frames at this size
GRID = (16, 9)  # cells of 20x20 grey pixels for local statistics

_REDUCED = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_JPEG_MAGIC = b"\xff\xd8\xff"


class FrameError(ValueError):
    """A snapshot that cannot be decoded into a picture; the message says why."""


def decode(jpeg: bytes, reduction: int = 4) -> U8:
    """Decode JPEG bytes to a BGR array at 1/`reduction` size (1, 2, 4 or 8).

    Raises FrameError with the reason for anything that is not a decodable JPEG picture.
    """
    flag = _REDUCED.get(reduction)
    if flag is None:
        raise ValueError(f"decode reduction must be 1, 2, 4 or 8, not {reduction}")
    if not jpeg:
        raise FrameError("empty snapshot")
    if not jpeg.startswith(_JPEG_MAGIC):
        raise FrameError(f"not a JPEG (starts with {jpeg[:4].hex()})")
    try:
        image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), flag)
    except cv2.error as exc:
        raise FrameError(f"corrupt JPEG ({len(jpeg)} bytes): {exc.err}") from None
    if image is None or image.size == 0:
        raise FrameError(f"corrupt or truncated JPEG ({len(jpeg)} bytes)")
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """A frame shrunk for scoring: grey thumbnails and the mean colour (B, G, R)."""

    grey: U8
    phase: F32
    colour: tuple[float, float, float]


def thumbnail(image: U8) -> Thumbnail:
    """Shrink a decoded BGR (or grey) frame to the thumbnails the scores are computed on."""
    if image.ndim == 2:
        image = np.asarray(cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 8:
        raise FrameError(f"not a picture: array of shape {image.shape}")
    grey = _shrink(np.asarray(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), np.uint8), GREY_SIZE)
    phase = np.asarray(cv2.resize(grey, PHASE_SIZE, interpolation=cv2.INTER_AREA), np.float32)
    b, g, r, _ = cv2.mean(image)
    return Thumbnail(grey, phase, (b, g, r))


def _shrink(image: U8, size: tuple[int, int]) -> U8:
    if image.shape[1] == size[0] and image.shape[0] == size[1]:
        return image
    # Bilinear still reads every pixel when shrinking by less than 2 (1080p decoded at 1/4 to
    # 320x180) and costs a fifth of INTER_AREA's non-integer path; beyond 2 it would skip some.
    close = image.shape[1] < 2 * size[0] and image.shape[0] < 2 * size[1]
    method = cv2.INTER_LINEAR if close else cv2.INTER_AREA
    return np.asarray(cv2.resize(image, size, interpolation=method), dtype=np.uint8)


@dataclass(frozen=True, slots=True)
class Scores:
    """One frame's scores. `cast_a`/`cast_b` need a colour picture (not an infrared camera's
    grey one), `motion` a previous frame, `shift`/`match` a reference."""

    brightness: float  # mean grey level, 0-255
    contrast: float  # standard deviation of grey
    sharpness: float  # Laplacian energy / local variance, upper quartile of textured cells
    textured: float  # share of cells with texture (where sharpness is measured)
    noise: float  # mean |grey - median3(grey)| in the quietest quarter of cells, grey levels
    colour_cast: float  # distance of the mean colour's Lab (a, b) from neutral grey
    occlusion: float  # share of the frame in the largest featureless region
    entropy: float  # grey histogram entropy, bits (32 bins)
    dark: float  # share of pixels below 24 (ffmpeg blackdetect's 10 %)
    cast_a: float | None = None  # Lab a of the mean colour (+ magenta, - green); None: grey
    cast_b: float | None = None  # Lab b of the mean colour (+ yellow, - blue); None: grey
    motion: float | None = None  # median over cells of mean |frame - previous|, grey levels
    shift: float | None = None  # median shift of the best 3 tiles vs the reference, % width
    match: float | None = None  # mean phase correlation peak of the best 3 tiles, 0-1

    def as_dict(self) -> dict[str, float]:
        """The scores that were computed, by name (the InfluxDB field names)."""
        return {k: v for k in _FIELDS if (v := getattr(self, k)) is not None}


_FIELDS = tuple(Scores.__dataclass_fields__)


def measure(frame: Thumbnail, previous: Thumbnail | None, reference: Thumbnail | None) -> Scores:
    """Score one frame; `previous` gives `motion`, `reference` gives `shift` and `match`."""
    grey = frame.grey
    mean, std = cv2.meanStdDev(grey)
    brightness, contrast = float(mean[0, 0]), float(std[0, 0])
    smooth = np.asarray(cv2.medianBlur(grey, 3), dtype=np.uint8)
    cells = _Cells.of(grey, smooth)
    cast = _cast(frame.colour)
    hist = np.asarray(cv2.calcHist([grey], [0], None, [32], [0, 256]), dtype=np.float64).ravel()
    shift, match = _scene(frame, reference) if reference is not None else (None, None)
    return Scores(
        brightness=brightness,
        contrast=contrast,
        sharpness=cells.sharpness(),
        textured=float(cells.textured.mean()),
        noise=cells.noise(),
        colour_cast=math.hypot(*cast) if cast else 0.0,
        cast_a=cast[0] if cast else None,
        cast_b=cast[1] if cast else None,
        occlusion=cells.occlusion(contrast),
        entropy=_entropy(hist),
        dark=float(hist[:3].sum() / hist.sum()),
        motion=_motion(frame, previous) if previous is not None else None,
        shift=shift,
        match=match,
    )


_TEXTURE_VAR = 6.0**2  # a cell with std >= 6 grey levels has something to be sharp or blurred
_UNIFORM_STD = 1.5  # a cell with std below this (after median 3) shows nothing ...
_UNIFORM_SHARE = 0.06  # ... or below this share of the frame's own contrast


@dataclass(frozen=True, slots=True)
class _Cells:
    """Statistics of 20x20-pixel cells of the median-filtered grey thumbnail."""

    var: F32  # variance
    energy: F32  # mean squared Laplacian
    residual: F32  # mean |grey - median3(grey)|
    textured: npt.NDArray[np.bool_]

    @classmethod
    def of(cls, grey: U8, smooth: U8) -> _Cells:
        pixels = smooth.astype(np.float32)
        lap = np.asarray(cv2.Laplacian(pixels, cv2.CV_32F), dtype=np.float32)
        mean = _grid(pixels)
        var = np.maximum(_grid(pixels * pixels) - mean * mean, 0.0)
        residual = _grid(np.asarray(cv2.absdiff(grey, smooth), np.float32))
        return cls(var, _grid(lap * lap), residual, var >= _TEXTURE_VAR)

    def sharpness(self) -> float:
        """Laplacian energy relative to each cell's own variance, so it does not fall when the
        light does (night). The upper quartile over cells: the soft edge of something covering
        part of the lens, or a smooth wall, does not make a sharp picture look blurred."""
        if not self.textured.any():
            return 0.0
        return _quantile(self.energy[self.textured] / self.var[self.textured], 0.75)

    def noise(self) -> float:
        """The quietest quarter of the cells: edges and texture do not count as noise there."""
        return _quantile(self.residual, 0.25)

    def occlusion(self, contrast: float) -> float:
        """Share of the frame in the largest 4-connected region of featureless cells."""
        level = max(_UNIFORM_STD, _UNIFORM_SHARE * contrast)
        uniform = (self.var < level * level).astype(np.uint8)
        if not uniform.any():
            return 0.0
        count, _, stats, _ = cv2.connectedComponentsWithStats(uniform, connectivity=4)
        return int(np.asarray(stats)[1:count, cv2.CC_STAT_AREA].max()) / uniform.size


def _quantile(values: F32, q: float) -> float:
    """The q quantile (nearest rank) of a few hundred values, ten times faster than np.median."""
    ordered = np.sort(values, axis=None)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def _grid(values: F32) -> F32:
    return np.asarray(cv2.resize(values, GRID, interpolation=cv2.INTER_AREA), dtype=np.float32)


def _cast(colour: tuple[float, float, float]) -> tuple[float, float] | None:
    """Lab a, b of the frame's mean colour brought to mid-grey lightness, so that a gain error
    of the red or blue channel shows the same in dim light as by day; None for a grey picture
    (an infrared camera at night, or black)."""
    b, g, r = colour
    level = max(b, g, r)
    if level - min(b, g, r) < _GREY or level < 2.0:
        return None
    pixel = np.array([[[b, g, r]]], np.float32) * np.float32(0.5 / level)
    lab = np.asarray(cv2.cvtColor(pixel, cv2.COLOR_BGR2Lab), dtype=np.float32)
    return float(lab[0, 0, 1]), float(lab[0, 0, 2])


_GREY = 0.5  # the channel means of a grey picture differ by less (JPEG rounding)


def _entropy(hist: npt.NDArray[np.float64]) -> float:
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum())


def _motion(frame: Thumbnail, previous: Thumbnail) -> float:
    """Median over cells of the mean absolute difference: a clock overlay ticking in a corner
    of a frozen picture does not make it look live."""
    diff = np.abs(frame.phase - previous.phase)
    cells = np.asarray(cv2.resize(diff, GRID, interpolation=cv2.INTER_AREA), dtype=np.float32)
    return _quantile(cells, 0.5)


TILE = (64, 48)  # phase correlation tiles, 3 x 2 over the 160x90 thumbnail
_TILES = [(x, y) for y in (0, PHASE_SIZE[1] - TILE[1]) for x in (0, 48, PHASE_SIZE[0] - TILE[0])]
_WINDOW: F32 = np.asarray(cv2.createHanningWindow(TILE, cv2.CV_32F), dtype=np.float32)


def _scene(frame: Thumbnail, reference: Thumbnail) -> tuple[float, float]:
    """Shift vs the reference: the median over the three of six tiles that match best (the
    highest phase-correlation peaks). People or cars crossing a tile, or a featureless tile
    (a dark lawn at night), give a weak peak at a random shift and are left out; a camera
    that turned shifts every tile that still shows something."""
    found = []
    w, h = TILE
    for x, y in _TILES:
        # Windowed here: cv2 5.0's phaseCorrelate multiplies its inputs by the window in place.
        a = reference.phase[y : y + h, x : x + w] * _WINDOW
        (dx, dy), peak = cv2.phaseCorrelate(a, frame.phase[y : y + h, x : x + w] * _WINDOW)
        found.append((peak, dx, dy))
    best = sorted(found, reverse=True)[:3]
    shift = math.hypot(statistics.median(b[1] for b in best), statistics.median(b[2] for b in best))
    return 100.0 * shift / PHASE_SIZE[0], statistics.fmean(b[0] for b in best)
