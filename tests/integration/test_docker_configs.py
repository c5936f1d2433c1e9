"""docker/: the broker and gateway configs and the healthchecks of compose.yaml, on real servers.

No Docker engine here: the servers run as processes (simulators/servers.py), each config used as
written except for addresses and paths. The broker fixture runs docker/mosquitto.conf rendered by
simulators/servers.py (listener, persistence_location and log_dest replaced; see
tests/unit/test_docker_stack.py); test_servers.py shows its queue of 1500 messages surviving a
restart. The gateway runs docker/campusgw.toml with hosts, ports and paths overridden through
CAMPUSGW_* variables, as compose.yaml's `environment:` would.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from simulators.servers import (
    MOSQUITTO_TEMPLATE,
    InfluxDB,
    Mosquitto,
    free_port,
    spawn,
    stop_process,
)
from tests.integration.conftest import Linkage, http_ok, publish, wait_for
from tests.unit.test_docker_stack import SERVICES, healthcheck, image_healthcheck

pytestmark = pytest.mark.integration

DOCKER = MOSQUITTO_TEMPLATE.parent


def run_check(argv: list[str], port: int, *, to_port: int) -> int:
    """Run a compose healthcheck command on this machine with the service's port moved; its code.

    Compose writes a literal `$` as `$$` (it interpolates variables); Docker runs the unescaped
    command. `python` is the image's interpreter: here, the one running the tests.
    """
    argv = [arg.replace("$$", "$").replace(f":{port}/", f":{to_port}/") for arg in argv]
    if argv[0] == "python":
        argv[0] = sys.executable
    done = subprocess.run(argv, capture_output=True, timeout=30, check=False)
    return done.returncode


def test_the_broker_accepts_docker_mosquitto_conf_and_persists(broker: Mosquitto) -> None:
    # mosquitto 2 refuses to start on an unknown option; a deprecated one only warns.
    version = re.search(r"mosquitto version (\S+) running", broker.tail(50))
    assert version, broker.tail()
    broker.stop()  # a clean stop saves the queue
    lines = broker.tail(200).splitlines()
    warnings = [line for line in lines if re.search(r"\b(Warning|Error):", line)]
    assert [w for w in warnings if "should not be run as root" not in w] == []
    assert (broker.dir / "mosquitto.db").is_file()
    # The image tag's series is the one tested here, e.g. eclipse-mosquitto:2.0 and 2.0.11.
    tag = SERVICES["mosquitto"]["image"].split(":")[1]
    assert version[1].startswith(tag + "."), (version[1], tag)


def test_the_brokers_healthcheck_passes_on_it_and_fails_without_it(broker: Mosquitto) -> None:
    argv = healthcheck("mosquitto")
    assert argv and argv[0] == "mosquitto_sub" and "-p" not in argv  # the default port, 1883
    argv = [*argv, "-p", str(broker.port)]
    assert run_check(argv, 1883, to_port=broker.port) == 0
    broker.stop()
    assert run_check(argv, 1883, to_port=broker.port) != 0


def test_the_databases_healthcheck_passes_on_influxd(influx: InfluxDB) -> None:
    argv = healthcheck("influxdb")
    assert argv
    assert run_check(argv, 8086, to_port=influx.port) == 0
    assert run_check(argv, 8086, to_port=free_port()) != 0


def test_the_linkage_simulators_healthcheck_passes_on_it(linkage: Linkage) -> None:
    argv = healthcheck("linkage")
    assert argv
    assert run_check(argv, 8110, to_port=linkage.ports["police"]) == 0
    assert run_check(argv, 8110, to_port=free_port()) != 0


@pytest.fixture
def docker_gateway(
    tmp_path: Path, broker: Mosquitto, influx: InfluxDB, linkage: Linkage
) -> Iterator[int]:
    """`campusgw run --config docker/campusgw.toml` (the image's CMD); yields its API port."""
    api_port = free_port()
    env = {
        "CAMPUSGW_MQTT__HOST": broker.host,
        "CAMPUSGW_MQTT__PORT": str(broker.port),
        "CAMPUSGW_INFLUXDB__URL": influx.url,
        "CAMPUSGW_INFLUXDB__DATABASE": "docker_configs",
        "CAMPUSGW_STORE__PATH": str(tmp_path / "gateway.db"),
        "CAMPUSGW_STORE__REGISTRY_PATH": str(tmp_path / "registry.db"),
        "CAMPUSGW_VIDEO_QUALITY__EVIDENCE_DIR": str(tmp_path / "evidence"),
        "CAMPUSGW_API__HOST": "127.0.0.1",  # the container's 0.0.0.0: loopback is enough here
        "CAMPUSGW_API__PORT": str(api_port),
    }
    for name in linkage.ports:
        env[f"CAMPUSGW_LINKAGE__ENDPOINTS__{name.upper()}__URL"] = linkage.url(name)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAMPUSGW_")}
    argv = [sys.executable, "-m", "gateway", "run", "--config", str(DOCKER / "campusgw.toml")]
    proc = spawn(argv, tmp_path / "gateway.log", env={**clean, **env})
    try:
        wait_for(lambda: http_ok(f"http://127.0.0.1:{api_port}/healthz"), 30, "gateway /healthz")
        yield api_port
    finally:
        stop_process(proc, timeout=20)


def test_the_gateway_runs_docker_campusgw_toml_and_its_image_healthcheck_follows_it(
    docker_gateway: int, broker: Mosquitto, linkage: Linkage
) -> None:
    check = image_healthcheck()
    assert run_check(check, 8000, to_port=docker_gateway) == 0
    # The stack's routes: a button press goes to the police endpoint.
    event = {"seq": 1, "ts": "2026-01-01T08:00:00Z", "event": "press"}
    publish(broker.port, "campus/s1/button/b1/event", json.dumps(event).encode())
    wait_for(lambda: linkage.received("police")["count"] >= 1, 15, "the press at police")
    broker.stop()  # /healthz answers 503 while MQTT is down: Docker marks the gateway unhealthy
    wait_for(lambda: run_check(check, 8000, to_port=docker_gateway) != 0, 15, "unhealthy")
