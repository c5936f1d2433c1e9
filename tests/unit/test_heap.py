"""gateway.heap: freezing the long-lived heap and trimming freed memory."""

from __future__ import annotations

import gc

from gateway import heap


def test_trim_runs_at_most_once_per_period(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    calls = []
    clock = [100.0]
    monkeypatch.setattr(heap.time, "monotonic", lambda: clock[0])
    trimmer = heap.Trimmer(every_s=60)
    assert trimmer._trim is not None  # glibc here
    trimmer._trim = calls.append  # type: ignore[assignment]
    trimmer.maybe_trim()
    clock[0] += 59
    trimmer.maybe_trim()
    clock[0] += 2
    trimmer.maybe_trim()
    assert calls == [0, 0]


def test_real_malloc_trim_is_callable() -> None:
    heap.Trimmer(every_s=0).maybe_trim()  # returns; a wrong signature would crash here


def test_freeze_moves_live_objects_out_of_collections() -> None:
    before = gc.get_freeze_count()
    keep = [[n] for n in range(1000)]
    heap.freeze_long_lived()
    try:
        assert gc.get_freeze_count() >= before + len(keep)
    finally:
        gc.unfreeze()
