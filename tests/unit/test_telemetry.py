"""Telemetry writer: batches by size, keeps a batch the sink failed, evicts oldest when full."""

from gateway.ports import PointsRejectedError
from gateway.stats import Stats
from gateway.telemetry import TelemetryWriter


class Sink:
    def __init__(self) -> None:
        self.batches: list[bytes] = []
        self.fail: Exception | None = None

    async def prepare(self) -> None: ...

    async def ping(self) -> bool:
        return True

    async def write(self, lines: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append(lines)


def writer(sink: Sink, stats: Stats, rejected: list[str], max_buffer: int = 100) -> TelemetryWriter:
    return TelemetryWriter(
        sink, stats, batch_size=3, flush_interval_s=0.01, max_buffer=max_buffer,
        on_rejected=lambda lines, reason: rejected.append(reason),
    )  # fmt: skip


async def test_batches_by_size_and_counts() -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(sink, stats, rejected)
    for n in range(7):
        w.add(b"p%d" % n)
    assert await w.flush()
    assert sink.batches == [b"p0\np1\np2", b"p3\np4\np5", b"p6"]
    assert (stats.points_written, w.pending) == (7, 0)


async def test_failed_write_keeps_the_batch() -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(sink, stats, rejected)
    w.add(b"a")
    sink.fail = ConnectionError("down")
    assert not await w.flush()
    assert (w.pending, w.healthy, stats.write_errors) == (1, False, 1)
    sink.fail = None
    assert await w.flush()
    assert (sink.batches, w.healthy, stats.points_written) == ([b"a"], True, 1)


async def test_refused_points_become_dead_letters_not_retries() -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(sink, stats, rejected)
    w.add(b"bad")
    sink.fail = PointsRejectedError("HTTP 400: field type conflict")
    assert await w.flush()
    assert (w.pending, stats.points_rejected, rejected) == (0, 1, ["HTTP 400: field type conflict"])


async def test_full_buffer_evicts_oldest_and_counts() -> None:
    sink, stats, rejected = Sink(), Stats(), []
    w = writer(sink, stats, rejected, max_buffer=4)
    for n in range(6):
        w.add(b"p%d" % n)
    assert (w.pending, stats.points_evicted) == (4, 2)
    await w.flush()
    assert b"".join(sink.batches).startswith(b"p2")
