"""A camera's troubles over time: N-hit raise, M-frame clear, cooldown, signal loss, learning."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from drivers.camera.quality import CameraQuality, Verdict
from gateway.config_devices import VideoQualitySettings
from tests.unit import test_quality_scenes as scenes

U8 = scenes.U8


class Camera:
    """A scene, its CameraQuality and a clock: one snapshot every 10 s."""

    def __init__(self, seed: int = 0, **settings: Any) -> None:
        self.scene = scenes.Scene(seed)
        self.quality = CameraQuality(VideoQualitySettings(**settings))
        self.i, self.now = 0, 0.0

    def snap(self, fault: Callable[[U8], U8] | None = None, shift: int = 0) -> Verdict:
        frame = self.scene.frame(self.i, shift)
        self.i, self.now = self.i + 1, self.now + 10.0
        return self.quality.observe(fault(frame) if fault else frame, self.now)

    def run(self, n: int, fault: Callable[[U8], U8] | None = None) -> list[Verdict]:
        return [self.snap(fault) for _ in range(n)]


def learnt(**settings: Any) -> Camera:
    camera = Camera(**settings)
    camera.run(12)
    return camera


def test_a_trouble_is_raised_after_n_consecutive_hits_once() -> None:
    camera = learnt()
    verdicts = camera.run(5, scenes.black)
    assert [v.raised for v in verdicts] == [set(), set(), {"black"}, set(), set()]
    assert all(v.active == {"black"} for v in verdicts[2:])
    assert camera.quality.active == {"black"}


def test_interrupted_hits_raise_nothing() -> None:
    camera = learnt()
    for _ in range(5):
        assert camera.snap(scenes.blur).hits == {"blur"}
        assert not camera.snap().raised
    assert camera.quality.active == frozenset()


def test_a_trouble_clears_after_m_healthy_frames() -> None:
    camera = learnt(healthy_to_clear=4)
    camera.run(3, scenes.snow)
    verdicts = camera.run(5)
    assert [v.cleared for v in verdicts] == [set(), set(), set(), {"noise"}, set()]
    assert verdicts[2].active == {"noise"} and verdicts[3].active == set()


def test_a_hit_while_clearing_starts_the_count_again() -> None:
    camera = learnt()
    camera.run(3, scenes.snow)
    camera.run(2)
    assert camera.snap(scenes.snow).active == {"noise"}
    assert [v.cleared for v in camera.run(3)] == [set(), set(), {"noise"}]


def test_no_new_trouble_of_a_kind_within_the_cooldown() -> None:
    camera = learnt(cooldown_s=100.0)
    assert camera.run(3, scenes.black)[-1].raised == {"black"}  # raised at t = 150
    camera.run(3)  # cleared at t = 180
    verdicts = camera.run(6, scenes.black)  # t = 190 ... 240: still cooling until 250
    assert not any(v.raised for v in verdicts)
    assert camera.snap(scenes.black).raised == {"black"}  # t = 250: still black, raised now


def test_other_troubles_are_not_held_back_by_a_cooldown() -> None:
    camera = learnt(cooldown_s=1000.0)
    camera.run(3, scenes.black)
    camera.run(3)
    assert camera.run(3, scenes.snow)[-1].raised == {"noise"}


def test_signal_loss_after_silence_then_cleared_by_a_frame() -> None:
    camera = learnt(signal_loss_s=60.0, cooldown_s=600.0)
    last = camera.now
    assert camera.quality.silence(last + 59.0, last).raised == set()
    lost = camera.quality.silence(last + 60.0, last)
    assert lost.raised == {"signal_loss"} and lost.active == {"signal_loss"}
    assert lost.scores == {} and lost.frame is None
    assert camera.quality.silence(last + 61.0, last).raised == set()
    camera.now = last + 300.0
    back = camera.snap()
    assert back.cleared == {"signal_loss"} and back.active == set()
    again = camera.quality.silence(camera.now + 60.0, camera.now)
    assert again.raised == set()  # within the cooldown of the first one
    assert camera.quality.silence(camera.now + 700.0, camera.now).raised == {"signal_loss"}


def test_a_camera_that_never_sent_a_frame_is_not_judged_silent() -> None:
    quality = CameraQuality(VideoQualitySettings())
    assert quality.silence(1e9, None).raised == set()


def test_frames_that_hit_are_not_learnt() -> None:
    camera = learnt()
    before = camera.quality.baseline.stat("brightness")
    camera.run(20, scenes.haze)
    assert camera.quality.baseline.stat("brightness") == before
    assert camera.snap(scenes.haze).hits == {"low_contrast"}


def test_a_moved_camera_is_raised_then_its_new_view_accepted() -> None:
    camera = learnt(baseline_frames=10)
    verdicts = [camera.snap(shift=64) for _ in range(16)]
    assert verdicts[2].raised == {"scene_change"}
    assert all(v.hits == {"scene_change"} for v in verdicts[:10])
    # After 10 frames in a row judged moved, the new view is the reference: M frames clear it.
    assert [v.cleared for v in verdicts[10:14]] == [set(), set(), {"scene_change"}, set()]


def test_rebaseline_learns_afresh() -> None:
    camera = learnt()
    camera.quality.rebaseline()
    assert camera.snap().learning
    assert camera.snap(scenes.blur).hits == set()  # blur needs a baseline again


def test_the_verdict_carries_the_decoded_frame_for_evidence() -> None:
    camera = learnt()
    verdict = camera.snap(scenes.black)
    assert verdict.frame is not None and verdict.frame.shape == (360, 640, 3)
    assert verdict.frame.mean() < 10


def test_a_resumed_trouble_is_not_raised_again_and_clears_after_m_healthy_frames() -> None:
    camera = Camera(hits_to_raise=3, healthy_to_clear=3, cooldown_s=0)
    camera.quality.resume("black", 0.0)
    assert camera.quality.active == {"black"}
    black = camera.run(4, scenes.black)
    assert not any(v.raised for v in black) and camera.quality.active == {"black"}
    healthy = camera.run(3)
    assert [sorted(v.cleared) for v in healthy] == [[], [], ["black"]]
    assert camera.quality.active == frozenset()
