"""Video quality diagnosis of one camera's snapshots: scores, checks and the N-hit filter.

Pure: JPEG bytes (or a decoded array) and the time they were taken in, a `Verdict` out; the
caller's clock is passed in, nothing is read or written. `CameraQuality` keeps a camera's state:
its baseline (learnt from healthy frames), the reference frame scene change is judged against,
the previous frame (frozen) and, per check, the N-hit filter: a check becomes a trouble after
`hits_to_raise` consecutive hits, clears after `healthy_to_clear` frames without it, and is not
raised again within `cooldown_s` of the last time it was. docs/video-quality.md has the rules.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from drivers.camera.quality_rules import CHECKS, Baseline, judge
from drivers.camera.quality_scores import (
    GREY_SIZE,
    U8,
    FrameError,
    Scores,
    Thumbnail,
    decode,
    measure,
    thumbnail,
)
from gateway.config_devices import VideoQualitySettings

__all__ = [
    "CHECKS",
    "CameraQuality",
    "FrameError",
    "Measured",
    "Scores",
    "Thumbnail",
    "Verdict",
    "decode",
    "measure",
    "measure_frame",
    "measure_remote",
    "thumbnail",
]

ALIGNED = 0.75  # % of the width: a healthy frame this close to the reference replaces it


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one frame (or a silence) did to a camera's troubles.

    `hits`: checks this frame hit; `raised`: troubles that start now; `cleared`: troubles that
    ended now; `active`: all current troubles. `frame` is the decoded picture, for evidence.
    """

    scores: dict[str, float]
    hits: frozenset[str]
    raised: frozenset[str]
    cleared: frozenset[str]
    active: frozenset[str]
    frame: U8 | None = None
    learning: bool = False


@dataclass(slots=True)
class _Track:
    """The N-hit filter of one check."""

    hits: int = 0  # consecutive frames hitting
    healthy: int = 0  # consecutive frames not hitting, while active
    active: bool = False
    raised_at: float | None = None


@dataclass(slots=True)
class _State:
    tracks: dict[str, _Track] = field(default_factory=lambda: {c: _Track() for c in CHECKS})
    previous: Thumbnail | None = None
    reference: Thumbnail | None = None
    moved: int = 0  # consecutive frames hitting scene_change


