"""Dispatcher: every delivery retried until confirmed, with the alarm id on every attempt."""

import asyncio
import contextlib
from pathlib import Path

from gateway.config import LinkageSettings
from gateway.forwarding import Dispatcher
from gateway.models import Alarm
from gateway.ports import SendResult
from gateway.stats import Stats
from gateway.storage.sqlite import SqliteAlarmStore
from tests.unit.test_sqlite_store import alarm


class FlakyEndpoint:
    """Fails the first `failures` attempts of every alarm, then confirms."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.attempts: list[tuple[str, str]] = []

    async def send(self, endpoint: str, a: Alarm) -> SendResult:
        self.attempts.append((endpoint, a.id))
        tries = sum(1 for _, alarm_id in self.attempts if alarm_id == a.id)
        return SendResult(tries > self.failures, f"attempt {tries}")


async def test_retries_until_every_alarm_is_confirmed(tmp_path: Path) -> None:
    endpoint, stats = FlakyEndpoint(failures=3), Stats()
    async with SqliteAlarmStore(tmp_path / "s.db") as store:
        alarms = [alarm(n) for n in range(1, 21)]
        await store.commit(alarms, [])
        linkage = LinkageSettings(retry_initial_s=0.001, retry_max_s=0.01, down_after_failures=100)
        dispatcher = Dispatcher(store, endpoint, stats, linkage)
        task = asyncio.create_task(dispatcher.run())
        async with asyncio.timeout(20):
            while (await store.counts())["deliveries_pending"]:  # noqa: ASYNC110 (polling the store)
                await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert stats.deliveries_ok == 20
    assert stats.delivery_failures == 60
    assert sorted({a for _, a in endpoint.attempts}) == sorted(a.id for a in alarms)
    assert len(endpoint.attempts) == 80


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    linkage = LinkageSettings(retry_initial_s=1.0, retry_max_s=8.0)
    d = Dispatcher(None, None, Stats(), linkage)  # type: ignore[arg-type]
    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (10, 8.0)):
        delays = {d.backoff(attempts) for _ in range(50)}
        assert all(base / 2 <= x <= base for x in delays)
        assert len(delays) > 1


async def test_endpoint_declared_down_is_probed_one_at_a_time_then_recovers(
    tmp_path: Path,
) -> None:
    class DeadThenAlive:
        def __init__(self) -> None:
            self.alive = False
            self.concurrent = self.max_concurrent = self.calls = 0

        async def send(self, endpoint: str, a: Alarm) -> SendResult:
            self.calls += 1
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            await asyncio.sleep(0.001)
            self.concurrent -= 1
            return SendResult(self.alive, "ok" if self.alive else "refused")

    endpoint = DeadThenAlive()
    linkage = LinkageSettings(retry_initial_s=0.001, retry_max_s=0.002, down_after_failures=3,
                              probe_interval_s=0.05)  # fmt: skip
    async with SqliteAlarmStore(tmp_path / "s.db") as store:
        await store.commit([alarm(n) for n in range(1, 11)], [])
        dispatcher = Dispatcher(store, endpoint, Stats(), linkage)
        task = asyncio.create_task(dispatcher.run())
        try:
            async with asyncio.timeout(10):
                while dispatcher.endpoint_states().get("police") != "down":  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            calls_when_down, endpoint.max_concurrent = endpoint.calls, 0
            started = asyncio.get_running_loop().time()
            async with asyncio.timeout(10):  # polled, so a loaded machine only makes it slower
                while endpoint.calls - calls_when_down < 3:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            elapsed = asyncio.get_running_loop().time() - started
            probes = endpoint.calls - calls_when_down
            probing_concurrency = endpoint.max_concurrent
            endpoint.alive = True
            async with asyncio.timeout(10):
                while (await store.counts())["deliveries_pending"]:  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        finally:  # never leave the dispatcher running against a closed store
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert dispatcher.endpoint_states() == {"police": "up"}
    # One probe at a time, at most one per probe interval: never the backlog of 10 at once.
    assert probing_concurrency == 1
    assert probes <= elapsed / linkage.probe_interval_s + 2, (probes, elapsed)
    assert endpoint.max_concurrent <= 10
