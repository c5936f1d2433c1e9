"""Which checks a frame's scores hit: absolute floors, a per-camera baseline, fixed overrides.

A check hits when its score is beyond the absolute floor (DOMAIN.md: brightness < 30 or > 220,
contrast std < 25, ...) *and* far from what this camera usually shows (its baseline: median and
MAD of its recent healthy frames), so a night camera that is always dark is not "too dark". A
fixed threshold from the settings replaces both for its check. A score without a baseline yet
is not judged, except black (absolute), frozen (exact repeats) and fixed thresholds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from drivers.camera.quality_scores import Scores

CHECKS = (
    "signal_loss", "black", "frozen", "blur", "occlusion", "too_dark", "too_bright",
    "low_contrast", "noise", "colour_cast", "scene_change",
)  # fmt: skip
# One fault moves several scores; the check naming the cause is reported, not its effects.
# In this order, a check still hit at its turn clears the ones it implies:
SUPPRESSES = (
    # a frame too dark or too bright loses contrast and detail everywhere, and has large
    # featureless regions; so does a flat (hazy) one
    ("too_dark", frozenset({"low_contrast", "blur", "occlusion"})),
    ("too_bright", frozenset({"low_contrast", "blur", "occlusion"})),
    ("low_contrast", frozenset({"blur", "occlusion"})),
    # covering part of the lens changes the whole frame's mean colour
    ("occlusion", frozenset({"colour_cast"})),
    # a defocused picture is featureless in places without being covered
    ("blur", frozenset({"occlusion"})),
)
# Checks about what the picture shows: when one of them hits, the frame cannot tell whether
# the camera moved, so scene_change is not judged on it.
PICTURE = frozenset({"too_dark", "too_bright", "low_contrast", "blur", "occlusion", "noise"})

BLACK_SHARE = 0.98  # black: this share of the pixels below 24 (ffmpeg blackdetect's default)
FROZEN_EXACT = 0.02  # motion (grey levels, 160x90) of a repeated frame, judged while learning
SPREAD_K = 4.0  # how many robust standard deviations (1.4826 MAD) away counts as unusual


@dataclass(frozen=True, slots=True)
class Stat:
    """A score's usual value on this camera: median and robust spread (1.4826 MAD)."""

    median: float
    spread: float


Limit = Callable[[Stat], float]


@dataclass(frozen=True, slots=True)
class Rule:
    """A check on one score: hit when beyond both the absolute floor and the baseline limit."""

    check: str
    score: str
    above: bool  # hit when the score is above the limit (else below)
    floor: float
    limit: Limit
    learning: float | None = None  # a fixed limit while there is no baseline (None: no check)

    def hits(self, value: float, stat: Stat | None, fixed: float | None) -> bool:
        """Judge one value; `fixed` (a threshold from the settings) replaces floor and baseline."""
        if stat is None:
            fixed = self.learning if fixed is None else fixed
        if fixed is not None:
            return value > fixed if self.above else value < fixed
        if stat is None:
            return False
        if self.above:
            return value > max(self.floor, self.limit(stat))
        return value < min(self.floor, self.limit(stat))


def _below(ratio: float, k: float = SPREAD_K) -> Limit:
    """Below `ratio` times the usual value and k spreads below it; a camera whose score varies
    a lot still gets a limit, at half that ratio."""
    return lambda s: max(min(ratio * s.median, s.median - k * s.spread), ratio * s.median / 2)


def _above(ratio: float, margin: float, k: float = SPREAD_K) -> Limit:
    """Above `ratio` times the usual value plus `margin`, and at least k spreads above it."""
    return lambda s: max(ratio * s.median + margin, s.median + k * s.spread)


RULES = (
    Rule("frozen", "motion", above=False, floor=0.1, limit=_below(0.5, 0), learning=FROZEN_EXACT),
    Rule("too_dark", "brightness", above=False, floor=30.0, limit=_below(0.5)),
    Rule("too_bright", "brightness", above=True, floor=220.0, limit=_above(1.0, 30.0)),
    Rule("low_contrast", "contrast", above=False, floor=25.0, limit=_below(0.45)),
    Rule("blur", "sharpness", above=False, floor=0.6, limit=_below(0.3)),
    Rule("noise", "noise", above=True, floor=2.0, limit=_above(1.6, 0.5)),
    Rule("occlusion", "occlusion", above=True, floor=0.25, limit=_above(1.0, 0.2)),
    Rule("scene_change", "shift", above=True, floor=1.5, limit=_above(1.0, 0.0)),
)
CAST_FLOOR = 12.0  # Lab a/b distance from neutral grey
CAST_SHIFT = 10.0  # ... and this far from the camera's usual (a, b)


class Baseline:
    """Each score's last `size` values on healthy frames.

    A score is judged once it has `size` values. Scores a frame lacks keep their older values:
    the colour of an infrared camera's daytime picture is remembered through the night.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: dict[str, deque[float]] = {}
        self._stats: dict[str, Stat | None] = {}

    @property
    def ready(self) -> bool:
        """Whether enough healthy frames were seen to judge against."""
        return self.stat("brightness") is not None

    def add(self, scores: Mapping[str, float]) -> None:
        """Learn from a healthy frame (the oldest value of each of its scores is forgotten)."""
        for name, value in scores.items():
            self._values.setdefault(name, deque(maxlen=self.size)).append(value)
        self._stats.clear()

    def clear(self) -> None:
        """Forget everything: learn again from the next healthy frames."""
        self._values.clear()
        self._stats.clear()

    def stat(self, name: str) -> Stat | None:
        """Median and spread of one score, or None while it has fewer than `size` values."""
        if name not in self._stats:
            values = sorted(self._values.get(name, ()))
            if len(values) < self.size:
                self._stats[name] = None
            else:
                median = _median(values)
                spread = 1.4826 * _median(sorted(abs(v - median) for v in values))
                self._stats[name] = Stat(median, spread)
        return self._stats[name]


def _median(ordered: list[float]) -> float:
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def judge(scores: Scores, baseline: Baseline, fixed: Mapping[str, float]) -> set[str]:
    """The checks this frame hits (signal_loss is judged elsewhere, by silence).

    Black is reported alone: it implies too_dark and low_contrast and makes the other checks
    meaningless. Other checks that are effects of a hit one are dropped (SUPPRESSES); scene
    change is only judged on a frame that no picture check hits.
    """
    if _black(scores, fixed.get("black")):
        return {"black"}
    hits = set()
    values = scores.as_dict()
    for rule in RULES:
        value = values.get(rule.score)
        if value is not None and rule.hits(value, baseline.stat(rule.score), fixed.get(rule.check)):
            hits.add(rule.check)
    if _cast(scores, baseline, fixed.get("colour_cast")):
        hits.add("colour_cast")
    for check, implied in SUPPRESSES:
        if check in hits:
            hits -= implied
    if hits & PICTURE:
        hits.discard("scene_change")
    return hits


def _black(scores: Scores, fixed: float | None) -> bool:
    return scores.dark >= (BLACK_SHARE if fixed is None else fixed)


def _cast(scores: Scores, baseline: Baseline, fixed: float | None) -> bool:
    if fixed is not None:
        return scores.colour_cast > fixed
    a, b = baseline.stat("cast_a"), baseline.stat("cast_b")
    if a is None or b is None or scores.cast_a is None or scores.cast_b is None:
        return False
    shift = math.hypot(scores.cast_a - a.median, scores.cast_b - b.median)
    usual = max(CAST_SHIFT, SPREAD_K * math.hypot(a.spread, b.spread))
    return scores.colour_cast > CAST_FLOOR and shift > usual
