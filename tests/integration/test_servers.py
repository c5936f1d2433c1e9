"""simulators/servers.py: real mosquitto and influxd start, serve, keep state and stop by PID."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from simulators.servers import (
    MOSQUITTO_TEMPLATE,
    InfluxDB,
    Mosquitto,
    ServerError,
    free_port,
    mosquitto_conf,
    port_in_use,
)

pytestmark = pytest.mark.integration

QUEUED = 1500  # more than mosquitto's default max_queued_messages (1000)


def gone(pid: int) -> bool:
    """True when no process has this PID (ours are reaped by stop, so no zombie either)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def sub(port: int, *args: str, timeout: float = 20) -> list[str]:
    """Run mosquitto_sub on topic t with QoS 1; the payloads it printed."""
    argv = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-t", "t", "-q", "1", *args]
    done = subprocess.run(argv, capture_output=True, check=True, timeout=timeout)
    return done.stdout.decode().splitlines()


def pub(port: int, lines: list[str], *args: str) -> None:
    """Publish each line as one QoS 1 message with mosquitto_pub."""
    argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-t", "t", "-q", "1", "-l", *args]
    subprocess.run(argv, input="\n".join(lines).encode() + b"\n", check=True, timeout=30)


def test_generated_conf_is_the_docker_conf_with_three_lines_replaced(tmp_path: Path) -> None:
    template = MOSQUITTO_TEMPLATE.read_text()
    conf = mosquitto_conf(template, 1234, tmp_path, tmp_path / "m.log").splitlines()
    changed = [line for line in conf[1:] if line not in template.splitlines()]
    expected = ["listener 1234 127.0.0.1", f"persistence_location {tmp_path}/"]
    expected += [f"log_dest file {tmp_path / 'm.log'}"]
    assert [line for line in changed if not line.startswith("user ")] == expected
    assert "max_queued_messages 100000" in conf
    with pytest.raises(ServerError, match="listener"):
        mosquitto_conf(template + "listener 9001\n", 1234, tmp_path, tmp_path / "m.log")


def test_mosquitto_delivers_a_published_message(tmp_path: Path) -> None:
    with Mosquitto().start(tmp_path, free_port()) as broker:
        pub(broker.port, ["hello"], "-r")
        assert sub(broker.port, "-C", "1", "-W", "10") == ["hello"]
        pid = broker.pid
        assert pid is not None and port_in_use("127.0.0.1", broker.port)
    assert gone(pid) and not port_in_use("127.0.0.1", broker.port)


def test_mosquitto_keeps_a_large_offline_queue_across_a_restart(tmp_path: Path) -> None:
    with Mosquitto().start(tmp_path, free_port()) as broker:
        session = ["-c", "-i", "offline-sub"]
        sub(broker.port, *session, "-E")  # persistent session, then offline
        pub(broker.port, [str(n) for n in range(QUEUED)])
        broker.restart()  # the queue must survive on disk
        got = sub(broker.port, *session, "-C", str(QUEUED), "-W", "20")
    assert got == [str(n) for n in range(QUEUED)]


def test_mosquitto_refuses_a_taken_port(tmp_path: Path) -> None:
    with (
        Mosquitto().start(tmp_path / "a", free_port()) as broker,
        pytest.raises(ServerError, match="in use"),
    ):
        Mosquitto().start(tmp_path / "b", broker.port)


def test_a_broker_that_dies_at_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = tmp_path / "bad.conf"
    template.write_text(MOSQUITTO_TEMPLATE.read_text() + "no_such_option true\n")
    monkeypatch.setattr("simulators.servers.MOSQUITTO_TEMPLATE", template)
    broker = Mosquitto()
    with pytest.raises(ServerError, match=r"(?s)exited with code \d+ .*no_such_option"):
        broker.start(tmp_path / "m", free_port())
    assert not broker.alive()


def test_killed_mosquitto_restarts_on_the_same_port(tmp_path: Path) -> None:
    with Mosquitto().start(tmp_path, free_port()) as broker:
        old = broker.pid
        assert old is not None
        broker.kill()
        assert gone(old)
        broker.restart()
        assert broker.alive() and broker.pid != old
        pub(broker.port, ["again"], "-r")
        assert sub(broker.port, "-C", "1", "-W", "10") == ["again"]


def test_influxd_counts_written_points(tmp_path: Path) -> None:
    with InfluxDB().start(tmp_path, free_port()) as influx:
        assert influx.count_points("campus", "status") == 0  # no database yet
        influx.query("CREATE DATABASE campus")
        influx.write(
            "campus",
            [
                "status,school=s1,device=b1 seq=1i,battery=90 1700000000000000000",
                "status,school=s1,device=c1 seq=1i,fps=25 1700000000000000000",
                'status,school=s2,device=g1 seq=2i,door="closed" 1700000001000000000',
            ],
        )
        assert influx.count_points("campus", "status") == 3
        assert influx.count("status", "campus") == 3
        assert influx.count_points("campus", "other") == 0
        pid = influx.pid
    assert pid is not None and gone(pid)
    assert not port_in_use("127.0.0.1", influx.port)