class CameraQuality:
    """One camera's video quality state; feed it every snapshot with `observe`."""

    def __init__(self, settings: VideoQualitySettings) -> None:
        unknown = sorted(k for k in settings.thresholds if k not in CHECKS[1:])
        if unknown:
            names = ", ".join(CHECKS[1:])
            raise ValueError(f"no check {', '.join(unknown)} takes a threshold (only {names})")
        self.settings = settings
        self.baseline = Baseline(settings.baseline_frames)
        self._state = _State()
        self._reduction: int = settings.decode_reduction

    @property
    def active(self) -> frozenset[str]:
        """The camera's current troubles."""
        return frozenset(c for c, t in self._state.tracks.items() if t.active)

    def resume(self, check: str, raised_at: float) -> None:
        """After a restart: the camera has this trouble open since `raised_at`; it clears after
        `healthy_to_clear` good frames as if the gateway had never stopped."""
        track = self._state.tracks[check]
        track.active, track.raised_at = True, raised_at

    def rebaseline(self) -> None:
        """Learn the camera afresh (after it was moved or refocused on purpose)."""
        self.baseline.clear()
        self._state.reference = None

    def observe(self, frame: bytes | U8, at: float) -> Verdict:
        """Judge one snapshot (JPEG bytes or a decoded BGR array) taken at `at` seconds.

        Raises FrameError for bytes that are not a picture (they change no state). The same as
        `conclude(measure_frame(frame, *self.inputs()), at)`, which lets the measuring (all the
        CPU) run elsewhere, in another process, while the state stays here.
        """
        measured = measure_frame(frame, *self.inputs())
        verdict = self.conclude(measured, at)
        return replace(verdict, frame=measured.image)

    def inputs(self) -> tuple[int, Thumbnail | None, Thumbnail | None]:
        """What `measure_frame` needs besides the frame: the decode reduction, the previous
        frame and the reference. A camera must have one frame measured at a time."""
        return self._reduction, self._state.previous, self._state.reference

    def conclude(self, measured: Measured, at: float) -> Verdict:
        """Judge a frame `measure_frame` scored (with this camera's `inputs()`), taken at `at`."""
        self._reduction = measured.reduction
        thumb, scores = measured.thumb, measured.scores
        state = self._state
        hits = judge(scores, self.baseline, self.settings.thresholds)
        self._learn(thumb, scores, hits)
        raised, cleared = self._filter(hits, at)
        if "signal_loss" in self.active:  # a frame arrived: the signal is back
            cleared.add("signal_loss")
            state.tracks["signal_loss"].active = False
        return Verdict(
            scores=scores.as_dict(),
            hits=frozenset(hits),
            raised=frozenset(raised),
            cleared=frozenset(cleared),
            active=self.active,
            learning=not self.baseline.ready,
        )

    def silence(self, now: float, last_frame_at: float | None) -> Verdict:
        """Judge the camera's silence: no frame since `last_frame_at` (None: never) at `now`."""
        track = self._state.tracks["signal_loss"]
        raised: set[str] = set()
        silent = last_frame_at is not None and now - last_frame_at >= self.settings.signal_loss_s
        if silent and not track.active and not self._cooling(track, now):
            track.active, track.raised_at = True, now
            raised.add("signal_loss")
        hits = frozenset({"signal_loss"}) if silent else frozenset()
        return Verdict({}, hits, frozenset(raised), frozenset(), self.active)

    def _learn(self, thumb: Thumbnail, scores: Scores, hits: set[str]) -> None:
        """Healthy frames teach the baseline and become the reference; a moved camera's new
        view is accepted once it was judged moved for `baseline_frames` frames in a row."""
        state = self._state
        if "black" not in hits:
            state.previous = thumb
        state.moved = state.moved + 1 if "scene_change" in hits else 0
        if hits:
            if state.moved >= self.settings.baseline_frames:
                state.reference, state.moved = thumb, 0
            return
        self.baseline.add(scores.as_dict())
        if scores.shift is None or scores.shift < ALIGNED:
            state.reference = thumb

    def _filter(self, hits: set[str], at: float) -> tuple[set[str], set[str]]:
        raised, cleared = set(), set()
        for check, track in self._state.tracks.items():
            if check == "signal_loss":
                continue
            if check in hits:
                track.hits, track.healthy = track.hits + 1, 0
                ready = track.hits >= self.settings.hits_to_raise
                if ready and not track.active and not self._cooling(track, at):
                    track.active, track.raised_at = True, at
                    raised.add(check)
            else:
                track.hits = 0
                if track.active:
                    track.healthy += 1
                    if track.healthy >= self.settings.healthy_to_clear:
                        track.active, track.healthy = False, 0
                        cleared.add(check)
        return raised, cleared

    def _cooling(self, track: _Track, at: float) -> bool:
        return track.raised_at is not None and at - track.raised_at < self.settings.cooldown_s


@dataclass(frozen=True, slots=True)
class Measured:
    """One frame measured: its thumbnails and scores, and the decode reduction it needed.
    `image` (the decoded frame) stays where it was decoded: None when it crossed processes."""

    thumb: Thumbnail
    scores: Scores
    reduction: int
    image: U8 | None = None


def measure_frame(
    frame: bytes | U8, reduction: int, previous: Thumbnail | None, reference: Thumbnail | None
) -> Measured:
    """Decode (JPEG bytes at 1/`reduction` size, or less when the frame would then be smaller
    than the 320x180 the checks work on) and score one frame. Pure: the CPU-heavy half of
    `CameraQuality.observe`, safe to run in a worker process.

    Raises FrameError for bytes that are not a picture.
    """
    if isinstance(frame, bytes | bytearray | memoryview):
        jpeg = bytes(frame)
        while True:
            image = decode(jpeg, reduction)
            small = image.shape[1] < GREY_SIZE[0] or image.shape[0] < GREY_SIZE[1]
            if not small or reduction == 1:
                break
            reduction //= 2
    else:
        image = np.asarray(frame, dtype=np.uint8)
    thumb = thumbnail(image)
    return Measured(thumb, measure(thumb, previous, reference), reduction, image)


def measure_remote(
    jpeg: bytes, reduction: int, previous: Thumbnail | None, reference: Thumbnail | None
) -> Measured:
    """`measure_frame` for a worker process: the decoded image is not sent back."""
    return replace(measure_frame(jpeg, reduction, previous, reference), image=None)
