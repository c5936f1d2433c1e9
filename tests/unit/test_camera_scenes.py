"""Synthetic camera frames: scenes that move and follow the clock, faults that look like faults."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from simulators.camera_scenes import (
    FAULTS,
    KINDS,
    Scene,
    Stream,
    apply_fault,
    decode_jpeg,
    encode_jpeg,
    light_at,
)

NOON, NIGHT = 12 * 3600.0, 2 * 3600.0
W, H = 640, 360


@pytest.fixture(scope="module", params=KINDS)
def scene(request: Any) -> Scene:
    return Scene(7, W, H, request.param)


@pytest.fixture(scope="module")
def day() -> np.ndarray:
    return Scene(7, W, H, "gate").frame(NOON, label="s1/c1")


def grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)


def sharpness(frame: np.ndarray) -> float:
    return float(cv2.Laplacian(grey(frame), cv2.CV_64F).var())


def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def fault(frame: np.ndarray, name: str, strength: float = 1.0, variant: int = 0) -> np.ndarray:
    out = apply_fault(frame, name, strength, rng(), variant=variant)
    assert out is not None
    return out


def test_a_frame_is_a_bgr_image_with_structure(scene: Scene) -> None:
    frame = scene.frame(NOON)
    assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
    assert 60 < frame.mean() < 190
    assert frame.std() > 30  # buildings, tiles, fences: not a flat picture
    assert sharpness(frame) > 100


def test_same_arguments_same_frame(scene: Scene) -> None:
    assert np.array_equal(scene.frame(NOON + 1.5), scene.frame(NOON + 1.5))
    assert np.array_equal(Scene(7, W, H, scene.kind).frame(NOON), scene.frame(NOON))


def test_people_and_cars_move_between_frames(scene: Scene) -> None:
    changed = []
    for t in (NOON, NOON + 20, NOON + 40):
        a, b = (cv2.GaussianBlur(scene.frame(s, light=1.0), (0, 0), 2) for s in (t, t + 2))
        changed.append(float((cv2.absdiff(a, b).max(axis=2) > 40).mean()))
    assert max(changed) > 0.002  # shapes moved, not just noise
    assert not np.array_equal(scene.frame(NOON), scene.frame(NOON + 0.04))  # noise at least


def test_sharing_a_scene_with_an_offset_shows_other_moments(scene: Scene) -> None:
    a = cv2.GaussianBlur(scene.frame(NOON, light=1.0), (0, 0), 2)
    b = cv2.GaussianBlur(scene.frame(NOON, light=1.0, offset=17.0), (0, 0), 2)
    assert (cv2.absdiff(a, b).max(axis=2) > 40).mean() > 0.002


def test_night_is_darker_grey_and_noisier(scene: Scene) -> None:
    day, night = scene.frame(NOON), scene.frame(NIGHT)
    assert night.mean() < 0.8 * day.mean()
    assert np.array_equal(night[..., 0], night[..., 2])  # infrared: no colour
    assert day[..., 0].astype(int).sum() != day[..., 2].astype(int).sum()
    noise = [np.std(scene.frame(t).astype(int) - scene.frame(t + 0.001)) for t in (NOON, NIGHT)]
    assert noise[1] > 3 * noise[0]  # frames a millisecond apart differ by their noise only


def test_light_override_and_clock() -> None:
    assert light_at(NOON) == 1.0 and light_at(NIGHT) == 0.0
    assert 0 < light_at(18.8 * 3600) < 0.5  # dusk
    assert light_at(NOON + 86400 * 365) == light_at(NOON)
    assert light_at(NIGHT, "corridor") == 0.0 and light_at(9 * 3600, "canteen") > 0.5
    scene = Scene(1, W, H, "perimeter")
    assert scene.frame(NIGHT, light=1.0).mean() > scene.frame(NOON, light=0.0).mean()


def test_the_display_shows_the_clock_and_label() -> None:
    scene = Scene(1, W, H)
    a, b = scene.frame(NOON, light=1.0), scene.frame(NOON + 1, light=1.0)
    clock = (slice(0, H // 10), slice(0, W // 3))
    assert (cv2.absdiff(a[clock], b[clock]) > 100).sum() > 20  # the seconds changed
    corner = (slice(H * 9 // 10, H), slice(W * 3 // 4, W))
    labelled = scene.frame(NOON, light=1.0, label="s1/c1")
    assert (cv2.absdiff(labelled[corner], a[corner]) > 100).sum() > 20


def test_bad_scene_arguments() -> None:
    with pytest.raises(ValueError, match="kind 'lab' is not one of gate"):
        Scene(1, kind="lab")
    with pytest.raises(ValueError, match="too small"):
        Scene(1, 32, 32)


# --- faults -----------------------------------------------------------------------------------


def test_faults_leave_the_input_alone(day: np.ndarray) -> None:
    before = day.copy()
    for name in FAULTS:
        out = apply_fault(day, name, rng=rng())
        assert out is None or (out is not day and out.shape == day.shape)
    assert np.array_equal(day, before)


def test_black(day: np.ndarray) -> None:
    assert fault(day, "black").mean() < 10


def test_levels(day: np.ndarray) -> None:
    assert fault(day, "dark").mean() < 30
    assert fault(day, "bright").mean() > 220
    assert fault(day, "low_contrast").std() < 25
    assert day.std() > 35


def test_blur_takes_the_detail_away(day: np.ndarray) -> None:
    assert sharpness(fault(day, "blur")) < sharpness(day) / 10
    levels = [sharpness(fault(day, "blur", s)) for s in (0.3, 0.6, 1.0)]
    assert sharpness(day) > levels[0] > levels[1] > levels[2]


def test_blur_shows_at_1080p_decoded_at_a_quarter() -> None:
    frame = Scene(2, kind="corridor").frame(NOON)
    blurred = fault(frame, "blur")
    sharp, soft = (decode_jpeg(encode_jpeg(f), 4) for f in (frame, blurred))
    assert sharp.shape == (270, 480, 3)
    assert sharpness(soft) < sharpness(sharp) / 5


@pytest.mark.parametrize("variant", range(4))
def test_cover_hides_half_the_view_behind_a_uniform_blob(day: np.ndarray, variant: int) -> None:
    out = fault(day, "cover", variant=variant)
    # well inside the covered half (left, right, top, bottom), and the far side of the other
    inner, other = {
        0: ((slice(None), slice(0, W * 2 // 5)), (slice(None), slice(W * 4 // 5, W))),
        1: ((slice(None), slice(W * 3 // 5, W)), (slice(None), slice(0, W // 5))),
        2: ((slice(0, H * 2 // 5), slice(None)), (slice(H * 4 // 5, H), slice(None))),
        3: ((slice(H * 3 // 5, H), slice(None)), (slice(0, H // 5), slice(None))),
    }[variant]
    assert out[inner].std() < 6 and out[inner].mean() < 50
    assert day[inner].std() > 20
    assert np.abs(out[other].astype(int) - day[other]).mean() < 3


def test_cover_strength_is_the_share_covered(day: np.ndarray) -> None:
    dark = [(fault(day, "cover", s) < 45).all(axis=2).mean() for s in (1, 2)]
    assert 0.4 < dark[0] < 0.65 and dark[1] > 0.95


def test_snow_is_high_frequency_noise(day: np.ndarray) -> None:
    out = fault(day, "snow")
    assert sharpness(out) > 5 * sharpness(day)
    assert abs(out.mean() - day.mean()) < 10


@pytest.mark.parametrize("variant", range(4))
def test_colour_cast_moves_the_lab_colour(day: np.ndarray, variant: int) -> None:
    def ab(frame: np.ndarray) -> np.ndarray:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2LAB)[..., 1:].reshape(-1, 2).mean(axis=0)

    out = fault(day, "colour_cast", variant=variant)
    assert np.linalg.norm(ab(out) - ab(day)) > 8


@pytest.mark.parametrize("variant", range(4))
def test_pan_shifts_the_view(day: np.ndarray, variant: int) -> None:
    out = fault(day, "pan", variant=variant)
    (dx, dy), _ = cv2.phaseCorrelate(np.float32(grey(day)), np.float32(grey(out)))
    sx, sy = (1, -1)[variant % 2], (1, -1)[variant // 2]
    assert abs(dx - 0.10 * W * sx) < 0.02 * W and abs(dy - 0.04 * H * sy) < 0.02 * W


def test_drop_freeze_and_unknown(day: np.ndarray) -> None:
    assert apply_fault(day, "drop") is None
    assert np.array_equal(fault(day, "freeze"), day)
    with pytest.raises(ValueError, match="fault 'fog' is not one of black, freeze"):
        apply_fault(day, "fog")


def test_strength_zero_is_nearly_no_fault(day: np.ndarray) -> None:
    for name in ("blur", "snow", "colour_cast", "pan", "dark", "bright", "low_contrast"):
        out = fault(day, name, 0.0)
        assert np.abs(out.astype(int) - day).mean() < 2, name


def test_a_stream_freezes_and_drops() -> None:
    stream = Stream(Scene(3, W, H), label="s1/c1", seed=1)
    first = stream.next(NOON)
    assert first is not None
    frozen = [stream.next(NOON + n, "freeze") for n in (1, 2)]
    assert all(np.array_equal(f, first) for f in frozen)
    faint = stream.next(NOON + 3, "freeze", strength=0.5)
    assert not np.array_equal(faint, first) and np.abs(faint.astype(int) - first).mean() < 2
    assert stream.next(NOON + 4, "drop") is None
    blurred = stream.next(NOON + 5, "blur")
    assert sharpness(blurred) < sharpness(first) / 5
    assert np.array_equal(stream.next(NOON + 6, "freeze"), blurred)


# --- JPEG ---------------------------------------------------------------------------------------


def test_jpeg_round_trip(day: np.ndarray) -> None:
    data = encode_jpeg(day, 90)
    assert data[:2] == b"\xff\xd8"
    back = decode_jpeg(data)
    assert back.shape == day.shape and np.abs(back.astype(int) - day).mean() < 4
    assert decode_jpeg(data, 2).shape == (H // 2, W // 2, 3)
    assert len(encode_jpeg(day, 30)) < len(data)
    with pytest.raises(ValueError, match="not a decodable image"):
        decode_jpeg(b"not a jpeg")
