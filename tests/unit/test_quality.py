"""Video quality checks on generated pictures: each fault hits its own check and no other."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from drivers.camera.quality import (
    CameraQuality,
    FrameError,
    Verdict,
    decode,
    measure,
    thumbnail,
)
from gateway.config_devices import VideoQualitySettings
from tests.unit import test_quality_scenes as scenes

U8 = scenes.U8
DAY, DUSK, NIGHT = 1.0, 0.4, 0.15


def jpeg(frame: U8, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return bytes(data)


def learnt(scene: scenes.Scene, frames: int = 12, **settings: Any) -> CameraQuality:
    """A camera that has seen `frames` healthy snapshots of the scene, 10 s apart."""
    quality = CameraQuality(VideoQualitySettings(**settings))
    for i in range(frames):
        verdict = quality.observe(scene.frame(i), 10.0 * i)
        assert not verdict.hits, f"healthy frame {i} hit {verdict.hits}"
    return quality


def after_learning(light: float, fault: Callable[[U8], U8], seed: int = 0) -> Verdict:
    scene = scenes.Scene(seed, light=light)
    return learnt(scene).observe(fault(scene.frame(12)), 120.0)


def test_decode_reduces_and_keeps_colour() -> None:
    data = jpeg(scenes.Scene(0).frame(0))
    for reduction, width in ((1, 640), (2, 320), (4, 160), (8, 80)):
        image = decode(data, reduction)
        assert image.shape == (360 * width // 640, width, 3)
        assert image.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty snapshot"),
        (b"\x89PNG\r\n\x1a\n....", "not a JPEG (starts with 89504e47)"),
        (b"\xff\xd8\xff\xe0" + b"\x00" * 100, "corrupt or truncated JPEG (104 bytes)"),
    ],
)
def test_bad_bytes_say_why(data: bytes, reason: str) -> None:
    with pytest.raises(FrameError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        decode(data, 4)


@pytest.mark.parametrize("keep", [200, 0.5, 0.9])
def test_a_truncated_jpeg_is_refused(keep: float) -> None:
    data = jpeg(scenes.Scene(0).frame(0))
    with pytest.raises(FrameError, match="corrupt or truncated JPEG"):
        decode(data[: int(keep if keep > 1 else len(data) * keep)], 4)


def test_decode_refuses_an_unknown_reduction() -> None:
    with pytest.raises(ValueError, match="1, 2, 4 or 8"):
        decode(jpeg(scenes.Scene(0).frame(0)), 3)


def test_thumbnail_takes_grey_and_refuses_non_pictures() -> None:
    grey = cv2.cvtColor(scenes.Scene(0).frame(0), cv2.COLOR_BGR2GRAY)
    assert thumbnail(np.asarray(grey, np.uint8)).grey.shape == (180, 320)
    with pytest.raises(FrameError, match="not a picture"):
        thumbnail(np.zeros((4, 4, 3), np.uint8))


def test_scores_need_a_previous_frame_and_a_reference() -> None:
    scene = scenes.Scene(0)
    first, second = thumbnail(scene.frame(0)), thumbnail(scene.frame(1))
    alone = measure(second, None, None).as_dict()
    assert {"brightness", "contrast", "sharpness", "noise", "occlusion"} <= alone.keys()
    assert not {"motion", "shift", "match"} & alone.keys()
    both = measure(second, first, first)
    assert both.motion is not None and both.motion > 0.1
    assert both.shift is not None and both.shift < 1.0


def test_infrared_pictures_have_no_colour() -> None:
    night = measure(thumbnail(scenes.Scene(0, light=NIGHT).frame(0)), None, None)
    assert night.cast_a is None and night.colour_cast == 0.0
    day = measure(thumbnail(scenes.Scene(0).frame(0)), None, None)
    assert day.cast_a is not None


FAULTS = {
    "black": (scenes.black, {"black"}),
    "blur": (scenes.blur, {"blur"}),
    "cover left": (scenes.cover, {"occlusion"}),
    "cover right, grey": (lambda f: scenes.cover(f, "right", 120), {"occlusion"}),
    "cover bottom": (lambda f: scenes.cover(f, "bottom"), {"occlusion"}),
    "snow": (scenes.snow, {"noise"}),
    "salt and pepper": (lambda f: scenes.snow(f, sigma=0, salt=0.2), {"noise"}),
    "red cast": (scenes.cast, {"colour_cast"}),
    "green cast": (lambda f: scenes.cast(f, (0.8, 1.35, 0.8)), {"colour_cast"}),
    "too bright": (scenes.bright, {"too_bright"}),
    "haze": (scenes.haze, {"low_contrast"}),
}


@pytest.mark.parametrize("light", [DAY, DUSK], ids=["day", "dusk"])
@pytest.mark.parametrize("name", list(FAULTS))
def test_each_fault_hits_its_check_only(name: str, light: float) -> None:
    fault, expected = FAULTS[name]
    assert after_learning(light, fault).hits == expected


def test_underexposure_is_too_dark_by_day_and_black_at_dusk() -> None:
    assert after_learning(DAY, scenes.dark).hits == {"too_dark"}
    # Black implies too dark and low contrast and is reported alone.
    assert after_learning(DUSK, scenes.dark).hits == {"black"}


@pytest.mark.parametrize("light", [DAY, DUSK, NIGHT], ids=["day", "dusk", "night"])
def test_a_repeated_frame_is_frozen(light: float) -> None:
    scene = scenes.Scene(1, light=light)
    quality = learnt(scene)
    assert quality.observe(scene.frame(11), 120.0).hits == {"frozen"}


@pytest.mark.parametrize("light", [DAY, DUSK, NIGHT], ids=["day", "dusk", "night"])
def test_a_panned_camera_is_a_scene_change(light: float) -> None:
    scene = scenes.Scene(2, light=light)
    quality = learnt(scene)
    assert quality.observe(scene.frame(12, shift=64), 120.0).hits == {"scene_change"}
    assert quality.observe(scene.frame(13), 130.0).hits == set()


def test_small_frames_are_decoded_less_reduced() -> None:
    quality = CameraQuality(VideoQualitySettings(decode_reduction=8))
    verdict = quality.observe(jpeg(scenes.Scene(0).frame(0)), 0.0)
    assert verdict.frame is not None and verdict.frame.shape == (180, 320, 3)


def test_a_healthy_day_with_moving_shapes_and_noise_hits_nothing() -> None:
    scene = scenes.Scene(4, noise=3.0)
    quality = CameraQuality(VideoQualitySettings())
    verdicts = [quality.observe(jpeg(scene.frame(i)), 10.0 * i) for i in range(80)]
    assert [v.hits for v in verdicts if v.hits] == []
    assert not any(v.raised for v in verdicts)
    assert not verdicts[9].learning and verdicts[8].learning


def test_a_night_camera_that_is_always_dark_is_not_too_dark() -> None:
    scene = scenes.Scene(5, light=NIGHT)
    quality = CameraQuality(VideoQualitySettings())
    verdicts = [quality.observe(jpeg(scene.frame(i)), 10.0 * i) for i in range(40)]
    assert verdicts[-1].scores["brightness"] < 30  # below DOMAIN.md's floor, yet its normal
    assert verdicts[-1].scores["contrast"] < 25
    assert [v.hits for v in verdicts if v.hits] == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [(scenes.black, {"black"}), (scenes.snow, {"noise"}), (scenes.cover, {"occlusion"})],
    ids=["black", "snow", "cover"],
)
def test_a_night_camera_still_sees_faults(fault: Callable[[U8], U8], expected: set[str]) -> None:
    assert after_learning(NIGHT, fault).hits == expected


def test_a_fixed_threshold_replaces_the_baseline_and_needs_no_learning() -> None:
    scene = scenes.Scene(5, light=NIGHT)
    quality = CameraQuality(VideoQualitySettings(thresholds={"too_dark": 40.0}))
    assert quality.observe(scene.frame(0), 0.0).hits == {"too_dark"}
    assert quality.observe(scene.frame(1), 10.0).hits == {"too_dark"}


def test_an_unknown_threshold_is_refused_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match=r"unknown checks \['blurry'\]"):
        VideoQualitySettings(thresholds={"blurry": 1.0})
    with pytest.raises(ValueError, match="signal_loss"):
        VideoQualitySettings(thresholds={"signal_loss": 1.0})


def test_only_black_and_frozen_are_judged_while_learning() -> None:
    scene = scenes.Scene(6)
    quality = CameraQuality(VideoQualitySettings())
    assert quality.observe(scenes.blur(scene.frame(0)), 0.0).hits == set()
    assert quality.observe(scenes.black(scene.frame(1)), 10.0).hits == {"black"}
    verdict = quality.observe(scene.frame(2), 20.0)
    assert quality.observe(scene.frame(2), 30.0).hits == {"frozen"}
    assert verdict.learning
