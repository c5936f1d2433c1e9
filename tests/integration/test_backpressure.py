"""One flooding device cannot starve the others, on real parts: counts sent vs stored."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from simulators.servers import InfluxDB, Mosquitto
from tests.integration.conftest import Gateway, Linkage, publish_lines, wait_for

pytestmark = pytest.mark.integration
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def statuses(count: int) -> list[str]:
    return [
        json.dumps({"seq": n, "ts": (T0 + timedelta(milliseconds=n)).isoformat(), "battery": 80})
        for n in range(1, count + 1)
    ]


def test_flooding_device_is_limited_and_the_others_lose_nothing(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, linkage: Linkage
) -> None:
    gw = Gateway(tmp_path / "gw", broker, influx, linkage, "t_flood")
    gw.configure(limits={"device_msgs_per_s": 50}).start()
    try:
        flood = threading.Thread(
            target=publish_lines,
            args=(broker.port, "campus/s1/gate/loud/status", statuses(5000)),
        )
        flood.start()
        quiet = [f"q{n}" for n in range(5)]
        for device in quiet:
            publish_lines(broker.port, f"campus/s1/button/{device}/status", statuses(20))
        flood.join(60)
        publish_lines(broker.port, "campus/s1/button/q0/event",
                      ['{"seq": 1, "ts": "2026-11-23T08:00:00Z", "event": "press"}'])  # fmt: skip
        wait_for(lambda: gw.get("/api/stats")["messages_acked"] >= 5000 + 100 + 1, 30, "all acked")
        stats = gw.get("/api/stats")
        wait_for(lambda: influx.count_points("t_flood", "button_status") == 100, 20, "quiet points")
        wait_for(lambda: gw.get("/api/stats")["points_pending"] == 0, 20, "written")
        loud, calm = (influx.count_points("t_flood", m) for m in ("gate_status", "button_status"))
        print(f"\nflood: sent 5000, stored {loud}, limited {stats['rate_limited']}; "
              f"quiet: sent 100, stored {calm}")  # fmt: skip
        assert loud + stats["rate_limited"] == 5000 and 0 < loud < 5000
        assert gw.get("/api/flooding") == {"campus/s1/gate/loud": stats["rate_limited"]}
        assert gw.get("/api/alarms")["total"] == 1  # events are never limited
    finally:
        gw.stop()
