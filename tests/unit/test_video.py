"""The gateway's video quality pool: its worker threads run at a lower OS priority."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from gateway.config_devices import VideoQualitySettings
from gateway.stats import Stats
from gateway.video import VideoQuality


def niceness() -> int:
    """The calling thread's own niceness (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


async def _commit(*_: object) -> None:
    return None


@contextmanager
def video(**settings: Any) -> Iterator[VideoQuality]:
    vq = VideoQuality(VideoQualitySettings(**settings), Stats(), lambda _: None, _commit)
    try:
        yield vq
    finally:
        vq._pool.shutdown()


def in_worker(vq: VideoQuality) -> int:
    return vq._pool.submit(niceness).result(timeout=10)


@pytest.mark.skipif(niceness() > 19 - 7, reason="already too nice to be made 7 nicer")
def test_a_worker_thread_runs_worker_nice_nicer_than_the_gateway() -> None:
    base = niceness()
    with video(worker_nice=7) as vq:
        assert in_worker(vq) == base + 7
    assert niceness() == base  # the event loop's thread keeps its priority


def test_niceness_is_capped_at_19() -> None:
    with video(worker_nice=19) as vq:
        assert in_worker(vq) == 19


def test_worker_nice_0_leaves_the_workers_alone() -> None:
    base = niceness()
    with video(worker_nice=0) as vq:
        assert in_worker(vq) == base


def test_the_default_is_the_lowest_priority() -> None:
    assert VideoQualitySettings().worker_nice == 19
